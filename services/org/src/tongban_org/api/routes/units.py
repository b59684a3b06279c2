"""/api/v1/orgs/units: the organisation tree."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import BaseModel, Field

from tongban_kit.ids import UID_PATTERN
from tongban_kit.pagination import Page, page_response
from tongban_kit.problems import Problem, problem_responses
from tongban_org import tree
from tongban_org.api.deps import AUTH_RESPONSES, Cursor, Limit, PrincipalDep, ReaderDep, SessionDep, SettingsDep
from tongban_org.importer import ImportReport, ImportRequest, import_units, parse_csv
from tongban_org.memberships import list_members
from tongban_org.models import (
    HistoryPublic,
    Level,
    MembershipPublic,
    Unit,
    UnitCreate,
    UnitHistory,
    UnitPublic,
    UnitStatus,
    UnitType,
    UnitUpdate,
)

router = APIRouter(prefix="/api/v1/orgs/units", tags=["units"])
UnitId = Annotated[str, "unit id"]
RW = problem_responses(400, 401, 403, 404, 409, 422) | AUTH_RESPONSES


class MoveRequest(BaseModel):
    """Where to move the unit."""

    new_parent_id: str = Field(min_length=36, max_length=36, pattern=UID_PATTERN)


class DissolveRequest(BaseModel):
    """How to dissolve."""

    cascade: bool = Field(False, description="also dissolve active descendants and end all memberships")
    reason: str | None = Field(None, max_length=500)


class DissolveResult(BaseModel):
    """What a dissolution did."""

    unit: UnitPublic
    dissolved_unit_ids: list[str]
    memberships_ended: int


class MoveResult(BaseModel):
    """What a move did."""

    unit: UnitPublic
    descendants_moved: int


class Count(BaseModel):
    """A count."""

    count: int


@router.get("", summary="List and search units", responses=problem_responses(400, 422) | AUTH_RESPONSES)
async def list_units(
    _reader: ReaderDep,
    s: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    q: Annotated[str | None, Query(max_length=200, description="name or short name contains; or exact code")] = None,
    division_code: Annotated[str | None, Query(max_length=12, description="units within this region")] = None,
    credit_code: Annotated[str | None, Query(max_length=18)] = None,
    parent_id: Annotated[str | None, Query(max_length=36)] = None,
    type: UnitType | None = None,
    level: Level | None = None,
    status: UnitStatus | None = None,
    tag: Annotated[str | None, Query(max_length=50, description="business line (条线)")] = None,
) -> Page[UnitPublic]:
    """Search by name, codes, division, parent, type, level, status or tag."""
    return await tree.list_units(
        s,
        q=q,
        division_code=division_code,
        credit_code=credit_code,
        parent_id=parent_id,
        type_=type,
        level=level,
        status=status,
        tag=tag,
        limit=limit,
        cursor=cursor,
    )


@router.post("", status_code=201, summary="Create a unit", responses=RW)
async def create_unit(
    s: SessionDep, principal: PrincipalDep, body: UnitCreate, request: Request, response: Response
) -> UnitPublic:
    """Create a unit under `parent_id`; the caller must administer the parent's subtree."""
    unit = await tree.create_unit(s, data=body, principal=principal)
    response.headers["Location"] = f"{request.url.path}/{unit.id}"
    return tree.public(unit)


@router.post(
    "/import",
    status_code=201,
    summary="Bulk import units (JSON or CSV)",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 415, 422) | AUTH_RESPONSES,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": ImportRequest.model_json_schema()},
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "ref,parent_ref,parent_id,name,type,level,division_code\n",
                },
            }
        }
    },
)
async def import_(
    s: SessionDep, principal: PrincipalDep, settings: SettingsDep, request: Request, response: Response
) -> ImportReport:
    """Create many units in one transaction; any row error rejects the whole import with a per-row report."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Problem(400, "the body must be UTF-8", type="invalid-import") from exc
    if ctype == "text/csv":
        rows = parse_csv(text)
    elif ctype in ("application/json", ""):
        try:
            rows = ImportRequest.model_validate_json(text or "{}").units
        except ValueError as exc:
            raise Problem(
                422, 'the body must be {"units": [...]} with at least one row', type="validation-error"
            ) from exc
    else:
        raise Problem(415, "send application/json or text/csv", type="unsupported-media-type")
    report = await import_units(s, rows=rows, principal=principal, max_rows=settings.import_max_rows)
    if report.errors:
        bad = len({e.row for e in report.errors})
        raise Problem(
            422,
            f"{bad} row(s) have errors; nothing was imported",
            type="import-rejected",
            created=0,
            errors=[e.model_dump() for e in report.errors],
        )
    return report


async def _unit(s: SessionDep, unit_id: str) -> Unit:
    return await tree.get_unit(s, unit_id=unit_id)


@router.get("/{unit_id:uid}", summary="Get a unit", responses=problem_responses(404) | AUTH_RESPONSES)
async def get_unit(_reader: ReaderDep, s: SessionDep, unit_id: UnitId) -> UnitPublic:
    """One unit."""
    return tree.public(await _unit(s, unit_id))


@router.patch("/{unit_id:uid}", summary="Change a unit (merge-patch)", responses=RW)
async def patch_unit(s: SessionDep, principal: PrincipalDep, unit_id: UnitId, body: UnitUpdate) -> UnitPublic:
    """Absent fields stay; placement is re-checked."""
    unit = await tree.update_unit(s, unit=await _unit(s, unit_id), patch=body, principal=principal)
    return tree.public(unit)


@router.get(
    "/{unit_id:uid}/children", summary="Direct children", responses=problem_responses(400, 404, 422) | AUTH_RESPONSES
)
async def children(
    _reader: ReaderDep,
    s: SessionDep,
    unit_id: UnitId,
    limit: Limit = 100,
    cursor: Cursor = None,
    status: UnitStatus | None = None,
) -> Page[UnitPublic]:
    """Children in sort order."""
    return await tree.children(s, unit=await _unit(s, unit_id), status=status, limit=limit, cursor=cursor)


@router.get(
    "/{unit_id:uid}/subtree",
    summary="Descendants (depth-first)",
    response_model=Page[UnitPublic],
    responses=problem_responses(400, 404, 422) | AUTH_RESPONSES,
)
async def subtree(
    _reader: ReaderDep,
    s: SessionDep,
    unit_id: UnitId,
    limit: Limit = 100,
    cursor: Cursor = None,
    depth: Annotated[int | None, Query(ge=1, le=20, description="levels below the unit")] = None,
    status: UnitStatus | None = None,
) -> Response:
    """Descendants in depth-first order, each with `parent_id` and `depth` to rebuild the tree."""
    unit = await _unit(s, unit_id)
    items, nxt = await tree.subtree_rows(s, unit=unit, depth=depth, status=status, limit=limit, cursor=cursor)
    return page_response(items, nxt)


@router.get(
    "/{unit_id:uid}/subtree/count",
    summary="Number of descendants",
    responses=problem_responses(404, 422) | AUTH_RESPONSES,
)
async def subtree_count(
    _reader: ReaderDep,
    s: SessionDep,
    unit_id: UnitId,
    depth: Annotated[int | None, Query(ge=1, le=20)] = None,
    status: UnitStatus | None = None,
) -> Count:
    """How many units lie below this one."""
    return Count(count=await tree.subtree_count(s, unit=await _unit(s, unit_id), depth=depth, status=status))


@router.get("/{unit_id:uid}/ancestors", summary="Path from the root", responses=problem_responses(404) | AUTH_RESPONSES)
async def ancestors(_reader: ReaderDep, s: SessionDep, unit_id: UnitId) -> list[UnitPublic]:
    """Ancestors, root first."""
    return await tree.ancestors(s, unit=await _unit(s, unit_id))


@router.get(
    "/{unit_id:uid}/members", summary="Members of a unit", responses=problem_responses(400, 404, 422) | AUTH_RESPONSES
)
async def members(
    _reader: ReaderDep,
    s: SessionDep,
    unit_id: UnitId,
    limit: Limit = 100,
    cursor: Cursor = None,
    recursive: bool = False,
) -> Page[MembershipPublic]:
    """Members of the unit, or with `recursive=true` of its whole subtree."""
    return await list_members(s, unit=await _unit(s, unit_id), recursive=recursive, limit=limit, cursor=cursor)


@router.get(
    "/{unit_id:uid}/history", summary="What happened to a unit", responses=problem_responses(404) | AUTH_RESPONSES
)
async def history(_reader: ReaderDep, s: SessionDep, unit_id: UnitId) -> list[HistoryPublic]:
    """Creation, changes, moves and dissolution, oldest first."""
    from sqlmodel import col, select

    await _unit(s, unit_id)
    rows = await s.exec(
        select(UnitHistory)
        .where(col(UnitHistory.unit_id) == unit_id)
        .order_by(col(UnitHistory.at), col(UnitHistory.id))
    )
    return [HistoryPublic.model_validate(h, from_attributes=True) for h in rows.all()]


@router.post("/{unit_id:uid}/move", summary="Move a subtree", responses=RW)
async def move(s: SessionDep, principal: PrincipalDep, unit_id: UnitId, body: MoveRequest) -> MoveResult:
    """Move the unit and all its descendants under a new parent (no cycles; regions must fit)."""
    unit, moved = await tree.move_unit(
        s, unit=await _unit(s, unit_id), new_parent_id=body.new_parent_id, principal=principal
    )
    return MoveResult(unit=tree.public(unit), descendants_moved=moved)


@router.post("/{unit_id:uid}/dissolve", summary="Dissolve a unit", responses=RW)
async def dissolve(
    s: SessionDep,
    principal: PrincipalDep,
    unit_id: UnitId,
    body: Annotated[DissolveRequest | None, Body()] = None,
) -> DissolveResult:
    """Refused while the unit has active descendants or members, unless `cascade` is true."""
    body = body or DissolveRequest()
    unit = await _unit(s, unit_id)
    ids, ended = await tree.dissolve_unit(s, unit=unit, cascade=body.cascade, reason=body.reason, principal=principal)
    return DissolveResult(unit=tree.public(await _unit(s, unit_id)), dissolved_unit_ids=ids, memberships_ended=ended)
