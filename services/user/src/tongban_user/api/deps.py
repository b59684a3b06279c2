"""Request dependencies: session, settings, cipher, the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlmodel import col, or_, select

from tongban_kit.app import SessionDep
from tongban_kit.problems import Problem
from tongban_user.access import Caller
from tongban_user.config import Settings
from tongban_user.crypto import PiiCipher
from tongban_user.models import UserAccount

PRINCIPAL_HEADER = "X-Tongban-Principal"
SCOPES_HEADER = "X-Tongban-Scopes"


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


async def get_caller(
    request: Request,
    s: SessionDep,
    settings: SettingsDep,
    x_tongban_principal: Annotated[
        str | None,
        Header(
            description="Interim caller identity (admin name, user id or username) until auth tokens",
            pattern=r"^[A-Za-z0-9._:@-]{1,100}$",
        ),
    ] = None,
    x_tongban_scopes: Annotated[
        str | None, Header(description="Interim space-separated scopes, e.g. user:pii", max_length=1000)
    ] = None,
) -> Caller:
    """The caller; 401 without one."""
    if not settings.trust_principal_header or not x_tongban_principal:
        raise Problem(
            401,
            f"this API needs a caller identity ({PRINCIPAL_HEADER})",
            type="unauthenticated",
            headers={"WWW-Authenticate": 'Bearer realm="tongban"'},
        )
    principal = x_tongban_principal
    me = (
        await s.exec(
            select(UserAccount.id).where(
                or_(col(UserAccount.id) == principal, col(UserAccount.username) == principal.lower())
            )
        )
    ).first()
    return Caller(
        principal=principal,
        scopes=frozenset((x_tongban_scopes or "").split()),
        bootstrap=principal in settings.bootstrap_admins,
        self_id=me,
        rpc=request.app.state.runtime.rpc,
        rpc_timeout=settings.rpc_timeout_seconds,
    )


CallerDep = Annotated[Caller, Depends(get_caller)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=2048, description="next_cursor of the previous page")]
Unmask = Annotated[bool, Query(description="return personal data unmasked (needs the user:pii scope; audited)")]
Purpose = Annotated[str | None, Query(max_length=500, description="why unmasked data is needed (required with unmask)")]

__all__ = ["CallerDep", "CipherDep", "Cursor", "Limit", "Purpose", "SessionDep", "SettingsDep", "Unmask"]
