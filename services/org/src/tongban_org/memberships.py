"""Memberships (posts of users in units) and admin grants."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import tuple_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.outbox import emit
from tongban_kit.pagination import Page, decode_cursor, page_of
from tongban_kit.problems import Problem
from tongban_org.authz import Principal
from tongban_org.contract import (
    MEMBERSHIP_ADDED,
    MEMBERSHIP_REMOVED,
    MEMBERSHIP_UPDATED,
    MembershipAdded,
    MembershipRemoved,
    MembershipUpdated,
)
from tongban_org.models import (
    AdminGrant,
    AdminGrantCreate,
    Membership,
    MembershipCreate,
    MembershipPublic,
    MembershipUpdate,
    Unit,
    UnitRef,
    UnitStatus,
)
from tongban_org.tree import SOURCE, _commit, get_unit, in_subtree, lock_tree


def membership_public(m: Membership, unit: Unit | None = None) -> MembershipPublic:
    """The API view of a membership (with a unit reference when known)."""
    out = MembershipPublic.model_validate(m, from_attributes=True)
    if unit is not None:
        out.unit = UnitRef(id=unit.id, name=unit.name, short_name=unit.short_name)
    return out


async def get_membership(s: AsyncSession, *, membership_id: str) -> Membership:
    """A membership by id, or 404."""
    m = await s.get(Membership, membership_id)
    if m is None:
        raise Problem(404, f"no membership with id {membership_id}", type="membership-not-found")
    return m


async def _clear_other_primaries(s: AsyncSession, m: Membership) -> None:
    await s.exec(
        update(Membership)
        .where(col(Membership.user_id) == m.user_id, col(Membership.id) != m.id)
        .values(is_primary=False)
    )


async def add_membership(s: AsyncSession, *, data: MembershipCreate, principal: Principal) -> MembershipPublic:
    """Add a user to an active unit; a new primary membership demotes the user's others."""
    await lock_tree(s)
    unit = await get_unit(s, unit_id=data.unit_id)
    await principal.require(s, unit.path, "add members to this unit")
    # adding a person must not make the caller their administrator: only people it administers already
    await principal.require_reach(s, data.user_id, "add them to this unit")
    if unit.status != UnitStatus.active:
        raise Problem(409, "members cannot join a dissolved unit", type="unit-dissolved")
    existing = (
        await s.exec(
            select(Membership).where(col(Membership.user_id) == data.user_id, col(Membership.unit_id) == unit.id)
        )
    ).first()
    if existing is not None:
        raise Problem(
            409,
            f"user {data.user_id} is already a member of this unit",
            type="already-member",
            membership_id=existing.id,
        )
    m = Membership.model_validate(data)
    s.add(m)
    if m.is_primary:
        await s.flush()
        await _clear_other_primaries(s, m)
    out = membership_public(m, unit)
    emit(s, MEMBERSHIP_ADDED, MembershipAdded(membership=out, actor=principal.id), source=SOURCE, subject=m.id)
    await _commit(s)
    return out


async def update_membership(
    s: AsyncSession, *, m: Membership, patch: MembershipUpdate, principal: Principal
) -> MembershipPublic:
    """Change title, flags or order of a membership."""
    unit = await get_unit(s, unit_id=m.unit_id)
    await principal.require(s, unit.path, "change members of this unit")
    changes = patch.model_dump(exclude_unset=True)
    # an administrative account is changed only from above; a new primary post demotes the person's others,
    # so it needs an administrator of every post
    await principal.require_reach(
        s, m.user_id, "change their membership", posts=bool(changes.get("is_primary")) and not m.is_primary
    )
    for required in ("is_primary", "is_leader", "sort_order"):
        if required in changes and changes[required] is None:
            raise Problem(422, f"{required} cannot be null", type="validation-error")
    changed = [k for k, v in changes.items() if getattr(m, k) != v]
    for k in changed:
        setattr(m, k, changes[k])
    out = membership_public(m, unit)
    if changed:
        s.add(m)
        if m.is_primary and "is_primary" in changed:
            await _clear_other_primaries(s, m)
        emit(
            s,
            MEMBERSHIP_UPDATED,
            MembershipUpdated(membership=out, changed=changed, actor=principal.id),
            source=SOURCE,
            subject=m.id,
        )
        await _commit(s)
    return out


async def end_memberships(s: AsyncSession, members: Sequence[Membership], *, reason: str, actor: str | None) -> int:
    """Delete memberships in the caller's transaction, emitting one removal event each."""
    for m in members:
        emit(
            s,
            MEMBERSHIP_REMOVED,
            MembershipRemoved(membership_id=m.id, user_id=m.user_id, unit_id=m.unit_id, reason=reason, actor=actor),
            source=SOURCE,
            subject=m.id,
        )
        await s.delete(m)
    return len(members)


async def remove_membership(s: AsyncSession, *, m: Membership, principal: Principal) -> None:
    """Remove a user from a unit."""
    unit = await get_unit(s, unit_id=m.unit_id)
    await principal.require(s, unit.path, "remove members of this unit")
    await end_memberships(s, [m], reason="removed", actor=principal.id)
    await _commit(s)


async def list_members(
    s: AsyncSession, *, unit: Unit, recursive: bool, limit: int, cursor: str | None
) -> Page[MembershipPublic]:
    """Members of a unit by membership id; of its whole subtree unit by unit in depth-first order."""
    stmt = select(Membership, Unit).join(Unit, col(Unit.id) == col(Membership.unit_id))
    after = decode_cursor(cursor)
    if not recursive:
        stmt = stmt.where(col(Membership.unit_id) == unit.id)
        if after:
            stmt = stmt.where(col(Membership.id) > str(after.get("id", "")))
        rows = (await s.exec(stmt.order_by(col(Membership.id)).limit(limit + 1))).all()
        return page_of([membership_public(m, u) for m, u in rows], limit, lambda x: {"id": x.id})
    # walk the path index (a range) and each unit's members: cheap at every size of subtree
    stmt = stmt.where(in_subtree(unit.path))
    if after:
        stmt = stmt.where(
            tuple_(col(Unit.path), col(Membership.id)) > tuple_(str(after.get("p", "")), str(after.get("id", "")))
        )
    rows = (await s.exec(stmt.order_by(col(Unit.path), col(Membership.id)).limit(limit + 1))).all()
    paths = {m.id: u.path for m, u in rows}
    return page_of([membership_public(m, u) for m, u in rows], limit, lambda x: {"p": paths[x.id], "id": x.id})


async def list_memberships(
    s: AsyncSession, *, user_id: str | None, unit_id: str | None, limit: int, cursor: str | None
) -> Page[MembershipPublic]:
    """Memberships filtered by user and/or unit (a user's units: filter by user_id)."""
    stmt = select(Membership, Unit).join(Unit, col(Unit.id) == col(Membership.unit_id))
    if user_id:
        stmt = stmt.where(col(Membership.user_id) == user_id)
    if unit_id:
        stmt = stmt.where(col(Membership.unit_id) == unit_id)
    after = decode_cursor(cursor)
    if after:
        stmt = stmt.where(col(Membership.id) > str(after.get("id", "")))
    rows = (await s.exec(stmt.order_by(col(Membership.id)).limit(limit + 1))).all()
    return page_of([membership_public(m, u) for m, u in rows], limit, lambda x: {"id": x.id})


async def user_in_subtree(s: AsyncSession, *, unit: Unit, user_id: str) -> list[str]:
    """Ids of the units in `unit`'s subtree the user belongs to."""
    stmt = (
        select(Membership.unit_id)
        .join(Unit, col(Unit.id) == col(Membership.unit_id))
        .where(col(Membership.user_id) == user_id, in_subtree(unit.path))
    )
    return list((await s.exec(stmt)).all())


async def create_grant(s: AsyncSession, *, data: AdminGrantCreate, principal: Principal) -> AdminGrant:
    """Delegate a subtree the caller administers to another principal."""
    unit = await get_unit(s, unit_id=data.unit_id)
    await principal.require(s, unit.path, "delegate administration of this subtree")
    await principal.require_reach(s, data.principal, "delegate administration to them")
    grant = AdminGrant(principal=data.principal, unit_id=unit.id, created_by=principal.id)
    s.add(grant)
    await _commit(s)
    return grant


async def delete_grant(s: AsyncSession, *, grant_id: str, principal: Principal) -> None:
    """Withdraw a grant (the caller must administer its subtree)."""
    grant = await s.get(AdminGrant, grant_id)
    if grant is None:
        raise Problem(404, f"no admin grant with id {grant_id}", type="grant-not-found")
    unit = await get_unit(s, unit_id=grant.unit_id)
    await principal.require(s, unit.path, "withdraw administration of this subtree")
    await s.delete(grant)
    await _commit(s)


async def grants_covering(s: AsyncSession, *, unit: Unit) -> list[AdminGrant]:
    """Grants whose subtree contains `unit`."""
    from tongban_org.authz import path_ids

    stmt = select(AdminGrant).where(col(AdminGrant.unit_id).in_(path_ids(unit.path)))
    return list((await s.exec(stmt)).all())


__all__ = ["in_subtree"]
