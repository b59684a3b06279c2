"""What the authentication service declares on the bus: its stream and events."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from tongban_auth.models import ClientStatus
from tongban_auth.schemas import ClientPublic
from tongban_kit.app import ServiceContract
from tongban_kit.events import EventSpec
from tongban_kit.nats import StreamSpec

VERSION = "0.1.0"


class KeyRotated(BaseModel):
    """Payload of auth.key.rotated.v1: which key signs now, which is retired and until when it verifies."""

    alg: str
    active_kid: str
    next_kid: str = Field(description="published now, signs after the next rotation")
    retired_kid: str | None = None
    retire_after: datetime | None = Field(None, description="the retired key leaves the JWKS after this time")
    actor: str | None = None


class ClientRegistered(BaseModel):
    """Payload of auth.client.registered.v1 (no secret)."""

    client: ClientPublic
    actor: str | None = None


class ClientUpdated(BaseModel):
    """Payload of auth.client.updated.v1 (no secret)."""

    client: ClientPublic
    changed: list[str]
    actor: str | None = None


class ClientSecretRotated(BaseModel):
    """Payload of auth.client.secret_rotated.v1: the old secret no longer works (the secret is never sent)."""

    client_id: str
    secret_rotated_at: datetime
    actor: str | None = None


class ClientStatusChanged(BaseModel):
    """Payload of auth.client.disabled.v1 and auth.client.enabled.v1."""

    client_id: str
    status: ClientStatus
    actor: str | None = None


KEY_ROTATED = EventSpec("auth.key.rotated.v1", KeyRotated, "The signing key of an algorithm was rotated.")
CLIENT_REGISTERED = EventSpec("auth.client.registered.v1", ClientRegistered, "A client (application) was registered.")
CLIENT_UPDATED = EventSpec("auth.client.updated.v1", ClientUpdated, "A client's registration changed.")
CLIENT_SECRET_ROTATED = EventSpec(
    "auth.client.secret_rotated.v1", ClientSecretRotated, "A client's secret was replaced; the old one is void."
)
CLIENT_DISABLED = EventSpec(
    "auth.client.disabled.v1", ClientStatusChanged, "A client was disabled: it gets no tokens until enabled."
)
CLIENT_ENABLED = EventSpec("auth.client.enabled.v1", ClientStatusChanged, "A disabled client was enabled.")

CONTRACT = ServiceContract(
    name="auth",
    version=VERSION,
    description="Authentication (统一身份认证): OAuth 2.1 / OpenID Connect provider, signing keys, client registry.",
    streams=(StreamSpec("AUTH_EVENTS", ("auth.*.*.v1",), "Events of the authentication service"),),
    events=(KEY_ROTATED, CLIENT_REGISTERED, CLIENT_UPDATED, CLIENT_SECRET_ROTATED, CLIENT_DISABLED, CLIENT_ENABLED),
)
