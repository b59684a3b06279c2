"""Settings of the authentication service."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from tongban_kit.outbound import OutboundPolicy
from tongban_kit.settings import AdminSettings

SigningAlg = Literal["ES256", "RS256"]


class Settings(AdminSettings):
    """Authentication service settings, from `TONGBAN_AUTH_*` environment variables."""

    # bootstrap_admins (kit AdminSettings): platform administrators of the client registry, account ids (or client
    # ids, for an app's own token) whose tokens carry the `admin` scope

    model_config = SettingsConfigDict(env_prefix="TONGBAN_AUTH_", extra="ignore")
    service_name: ClassVar[str] = "auth"
    secret_fields: ClassVar[tuple[str, ...]] = ("key_encryption_key", "cursor_secret")

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
    #: back-channel logout and client JWKS calls may reach loopback addresses (plain http too); unset: in dev only.
    #: Private, link-local and internal hosts are never called (see `tongban_kit.outbound`)
    outbound_allow_loopback: bool | None = None
    #: more host names (or `.zone` suffixes) app-supplied URLs may not name, besides the built-in internal ones
    outbound_denied_hosts: list[str] = []

    #: `aud` of access tokens for the Tongban APIs behind the gateway
    api_audience: str = "tongban-api"
    #: authorization codes are valid this long (≤ 60 s)
    code_lifetime_seconds: int = 60
    #: pushed authorization requests are valid this long
    par_lifetime_seconds: int = 90
    #: single sign-on sessions last this long without activity, and at most `session_max_seconds`
    session_idle_seconds: int = 8 * 3600
    session_max_seconds: int = 7 * 86400
    #: a grant (and its refresh tokens) lasts at most this long
    grant_max_seconds: int = 30 * 86400
    #: the SSO cookie name; `__Host-` prefixed (Secure, Path=/) unless the issuer is plain http
    session_cookie: str = "tongban_sso"
    #: send cookies with `Secure`; unset: when the issuer is https
    secure_cookies: bool | None = None
    #: seconds a client may be off in `iat`/`exp` of its assertions and a verifier's clock
    clock_skew_seconds: int = 30
    #: where SMS/email one-time codes go: `log` (development only), `message` (the message service, once it
    #: exists), `none` (no such codes: second factors are authenticator apps and recovery codes)
    otp_channel: Literal["log", "message", "none"] = "log"
    #: brute-force protection: free failures per key before delays start, and the longest delay
    throttle_free_failures: int = 3
    throttle_max_delay_seconds: int = 900
    #: the device cookie a browser gets for an account it signed in to (`__Host-` prefixed like the SSO cookie),
    #: and how long it is kept: password checks from that browser are counted apart from everyone else's
    device_cookie: str = "tongban_device"
    device_cookie_days: int = 180
    #: `acr` values: password only, and multi-factor
    acr_password: str = "urn:tongban:acr:pwd"
    acr_mfa: str = "urn:tongban:acr:mfa"

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

    @model_validator(mode="after")
    def _outbound_guarded_in_prod(self) -> Settings:
        if self.environment == "prod" and self.outbound_allow_loopback:
            raise ValueError("outbound_allow_loopback is for development and tests, never environment=prod")
        return self

    @property
    def outbound_policy(self) -> OutboundPolicy:
        """What calls to app-supplied URLs may reach: https only outside dev, loopback where allowed."""
        loopback = self.is_dev if self.outbound_allow_loopback is None else self.outbound_allow_loopback
        return OutboundPolicy(
            allow_http=self.is_dev,
            allow_loopback=loopback,
            denied_hosts=frozenset(h.lower() for h in self.outbound_denied_hosts),
        )

    @property
    def default_alg(self) -> SigningAlg:
        """The algorithm that signs unless a client asks for another."""
        return self.signing_algs[0]

    @property
    def cookie_secure(self) -> bool:
        """Whether cookies carry `Secure` (the issuer is https, unless settings say otherwise)."""
        if self.secure_cookies is None:
            return self.issuer.startswith("https://")
        return self.secure_cookies

    @property
    def loopback_http_allowed(self) -> bool:
        """Whether plain-http loopback redirect URIs are accepted."""
        if self.allow_loopback_http_redirects is None:
            return self.is_dev
        return self.allow_loopback_http_redirects
