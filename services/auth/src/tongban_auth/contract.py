"""What the authentication service declares on the bus: its stream, events, RPC endpoints and consumers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from tongban_auth.models import ClientStatus
from tongban_auth.schemas import ClientPublic
from tongban_kit.app import ServiceContract
from tongban_kit.consumer import ConsumerSpec
from tongban_kit.events import EventSpec
from tongban_kit.nats import StreamSpec
from tongban_kit.rpc import RpcSpec

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


class LoginSucceeded(BaseModel):
    """Payload of auth.login.succeeded.v1: who signed in, how, from where (no credentials)."""

    user_id: str
    sid: str = Field(description="the single sign-on session")
    amr: list[str] = Field(description="authentication methods (RFC 8176)")
    acr: str
    client_id: str | None = Field(None, description="the app the sign-in was for, if any")
    ip: str | None = None


class LoginFailed(BaseModel):
    """Payload of auth.login.failed.v1: a failed password or one-time-code check (the attempt itself is not kept)."""

    user_id: str | None = Field(None, description="the account, when the login name matched one")
    login_hint: str | None = Field(None, description="the login name as typed, masked")
    method: str = Field(description="pwd | otp | totp | recovery")
    reason: str = Field(description="unknown_account | bad_credentials | throttled | account_disabled | no_password")
    client_id: str | None = None
    ip: str | None = None


class TokenIssued(BaseModel):
    """Payload of auth.token.issued.v1: what was issued to whom; never a token value."""

    jti: str = Field(description="id of the access token")
    client_id: str
    sub: str = Field(description="the user, or the client itself for client_credentials")
    grant_type: str
    scope: str
    grant_id: str | None = None
    refresh_token_issued: bool = False
    id_token_issued: bool = False
    actor: str | None = Field(None, description="the acting client (`act.sub`) for token exchange")
    expires_at: datetime


class TokenRevoked(BaseModel):
    """Payload of auth.token.revoked.v1: verifiers deny this `jti`, or every token of this grant, until `expires_at`."""

    jti: str | None = Field(None, description="one access token")
    grant_id: str | None = Field(None, description="every token issued under this grant")
    client_id: str
    sub: str | None = None
    reason: str = Field(description="revoked | refresh_reuse | code_replay | logout | consent_revoked | disabled")
    expires_at: datetime = Field(description="after this time no token it covers is valid anyway")


class SessionEnded(BaseModel):
    """Payload of auth.session.ended.v1: a single sign-on session ended (logout, sign-out everywhere, expiry)."""

    sid: str
    user_id: str
    reason: str = Field(description="logout | signout_everywhere | expired | admin")
    grant_ids: list[str] = Field(default_factory=list, description="grants revoked with the session")


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

LOGIN_SUCCEEDED = EventSpec(
    "auth.login.succeeded.v1", LoginSucceeded, "A person signed in (a session started or stepped up)."
)
LOGIN_FAILED = EventSpec("auth.login.failed.v1", LoginFailed, "A sign-in attempt failed.")
TOKEN_ISSUED = EventSpec("auth.token.issued.v1", TokenIssued, "Tokens were issued at the token endpoint.")
TOKEN_REVOKED = EventSpec(
    "auth.token.revoked.v1", TokenRevoked, "A token or a whole grant was revoked: verifiers deny it before expiry."
)
SESSION_ENDED = EventSpec("auth.session.ended.v1", SessionEnded, "A single sign-on session ended.")


class WebOriginsRequest(BaseModel):
    """Request of auth.rpc.clients.origins (no parameters)."""


class WebOriginsReply(BaseModel):
    """The browser origins of the active clients: scheme://host[:port] of their http(s) redirect URIs."""

    origins: list[str] = Field(description="sorted, lower-case, without default ports")


RPC_WEB_ORIGINS = RpcSpec(
    "clients-origins",
    "auth.rpc.clients.origins",
    WebOriginsRequest,
    WebOriginsReply,
    "The web origins of the active clients (the gateway's CORS allow-list).",
)


class AllowancesRequest(BaseModel):
    """Request of auth.rpc.clients.allowances: what may this client's own token do?"""

    client_id: str = Field(min_length=1, max_length=100)


class AllowancesReply(BaseModel):
    """A client's registration as far as other services check it (an unknown client: found false, nothing allowed)."""

    client_id: str
    found: bool
    active: bool = False
    scopes: list[str] = Field(default_factory=list)
    message_units: list[str] = Field(
        default_factory=list, description="roots of org subtrees its own token may send to; `*`: all"
    )
    message_templates: list[str] = Field(default_factory=list, description="template codes it may send; `*`: any")
    message_to_accounts: bool = Field(False, description="its own token may send to people by account id")


RPC_CLIENT_ALLOWANCES = RpcSpec(
    "clients-allowances",
    "auth.rpc.clients.allowances",
    AllowancesRequest,
    AllowancesReply,
    "What a client's own token may do by its registration (the message service checks sends with it).",
)

CONTRACT = ServiceContract(
    name="auth",
    version=VERSION,
    description="Authentication (统一身份认证): OAuth 2.1 / OpenID Connect provider, signing keys, client registry.",
    streams=(StreamSpec("AUTH_EVENTS", ("auth.*.*.v1",), "Events of the authentication service"),),
    events=(
        KEY_ROTATED,
        CLIENT_REGISTERED,
        CLIENT_UPDATED,
        CLIENT_SECRET_ROTATED,
        CLIENT_DISABLED,
        CLIENT_ENABLED,
        LOGIN_SUCCEEDED,
        LOGIN_FAILED,
        TOKEN_ISSUED,
        TOKEN_REVOKED,
        SESSION_ENDED,
    ),
    rpcs=(RPC_WEB_ORIGINS, RPC_CLIENT_ALLOWANCES),
    consumers=(
        ConsumerSpec(
            "auth-backchannel-logout",
            "AUTH_EVENTS",
            ("auth.session.ended.v1",),
            "Sends back-channel logout tokens to the apps that had a grant in an ended session.",
        ),
    ),
)
