"""Tables of the authentication service: signing keys and registered clients."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Index, Integer, String, Text, text
from sqlmodel import Field, SQLModel

from tongban_kit.db import UtcDateTime
from tongban_kit.outbox import utcnow


class KeyState(StrEnum):
    """Lifecycle of a signing key."""

    next = "next"  # published, not yet signing
    active = "active"  # signing
    retired = "retired"  # published for verification until retire_after, then removed


class SigningKey(SQLModel, table=True):
    """A signing key; the private part is stored sealed with the key-encryption key."""

    __tablename__ = "auth_signing_key"
    __table_args__ = (
        # at most one active and one next key per algorithm
        Index(
            "uq_auth_signing_key_live",
            "alg",
            "state",
            unique=True,
            postgresql_where=text("state <> 'retired'"),
            sqlite_where=text("state <> 'retired'"),
        ),
    )

    kid: str = Field(sa_column=Column(String(64), primary_key=True))
    alg: str = Field(sa_column=Column(String(16), nullable=False))
    state: KeyState = Field(sa_column=Column(String(16), nullable=False))
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    private_key_enc: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    activated_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    retired_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    retire_after: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


class ClientType(StrEnum):
    """OAuth client types (RFC 6749 §2.1)."""

    confidential = "confidential"
    public = "public"


class ClientStatus(StrEnum):
    """Lifecycle of a client."""

    active = "active"
    disabled = "disabled"


class Client(SQLModel, table=True):
    """A registered application (OAuth client); the secret is kept only as an Argon2id hash."""

    __tablename__ = "auth_client"
    __table_args__ = (Index("ix_auth_client_owner", "owner_unit_id", "client_id"),)

    client_id: str = Field(sa_column=Column(String(100), primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    owner_unit_id: str | None = Field(default=None, sa_column=Column(String(36)))
    client_type: ClientType = Field(sa_column=Column(String(16), nullable=False))
    redirect_uris: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    post_logout_redirect_uris: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    grant_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    access_token_lifetime: int = Field(sa_column=Column(Integer, nullable=False))
    id_token_lifetime: int = Field(sa_column=Column(Integer, nullable=False))
    refresh_token_lifetime: int = Field(sa_column=Column(Integer, nullable=False))
    backchannel_logout_uri: str | None = Field(default=None, sa_column=Column(String(2000)))
    jwks: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    jwks_uri: str | None = Field(default=None, sa_column=Column(String(2000)))
    token_endpoint_auth_method: str = Field(sa_column=Column(String(40), nullable=False))
    require_pkce: bool = Field(default=True, sa_column=Column(Boolean, nullable=False))
    secret_hash: str | None = Field(default=None, sa_column=Column(String(200)))
    secret_rotated_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    status: ClientStatus = Field(default=ClientStatus.active, sa_column=Column(String(16), nullable=False))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    created_by: str | None = Field(default=None, sa_column=Column(String(100)))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
