"""Unit operations on the materialised-path tree: create, update, list, subtree, move, dissolve."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text, and_, cast, func, literal, or_, tuple_, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit import codes
from tongban_kit.outbox import emit, utcnow
from tongban_kit.pagination import Page, decode_cursor, encode_cursor, page_of
from tongban_kit.problems import Problem
from tongban_org.authz import Principal, path_ids
from tongban_org.contract import (
    UNIT_CREATED,
    UNIT_DISSOLVED,
    UNIT_MOVED,
    UNIT_UPDATED,
    UnitCreated,
    UnitDissolved,
    UnitMoved,
    UnitUpdated,
)
from tongban_org.models import (
    Membership,
    Unit,
    UnitCreate,
    UnitHistory,
    UnitPublic,
    UnitStatus,
    UnitType,
    UnitUpdate,
)

SOURCE = "/tongban/org"
TERRITORIAL = (UnitType.government, UnitType.community)


def public(unit: Unit) -> UnitPublic:
    """The API view of a unit."""
    return UnitPublic.model_validate(unit, from_attributes=True)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def subtree_end(path: str) -> str:
    """The smallest path after every path in the subtree at `path` ('/' + 1 == '0' in byte order)."""
    return path[:-1] + "0"


def in_subtree(path: str) -> Any:
    """SQL condition: unit lies in the subtree at `path` (itself included); a range on the path index."""
    return and_(col(Unit.path) >= path, col(Unit.path) < subtree_end(path))


def below(path: str) -> Any:
    """SQL condition: unit is a strict descendant of the unit at `path`."""
    return and_(col(Unit.path) > path, col(Unit.path) < subtree_end(path))


async def get_unit(s: AsyncSession, *, unit_id: str) -> Unit:
    """A unit by id, or 404."""
    unit = await s.get(Unit, unit_id)
    if unit is None:
        raise Problem(404, f"no unit with id {unit_id}", type="unit-not-found")
    return unit


def placement_problems(parent: Unit | None, *, level: str, type_: str, division_code: str) -> list[str]:
    """Why a unit with these attributes cannot sit under `parent` (empty when it can)."""
    out: list[str] = []
    code_level = codes.division_level(division_code)
    if type_ in TERRITORIAL and code_level != level:
        out.append(f"division_code {division_code} is a {code_level}-level code but the unit is at {level} level")
    elif codes.level_rank(code_level) > codes.level_rank(level):
        out.append(f"division_code {division_code} is finer than the unit's {level} level")
    if parent is not None:
        if parent.status != UnitStatus.active:
            out.append("the parent unit is dissolved")
        if codes.level_rank(level) < codes.level_rank(parent.level):
            out.append(f"a {level}-level unit cannot sit under a {parent.level}-level unit")
        if not codes.division_contains(parent.division_code, division_code):
            out.append(f"division_code {division_code} lies outside the parent's region {parent.division_code}")
    return out


async def _credit_code_taken(s: AsyncSession, code: str | None, exclude_id: str | None = None) -> None:
    if not code:
        return
    stmt = select(Unit.id).where(col(Unit.credit_code) == code)
    if exclude_id:
        stmt = stmt.where(col(Unit.id) != exclude_id)
    if (await s.exec(stmt)).first() is not None:
        raise Problem(409, f"credit code {code} already belongs to another unit", type="credit-code-taken")


def _errors(problems: list[str]) -> list[dict[str, str]]:
    return [{"message": p} for p in problems]


#: key of the PostgreSQL advisory lock that orders changes to the shape of the tree ("org_tree")
TREE_LOCK_KEY = 0x6F72675F74726565


async def lock_tree(s: AsyncSession, *, exclusive: bool = False) -> None:
    """Order writes that read the tree before changing it, until the transaction ends (PostgreSQL only).

    Moves and dissolutions take the lock exclusively, other writes share it; each re-reads the units it
    checks after locking. Otherwise two concurrent moves both pass the cycle check (A under B and B under A),
    and a unit created under a parent that is moving keeps the parent's old path.
    """
    if s.get_bind().dialect.name != "postgresql":
        return  # SQLite (development) has no advisory locks
    lock = func.pg_advisory_xact_lock if exclusive else func.pg_advisory_xact_lock_shared
    await s.exec(select(lock(TREE_LOCK_KEY)))


def _history(s: AsyncSession, unit: Unit, action: str, actor: str | None, **details: Any) -> None:
    s.add(UnitHistory(unit_id=unit.id, action=action, actor=actor, details=details))


async def create_unit(s: AsyncSession, *, data: UnitCreate, principal: Principal) -> Unit:
    """Create a unit under its parent (or a root); checks placement, rights and credit-code uniqueness."""
    await lock_tree(s)
    parent = await get_unit(s, unit_id=data.parent_id) if data.parent_id else None
    if parent is None:
        principal.require_bootstrap("create a root unit")
    else:
        await principal.require(s, parent.path, "create units under this parent")
    problems = placement_problems(parent, level=data.level, type_=data.type, division_code=data.division_code)
    if problems:
        raise Problem(422, "; ".join(problems), type="inconsistent-placement", errors=_errors(problems))
    await _credit_code_taken(s, data.credit_code)
    unit = Unit.model_validate(data, update={"path": "", "depth": 0})
    unit.path = (parent.path if parent else "/") + unit.id + "/"
    unit.depth = parent.depth + 1 if parent else 0
    s.add(unit)
    _history(s, unit, "created", principal.id, parent_id=unit.parent_id)
    emit(s, UNIT_CREATED, UnitCreated(unit=public(unit), actor=principal.id), source=SOURCE, subject=unit.id)
    await _commit(s)
    return unit


async def _commit(s: AsyncSession) -> None:
    try:
        await s.commit()
    except IntegrityError as exc:
        await s.rollback()
        raise Problem(
            409, "the change conflicts with existing data (a unique value is already taken)", type="conflict"
        ) from exc


async def update_unit(s: AsyncSession, *, unit: Unit, patch: UnitUpdate, principal: Principal) -> Unit:
    """Apply a merge-patch; placement is re-checked against the parent and the children."""
    await lock_tree(s)
    await s.refresh(unit)
    await principal.require(s, unit.path, "change this unit")
    if unit.status != UnitStatus.active:
        raise Problem(409, "a dissolved unit cannot be changed", type="unit-dissolved")
    changes = patch.model_dump(exclude_unset=True)
    for required in ("name", "type", "level", "division_code", "tags", "sort_order"):
        if required in changes and changes[required] is None:
            raise Problem(422, f"{required} cannot be null", type="validation-error")
    changed = [k for k, v in changes.items() if getattr(unit, k) != v]
    if not changed:
        return unit
    merged = {k: changes.get(k, getattr(unit, k)) for k in ("level", "type", "division_code")}
    parent = await s.get(Unit, unit.parent_id) if unit.parent_id else None
    problems = placement_problems(
        parent, level=merged["level"], type_=merged["type"], division_code=merged["division_code"]
    )
    if {"level", "division_code"} & set(changed):
        problems += await _children_problems(s, unit, merged["level"], merged["division_code"])
    if problems:
        raise Problem(422, "; ".join(problems), type="inconsistent-placement", errors=_errors(problems))
    if "credit_code" in changed:
        await _credit_code_taken(s, changes["credit_code"], unit.id)
    for k in changed:
        setattr(unit, k, changes[k])
    unit.updated_at = utcnow()
    s.add(unit)
    _history(s, unit, "updated", principal.id, changed={k: changes[k] for k in changed})
    emit(
        s,
        UNIT_UPDATED,
        UnitUpdated(unit=public(unit), changed=changed, actor=principal.id),
        source=SOURCE,
        subject=unit.id,
    )
    await _commit(s)
    return unit


async def _children_problems(s: AsyncSession, unit: Unit, level: str, division: str) -> list[str]:
    rows = (
        await s.exec(select(Unit).where(col(Unit.parent_id) == unit.id, col(Unit.status) == UnitStatus.active))
    ).all()
    out = []
    for child in rows:
        if codes.level_rank(child.level) < codes.level_rank(level):
            out.append(f"child {child.name} is above the new {level} level")
        if not codes.division_contains(division, child.division_code):
            out.append(f"child {child.name} ({child.division_code}) would lie outside the new region")
    return out


async def list_units(
    s: AsyncSession,
    *,
    q: str | None = None,
    division_code: str | None = None,
    credit_code: str | None = None,
    parent_id: str | None = None,
    type_: str | None = None,
    level: str | None = None,
    status: str | None = None,
    tag: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[UnitPublic]:
    """Search units; ordered by id (creation order)."""
    stmt = select(Unit)
    if q:
        like = "%" + _escape_like(q.strip()) + "%"
        stmt = stmt.where(
            or_(
                col(Unit.name).like(like, escape="\\"),
                col(Unit.short_name).like(like, escape="\\"),
                col(Unit.credit_code) == q.strip().upper(),
                col(Unit.division_code) == q.strip(),
            )
        )
    if division_code:
        try:
            prefix = codes.division_prefix(codes.normalise_division(division_code))
        except ValueError as exc:
            raise Problem(400, f"division_code: {exc}", type="invalid-parameter") from exc
        stmt = stmt.where(col(Unit.division_code).like(prefix + "%"))
    if credit_code:
        stmt = stmt.where(col(Unit.credit_code) == credit_code.strip().upper())
    if parent_id:
        stmt = stmt.where(col(Unit.parent_id) == parent_id)
    for column, value in ((Unit.type, type_), (Unit.level, level), (Unit.status, status)):
        if value:
            stmt = stmt.where(col(column) == value)
    if tag:
        stmt = stmt.where(cast(col(Unit.tags), Text).like('%"' + _escape_like(tag) + '"%', escape="\\"))
    after = decode_cursor(cursor)
    if after:
        stmt = stmt.where(col(Unit.id) > str(after.get("id", "")))
    rows = (await s.exec(stmt.order_by(col(Unit.id)).limit(limit + 1))).all()
    return page_of([public(u) for u in rows], limit, lambda u: {"id": u.id})


async def children(
    s: AsyncSession, *, unit: Unit, status: str | None, limit: int, cursor: str | None
) -> Page[UnitPublic]:
    """Direct children in sort order."""
    stmt = select(Unit).where(col(Unit.parent_id) == unit.id)
    if status:
        stmt = stmt.where(col(Unit.status) == status)
    after = decode_cursor(cursor)
    if after:
        sort_key = after.get("s", 0)
        if not isinstance(sort_key, int) or abs(sort_key) > 2**31 - 1:
            raise Problem(400, "the cursor is not valid; use a next_cursor from a previous page", type="invalid-cursor")
        stmt = stmt.where(
            tuple_(col(Unit.sort_order), col(Unit.id)) > tuple_(literal(sort_key), literal(str(after.get("id", ""))))
        )
    rows = (await s.exec(stmt.order_by(col(Unit.sort_order), col(Unit.id)).limit(limit + 1))).all()
    return page_of([public(u) for u in rows], limit, lambda u: {"s": u.sort_order, "id": u.id})


def _subtree_filter(stmt: Any, unit: Unit, depth: int | None, status: str | None) -> Any:
    stmt = stmt.where(below(unit.path))
    if depth is not None:
        stmt = stmt.where(col(Unit.depth) <= unit.depth + depth)
    if status:
        stmt = stmt.where(col(Unit.status) == status)
    return stmt


PUBLIC_FIELDS = tuple(UnitPublic.model_fields)
_PUBLIC_COLUMNS = [Unit.__table__.c[f] for f in PUBLIC_FIELDS]  # type: ignore[attr-defined]


async def subtree_rows(
    s: AsyncSession, *, unit: Unit, depth: int | None, status: str | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Descendants in depth-first (path) order as plain rows (read straight from the index order; no ORM)."""
    stmt = _subtree_filter(sa_select(*_PUBLIC_COLUMNS, Unit.__table__.c.path), unit, depth, status)  # type: ignore[attr-defined]
    after = decode_cursor(cursor)
    if after:
        stmt = stmt.where(col(Unit.path) > str(after.get("p", "")))
    rows = (await s.exec(stmt.order_by(col(Unit.path)).limit(limit + 1))).all()
    items = [dict(zip(PUBLIC_FIELDS, r, strict=False)) for r in rows[:limit]]
    nxt = encode_cursor({"p": rows[limit - 1][-1]}) if len(rows) > limit else None
    return items, nxt


async def subtree(
    s: AsyncSession, *, unit: Unit, depth: int | None, status: str | None, limit: int, cursor: str | None
) -> Page[UnitPublic]:
    """Descendants in depth-first (path) order, optionally limited to `depth` levels below."""
    items, nxt = await subtree_rows(s, unit=unit, depth=depth, status=status, limit=limit, cursor=cursor)
    return Page[UnitPublic](items=[UnitPublic.model_validate(i) for i in items], next_cursor=nxt)


async def subtree_count(s: AsyncSession, *, unit: Unit, depth: int | None, status: str | None) -> int:
    """Number of descendants (an index-only range count)."""
    stmt = _subtree_filter(select(func.count()).select_from(Unit), unit, depth, status)
    return int((await s.exec(stmt)).one())


async def ancestors(s: AsyncSession, *, unit: Unit) -> list[UnitPublic]:
    """Ancestors root first (the unit itself excluded)."""
    ids = path_ids(unit.path)[:-1]
    if not ids:
        return []
    rows = (await s.exec(select(Unit).where(col(Unit.id).in_(ids)))).all()
    by_id = {u.id: u for u in rows}
    return [public(by_id[i]) for i in ids if i in by_id]


async def move_unit(s: AsyncSession, *, unit: Unit, new_parent_id: str, principal: Principal) -> tuple[Unit, int]:
    """Move a unit and its subtree under a new parent; returns the unit and how many descendants moved."""
    await lock_tree(s, exclusive=True)
    await s.refresh(unit)
    new_parent = await get_unit(s, unit_id=new_parent_id)
    await principal.require(s, unit.path, "move this unit")
    await principal.require(s, new_parent.path, "move units under the new parent")
    if unit.status != UnitStatus.active:
        raise Problem(409, "a dissolved unit cannot be moved", type="unit-dissolved")
    if new_parent.path.startswith(unit.path):
        raise Problem(409, "a unit cannot move under itself or one of its descendants", type="cycle")
    if new_parent.id == unit.parent_id:
        return unit, 0
    problems = placement_problems(new_parent, level=unit.level, type_=unit.type, division_code=unit.division_code)
    if problems:
        raise Problem(422, "; ".join(problems), type="inconsistent-placement", errors=_errors(problems))
    old_path, old_parent = unit.path, unit.parent_id
    new_path = new_parent.path + unit.id + "/"
    delta = new_parent.depth + 1 - unit.depth
    stmt = (
        update(Unit)
        .where(in_subtree(old_path))
        .values(
            path=literal(new_path) + func.substr(col(Unit.path), len(old_path) + 1),
            depth=col(Unit.depth) + delta,
        )
    )
    res = await s.exec(stmt)
    moved = int(res.rowcount or 0) - 1
    await s.exec(update(Unit).where(col(Unit.id) == unit.id).values(parent_id=new_parent.id, updated_at=utcnow()))
    await s.refresh(unit)
    _history(
        s,
        unit,
        "moved",
        principal.id,
        from_parent_id=old_parent,
        to_parent_id=new_parent.id,
        descendants_moved=moved,
    )
    emit(
        s,
        UNIT_MOVED,
        UnitMoved(
            unit=public(unit),
            from_parent_id=old_parent,
            to_parent_id=new_parent.id,
            descendants_moved=moved,
            actor=principal.id,
        ),
        source=SOURCE,
        subject=unit.id,
    )
    await _commit(s)
    return unit, moved


async def dissolve_unit(
    s: AsyncSession, *, unit: Unit, cascade: bool, reason: str | None, principal: Principal
) -> tuple[list[str], int]:
    """Dissolve a unit (with `cascade` its subtree too, ending memberships); returns ids and ended count."""
    from tongban_org.memberships import end_memberships

    await lock_tree(s, exclusive=True)
    await s.refresh(unit)
    await principal.require(s, unit.path, "dissolve this unit")
    if unit.status != UnitStatus.active:
        raise Problem(409, "the unit is already dissolved", type="unit-dissolved")
    units = (
        await s.exec(
            select(Unit)
            .where(in_subtree(unit.path), col(Unit.status) == UnitStatus.active)
            .order_by(col(Unit.depth).desc())
        )
    ).all()
    ids = [u.id for u in units]
    members = (await s.exec(select(Membership).where(col(Membership.unit_id).in_(ids)))).all()
    if not cascade and (len(units) > 1 or members):
        raise Problem(
            409,
            f"the unit still has {len(units) - 1} active descendant unit(s) and {len(members)} "
            "member(s); move them, or dissolve with cascade=true",
            type="unit-not-empty",
            active_descendants=len(units) - 1,
            members=len(members),
        )
    now = utcnow()
    ended = await end_memberships(s, members, reason="unit_dissolved", actor=principal.id)
    for u in units:
        u.status, u.dissolved_at, u.updated_at = UnitStatus.dissolved, now, now
        s.add(u)
        _history(s, u, "dissolved", principal.id, reason=reason, cascade_root_id=unit.id if u is not unit else None)
        emit(
            s,
            UNIT_DISSOLVED,
            UnitDissolved(
                unit_id=u.id,
                name=u.name,
                parent_id=u.parent_id,
                reason=reason,
                cascade_root_id=unit.id if u.id != unit.id else None,
                actor=principal.id,
            ),
            source=SOURCE,
            subject=u.id,
        )
    await _commit(s)
    return ids, ended
