"""SCIM 2.0 (RFC 7643/7644) at /scim/v2: the same accounts and events as /api/v1/users, via="scim"."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from scim2_models import Context, PatchOp, SearchRequest
from starlette.convertors import Convertor, register_url_convertor

from tongban_user import accounts
from tongban_user.api.deps import CallerDep, CipherDep, SessionDep, WriterDep
from tongban_user.models import Status, UserAccount
from tongban_user.scim import discovery, groups, mapping
from tongban_user.scim.errors import ScimError, ScimJSONResponse, ScimRoute, from_validation
from tongban_user.scim.filters import personal_values
from tongban_user.scim.http import (
    BODY_ERRORS,
    ERRORS,
    PREFIX,
    WRITE_ERRORS,
    Attributes,
    ExcludedAttributes,
    IfMatch,
    IfNoneMatch,
    ScimListDoc,
    ScimResourceDoc,
    base_url,
    body_doc,
    matches,
    ok,
    paging,
    read_json,
    require_match,
    response_parameters,
)
from tongban_user.scim.schemas import DEFAULT_COUNT, MAX_RESULTS, PATCH_POLICY, POLICY, ScimUser
from tongban_user.scim.users import (
    MAX_OFFSET,
    PURPOSE,
    apply,
    listing,
    load,
    lock,
    payloads,
    render,
    require_personal_right,
    search,
)


class _AnyPath(Convertor[str]):
    """Path convertor matching anything, newlines included (Starlette's `path` stops at them)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("scimrest", _AnyPath())
router = APIRouter(prefix=PREFIX, tags=["scim"], route_class=ScimRoute, default_response_class=ScimJSONResponse)
router.include_router(discovery.router)
router.include_router(groups.router)
ONE = ok(200, ScimResourceDoc)
USER_PATH = "/Users/{user_id:uid}"


async def _respond(
    s: SessionDep,
    u: UserAccount,
    caller: CallerDep,
    cipher: CipherDep,
    request: Request,
    params: Any,
    action: str,
    status: int,
) -> ScimJSONResponse:
    base = base_url(request)
    body = render((await payloads(s, [u], caller=caller, cipher=cipher, base=base, action=action))[0], params)
    headers = {"ETag": mapping.etag(u.version), "Location": f"{base}/Users/{u.id}"}
    return ScimJSONResponse(body, status_code=status, headers=headers)


async def _list(
    s: SessionDep,
    caller: CallerDep,
    cipher: CipherDep,
    request: Request,
    params: Any,
    *,
    filter_: str | None,
    sort_by: str | None,
    descending: bool,
    start_index: int | None,
    count: int | None,
) -> ScimJSONResponse:
    start, size = paging(start_index, count, default=DEFAULT_COUNT, most=MAX_RESULTS, last=MAX_OFFSET)
    total, users = await search(
        s, caller, filter_=filter_, sort_by=sort_by, descending=descending, start=start, count=size
    )
    items = await payloads(s, users, caller=caller, cipher=cipher, base=base_url(request), action="scim.users.list")
    return ScimJSONResponse(listing(total, start, items, params))


@router.get("/Users", summary="List or filter users", responses=ERRORS | ok(200, ScimListDoc))
async def list_users(
    s: SessionDep,
    caller: CallerDep,
    cipher: CipherDep,
    request: Request,
    filter_: Annotated[str | None, Query(alias="filter", max_length=4000, description="RFC 7644 filter")] = None,
    start_index: Annotated[int, Query(alias="startIndex", description="1-based index of the first result")] = 1,
    count: Annotated[int | None, Query(description=f"page size (at most {MAX_RESULTS})")] = None,
    sort_by: Annotated[str | None, Query(alias="sortBy", max_length=200)] = None,
    sort_order: Annotated[Literal["ascending", "descending"] | None, Query(alias="sortOrder")] = None,
    attributes: Attributes = None,
    excluded_attributes: ExcludedAttributes = None,
) -> ScimJSONResponse:
    """Filters (eq, ne, co, sw, ew, gt, ge, lt, le, pr, and, or, not) run in SQL; offset pagination."""
    params = response_parameters(ScimUser, attributes, excluded_attributes)
    return await _list(
        s,
        caller,
        cipher,
        request,
        params,
        filter_=filter_,
        sort_by=sort_by,
        descending=sort_order == "descending",
        start_index=start_index,
        count=count,
    )


@router.post(
    "/Users/.search",
    summary="Search users (POST)",
    responses=BODY_ERRORS | ok(200, ScimListDoc),
    openapi_extra=body_doc("a SearchRequest (RFC 7644 §3.4.3)"),
)
async def search_users(s: SessionDep, caller: CallerDep, cipher: CipherDep, request: Request) -> ScimJSONResponse:
    """The same as GET /Users with the parameters in a SearchRequest body."""
    body = await read_json(request)
    if isinstance(body.get("count"), int) and not isinstance(body["count"], bool):
        paging(None, body["count"], default=DEFAULT_COUNT, most=MAX_RESULTS, last=MAX_OFFSET)  # before it is floored
    try:
        query: SearchRequest[Any] = SearchRequest.model_validate(body, scim_ctx=Context.SEARCH_REQUEST)
    except ValidationError as exc:
        raise from_validation(list(exc.errors())) from exc
    attrs = ",".join(str(a) for a in query.attributes or []) or None
    excluded = ",".join(str(a) for a in query.excluded_attributes or []) or None
    return await _list(
        s,
        caller,
        cipher,
        request,
        response_parameters(ScimUser, attrs, excluded),
        filter_=str(query.filter) if query.filter else None,
        sort_by=str(query.sort_by) if query.sort_by else None,
        descending=query.sort_order == SearchRequest.SortOrder.descending,
        start_index=query.start_index,
        count=query.count,
    )


@router.post(
    "/Users",
    status_code=201,
    summary="Provision a user",
    responses=BODY_ERRORS | ok(201, ScimResourceDoc, "Created"),
    openapi_extra=body_doc("a User (see /scim/v2/Schemas)"),
)
async def create_user(
    s: SessionDep,
    caller: WriterDep,
    cipher: CipherDep,
    request: Request,
    attributes: Attributes = None,
    excluded_attributes: ExcludedAttributes = None,
) -> ScimJSONResponse:
    """A staff account unless the Tongban extension gives another kind; active false creates it disabled."""
    params = response_parameters(ScimUser, attributes, excluded_attributes)
    body = await read_json(request)
    resource = ScimUser.model_validate(body, scim_ctx=Context.RESOURCE_CREATION_REQUEST, scim_policy=POLICY)
    wanted = mapping.desired(resource)
    out = await accounts.create_user(s, data=mapping.create_body(wanted), caller=caller, cipher=cipher, via="scim")
    u = await accounts.get_account(s, out.id, caller)
    if wanted.active is False:
        await accounts.set_status(s, u=u, status=Status.disabled, reason=PURPOSE, caller=caller, via="scim")
    return await _respond(s, u, caller, cipher, request, params, "scim.users.create", 201)


@router.get(USER_PATH, summary="Get a user", responses=ERRORS | ONE | {304: {"description": "Not modified"}})
async def get_user(
    s: SessionDep,
    caller: CallerDep,
    cipher: CipherDep,
    request: Request,
    user_id: str,
    if_none_match: IfNoneMatch = None,
    attributes: Attributes = None,
    excluded_attributes: ExcludedAttributes = None,
) -> Response:
    """Contacts are masked unless the caller has the user:pii scope (audited); idNumber is never returned."""
    params = response_parameters(ScimUser, attributes, excluded_attributes)
    u = await load(s, user_id, caller)
    if matches(if_none_match, mapping.etag(u.version)):
        return Response(status_code=304, headers={"ETag": mapping.etag(u.version)})
    return await _respond(s, u, caller, cipher, request, params, "scim.users.get", 200)


@router.put(
    USER_PATH,
    summary="Replace a user",
    responses=BODY_ERRORS | ONE,
    openapi_extra=body_doc("a User (see /scim/v2/Schemas)"),
)
async def replace_user(
    s: SessionDep,
    caller: WriterDep,
    cipher: CipherDep,
    request: Request,
    user_id: str,
    if_match: IfMatch = None,
    attributes: Attributes = None,
    excluded_attributes: ExcludedAttributes = None,
) -> ScimJSONResponse:
    """Absent attributes are cleared, except idNumber (write-only: kept), kind (immutable) and active (kept)."""
    params = response_parameters(ScimUser, attributes, excluded_attributes)
    body = await read_json(request)
    resource = ScimUser.model_validate(body, scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST, scim_policy=POLICY)
    u = await load(s, user_id, caller)
    if if_match is not None:
        await lock(s, u)
        require_match(if_match, mapping.etag(u.version))
    current = mapping.current_resource(u, accounts.to_public(u, unmasked=True), base_url(request))
    changes, status = mapping.changes(u, mapping.desired(current, u), mapping.desired(resource, u))
    await apply(s, u, changes, status, caller=caller, cipher=cipher)
    return await _respond(s, u, caller, cipher, request, params, "scim.users.replace", 200)


@router.patch(
    USER_PATH,
    summary="Change a user (PatchOp)",
    responses=BODY_ERRORS | ONE,
    openapi_extra=body_doc("a PatchOp (RFC 7644 §3.5.2)"),
)
async def patch_user(
    s: SessionDep,
    caller: WriterDep,
    cipher: CipherDep,
    request: Request,
    user_id: str,
    if_match: IfMatch = None,
    attributes: Attributes = None,
    excluded_attributes: ExcludedAttributes = None,
) -> ScimJSONResponse:
    """add / replace / remove, with or without a path, including value filters such as emails[type eq "work"]."""
    params = response_parameters(ScimUser, attributes, excluded_attributes)
    body = await read_json(request)
    patch = PatchOp[ScimUser].model_validate(  # type: ignore[valid-type]
        body, scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=PATCH_POLICY
    )
    # a value filter on a masked value (phoneNumbers[value sw "139"]) would tell by its effect whether it matched
    require_personal_right(
        caller, {k: v for op in patch.operations or [] if op.path for k, v in personal_values(op.path.ast).items()}
    )
    u = await load(s, user_id, caller)
    if if_match is not None:
        await lock(s, u)
        require_match(if_match, mapping.etag(u.version))
    resource = mapping.current_resource(u, accounts.to_public(u, unmasked=True), base_url(request))
    before = mapping.desired(resource, u)
    with PATCH_POLICY:
        patch.patch(resource)
    changes, status = mapping.changes(u, before, mapping.desired(resource, u, patched=True))
    await apply(s, u, changes, status, caller=caller, cipher=cipher)
    return await _respond(s, u, caller, cipher, request, params, "scim.users.patch", 200)


@router.delete(USER_PATH, status_code=204, summary="Delete a user (soft)", responses=WRITE_ERRORS)
async def delete_user(s: SessionDep, caller: WriterDep, user_id: str, if_match: IfMatch = None) -> Response:
    """The account is deleted as by REST: login names are released, the record is purged after retention."""
    u = await load(s, user_id, caller)
    if if_match is not None:
        await lock(s, u)
        require_match(if_match, mapping.etag(u.version))
    await accounts.set_status(s, u=u, status=Status.deleted, reason=PURPOSE, caller=caller, via="scim")
    return Response(status_code=204)


def _allowed(path: str) -> list[str]:
    """Methods the SCIM routes serve at a path below /scim/v2."""
    routes = [(r, PREFIX + path) for r in router.routes] + [
        (r, path) for sub in (discovery.router, groups.router) for r in sub.routes
    ]
    methods: set[str] = set()
    for route, candidate in routes:
        if isinstance(route, APIRoute) and route.endpoint is not fallback and route.path_regex.match(candidate):
            methods |= route.methods or set()
    return [m for m in ("GET", "POST", "PUT", "PATCH", "DELETE") if m in methods]


ANY = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@router.api_route("", methods=ANY, include_in_schema=False)
@router.api_route("/{rest:scimrest}", methods=ANY, include_in_schema=False)
async def fallback(request: Request, rest: str = "") -> Response:
    """Unknown paths (404), unsupported methods (405: discovery and groups are read-only) and bulk (501)."""
    first = rest.split("/")[0].lower()
    if first in ("bulk", "me"):
        raise ScimError(501, f"/{rest.split('/')[0]} is not supported by this service (see /ServiceProviderConfig)")
    allowed = _allowed("/" + rest)
    if not allowed:
        raise ScimError(404, f"no resource at {request.url.path}")
    detail = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}"
    if first == "groups":
        detail = f"{detail}. {groups.READ_ONLY}"
    elif first in ("serviceproviderconfig", "resourcetypes", "schemas"):
        detail = f"{detail}: discovery endpoints are read-only"
    raise ScimError(405, detail, headers={"Allow": ", ".join(allowed)})
