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
    """A registered application (OAuth client); the secret is kept only as a SHA-256 digest (it is random)."""

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
    #: what the app's own token may send: roots of org subtrees (`*`: all), template codes (`*`: any), account ids
    message_units: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    message_templates: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    message_to_accounts: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    token_endpoint_auth_method: str = Field(sa_column=Column(String(40), nullable=False))
    require_pkce: bool = Field(default=True, sa_column=Column(Boolean, nullable=False))
    secret_hash: str | None = Field(default=None, sa_column=Column(String(200)))
    secret_rotated_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    status: ClientStatus = Field(default=ClientStatus.active, sa_column=Column(String(16), nullable=False))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    created_by: str | None = Field(default=None, sa_column=Column(String(100)))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))


class Credential(SQLModel, table=True):
    """What a person signs in with, owned here: the password hash, TOTP secret (sealed) and recovery codes.

    `user_id` is the account id in the user service; the account itself (name, status) is read over RPC.
    """

    __tablename__ = "auth_credential"

    user_id: str = Field(sa_column=Column(String(36), primary_key=True))
    password_hash: str | None = Field(default=None, sa_column=Column(String(200)))
    password_changed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    #: the TOTP shared secret, sealed with the key-encryption key; set while enrolling, live once confirmed
    totp_secret_enc: str | None = Field(default=None, sa_column=Column(Text))
    totp_confirmed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    #: the last TOTP time step accepted, so a code cannot be used twice
    totp_last_step: int | None = Field(default=None, sa_column=Column(Integer))
    #: digests of the unused recovery codes
    recovery_codes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))


class Throttle(SQLModel, table=True):
    """A failure counter for brute-force protection: one row per key (`pair:acct:<id>@<addr>`, `acct:<id>`,
    `dev:<device>`, `ip:<addr>`, `client:<id>`, …; see `tongban_auth.throttle`)."""

    __tablename__ = "auth_throttle"

    key: str = Field(sa_column=Column(String(200), primary_key=True))
    failures: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    #: no attempt for this key is checked before this time (progressive delay)
    blocked_until: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    last_failure_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


class OtpChallenge(SQLModel, table=True):
    """A one-time code sent by SMS or email; only its digest is kept."""

    __tablename__ = "auth_otp_challenge"
    __table_args__ = (Index("ix_auth_otp_challenge_user", "user_id", "created_at"),)

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    user_id: str = Field(sa_column=Column(String(36), nullable=False))
    channel: str = Field(sa_column=Column(String(16), nullable=False))  # sms | email
    destination: str = Field(sa_column=Column(String(254), nullable=False))  # masked, for display
    code_digest: str = Field(sa_column=Column(String(128), nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


class LoginSession(SQLModel, table=True):
    """A single sign-on session: the browser holds its id in an HttpOnly cookie (only the digest is stored)."""

    __tablename__ = "auth_session"
    __table_args__ = (Index("ix_auth_session_user", "user_id", "created_at"),)

    #: public session id (`sid` claim in ID and logout tokens)
    sid: str = Field(sa_column=Column(String(64), primary_key=True))
    #: digest of the cookie value
    cookie_digest: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    user_id: str = Field(sa_column=Column(String(36), nullable=False))
    auth_time: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    #: authentication methods (RFC 8176): pwd, otp, mfa, sms ...
    amr: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    acr: str = Field(sa_column=Column(String(100), nullable=False))
    ip: str | None = Field(default=None, sa_column=Column(String(64)))
    user_agent: str | None = Field(default=None, sa_column=Column(String(300)))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    last_seen_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    end_reason: str | None = Field(default=None, sa_column=Column(String(40)))


class Grant(SQLModel, table=True):
    """One authorisation of a client by a user (from an authorization code); refresh tokens and access tokens
    hang off it, and revoking it revokes them all."""

    __tablename__ = "auth_grant"
    __table_args__ = (
        Index("ix_auth_grant_user", "user_id", "client_id"),
        Index("ix_auth_grant_session", "session_id"),
    )

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    client_id: str = Field(sa_column=Column(String(100), nullable=False))
    user_id: str = Field(sa_column=Column(String(36), nullable=False))
    session_id: str | None = Field(default=None, sa_column=Column(String(64)))
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    auth_time: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    amr: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    acr: str = Field(sa_column=Column(String(100), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    revoke_reason: str | None = Field(default=None, sa_column=Column(String(40)))


class AuthCode(SQLModel, table=True):
    """An authorization code (stored as a digest), single use, short-lived."""

    __tablename__ = "auth_code"

    code_digest: str = Field(sa_column=Column(String(64), primary_key=True))
    grant_id: str = Field(sa_column=Column(String(36), nullable=False))
    client_id: str = Field(sa_column=Column(String(100), nullable=False))
    redirect_uri: str = Field(sa_column=Column(String(2000), nullable=False))
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    code_challenge: str | None = Field(default=None, sa_column=Column(String(128)))
    code_challenge_method: str | None = Field(default=None, sa_column=Column(String(10)))
    nonce: str | None = Field(default=None, sa_column=Column(String(500)))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


class RefreshToken(SQLModel, table=True):
    """A refresh token (digest). Using it rotates it; using a rotated one again revokes the whole grant."""

    __tablename__ = "auth_refresh_token"
    __table_args__ = (Index("ix_auth_refresh_token_grant", "grant_id"),)

    token_digest: str = Field(sa_column=Column(String(64), primary_key=True))
    grant_id: str = Field(sa_column=Column(String(36), nullable=False))
    client_id: str = Field(sa_column=Column(String(100), nullable=False))
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    rotated_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


class RevokedToken(SQLModel, table=True):
    """An access token revoked before its expiry (by `jti`); kept until it would have expired."""

    __tablename__ = "auth_revoked_token"
    __table_args__ = (Index("ix_auth_revoked_token_expires", "expires_at"),)

    jti: str = Field(sa_column=Column(String(64), primary_key=True))
    client_id: str = Field(sa_column=Column(String(100), nullable=False))
    grant_id: str | None = Field(default=None, sa_column=Column(String(36)))
    revoked_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class Consent(SQLModel, table=True):
    """Scopes a user has approved for a client; remembered until the user revokes them."""

    __tablename__ = "auth_consent"

    user_id: str = Field(sa_column=Column(String(36), primary_key=True))
    client_id: str = Field(sa_column=Column(String(100), primary_key=True))
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    granted_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))


class PushedRequest(SQLModel, table=True):
    """A pushed authorization request (RFC 9126): the parameters, referenced by `request_uri`."""

    __tablename__ = "auth_pushed_request"

    request_uri: str = Field(sa_column=Column(String(200), primary_key=True))
    client_id: str = Field(sa_column=Column(String(100), nullable=False))
    params: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class UsedAssertion(SQLModel, table=True):
    """`jti` of a client assertion (private_key_jwt) already used; kept until the assertion expires."""

    __tablename__ = "auth_used_assertion"

    jti: str = Field(sa_column=Column(String(200), primary_key=True))
    client_id: str = Field(sa_column=Column(String(100), primary_key=True))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class InitialAccessToken(SQLModel, table=True):
    """An initial access token for dynamic client registration (RFC 7591 §3): made by an administrator, limited
    in time, number of uses and the scopes the clients it registers may have; only its digest is stored."""

    __tablename__ = "auth_initial_access_token"

    digest: str = Field(sa_column=Column(String(64), primary_key=True))
    id: str = Field(sa_column=Column(String(36), nullable=False, unique=True))
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    owner_unit_id: str | None = Field(default=None, sa_column=Column(String(36)))
    uses_left: int = Field(sa_column=Column(Integer, nullable=False))
    created_by: str = Field(sa_column=Column(String(100), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
