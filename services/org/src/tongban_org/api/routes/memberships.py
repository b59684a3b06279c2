"""/api/v1/orgs/memberships and /api/v1/orgs/admin-grants."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlmodel import col, select

from tongban_kit.pagination import Page
from tongban_kit.problems import Problem, problem_responses
from tongban_org import memberships as ms
from tongban_org.api.deps import AUTH_RESPONSES, Cursor, Limit, PrincipalDep, ReaderDep, SessionDep
from tongban_org.models import (
    AdminGrant,
    AdminGrantCreate,
    AdminGrantPublic,
    MembershipCreate,
    MembershipPublic,
    MembershipUpdate,
)

router = APIRouter(prefix="/api/v1/orgs", tags=["memberships"])
RW = problem_responses(400, 401, 403, 404, 409, 422) | AUTH_RESPONSES


@router.get(
    "/memberships",
    summary="List memberships (a user's units, or a unit's posts)",
    responses=problem_responses(400, 422) | AUTH_RESPONSES,
)
async def list_memberships(
    _reader: ReaderDep,
    s: SessionDep,
    limit: Limit = 100,
    cursor: Cursor = None,
    user_id: Annotated[str | None, Query(max_length=64)] = None,
    unit_id: Annotated[str | None, Query(max_length=36)] = None,
) -> Page[MembershipPublic]:
    """Filter by `user_id` to list the units a user belongs to."""
    if not user_id and not unit_id:
        raise Problem(400, "filter by user_id and/or unit_id", type="missing-filter")
    return await ms.list_memberships(s, user_id=user_id, unit_id=unit_id, limit=limit, cursor=cursor)


@router.post("/memberships", status_code=201, summary="Add a user to a unit", responses=RW)
async def add_membership(
    s: SessionDep, principal: PrincipalDep, body: MembershipCreate, request: Request, response: Response
) -> MembershipPublic:
    """A post of a user in a unit, with title and primary/leader flags."""
    out = await ms.add_membership(s, data=body, principal=principal)
    response.headers["Location"] = f"{request.url.path}/{out.id}"
    return out


@router.get(
    "/memberships/{membership_id:uid}", summary="Get a membership", responses=problem_responses(404) | AUTH_RESPONSES
)
async def get_membership(_reader: ReaderDep, s: SessionDep, membership_id: str) -> MembershipPublic:
    """One membership."""
    m = await ms.get_membership(s, membership_id=membership_id)
    return ms.membership_public(m)


@router.patch("/memberships/{membership_id:uid}", summary="Change a membership", responses=RW)
async def patch_membership(
    s: SessionDep, principal: PrincipalDep, membership_id: str, body: MembershipUpdate
) -> MembershipPublic:
    """Title, primary and leader flags, order."""
    m = await ms.get_membership(s, membership_id=membership_id)
    return await ms.update_membership(s, m=m, patch=body, principal=principal)


@router.delete("/memberships/{membership_id:uid}", status_code=204, summary="Remove a user from a unit", responses=RW)
async def delete_membership(s: SessionDep, principal: PrincipalDep, membership_id: str) -> Response:
    """End the membership."""
    m = await ms.get_membership(s, membership_id=membership_id)
    await ms.remove_membership(s, m=m, principal=principal)
    return Response(status_code=204)


@router.get(
    "/admin-grants",
    summary="List admin grants (分级授权)",
    tags=["admin"],
    responses=problem_responses(422) | AUTH_RESPONSES,
)
async def list_grants(
    _reader: ReaderDep,
    s: SessionDep,
    principal: Annotated[str | None, Query(max_length=100)] = None,
    unit_id: Annotated[str | None, Query(max_length=36)] = None,
) -> list[AdminGrantPublic]:
    """Grants, optionally for one principal or one unit."""
    stmt = select(AdminGrant)
    if principal:
        stmt = stmt.where(col(AdminGrant.principal) == principal)
    if unit_id:
        stmt = stmt.where(col(AdminGrant.unit_id) == unit_id)
    rows = (await s.exec(stmt.order_by(col(AdminGrant.id)).limit(1000))).all()
    return [AdminGrantPublic.model_validate(g, from_attributes=True) for g in rows]


@router.post(
    "/admin-grants",
    status_code=201,
    summary="Delegate administration of a subtree",
    tags=["admin"],
    responses=RW,
)
async def create_grant(s: SessionDep, caller: PrincipalDep, body: AdminGrantCreate) -> AdminGrantPublic:
    """The caller must administer the subtree it delegates."""
    grant = await ms.create_grant(s, data=body, principal=caller)
    return AdminGrantPublic.model_validate(grant, from_attributes=True)


@router.delete(
    "/admin-grants/{grant_id:uid}",
    status_code=204,
    summary="Withdraw an admin grant",
    tags=["admin"],
    responses=RW,
)
async def delete_grant(s: SessionDep, caller: PrincipalDep, grant_id: str) -> Response:
    """The caller must administer the grant's subtree."""
    await ms.delete_grant(s, grant_id=grant_id, principal=caller)
    return Response(status_code=204)
