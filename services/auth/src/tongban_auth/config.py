"""Settings of the authentication service."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from tongban_kit.settings import ServiceSettings

SigningAlg = Literal["ES256", "RS256"]


class Settings(ServiceSettings):
    """Authentication service settings, from `TONGBAN_AUTH_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="TONGBAN_AUTH_", extra="ignore")
    service_name: ClassVar[str] = "auth"
    secret_fields: ClassVar[tuple[str, ...]] = ("key_encryption_key",)

    port: int = 8103
    database_url: str = "sqlite+aiosqlite:///./data/auth.db"
    #: the issuer (`iss`): the public gateway URL, every OAuth endpoint lies below it; empty: `public_url`
    issuer: str = ""
    #: encrypts the private parts of signing keys at rest (AES-256-GCM); any string, or a base64 32-byte key
    key_encryption_key: str = "changethis"
    #: earlier key-encryption keys, still accepted for reading after a rotation
    old_key_encryption_keys: list[str] = []
    #: algorithms with a signing key; the first signs by default
    signing_algs: list[SigningAlg] = ["ES256", "RS256"]
    #: modulus size of new RSA keys
    rsa_key_bits: int = 3072
    #: longest lifetime of any token this service signs; a retired key stays published this long (plus the JWKS
    #: cache time) after a rotation
    max_token_lifetime_seconds: int = 3600
    #: `Cache-Control: max-age` of the JWKS; a `next` key must be published this long before it may sign
    jwks_max_age_seconds: int = 300
    #: how long a running service keeps using the active key it loaded before looking again
    signing_key_cache_seconds: int = 30
    #: allow `http://127.0.0.1`, `http://localhost` and `http://[::1]` redirect URIs; unset: in dev only
    allow_loopback_http_redirects: bool | None = None
    #: principals that administer the client registry
    bootstrap_admins: list[str] = ["demo-admin"]
    #: interim identity: trust `X-Tongban-Principal` until the service checks its own tokens
    trust_principal_header: bool = True

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        if (value and not value.startswith(("https://", "http://"))) or "?" in value or "#" in value:
            raise ValueError("issuer must be an http(s) URL without query or fragment")
        return value.rstrip("/")

    @field_validator("signing_algs")
    @classmethod
    def _algs(cls, value: list[SigningAlg]) -> list[SigningAlg]:
        if not value or len(set(value)) != len(value):
            raise ValueError("signing_algs must list each algorithm once, at least one")
        return value

    @model_validator(mode="after")
    def _issuer_from_public_url(self) -> Settings:
        if not self.issuer:
            self.issuer = self._issuer(self.public_url)
        return self

    @property
    def default_alg(self) -> SigningAlg:
        """The algorithm that signs unless a client asks for another."""
        return self.signing_algs[0]

    @property
    def loopback_http_allowed(self) -> bool:
        """Whether plain-http loopback redirect URIs are accepted."""
        if self.allow_loopback_http_redirects is None:
            return self.is_dev
        return self.allow_loopback_http_redirects
