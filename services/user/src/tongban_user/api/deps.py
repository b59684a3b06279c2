"""Request dependencies: session, settings, cipher, the caller (from its access token)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPBearer

from tongban_kit.app import SessionDep
from tongban_kit.bearer import Principal as TokenPrincipal
from tongban_kit.bearer import app_requires
from tongban_kit.problems import problem_responses
from tongban_user.access import ADMIN_SCOPE, PII_SCOPE, Caller
from tongban_user.config import Settings
from tongban_user.crypto import PiiCipher

READ_SCOPE = "user:read"
WRITE_SCOPE = "user:write"
#: documents the scheme in OpenAPI; the kit's BearerAuth reads and checks the header
BEARER_DOC = HTTPBearer(
    auto_error=False,
    description=f"An access token (RFC 9068 JWT) from the auth service: {READ_SCOPE} to read, {WRITE_SCOPE} to "
    f"change; {PII_SCOPE} to unmask personal data (audited); {ADMIN_SCOPE} to act on the staff the caller "
    "administers (分级授权, as the org service says at the time of the request)",
)


def get_settings(request: Request) -> Settings:
    """This service's settings."""
    settings: Settings = request.app.state.runtime.settings
    return settings


def get_cipher(request: Request) -> PiiCipher:
    """The identity-number cipher built at start-up."""
    cipher: PiiCipher = request.app.state.cipher
    return cipher


SettingsDep = Annotated[Settings, Depends(get_settings)]
CipherDep = Annotated[PiiCipher, Depends(get_cipher)]


def caller_of(token: TokenPrincipal, request: Request, settings: Settings) -> Caller:
    """The caller a verified token names, with the rights it carries.

    A client's own token (client credentials: `sub` is the client id) names no person: it has no account of its
    own and is never a whole-tree administrator. Administrative rights need the admin scope, and are asked of
    the org service (`admin.scopes`) during the request: never taken from the token's `admin_units` claim,
    which would outlive a withdrawn grant until the token expires.
    """
    person = token.sub != token.client_id
    admin = ADMIN_SCOPE in token.scopes
    return Caller(
        principal=token.sub,
        scopes=token.scopes,
        bootstrap=admin and person and token.sub in settings.bootstrap_admins,
        self_id=token.sub if person else None,
        rpc=request.app.state.runtime.rpc,
        rpc_timeout=settings.rpc_timeout_seconds,
        admin=admin,
        protected=frozenset(settings.bootstrap_admins),
    )


def require(*scopes: str) -> Callable[..., Awaitable[Caller]]:
    """A dependency: the caller of the request, whose access token holds every scope in `scopes` (503 without an
    issuer configured, `TONGBAN_USER_OIDC_ISSUER`: the fault lies with the deployment, not the caller)."""
    check = app_requires(*scopes, scheme=BEARER_DOC)

    async def dependency(request: Request, settings: SettingsDep, token: TokenPrincipal = Depends(check)) -> Caller:
        return caller_of(token, request, settings)

    return dependency


#: a caller that may read (user:read); what it sees still depends on its rights
CallerDep = Annotated[Caller, Depends(require(READ_SCOPE))]
#: a caller that may change accounts (user:write), within its rights
WriterDep = Annotated[Caller, Depends(require(WRITE_SCOPE))]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=2048, description="next_cursor of the previous page")]
Unmask = Annotated[bool, Query(description="return personal data unmasked (needs the user:pii scope; audited)")]
Purpose = Annotated[
    str | None,
    Query(
        max_length=500,
        description="why unmasked data is needed (required with unmask and to search by mobile or email)",
    ),
]

#: answers every protected route may give: no or bad token (401), missing scope or rights (403), not configured (503)
AUTH_RESPONSES = problem_responses(401, 403, 503)

__all__ = [
    "AUTH_RESPONSES",
    "CallerDep",
    "CipherDep",
    "Cursor",
    "Limit",
    "Purpose",
    "SessionDep",
    "SettingsDep",
    "Unmask",
    "WriterDep",
    "require",
]
