"""/api/v1/orgs/send-grants: who may send messages to the members of which subtree."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from tongban_kit.problems import problem_responses
from tongban_org import entitlements
from tongban_org.api.deps import AUTH_RESPONSES, PrincipalDep, ReaderDep, SessionDep
from tongban_org.models import SendGrantCreate, SendGrantPublic

router = APIRouter(prefix="/api/v1/orgs", tags=["admin"])
RW = problem_responses(400, 401, 403, 404, 409, 422) | AUTH_RESPONSES
#: what a principal (account or client id) and a unit id look like (no control characters reach the database)
PRINCIPAL = r"^[A-Za-z0-9._:@-]+$"
UNIT_ID = r"^[A-Za-z0-9_-]+$"


@router.get("/send-grants", summary="List sending rights", responses=problem_responses(422) | AUTH_RESPONSES)
async def list_send_grants(
    _reader: ReaderDep,
    s: SessionDep,
    principal: Annotated[str | None, Query(max_length=100, pattern=PRINCIPAL)] = None,
    unit_id: Annotated[str | None, Query(max_length=36, pattern=UNIT_ID)] = None,
) -> list[SendGrantPublic]:
    """Send grants, optionally of one principal or one unit (administrators may address their subtrees anyway)."""
    return await entitlements.list_send_grants(s, principal=principal, unit_id=unit_id)


@router.post("/send-grants", status_code=201, summary="Let a principal send to a subtree", responses=RW)
async def create_send_grant(s: SessionDep, caller: PrincipalDep, body: SendGrantCreate) -> SendGrantPublic:
    """The caller must administer the subtree (whole-tree administrators: any)."""
    return await entitlements.create_send_grant(s, data=body, principal=caller)


@router.delete("/send-grants/{grant_id:uid}", status_code=204, summary="Withdraw a sending right", responses=RW)
async def delete_send_grant(s: SessionDep, caller: PrincipalDep, grant_id: str) -> Response:
    """The caller must administer the grant's subtree; the right stops working at once."""
    await entitlements.delete_send_grant(s, grant_id=grant_id, principal=caller)
    return Response(status_code=204)
