"""Request dependencies: session, settings, the calling principal, paging parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request

from tongban_kit.app import SessionDep
from tongban_kit.problems import Problem
from tongban_org.authz import Principal
from tongban_org.config import Settings

PRINCIPAL_HEADER = "X-Tongban-Principal"


def get_settings(request: Request) -> Settings:
    """This service's settings."""
    settings: Settings = request.app.state.runtime.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_principal(
    settings: SettingsDep,
    x_tongban_principal: Annotated[
        str | None,
        Header(
            description="Interim caller identity for writes (分级授权), until tokens from the auth service",
            pattern=r"^[A-Za-z0-9._:@-]{1,100}$",
        ),
    ] = None,
) -> Principal:
    """The caller of a write; 401 without one."""
    if not settings.trust_principal_header or not x_tongban_principal:
        raise Problem(
            401,
            f"writes need a caller identity ({PRINCIPAL_HEADER})",
            type="unauthenticated",
            headers={"WWW-Authenticate": 'Bearer realm="tongban"'},
        )
    return Principal(x_tongban_principal, bootstrap=x_tongban_principal in settings.bootstrap_admins)


PrincipalDep = Annotated[Principal, Depends(get_principal)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=2048, description="next_cursor of the previous page")]

__all__ = ["Cursor", "Limit", "PrincipalDep", "SessionDep", "SettingsDep"]
