"""/scim/v2/Groups: org units and their direct members, read over the org service's RPC (read-only here)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from scim2_models import Context, InvalidFilterException, ListResponse, ScimFilter
from scim2_models.path import CompareOperator, Comparison, FilterNode, LogicalExpr, LogicalOperator

from tongban_org.contract import (
    RPC_GET_UNITS,
    RPC_MEMBERS,
    GetUnitsRequest,
    ListMembersRequest,
    MembersReply,
    UnitPublic,
    UnitsReply,
    UnitStatus,
)
from tongban_user.access import _org
from tongban_user.api.deps import CallerDep, SettingsDep
from tongban_user.scim.errors import ScimError, ScimJSONResponse, ScimRoute
from tongban_user.scim.http import (
    ERRORS,
    Attributes,
    ExcludedAttributes,
    ScimListDoc,
    ScimResourceDoc,
    base_url,
    ok,
    paging,
    response_parameters,
)
from tongban_user.scim.schemas import GROUP_URN, MAX_RESULTS, ScimGroup

router = APIRouter(route_class=ScimRoute, default_response_class=ScimJSONResponse, tags=["scim"])
MAX_MEMBERS = 10_000
READ_ONLY = (
    "groups are read-only here: org units and memberships are managed by the organisation service "
    "(/api/v1/orgs/units, /api/v1/orgs/memberships)"
)


async def _units(request: Request, ids: list[str], timeout: float) -> list[UnitPublic]:
    reply = await _org(
        request.app.state.runtime.rpc.call(RPC_GET_UNITS, GetUnitsRequest(ids=ids), UnitsReply, timeout=timeout)
    )
    return [u for u in reply.units if u.status == UnitStatus.active]


async def _members(request: Request, unit_id: str, timeout: float) -> list[str]:
    out: list[str] = []
    cursor: str | None = None
    while True:
        page = await _org(
            request.app.state.runtime.rpc.call(
                RPC_MEMBERS,
                ListMembersRequest(unit_id=unit_id, limit=500, cursor=cursor),
                MembersReply,
                timeout=timeout,
            )
        )
        out.extend(m.user_id for m in page.items if m.user_id not in out)
        cursor = page.next_cursor
        if not cursor or len(out) >= MAX_MEMBERS:
            return out[:MAX_MEMBERS]


def group_payload(unit: UnitPublic, members: list[str] | None, base: str) -> dict[str, Any]:
    """The SCIM Group of an org unit."""
    body: dict[str, Any] = {
        "schemas": [GROUP_URN],
        "id": unit.id,
        "displayName": unit.name,
        "meta": {
            "resourceType": "Group",
            "created": unit.created_at.isoformat(),
            "lastModified": unit.updated_at.isoformat(),
            "location": f"{base}/Groups/{unit.id}",
        },
    }
    if members:
        body["members"] = [{"value": m, "$ref": f"{base}/Users/{m}", "type": "User"} for m in members]
    return body


def _ids_of(node: FilterNode) -> list[str]:
    """The unit ids of `id eq "..." [or id eq "..."]`; anything else is refused."""
    if isinstance(node, LogicalExpr) and node.op == LogicalOperator.or_:
        return [i for t in node.terms for i in _ids_of(t)]
    if (
        isinstance(node, Comparison)
        and node.attr_path.attr.lower() == "id"
        and node.attr_path.sub_attr is None
        and node.op == CompareOperator.eq
        and isinstance(node.value, str)
    ):
        return [node.value]
    raise InvalidFilterException(
        detail='groups can be found by id only (filter=id eq "..." [or id eq "..."]): the organisation service '
        "offers no unit search to this service"
    )


def _wants_members(params: Any) -> bool:
    if params is None:
        return True
    if params.attributes:
        return any(str(a).lower().rsplit(":", 1)[-1].startswith("members") for a in params.attributes)
    return not any(str(a).lower().rsplit(":", 1)[-1].startswith("members") for a in params.excluded_attributes or [])


@router.get(
    "/Groups/{group_id:uid}",
    summary="Get a group (an org unit)",
    responses=ERRORS | ok(200, ScimResourceDoc),
    response_model=None,
)
async def get_group(
    group_id: str,
    request: Request,
    caller: CallerDep,
    settings: SettingsDep,
    attributes: Attributes = None,
    excluded_attributes: ExcludedAttributes = None,
) -> ScimJSONResponse:
    """displayName is the unit's name; members are its direct members."""
    params = response_parameters(ScimGroup, attributes, excluded_attributes)
    units = await _units(request, [group_id], settings.rpc_timeout_seconds) if len(group_id) <= 36 else []
    if not units:
        raise ScimError(404, f"no group with id {group_id}")
    members = await _members(request, group_id, settings.rpc_timeout_seconds) if _wants_members(params) else None
    group = ScimGroup.model_validate(group_payload(units[0], members, base_url(request)), scim_ctx=None)
    body = group.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=params)
    return ScimJSONResponse(body, headers={"Location": f"{base_url(request)}/Groups/{group_id}"})


@router.get(
    "/Groups",
    summary="Find groups by id",
    responses=ERRORS | ok(200, ScimListDoc),
    response_model=None,
)
async def list_groups(
    request: Request,
    caller: CallerDep,
    settings: SettingsDep,
    filter_: Annotated[str | None, Query(alias="filter", max_length=4000)] = None,
    start_index: Annotated[int, Query(alias="startIndex")] = 1,
    count: Annotated[int | None, Query()] = None,
    attributes: Attributes = None,
    excluded_attributes: ExcludedAttributes = None,
) -> ScimJSONResponse:
    """Only `id eq` filters: units cannot be searched from this service."""
    params = response_parameters(ScimGroup, attributes, excluded_attributes)
    start, size = paging(start_index, count, default=MAX_RESULTS, most=MAX_RESULTS, last=2**31)
    if not filter_:
        raise ScimError(400, "list groups with a filter: " + 'filter=id eq "<unit id>"', "tooMany")
    try:
        ids = list(dict.fromkeys(_ids_of(ScimFilter(filter_).ast)))
    except (ValueError, TypeError) as exc:
        raise InvalidFilterException(detail=f"not a valid filter: {exc}") from exc
    ids = [i for i in ids if 0 < len(i) <= 36][:MAX_RESULTS]
    units = await _units(request, ids, settings.rpc_timeout_seconds) if ids else []
    page = units[start - 1 : start - 1 + size]
    groups = []
    for unit in page:
        members = await _members(request, unit.id, settings.rpc_timeout_seconds) if _wants_members(params) else None
        groups.append(ScimGroup.model_validate(group_payload(unit, members, base_url(request)), scim_ctx=None))
    listing = ListResponse[ScimGroup](  # type: ignore[valid-type]
        total_results=len(units), start_index=start, items_per_page=len(groups), resources=groups
    )
    return ScimJSONResponse(listing.model_dump(scim_ctx=Context.SEARCH_RESPONSE, response_parameters=params))
