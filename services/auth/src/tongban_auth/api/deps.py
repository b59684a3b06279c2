"""Request dependencies: settings, the signer and the calling administrator."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header, Query, Request

from tongban_auth.config import Settings
from tongban_kit.app import SessionDep
from tongban_kit.problems import Problem
from tongban_kit.tokens import VerifiedToken


def get_settings(request: Request) -> Settings:
    """This service's settings."""
    settings: Settings = request.app.state.runtime.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
_BEARER = re.compile(r"[Bb]earer ([A-Za-z0-9._~+/-]+=*)")


def _challenge(status: int, detail: str, error: str | None = None, scope: str | None = None) -> Problem:
    challenge = 'Bearer realm="tongban"'
    if error:
        challenge += f', error="{error}"'
    if scope:
        challenge += f', scope="{scope}"'
    kind = {None: "authentication-required", "insufficient_scope": "insufficient-scope"}.get(error, "invalid-token")
    return Problem(status, detail, type=kind, headers={"WWW-Authenticate": challenge})


async def get_admin(
    request: Request,
    settings: SettingsDep,
    authorization: Annotated[
        str | None, Header(description="`Bearer <access token>` with the `admin` scope of a platform administrator")
    ] = None,
) -> str:
    """The calling platform administrator (the token's `sub`): 401 without a valid token, 403 for anyone else."""
    if not authorization:
        raise _challenge(401, "this API needs an access token with the admin scope")
    match = _BEARER.fullmatch(authorization.strip())
    if match is None:
        raise _challenge(401, "the Authorization header must carry a Bearer token", "invalid_token")
    vt: VerifiedToken | None = await request.app.state.oauth.checker.active(match.group(1))
    if vt is None:
        raise _challenge(401, "the access token is invalid, expired or revoked", "invalid_token")
    if "admin" not in vt.scopes:
        raise _challenge(403, "the access token lacks the admin scope", "insufficient_scope", "admin")
    if vt.sub not in settings.bootstrap_admins:
        raise Problem(403, "only platform administrators manage clients", type="forbidden")
    return vt.sub


AdminDep = Annotated[str, Depends(get_admin)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=2048, description="next_cursor of the previous page")]

__all__ = ["AdminDep", "Cursor", "Limit", "SessionDep", "SettingsDep"]
