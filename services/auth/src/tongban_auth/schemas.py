"""Bodies of the client registry API and the scope catalogue."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tongban_auth.models import ClientStatus, ClientType

#: every scope a client may be granted
SCOPES: dict[str, str] = {
    "openid": "sign in with OpenID Connect",
    "profile": "name and basic profile",
    "email": "email address",
    "phone": "mobile number",
    "offline_access": "refresh tokens",
    "org:read": "read the organisation directory",
    "org:write": "change the organisation directory",
    "user:read": "read the user directory (masked)",
    "user:write": "change the user directory",
    "user:pii": "read unmasked personal data (audited)",
    "message:send": "send messages",
    "message:read": "read messages",
    "affairs:apply": "apply for a one-thing service",
    "affairs:handle": "handle applications as staff",
    "admin": "administer the platform",
}
#: scopes that only make sense with a signed-in person
USER_SCOPES = frozenset({"openid", "profile", "email", "phone", "offline_access"})
API_SCOPES = tuple(s for s in SCOPES if s not in USER_SCOPES)
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})
CLIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{2,99}$"
#: an org unit id (or `*`) and a message template code (or `*`), as the org and message services write them
UNIT_ID = re.compile(r"\*|[A-Za-z0-9_-]{1,36}")
TEMPLATE_CODE = re.compile(r"\*|[a-z0-9][a-z0-9._-]{1,99}")
MAX_URIS = 20


class GrantType(StrEnum):
    """Grant types a client may be registered for."""

    authorization_code = "authorization_code"
    refresh_token = "refresh_token"
    client_credentials = "client_credentials"
    token_exchange = "urn:ietf:params:oauth:grant-type:token-exchange"


class AuthMethod(StrEnum):
    """How a client authenticates at the token endpoint."""

    client_secret_basic = "client_secret_basic"
    client_secret_post = "client_secret_post"
    private_key_jwt = "private_key_jwt"
    none = "none"


SECRET_METHODS = frozenset({AuthMethod.client_secret_basic, AuthMethod.client_secret_post})


def check_uri(uri: str) -> str:
    """An absolute http(s) URI with a host and no fragment (loopback http is checked against settings later)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{uri!r} is not an absolute https URI")
    if "#" in uri:
        raise ValueError(f"{uri!r} has a fragment")
    if parts.username or parts.password:
        raise ValueError(f"{uri!r} carries credentials")
    if any(c.isspace() for c in uri):
        raise ValueError(f"{uri!r} contains whitespace")
    # URIs match exactly; one that looks like a pattern would mislead whoever reads the registry (RFC 9700 §4.1.3)
    if "*" in parts.netloc + parts.path or "%2a" in (parts.netloc + parts.path).lower():
        raise ValueError(f"{uri!r} looks like a wildcard; register each URI in full")
    return uri


def _unique(values: list[Any], what: str) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} lists an entry twice")
    return values


class ClientFields(BaseModel):
    """What an administrator sets about a client (shared by create and the merged result of a patch)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["浙里办 示例应用"])
    owner_unit_id: str | None = Field(None, max_length=36, description="org unit responsible for the app")
    redirect_uris: list[str] = Field(default_factory=list, max_length=MAX_URIS, description="exact strings")
    post_logout_redirect_uris: list[str] = Field(default_factory=list, max_length=MAX_URIS)
    grant_types: list[GrantType] = Field(default_factory=lambda: [GrantType.authorization_code], min_length=1)
    scopes: list[str] = Field(default_factory=lambda: ["openid"], max_length=len(SCOPES))
    access_token_lifetime: int = Field(600, ge=60, le=600, description="seconds")
    id_token_lifetime: int = Field(600, ge=60, le=3600, description="seconds")
    refresh_token_lifetime: int = Field(28800, ge=300, le=30 * 86400, description="seconds")
    backchannel_logout_uri: str | None = Field(None, max_length=2000)
    jwks: dict[str, Any] | None = Field(None, description="public keys for private_key_jwt")
    jwks_uri: str | None = Field(None, max_length=2000, description="where the public keys for private_key_jwt are")
    message_units: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="org units whose subtrees the app's own token (client credentials) may send messages to; "
        "`*`: every unit",
    )
    message_templates: list[str] = Field(
        default_factory=list, max_length=100, description="template codes the app's own token may send; `*`: any"
    )
    message_to_accounts: bool = Field(False, description="the app's own token may send to people by account id")

    @field_validator("message_units")
    @classmethod
    def _message_units(cls, value: list[str]) -> list[str]:
        if any(not UNIT_ID.fullmatch(u) for u in value):
            raise ValueError("message_units holds unit ids (or `*`)")
        return _unique(value, "message_units")

    @field_validator("message_templates")
    @classmethod
    def _message_templates(cls, value: list[str]) -> list[str]:
        if any(not TEMPLATE_CODE.fullmatch(t) for t in value):
            raise ValueError("message_templates holds template codes (or `*`)")
        return _unique(value, "message_templates")

    @field_validator("redirect_uris", "post_logout_redirect_uris")
    @classmethod
    def _uris(cls, value: list[str]) -> list[str]:
        for uri in value:
            if len(uri) > 2000:
                raise ValueError("a URI may have at most 2000 characters")
            check_uri(uri)
        return _unique(value, "the list")

    @field_validator("backchannel_logout_uri", "jwks_uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        return None if value is None else check_uri(value)

    @field_validator("grant_types")
    @classmethod
    def _grants(cls, value: list[GrantType]) -> list[GrantType]:
        return _unique(value, "grant_types")

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in SCOPES]
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(unknown)}")
        return _unique(value, "scopes")

    @field_validator("jwks")
    @classmethod
    def _jwks(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        keys = value.get("keys")
        if not isinstance(keys, list) or not keys:
            raise ValueError("jwks must be a JWK Set with at least one key")
        for key in keys:
            if not isinstance(key, dict) or PRIVATE_JWK_MEMBERS & key.keys():
                raise ValueError("jwks must hold public keys only")
        try:
            KeySet.import_key_set(value)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"jwks is not a valid JWK Set: {exc}") from None
        return value

    @model_validator(mode="after")
    def _grants_fit(self) -> ClientFields:
        grants = set(self.grant_types)
        if GrantType.authorization_code in grants and not self.redirect_uris:
            raise ValueError("authorization_code needs at least one redirect URI")
        if GrantType.refresh_token in grants and GrantType.authorization_code not in grants:
            raise ValueError("refresh_token is only issued with authorization_code")
        if GrantType.authorization_code not in grants:
            user_scopes = sorted(USER_SCOPES & set(self.scopes))
            if user_scopes:
                raise ValueError(f"scopes {', '.join(user_scopes)} need the authorization_code grant")
        if self.jwks is not None and self.jwks_uri is not None:
            raise ValueError("give jwks or jwks_uri, not both")
        return self


class ClientCreate(ClientFields):
    """Body of registering a client; the secret (confidential clients) is returned once."""

    client_id: str | None = Field(None, pattern=CLIENT_ID_PATTERN, description="chosen id; generated when absent")
    client_type: ClientType = ClientType.confidential
    token_endpoint_auth_method: AuthMethod | None = Field(
        None, description="default: client_secret_basic (confidential), none (public)"
    )
    require_pkce: bool = Field(True, description="PKCE (S256) is required; always true for public clients")

    @model_validator(mode="after")
    def _type_fits(self) -> ClientCreate:
        public = self.client_type == ClientType.public
        if self.token_endpoint_auth_method is None:
            self.token_endpoint_auth_method = AuthMethod.none if public else AuthMethod.client_secret_basic
        method = self.token_endpoint_auth_method
        if public:
            if method != AuthMethod.none:
                raise ValueError("public clients have no credentials: token_endpoint_auth_method must be none")
            if not self.require_pkce:
                raise ValueError("public clients must use PKCE")
            if GrantType.client_credentials in self.grant_types:
                raise ValueError("public clients cannot use client_credentials")
        elif method == AuthMethod.none:
            raise ValueError("confidential clients must authenticate; token_endpoint_auth_method cannot be none")
        if method == AuthMethod.private_key_jwt and self.jwks is None and self.jwks_uri is None:
            raise ValueError("private_key_jwt needs jwks or jwks_uri")
        return self


class ClientUpdate(BaseModel):
    """Merge-patch of a client: absent fields stay, null clears optional ones; type and auth method are fixed."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    owner_unit_id: str | None = None
    redirect_uris: list[str] | None = None
    post_logout_redirect_uris: list[str] | None = None
    grant_types: list[GrantType] | None = None
    scopes: list[str] | None = None
    access_token_lifetime: int | None = None
    id_token_lifetime: int | None = None
    refresh_token_lifetime: int | None = None
    backchannel_logout_uri: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    require_pkce: bool | None = None
    message_units: list[str] | None = None
    message_templates: list[str] | None = None
    message_to_accounts: bool | None = None


class ClientPublic(BaseModel):
    """A client as the API returns it (never its secret)."""

    client_id: str
    name: str
    owner_unit_id: str | None = None
    client_type: ClientType
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    grant_types: list[GrantType]
    scopes: list[str]
    access_token_lifetime: int
    id_token_lifetime: int
    refresh_token_lifetime: int
    backchannel_logout_uri: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    message_units: list[str] = Field(default_factory=list)
    message_templates: list[str] = Field(default_factory=list)
    message_to_accounts: bool = False
    token_endpoint_auth_method: AuthMethod
    require_pkce: bool
    has_secret: bool
    secret_rotated_at: datetime | None = None
    status: ClientStatus
    version: int
    created_at: datetime
    updated_at: datetime


class ClientCreated(ClientPublic):
    """A new client, with its secret shown this once (confidential clients with a secret method)."""

    client_secret: str | None = Field(None, description="shown only now; store it safely")


class SecretRotated(BaseModel):
    """The client's new secret, shown this once; the old one stops working at once."""

    client_id: str
    client_secret: str
    secret_rotated_at: datetime
