"""Dynamic client registration (RFC 7591) behind initial access tokens that administrators hand out.

An initial access token limits how many clients it may register, until when, which scopes those clients may
ever ask for, and which org unit owns them. Registration maps the RFC 7591 metadata onto the client registry
(`clients.register`), so a dynamically registered client is an ordinary client: listed, disabled, rotated by
administrators like any other. Unknown metadata is ignored, as RFC 7591 §2 asks.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth.models import ClientType, InitialAccessToken
from tongban_auth.schemas import SCOPES, AuthMethod, ClientCreate, ClientCreated, GrantType
from tongban_kit.ids import new_id
from tongban_kit.outbox import utcnow
from tongban_kit.problems import Problem

TOKEN_PREFIX = "tbiat_"
METHODS = {m.value for m in AuthMethod}
GRANTS = {g.value for g in GrantType}


class RegistrationError(Exception):
    """An RFC 7591 §3.2.2 error: `invalid_redirect_uri` or `invalid_client_metadata`."""

    def __init__(self, error: str, description: str) -> None:
        """Name the error code and describe it."""
        super().__init__(description)
        self.error = error
        self.description = description


class InitialTokenCreate(BaseModel):
    """What an administrator allows an initial access token to do."""

    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile"], max_length=len(SCOPES))
    owner_unit_id: str | None = Field(None, max_length=36, description="org unit that will own the clients")
    max_uses: int = Field(1, ge=1, le=1000, description="how many clients it may register")
    expires_in: int = Field(86400, ge=60, le=30 * 86400, description="seconds")

    @field_validator("scopes")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in SCOPES]
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(unknown)}")
        return sorted(set(value))


class InitialTokenCreated(BaseModel):
    """A new initial access token; the token itself is shown only now."""

    id: str
    token: str = Field(description="give it to the app developer; shown only now")
    scopes: list[str]
    owner_unit_id: str | None
    uses_left: int
    expires_at: datetime


def digest(token: str) -> str:
    """Hex SHA-256 of an initial access token (it is random: no slow hash needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create_initial_token(s: AsyncSession, body: InitialTokenCreate, *, actor: str) -> InitialTokenCreated:
    """Make an initial access token (the caller is an administrator)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    row = InitialAccessToken(
        digest=digest(token),
        id=new_id(),
        scopes=body.scopes,
        owner_unit_id=body.owner_unit_id,
        uses_left=body.max_uses,
        created_by=actor,
        created_at=now,
        expires_at=now + timedelta(seconds=body.expires_in),
    )
    s.add(row)
    await s.commit()
    return InitialTokenCreated(
        id=row.id,
        token=token,
        scopes=row.scopes,
        owner_unit_id=row.owner_unit_id,
        uses_left=row.uses_left,
        expires_at=row.expires_at,
    )


async def revoke_initial_token(s: AsyncSession, token_id: str) -> None:
    """Withdraw an initial access token (404 when unknown)."""
    res = await s.exec(
        update(InitialAccessToken)
        .where(col(InitialAccessToken.id) == token_id)
        .values(uses_left=0)
        .execution_options(synchronize_session=False)
    )
    if not res.rowcount:
        raise Problem(404, f"no initial access token {token_id}", type="not-found")
    await s.commit()


async def spend(s: AsyncSession, token: str) -> InitialAccessToken | None:
    """Use up one registration of a token, atomically; None when it is unknown, used up or expired."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    now = utcnow()
    res = await s.exec(
        update(InitialAccessToken)
        .where(
            col(InitialAccessToken.digest) == digest(token),
            col(InitialAccessToken.uses_left) > 0,
            col(InitialAccessToken.expires_at) > now,
        )
        .values(uses_left=col(InitialAccessToken.uses_left) - 1)
        .returning(col(InitialAccessToken.id), col(InitialAccessToken.scopes), col(InitialAccessToken.owner_unit_id))
        .execution_options(synchronize_session=False)
    )
    row = res.first()
    if row is None:
        return None
    return InitialAccessToken(
        digest="", id=row[0], scopes=list(row[1]), owner_unit_id=row[2], uses_left=0, created_by="", expires_at=now
    )


def _strings(meta: dict[str, Any], name: str) -> list[str] | None:
    value = meta.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RegistrationError("invalid_client_metadata", f"{name} must be an array of strings")
    return value


def _string(meta: dict[str, Any], name: str) -> str | None:
    value = meta.get(name)
    if value is not None and not isinstance(value, str):
        raise RegistrationError("invalid_client_metadata", f"{name} must be a string")
    return value


def to_client_create(meta: dict[str, Any], allowed: InitialAccessToken) -> ClientCreate:
    """Map RFC 7591 client metadata onto a registry entry, within what the initial access token allows."""
    method = _string(meta, "token_endpoint_auth_method") or AuthMethod.client_secret_basic.value
    if method not in METHODS:
        raise RegistrationError("invalid_client_metadata", f"token_endpoint_auth_method {method} is not supported")
    grants = _strings(meta, "grant_types") or [GrantType.authorization_code.value]
    unknown = [g for g in grants if g not in GRANTS]
    if unknown:
        raise RegistrationError("invalid_client_metadata", f"grant types not supported: {', '.join(unknown)}")
    response_types = _strings(meta, "response_types") or ["code"]
    if set(response_types) != {"code"} and GrantType.authorization_code.value in grants:
        raise RegistrationError("invalid_client_metadata", "only the response type code is supported")
    if "code" in response_types and GrantType.authorization_code.value not in grants:
        raise RegistrationError("invalid_client_metadata", "response type code needs the authorization_code grant")
    scope = _string(meta, "scope")
    scopes = list(dict.fromkeys(scope.split())) if scope else [s for s in ("openid",) if s in allowed.scopes]
    beyond = [s for s in scopes if s not in allowed.scopes]
    if beyond:
        raise RegistrationError(
            "invalid_client_metadata", f"scopes not allowed for this registration: {' '.join(beyond)}"
        )
    redirect_uris = _strings(meta, "redirect_uris") or []
    body: dict[str, Any] = {
        "name": (_string(meta, "client_name") or "")[:200] or "Dynamically registered app",
        "owner_unit_id": allowed.owner_unit_id,
        "client_type": ClientType.public if method == AuthMethod.none.value else ClientType.confidential,
        "token_endpoint_auth_method": method,
        "grant_types": grants,
        "scopes": scopes,
        "redirect_uris": redirect_uris,
        "post_logout_redirect_uris": _strings(meta, "post_logout_redirect_uris") or [],
        "backchannel_logout_uri": _string(meta, "backchannel_logout_uri"),
        "jwks": meta.get("jwks"),
        "jwks_uri": _string(meta, "jwks_uri"),
    }
    try:
        return ClientCreate.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        error = "invalid_redirect_uri" if "redirect_uri" in where else "invalid_client_metadata"
        raise RegistrationError(error, f"{where}: {first.get('msg', '')}".strip(": ")) from None


def response_of(created: ClientCreated) -> dict[str, Any]:
    """The RFC 7591 §3.2.1 client information response."""
    doc: dict[str, Any] = {
        "client_id": created.client_id,
        "client_id_issued_at": int(created.created_at.timestamp()),
        "client_name": created.name,
        "redirect_uris": created.redirect_uris,
        "post_logout_redirect_uris": created.post_logout_redirect_uris,
        "grant_types": [g.value for g in created.grant_types],
        "response_types": ["code"] if GrantType.authorization_code in created.grant_types else [],
        "token_endpoint_auth_method": created.token_endpoint_auth_method.value,
        "scope": " ".join(created.scopes),
    }
    if created.client_secret is not None:
        doc["client_secret"] = created.client_secret
        doc["client_secret_expires_at"] = 0
    for name in ("jwks", "jwks_uri", "backchannel_logout_uri"):
        value = getattr(created, name)
        if value is not None:
            doc[name] = value
    return doc
