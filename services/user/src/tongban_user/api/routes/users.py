"""/api/v1/users: people, masked by default."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response

from tongban_kit.pagination import Page
from tongban_kit.problems import Problem, problem_responses
from tongban_user import accounts
from tongban_user.access import subtree_member_ids
from tongban_user.api.deps import (
    AUTH_RESPONSES,
    CallerDep,
    CipherDep,
    Cursor,
    Limit,
    Purpose,
    SessionDep,
    SettingsDep,
    Unmask,
    WriterDep,
)
from tongban_user.importer import ImportReport, import_users
from tongban_user.models import Kind, Status, StatusChange, UserCreate, UserPublic, UserUpdate

router = APIRouter(prefix="/api/v1/users", tags=["users"])
RW = problem_responses(400, 401, 403, 404, 409, 422) | AUTH_RESPONSES
READ = problem_responses(400, 401, 403, 404, 422) | AUTH_RESPONSES


@router.get("", summary="Search users", responses=READ | problem_responses(503))
async def search_users(
    s: SessionDep,
    caller: CallerDep,
    cipher: CipherDep,
    settings: SettingsDep,
    request: Request,
    limit: Limit = 50,
    cursor: Cursor = None,
    unmask: Unmask = False,
    purpose: Purpose = None,
    q: Annotated[str | None, Query(min_length=1, max_length=100, description="display name starts with")] = None,
    login: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=254,
            description="username, mobile or email; a mobile or an email needs the user:pii scope and a purpose "
            "(audited), as unmasking does",
        ),
    ] = None,
    kind: Kind | None = None,
    status: Status | None = None,
    org_unit_id: Annotated[str | None, Query(max_length=36, description="members of this org unit")] = None,
    recursive: Annotated[bool, Query(description="with org_unit_id: include the unit's whole subtree")] = False,
) -> Page[UserPublic]:
    """Only accounts the caller may see: admins all, org admins the staff of their subtrees, others themselves."""
    ids = None
    if org_unit_id:
        assert request.app.state.runtime.rpc is not None
        if recursive:
            ids = await subtree_member_ids(
                request.app.state.runtime.rpc, org_unit_id, settings.rpc_timeout_seconds, 50_000
            )
        else:
            ids = await _direct_members(request, org_unit_id, settings.rpc_timeout_seconds)
    page = await accounts.search(
        s,
        caller=caller,
        q=q,
        login=login,
        kind=kind,
        status=status,
        ids=ids,
        limit=limit,
        cursor=cursor,
        purpose=purpose,
    )
    items = await accounts.read_users(
        s, page.items, caller=caller, unmask=unmask, purpose=purpose, cipher=cipher, action="users.search"
    )
    return Page[UserPublic](items=items, next_cursor=page.next_cursor)


async def _direct_members(request: Request, unit_id: str, timeout: float) -> set[str]:
    from tongban_org.contract import RPC_MEMBERS, ListMembersRequest, MembersReply
    from tongban_user.access import _org

    rpc = request.app.state.runtime.rpc
    out: set[str] = set()
    cursor = None
    while True:
        page = await _org(
            rpc.call(
                RPC_MEMBERS,
                ListMembersRequest(unit_id=unit_id, limit=500, cursor=cursor),
                MembersReply,
                timeout=timeout,
            )
        )
        out |= {m.user_id for m in page.items}
        cursor = page.next_cursor
        if not cursor:
            return out


@router.post("", status_code=201, summary="Create a user", responses=RW)
async def create_user(
    s: SessionDep, caller: WriterDep, cipher: CipherDep, body: UserCreate, request: Request, response: Response
) -> UserPublic:
    """Citizens need an identity number; legal persons a credit code; login names must be unique."""
    out = await accounts.create_user(s, data=body, caller=caller, cipher=cipher)
    response.headers["Location"] = f"{request.url.path}/{out.id}"
    return out


@router.post(
    "/import",
    status_code=201,
    summary="Bulk import users (JSON or CSV)",
    responses=problem_responses(400, 401, 403, 413, 415, 422) | AUTH_RESPONSES,
)
async def import_(
    s: SessionDep, caller: WriterDep, cipher: CipherDep, settings: SettingsDep, request: Request
) -> ImportReport:
    """All rows or none: any row error rejects the import with a per-row report."""
    return await import_users(s, request=request, caller=caller, cipher=cipher, max_rows=settings.import_max_rows)


@router.get("/me", summary="The caller's own account", responses=READ)
async def me(
    s: SessionDep, caller: CallerDep, cipher: CipherDep, unmask: Unmask = False, purpose: Purpose = None
) -> UserPublic:
    """The account the caller signs in as."""
    if caller.self_id is None:
        raise Problem(404, f"{caller.principal} has no user account", type="user-not-found")
    u = await accounts.get_account(s, caller.self_id, caller)
    return (
        await accounts.read_users(
            s, [u], caller=caller, unmask=unmask, purpose=purpose, cipher=cipher, action="users.me"
        )
    )[0]


@router.get("/{user_id:uid}", summary="Get a user", responses=READ)
async def get_user(
    s: SessionDep, caller: CallerDep, cipher: CipherDep, user_id: str, unmask: Unmask = False, purpose: Purpose = None
) -> UserPublic:
    """Masked unless `unmask=true&purpose=...` with the user:pii scope (audited as user.pii.accessed.v1)."""
    u = await accounts.get_account(s, user_id, caller)
    return (
        await accounts.read_users(
            s, [u], caller=caller, unmask=unmask, purpose=purpose, cipher=cipher, action="users.get"
        )
    )[0]


@router.patch("/{user_id:uid}", summary="Change a user (merge-patch)", responses=RW)
async def patch_user(s: SessionDep, caller: WriterDep, cipher: CipherDep, user_id: str, body: UserUpdate) -> UserPublic:
    """Absent fields stay; null clears optional ones."""
    u = await accounts.get_account(s, user_id, caller)
    changes: dict[str, Any] = {k: getattr(body, k) for k in body.model_fields_set}
    return await accounts.update_user(s, u=u, changes=changes, caller=caller, cipher=cipher)


async def _status(s: SessionDep, caller: WriterDep, user_id: str, status: Status, reason: str | None) -> UserPublic:
    u = await accounts.get_account(s, user_id, caller)
    u = await accounts.set_status(s, u=u, status=status, reason=reason, caller=caller)
    return accounts.to_public(u, (await accounts.operators_of(s, [u.id])).get(u.id, []))


@router.post("/{user_id:uid}/disable", summary="Disable a user", responses=RW)
async def disable(
    s: SessionDep, caller: WriterDep, user_id: str, body: Annotated[StatusChange | None, Body()] = None
) -> UserPublic:
    """A disabled account cannot sign in; it can be enabled again."""
    return await _status(s, caller, user_id, Status.disabled, body.reason if body else None)


@router.post("/{user_id:uid}/enable", summary="Enable a disabled user", responses=RW)
async def enable(
    s: SessionDep, caller: WriterDep, user_id: str, body: Annotated[StatusChange | None, Body()] = None
) -> UserPublic:
    """Back to active."""
    return await _status(s, caller, user_id, Status.active, body.reason if body else None)


@router.delete("/{user_id:uid}", status_code=204, summary="Delete a user (soft; purged after retention)", responses=RW)
async def delete_user(
    s: SessionDep, caller: WriterDep, user_id: str, reason: Annotated[str | None, Query(max_length=500)] = None
) -> Response:
    """Releases login names now; the record is purged after the retention period."""
    await _status(s, caller, user_id, Status.deleted, reason)
    return Response(status_code=204)
