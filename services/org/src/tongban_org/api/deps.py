"""Request dependencies: session, settings, the caller's access token, paging parameters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPBearer

from tongban_kit.app import SessionDep
from tongban_kit.bearer import Principal as TokenPrincipal
from tongban_kit.bearer import app_requires
from tongban_kit.problems import Problem, problem_responses
from tongban_org.authz import ADMIN_SCOPE, Principal
from tongban_org.config import Settings

READ_SCOPE = "org:read"
WRITE_SCOPE = "org:write"
#: documents the scheme in OpenAPI; the kit's BearerAuth reads and checks the header
BEARER_DOC = HTTPBearer(
    auto_error=False,
    description=f"An access token (RFC 9068 JWT) from the auth service: {READ_SCOPE} to read; "
    f"{WRITE_SCOPE} and {ADMIN_SCOPE} to write, within the subtrees the caller administers (分级授权)",
)
#: answers every protected route may give: no or bad token (401), missing scope or rights (403), not configured (503)
AUTH_RESPONSES = problem_responses(401, 403, 503)


def get_settings(request: Request) -> Settings:
    """This service's settings."""
    settings: Settings = request.app.state.runtime.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def require(*scopes: str) -> Callable[..., Awaitable[TokenPrincipal]]:
    """A dependency: the verified token of the request, holding every scope in `scopes` (503 without an issuer)."""
    return app_requires(*scopes, scheme=BEARER_DOC)


async def get_writer(
    settings: SettingsDep, token: Annotated[TokenPrincipal, Depends(require(WRITE_SCOPE, ADMIN_SCOPE))]
) -> Principal:
    """The administrator behind a write: a person (the token's `sub`), with the org:write and admin scopes.

    Rights come from this service's own grants (and `bootstrap_admins`), looked up by account id, so a withdrawn
    grant stops working at once. A client's own token (client credentials: `sub` is the client id) names no
    person and is refused.
    """
    if token.sub == token.client_id:
        raise Problem(
            403,
            "changes to the organisation directory are made on behalf of a person; "
            "a client's own token (client credentials) may only read",
            type="person-required",
        )
    admins = frozenset(settings.bootstrap_admins)
    return Principal(token.sub, bootstrap=token.sub in admins, protected=admins)


ReaderDep = Annotated[TokenPrincipal, Depends(require(READ_SCOPE))]
PrincipalDep = Annotated[Principal, Depends(get_writer)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=2048, description="next_cursor of the previous page")]

__all__ = ["AUTH_RESPONSES", "Cursor", "Limit", "PrincipalDep", "ReaderDep", "SessionDep", "SettingsDep", "require"]
