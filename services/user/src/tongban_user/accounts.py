"""Account operations: create, read (masked or audited), update, status, search, purge."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, delete, or_, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit import codes
from tongban_kit.context import request_id_var
from tongban_kit.ids import new_id
from tongban_kit.outbox import emit, utcnow
from tongban_kit.pagination import Page, decode_cursor, page_of
from tongban_kit.problems import Problem
from tongban_user import identity
from tongban_user.access import Caller
from tongban_user.contract import (
    ACCOUNT_CREATED,
    ACCOUNT_DELETED,
    ACCOUNT_DISABLED,
    ACCOUNT_ENABLED,
    ACCOUNT_UPDATED,
    PII_ACCESSED,
    AccountCreated,
    AccountStatusChanged,
    AccountUpdated,
    PiiAccessed,
)
from tongban_user.crypto import PiiCipher
from tongban_user.models import Enterprise, Kind, LegalPersonOperator, Status, UserAccount, UserCreate, UserPublic
from tongban_user.personal import audit_search, require_search_right

SOURCE = "/tongban/user"
PII_FIELDS = ("id_number", "mobile", "email", "birth_date")
UNIQUE_FIELDS = ("username", "mobile", "email", "credit_code")


def new_account_id() -> str:
    """Id of a new account (the demo seed substitutes fixed ids)."""
    return new_id()


def to_public(
    u: UserAccount, operators: Sequence[str] = (), *, unmasked: bool = False, cipher: PiiCipher | None = None
) -> UserPublic:
    """The API view; masked unless `unmasked` (then `cipher` decrypts the identity number)."""
    id_number = u.id_number_masked
    if unmasked and u.id_number_enc and cipher is not None:
        id_number = cipher.decrypt(u.id_number_enc)
    return UserPublic(
        id=u.id,
        kind=u.kind,
        name=u.name,
        real_name=u.real_name,
        username=u.username,
        id_number=id_number,
        mobile=u.mobile if unmasked else identity.mask_mobile(u.mobile),
        email=u.email if unmasked else identity.mask_email(u.email),
        credit_code=u.credit_code,
        gender=u.gender,
        birth_date=u.birth_date if unmasked else None,
        representative_id=u.representative_id,
        operator_ids=list(operators),
        external_id=u.external_id,
        enterprise=Enterprise.model_validate(u.enterprise) if u.enterprise else None,
        status=u.status,
        status_reason=u.status_reason,
        status_changed_at=u.status_changed_at,
        masked=not unmasked,
        version=u.version,
        created_at=u.created_at,
        updated_at=u.updated_at,
    )


async def operators_of(s: AsyncSession, ids: Sequence[str]) -> dict[str, list[str]]:
    """Operator citizen ids per legal-person id."""
    if not ids:
        return {}
    rows = (await s.exec(select(LegalPersonOperator).where(col(LegalPersonOperator.legal_person_id).in_(ids)))).all()
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r.legal_person_id, []).append(r.citizen_id)
    return out


def _normalise(field: str, value: Any) -> Any:
    """Normalise and check one personal-data field; 422 problem when invalid."""
    if value is None:
        return None
    try:
        if field == "mobile":
            return identity.normalise_mobile(value)
        if field == "email":
            return identity.normalise_email(value)
        if field == "id_number":
            return identity.normalise_id_number(value)
        if field == "credit_code":
            problem = codes.credit_code_problem(value.strip().upper())
            if problem:
                raise ValueError(problem)
            return value.strip().upper()
    except ValueError as exc:
        raise Problem(
            422, f"{field}: {exc}", type="validation-error", errors=[{"location": f"body.{field}", "message": str(exc)}]
        ) from exc
    return value


def _set_id_number(u: Any, value: str | None, cipher: PiiCipher) -> None:
    if value is None:
        u.id_number_enc = u.id_number_hash = u.id_number_masked = None
        u.gender = u.birth_date = None
        return
    u.id_number_enc = cipher.encrypt(value)
    u.id_number_hash = cipher.lookup_hash(value)
    u.id_number_masked = identity.mask_id_number(value)
    u.gender = identity.gender_of(value)
    u.birth_date = identity.birth_date_of(value)


async def _conflicts(s: AsyncSession, u: UserAccount) -> None:
    """409 naming the field when a unique value already belongs to another account."""
    for field in UNIQUE_FIELDS:
        value = getattr(u, field)
        if value is None:
            continue
        other = (
            await s.exec(
                select(UserAccount.id).where(col(getattr(UserAccount, field)) == value, col(UserAccount.id) != u.id)
            )
        ).first()
        if other is not None:
            raise Problem(409, f"{field} already belongs to another account", type="conflict", field=field)
    if u.id_number_hash and u.kind in (Kind.citizen, Kind.staff):
        other = (
            await s.exec(
                select(UserAccount.id).where(
                    col(UserAccount.id_number_hash) == u.id_number_hash,
                    col(UserAccount.kind) == u.kind,
                    col(UserAccount.id) != u.id,
                )
            )
        ).first()
        if other is not None:
            raise Problem(
                409,
                f"a {u.kind.value} account with this identity number already exists",
                type="conflict",
                field="id_number",
            )


async def _check_links(s: AsyncSession, u: UserAccount, operator_ids: Sequence[str]) -> None:
    """Legal persons need a credit code; representatives and operators must be active citizens."""
    if u.kind == Kind.legal_person and not u.credit_code:
        raise Problem(422, "a legal-person account needs a credit_code", type="validation-error")
    if u.kind == Kind.citizen and not u.id_number_hash:
        raise Problem(422, "a citizen account needs an id_number (real-name registration)", type="validation-error")
    if u.kind != Kind.legal_person and (u.representative_id or operator_ids):
        raise Problem(422, "only legal-person accounts have a representative or operators", type="validation-error")
    wanted = set(operator_ids) | ({u.representative_id} if u.representative_id else set())
    if wanted:
        found = (await s.exec(select(UserAccount).where(col(UserAccount.id).in_(wanted)))).all()
        ok = {x.id for x in found if x.kind == Kind.citizen and x.status == Status.active}
        missing = sorted(wanted - ok)
        if missing:
            raise Problem(422, f"not active citizen accounts: {', '.join(missing)}", type="validation-error")


async def _commit(s: AsyncSession) -> None:
    try:
        await s.commit()
    except IntegrityError as exc:
        await s.rollback()
        raise Problem(409, "a unique value is already taken by another account", type="conflict") from exc


def new_account(data: UserCreate, cipher: PiiCipher, *, account_id: str, plain: bool = False) -> Any:
    """An account row from a creation body: personal data normalised and checked, identity number protected.

    `plain` gives a lightweight attribute object instead of an ORM instance (bulk imports copy its values).
    """
    now = utcnow()
    fields = {
        "id": account_id,
        "kind": data.kind,
        "name": data.name.strip(),
        "real_name": data.real_name,
        "username": data.username,
        "mobile": _normalise("mobile", data.mobile),
        "email": _normalise("email", data.email),
        "credit_code": _normalise("credit_code", data.credit_code),
        "representative_id": data.representative_id,
        "external_id": data.external_id,
        "enterprise": data.enterprise.model_dump(exclude_none=True) if data.enterprise else {},
        "status": Status.active,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "deleted_at": None,
        "status_reason": None,
        "status_changed_at": None,
    }
    u: Any = SimpleNamespace(**fields) if plain else UserAccount(**fields)
    _set_id_number(u, _normalise("id_number", data.id_number), cipher)
    return u


async def create_user(
    s: AsyncSession, *, data: UserCreate, caller: Caller, cipher: PiiCipher, via: str = "rest"
) -> UserPublic:
    """Create an account; conflicts on login names, identity number or credit code are 409."""
    await caller.require_create(data.kind)
    u = new_account(data, cipher, account_id=new_account_id())
    await _check_links(s, u, data.operator_ids)
    await _conflicts(s, u)
    s.add(u)
    if data.operator_ids:
        await s.flush()  # the account row first: operators refer to it
    for cid in dict.fromkeys(data.operator_ids):
        s.add(LegalPersonOperator(legal_person_id=u.id, citizen_id=cid))
    out = to_public(u, list(dict.fromkeys(data.operator_ids)))
    emit(s, ACCOUNT_CREATED, AccountCreated(user=out, actor=caller.principal, via=via), source=SOURCE, subject=u.id)
    await _commit(s)
    return out


async def get_account(s: AsyncSession, user_id: str, caller: Caller) -> UserAccount:
    """An account the caller may see, or 404 (deleted, purged and invisible accounts alike)."""
    u = await s.get(UserAccount, user_id)
    if u is None or u.status == Status.deleted:  # deleted accounts are kept only for audit until purged
        raise Problem(404, f"no user with id {user_id}", type="user-not-found")
    await caller.require_see(u)
    return u


async def read_users(
    s: AsyncSession,
    users: Sequence[UserAccount],
    *,
    caller: Caller,
    unmask: bool,
    purpose: str | None,
    cipher: PiiCipher,
    action: str,
) -> list[UserPublic]:
    """Public views; unmasked reads are allowed by scope and purpose and audited in the same transaction."""
    unmasked = caller.require_unmask(unmask, purpose)
    ops = await operators_of(s, [u.id for u in users if u.kind == Kind.legal_person])
    out = [to_public(u, ops.get(u.id, []), unmasked=unmasked, cipher=cipher) for u in users]
    if unmasked and users:
        fields = sorted({f for u in users for f in PII_FIELDS if _has(u, f)})
        emit(
            s,
            PII_ACCESSED,
            PiiAccessed(
                actor=caller.principal,
                user_ids=[u.id for u in users],
                fields=fields,
                purpose=str(purpose).strip(),
                action=action,
                request_id=request_id_var.get(),
            ),
            source=SOURCE,
        )
        await s.commit()
    return out


def _has(u: UserAccount, field: str) -> bool:
    return (u.id_number_enc if field == "id_number" else getattr(u, field)) is not None


SELF_EDITABLE = {"name", "mobile", "email"}


async def update_user(
    s: AsyncSession, *, u: UserAccount, changes: dict[str, Any], caller: Caller, cipher: PiiCipher, via: str = "rest"
) -> UserPublic:
    """Apply a merge-patch (already reduced to the fields present); people may change their own contacts."""
    with s.no_autoflush:  # uniqueness is checked before the changed row is flushed
        return await _update_user(s, u=u, changes=changes, caller=caller, cipher=cipher, via=via)


async def _update_user(
    s: AsyncSession, *, u: UserAccount, changes: dict[str, Any], caller: Caller, cipher: PiiCipher, via: str
) -> UserPublic:
    await caller.require_manage(u)
    if u.status == Status.deleted:
        raise Problem(409, "a deleted account cannot be changed", type="user-deleted")
    if u.id == caller.self_id and not (caller.bootstrap or await caller.administers_staff(u.id)):
        extra = set(changes) - SELF_EDITABLE
        if extra:
            raise Problem(
                403, f"you may change only {', '.join(sorted(SELF_EDITABLE))} of your own account", type="forbidden"
            )
    if "name" in changes and changes["name"] is None:
        raise Problem(422, "name cannot be null", type="validation-error")
    operator_ids = changes.pop("operator_ids", None)
    changed: list[str] = []
    for field, value in changes.items():
        if field == "id_number":
            new = _normalise("id_number", value)
            if (cipher.lookup_hash(new) if new else None) != u.id_number_hash:
                _set_id_number(u, new, cipher)
                changed.append(field)
            continue
        if field == "enterprise":
            value = value.model_dump(exclude_none=True) if isinstance(value, Enterprise) else (value or {})
        else:
            value = _normalise(field, value)
        if getattr(u, field) != value:
            setattr(u, field, value)
            changed.append(field)
    current_ops = (await operators_of(s, [u.id])).get(u.id, [])
    if operator_ids is not None and sorted(set(operator_ids)) != sorted(current_ops):
        changed.append("operator_ids")
    await _check_links(s, u, operator_ids if operator_ids is not None else current_ops)
    if not changed:
        return to_public(u, current_ops)
    await _conflicts(s, u)
    if operator_ids is not None and "operator_ids" in changed:
        await s.exec(delete(LegalPersonOperator).where(col(LegalPersonOperator.legal_person_id) == u.id))
        for cid in dict.fromkeys(operator_ids):
            s.add(LegalPersonOperator(legal_person_id=u.id, citizen_id=cid))
        current_ops = list(dict.fromkeys(operator_ids))
    u.version += 1
    u.updated_at = utcnow()
    s.add(u)
    out = to_public(u, current_ops)
    emit(
        s,
        ACCOUNT_UPDATED,
        AccountUpdated(user=out, changed=changed, actor=caller.principal, via=via),
        source=SOURCE,
        subject=u.id,
    )
    await _commit(s)
    return out


async def set_status(
    s: AsyncSession, *, u: UserAccount, status: Status, reason: str | None, caller: Caller, via: str = "rest"
) -> UserAccount:
    """Disable, enable or (soft) delete; deleting releases the account's login names and codes."""
    await caller.require_manage(u)
    if u.status == Status.deleted:
        raise Problem(409, "the account is deleted", type="user-deleted")
    if status != Status.deleted and u.id == caller.self_id and not caller.bootstrap:
        raise Problem(403, "you may close your own account but not disable or enable it", type="forbidden")
    if u.status == status:
        return u
    if status == Status.active and u.status != Status.disabled:
        raise Problem(409, "only a disabled account can be enabled", type="invalid-transition")
    now = utcnow()
    u.status, u.status_reason, u.status_changed_at, u.updated_at = status, reason, now, now
    u.version += 1
    if status == Status.deleted:
        u.deleted_at = now
        u.username = u.mobile = u.email = u.credit_code = None
        u.id_number_hash = None
    s.add(u)
    spec = {Status.disabled: ACCOUNT_DISABLED, Status.active: ACCOUNT_ENABLED, Status.deleted: ACCOUNT_DELETED}[status]
    emit(
        s,
        spec,
        AccountStatusChanged(user_id=u.id, kind=u.kind, status=status, reason=reason, actor=caller.principal, via=via),
        source=SOURCE,
        subject=u.id,
    )
    await _commit(s)
    return u


async def search(
    s: AsyncSession,
    *,
    caller: Caller,
    q: str | None,
    login: str | None,
    kind: Kind | None,
    status: Status | None,
    ids: set[str] | None,
    limit: int,
    cursor: str | None,
    purpose: str | None = None,
) -> Page[UserAccount]:
    """Find accounts the caller may see: name prefix (ordered by name), login name, kind, status, id set.

    A login that is a mobile number or an email is masked personal data: finding accounts by it needs the right
    to unmask it (user:pii and a purpose), and the accounts found are audited (user.pii.accessed.v1).
    """
    field = login_field(login) if login else None
    personal = field in PERSONAL_LOGINS
    if personal:
        purpose = require_search_right(caller, [f"login ({field})"], purpose)
    stmt = select(UserAccount)
    visible = await visible_condition(caller)
    if visible is not None:
        stmt = stmt.where(visible)
    if ids is not None:
        stmt = stmt.where(col(UserAccount.id).in_(ids))
    if login:
        stmt = stmt.where(login_condition(login))
    if kind:
        stmt = stmt.where(col(UserAccount.kind) == kind)
    stmt = (
        stmt.where(col(UserAccount.status) == status)
        if status
        else stmt.where(col(UserAccount.status) != Status.deleted)
    )
    after = decode_cursor(cursor)
    if q:
        # a byte-order range on the (name, id) index: names starting with the prefix, in index order
        prefix = q.strip()
        upper = prefix[:-1] + chr(min(ord(prefix[-1]) + 1, 0x10FFFF)) if prefix else prefix
        stmt = stmt.where(col(UserAccount.name) >= prefix, col(UserAccount.name) < upper)
        if after:
            stmt = stmt.where(
                tuple_(col(UserAccount.name), col(UserAccount.id)) > tuple_(str(after.get("n")), str(after.get("id")))
            )
        stmt = stmt.order_by(col(UserAccount.name), col(UserAccount.id))
        key: Any = lambda u: {"n": u.name, "id": u.id}  # noqa: E731
    else:
        if after:
            stmt = stmt.where(col(UserAccount.id) > str(after.get("id", "")))
        stmt = stmt.order_by(col(UserAccount.id))
        key = lambda u: {"id": u.id}  # noqa: E731
    rows = list((await s.exec(stmt.limit(limit + 1))).all())
    page = page_of(rows, limit, key)
    if personal and page.items:
        found = [u.id for u in page.items]
        audit_search(s, caller=caller, user_ids=found, fields=[str(field)], purpose=str(purpose), action="users.search")
        await s.commit()
    return page


async def visible_condition(caller: Caller) -> Any:
    """SQL condition on the accounts the caller may list (None: all); used by search and by SCIM."""
    if caller.bootstrap:
        return None
    visible = await caller.visible_staff_ids()
    staff = col(UserAccount.kind) == Kind.staff
    if visible is not None:  # None: administrators of the whole tree (per the org service) reach every staff account
        staff = and_(col(UserAccount.id).in_(visible), staff)
    return or_(staff, col(UserAccount.id) == caller.self_id) if caller.self_id else staff


#: login names that are masked personal data
PERSONAL_LOGINS = ("mobile", "email")


def login_field(login: str) -> str:
    """Which field a login name is matched against: mobile, email or username (as login_condition does)."""
    value = login.strip()
    try:
        identity.normalise_mobile(value)
        return "mobile"
    except ValueError:
        return "email" if "@" in value else "username"


def login_condition(login: str) -> Any:
    """SQL condition matching a login name: a mobile, an email or a username."""
    value = login.strip()
    try:
        return col(UserAccount.mobile) == identity.normalise_mobile(value)
    except ValueError:
        pass
    if "@" in value:
        try:
            return col(UserAccount.email) == identity.normalise_email(value)
        except ValueError:
            return col(UserAccount.email) == value
    return col(UserAccount.username) == value.lower()


async def purge_deleted(s: AsyncSession, *, retention_days: int) -> int:
    """Remove accounts deleted longer ago than the retention period."""
    cutoff = utcnow() - timedelta(days=retention_days)
    ids = list((await s.exec(select(UserAccount.id).where(col(UserAccount.deleted_at) < cutoff))).all())
    if not ids:
        return 0
    await s.exec(
        delete(LegalPersonOperator).where(
            or_(col(LegalPersonOperator.legal_person_id).in_(ids), col(LegalPersonOperator.citizen_id).in_(ids))
        )
    )
    await s.exec(update(UserAccount).where(col(UserAccount.representative_id).in_(ids)).values(representative_id=None))
    await s.exec(delete(UserAccount).where(col(UserAccount.id).in_(ids)))
    await s.commit()
    return len(ids)
