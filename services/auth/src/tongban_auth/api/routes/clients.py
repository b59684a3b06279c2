"""/api/v1/auth/clients: the client (application) registry, for platform administrators."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from tongban_auth import clients
from tongban_auth.api.deps import AdminDep, Cursor, Limit, SessionDep, SettingsDep
from tongban_auth.models import ClientStatus
from tongban_auth.schemas import (
    CLIENT_ID_PATTERN,
    ClientCreate,
    ClientCreated,
    ClientPublic,
    ClientUpdate,
    SecretRotated,
)
from tongban_kit.pagination import Page
from tongban_kit.problems import problem_responses

router = APIRouter(prefix="/api/v1/auth/clients", tags=["clients"])
ClientId = Annotated[str, Path(pattern=CLIENT_ID_PATTERN, description="the client_id")]
READ = problem_responses(400, 401, 403, 404, 422)
WRITE = problem_responses(400, 401, 403, 404, 409, 422)


@router.get("", summary="List clients", responses=READ)
async def list_clients(
    s: SessionDep,
    _admin: AdminDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: ClientStatus | None = None,
    owner_unit_id: Annotated[str | None, Query(max_length=36, description="clients of this org unit")] = None,
) -> Page[ClientPublic]:
    """Registered clients ordered by client_id."""
    return await clients.search(s, limit=limit, cursor=cursor, status=status, owner_unit_id=owner_unit_id)


@router.post("", status_code=201, summary="Register a client", responses=WRITE)
async def register_client(body: ClientCreate, s: SessionDep, admin: AdminDep, settings: SettingsDep) -> ClientCreated:
    """Register an application; a confidential client's secret is in this answer only."""
    return await clients.register(
        s, body, actor=admin, loopback_allowed=settings.loopback_http_allowed, outbound=settings.outbound_policy
    )


@router.get("/{client_id}", summary="Get a client", responses=READ)
async def get_client(client_id: ClientId, s: SessionDep, _admin: AdminDep) -> ClientPublic:
    """One client (never its secret)."""
    return clients.to_public(await clients.get(s, client_id))


@router.patch("/{client_id}", summary="Change a client (merge patch)", responses=WRITE)
async def patch_client(
    client_id: ClientId, body: ClientUpdate, s: SessionDep, admin: AdminDep, settings: SettingsDep
) -> ClientPublic:
    """Absent fields stay, null clears optional ones; the result is validated as a whole."""
    return await clients.update(
        s,
        client_id,
        body,
        actor=admin,
        loopback_allowed=settings.loopback_http_allowed,
        outbound=settings.outbound_policy,
    )


@router.post("/{client_id}/rotate-secret", summary="Replace a client's secret", responses=WRITE)
async def rotate_client_secret(client_id: ClientId, s: SessionDep, admin: AdminDep) -> SecretRotated:
    """A new secret, shown this once; the old secret stops working at once."""
    return await clients.rotate_secret(s, client_id, actor=admin)


@router.post("/{client_id}/disable", summary="Disable a client", responses=WRITE)
async def disable_client(client_id: ClientId, s: SessionDep, admin: AdminDep) -> ClientPublic:
    """The client gets no tokens until enabled again."""
    return await clients.set_status(s, client_id, ClientStatus.disabled, actor=admin)


@router.post("/{client_id}/enable", summary="Enable a client", responses=WRITE)
async def enable_client(client_id: ClientId, s: SessionDep, admin: AdminDep) -> ClientPublic:
    """Undo a disable."""
    return await clients.set_status(s, client_id, ClientStatus.active, actor=admin)
