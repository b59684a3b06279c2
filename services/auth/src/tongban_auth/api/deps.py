"""Request dependencies: settings, the signer and the calling administrator."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request

from tongban_auth.config import Settings
from tongban_kit.app import SessionDep
from tongban_kit.problems import Problem

PRINCIPAL_HEADER = "X-Tongban-Principal"


def get_settings(request: Request) -> Settings:
    """This service's settings."""
    settings: Settings = request.app.state.runtime.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_admin(
    settings: SettingsDep,
    x_tongban_principal: Annotated[
        str | None,
        Header(
            description="Interim caller identity until the service checks its own tokens",
            pattern=r"^[A-Za-z0-9._:@-]{1,100}$",
        ),
    ] = None,
) -> str:
    """The calling administrator's name; 401 without a caller, 403 for anyone else."""
    if not settings.trust_principal_header or not x_tongban_principal:
        raise Problem(
            401,
            f"this API needs a caller identity ({PRINCIPAL_HEADER})",
            type="unauthenticated",
            headers={"WWW-Authenticate": 'Bearer realm="tongban"'},
        )
    if x_tongban_principal not in settings.bootstrap_admins:
        raise Problem(403, "only platform administrators manage clients", type="forbidden")
    return x_tongban_principal


AdminDep = Annotated[str, Depends(get_admin)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=2048, description="next_cursor of the previous page")]

__all__ = ["AdminDep", "Cursor", "Limit", "SessionDep", "SettingsDep"]
