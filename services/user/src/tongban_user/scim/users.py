"""SCIM Users on top of the account operations: load, list, render (masking policy), apply changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from scim2_models import Context, ListResponse
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.problems import Problem
from tongban_user import accounts
from tongban_user.access import PII_SCOPE, Caller
from tongban_user.crypto import PiiCipher
from tongban_user.models import Status, UserAccount, UserUpdate
from tongban_user.personal import audit_search, require_search_right
from tongban_user.scim.errors import ScimError, from_validation
from tongban_user.scim.filters import sort_column, to_sql
from tongban_user.scim.mapping import user_payload
from tongban_user.scim.schemas import ScimUser

PURPOSE = "SCIM provisioning"
MAX_OFFSET = 2**31


async def load(s: AsyncSession, user_id: str, caller: Caller) -> UserAccount:
    """An account the caller may see; deleted ones are gone for SCIM (404)."""
    try:
        u = await accounts.get_account(s, user_id, caller)
    except Problem as p:
        if p.status == 404:
            raise ScimError(404, f"no user with id {user_id}") from p
        raise
    if u.status == Status.deleted:
        raise ScimError(404, f"no user with id {user_id}")
    return u


async def lock(s: AsyncSession, u: UserAccount) -> None:
    """Hold the account's row until the change commits (for If-Match)."""
    await s.refresh(u, with_for_update=True)


async def payloads(
    s: AsyncSession, users: Sequence[UserAccount], *, caller: Caller, cipher: PiiCipher, base: str, action: str
) -> list[dict[str, Any]]:
    """SCIM Users of accounts: contacts masked unless the caller has user:pii (then audited, like REST)."""
    unmask = PII_SCOPE in caller.scopes
    views = await accounts.read_users(
        s, users, caller=caller, unmask=unmask, purpose=PURPOSE if unmask else None, cipher=cipher, action=action
    )
    return [user_payload(v, base, id_masked=u.id_number_masked) for u, v in zip(users, views, strict=True)]


def render(payload: dict[str, Any], params: Any) -> dict[str, Any]:
    """A User as returned, honouring attributes / excludedAttributes."""
    user = ScimUser.model_validate(payload, scim_ctx=None)
    return user.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=params)


def require_personal_right(caller: Caller, personal: dict[str, str]) -> None:
    """Comparing masked values (attribute → field) needs user:pii, as unmasking does; a 403 naming them otherwise."""
    if personal:
        try:
            require_search_right(caller, personal, PURPOSE)
        except Problem as p:
            raise ScimError(p.status, p.detail or "forbidden") from p


async def search(
    s: AsyncSession,
    caller: Caller,
    *,
    filter_: str | None,
    sort_by: str | None,
    descending: bool,
    start: int,
    count: int,
) -> tuple[int, list[UserAccount]]:
    """The total and one page of the accounts the caller may see that match a filter (in SQL).

    Comparing or sorting on a masked value (emails, phoneNumbers) needs what unmasking needs here, the user:pii
    scope (the purpose is SCIM provisioning), and every account it matched is audited; without it the search is
    refused before it runs (403 naming the attributes), so neither results nor totalResults tell anything.
    """
    compiled = to_sql(filter_) if filter_ else None
    sort_key, sort_personal = sort_column(sort_by) if sort_by else (None, None)
    personal = dict(compiled.personal) if compiled else {}
    if sort_by and sort_personal:
        personal[f"sortBy={sort_by}"] = sort_personal
    require_personal_right(caller, personal)
    stmt = select(UserAccount).where(col(UserAccount.status) != Status.deleted)
    visible = await accounts.visible_condition(caller)
    if visible is not None:
        stmt = stmt.where(visible)
    if compiled is not None:
        stmt = stmt.where(compiled.where)
    if personal:
        found = stmt.subquery()
        matched = list((await s.exec(select(found.c.id))).all())
        fields = personal.values()
        audit_search(s, caller=caller, user_ids=matched, fields=fields, purpose=PURPOSE, action="scim.users.search")
        await s.commit()
    total = int(await s.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    if count <= 0 or start > total:
        return total, []
    order: list[Any] = [col(UserAccount.id)]
    if sort_key is not None:
        order.insert(0, sort_key.desc().nulls_last() if descending else sort_key.asc().nulls_last())
    elif descending:
        order = [col(UserAccount.id).desc()]
    rows = (await s.exec(stmt.order_by(*order).offset(min(start, MAX_OFFSET) - 1).limit(count))).all()
    return total, list(rows)


def listing(total: int, start: int, items: list[dict[str, Any]], params: Any) -> dict[str, Any]:
    """A ListResponse of rendered Users."""
    users = [ScimUser.model_validate(item, scim_ctx=None) for item in items]
    response = ListResponse[ScimUser](  # type: ignore[valid-type]
        total_results=total, start_index=start, items_per_page=len(users), resources=users
    )
    return response.model_dump(scim_ctx=Context.SEARCH_RESPONSE, response_parameters=params)


async def apply(
    s: AsyncSession,
    u: UserAccount,
    changes: dict[str, Any],
    status: Status | None,
    *,
    caller: Caller,
    cipher: PiiCipher,
) -> None:
    """Change an account through the account operations (same checks and events as REST, via scim)."""
    if changes:
        try:
            checked = UserUpdate.model_validate(changes)
        except ValidationError as exc:
            raise from_validation(list(exc.errors())) from exc
        values = {k: getattr(checked, k) for k in changes}
        await accounts.update_user(s, u=u, changes=values, caller=caller, cipher=cipher, via="scim")
    if status is not None:
        await accounts.set_status(s, u=u, status=status, reason=PURPOSE, caller=caller, via="scim")
