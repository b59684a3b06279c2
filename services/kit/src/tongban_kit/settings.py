"""Settings base shared by every service: env prefix per service, no default secrets outside dev."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tongban_kit.demo import demo_ids, demo_user_id

DEFAULT_SECRET_MARKERS = frozenset({"", "changethis", "change-me", "dev", "secret", "password"})

Environment = Literal["dev", "test", "prod"]


def _weak(value: Any) -> bool:
    """A secret left at a default, a development fallback (`...-dev-...`) or too short to be one."""
    text = "" if value is None else str(value).strip()
    lowered = text.lower()
    return lowered in DEFAULT_SECRET_MARKERS or "-dev-" in lowered or "changethis" in lowered or len(text) < 16


class ServiceSettings(BaseSettings):
    """Base for a service's one Settings class; subclasses set `model_config` with their env prefix."""

    model_config = SettingsConfigDict(env_prefix="TONGBAN_", extra="ignore", env_file=None)

    #: names of fields that hold secrets; refused when left at a default outside dev
    secret_fields: ClassVar[tuple[str, ...]] = ()
    #: the service name used for logs, NATS service name and CloudEvents source
    service_name: ClassVar[str] = "service"

    environment: Environment = "dev"
    host: str = "127.0.0.1"
    port: int = 8100
    log_level: str = "INFO"
    log_json: bool = True
    database_url: str = "sqlite+aiosqlite:///./data/service.db"
    database_pool_size: int = 10
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None
    nats_password: str | None = None
    #: prefix for every subject, stream and service name; isolates test runs sharing one NATS
    nats_namespace: str = ""
    #: proxies (addresses or networks, comma-separated) whose `X-Forwarded-For` and `X-Forwarded-Proto` are
    #: believed: the gateway; empty: none, the peer's address is the client's (see `forwarding_options`)
    forwarded_allow_ips: str = ""
    #: public base URL used in links (e.g. the gateway URL)
    public_url: str = "http://127.0.0.1:8000"
    #: the issuer (`iss`) of the access tokens this service accepts; empty: Bearer tokens are not configured
    oidc_issuer: str = ""
    #: where the issuer's JWK Set is; empty: `<oidc_issuer>/oauth2/jwks`
    oidc_jwks_url: str = ""
    #: the audience (`aud`) access tokens must name to be accepted here
    oidc_audience: str = "tongban-api"
    #: clock skew tolerated on `exp`, `nbf` and `iat`
    oidc_leeway_seconds: float = 30.0
    #: signs this service's pagination cursors (a service that pages lists names it in `secret_fields`);
    #: empty in development only, where a fixed development key stands in
    cursor_secret: str = ""
    #: the largest request body (413 beyond); a service gives bulk-import paths a limit of their own
    max_body_bytes: int = 1024 * 1024
    #: how deeply a JSON body may nest arrays and objects (400 beyond, before any parser recurses into it)
    max_json_depth: int = 64

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> ServiceSettings:
        ns = self.nats_namespace
        if ns and not ns.replace("_", "").replace("-", "").isalnum():
            raise ValueError("nats_namespace may hold only letters, digits, '-' and '_'")
        if self.environment == "dev":
            return self
        names = list(self.secret_fields) + (["nats_password"] if self.nats_user else [])
        bad = [name for name in names if _weak(getattr(self, name))]
        if bad:
            raise ValueError(
                f"settings {', '.join(bad)} must be set to real secrets when environment={self.environment}"
            )
        return self

    @property
    def is_dev(self) -> bool:
        """True in the development environment."""
        return self.environment == "dev"


def forwarding_options(settings: ServiceSettings) -> dict[str, Any]:
    """uvicorn's proxy options: forwarded headers are read only from `forwarded_allow_ips`, else the peer counts.

    uvicorn takes the rightmost address of `X-Forwarded-For` that is not a trusted proxy, so a client cannot
    choose its address by sending the header itself: the gateway appends the peer it saw.
    """
    trusted = [h.strip() for h in settings.forwarded_allow_ips.split(",") if h.strip()]
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or None}


class AdminSettings(ServiceSettings):
    """Base of a service whose settings name platform administrators (`bootstrap_admins`).

    A password printed in the README must never administer a real deployment: outside dev the default is nobody,
    and naming a demo account or demo app refuses to start unless `allow_demo_admins` (never in prod).
    """

    #: account ids (the `sub` of access tokens; a client id for an app's own token) that administer everything this
    #: service holds; default: the demo administrator `demo-admin` in dev, nobody elsewhere
    bootstrap_admins: list[str] = [demo_user_id("demo-admin")]
    #: accept demo accounts and demo apps in `bootstrap_admins` outside dev (tests on the demo seed); never in prod
    allow_demo_admins: bool = False

    @model_validator(mode="after")
    def _no_demo_admins(self) -> AdminSettings:
        if self.environment == "dev":
            return self
        if "bootstrap_admins" not in self.model_fields_set:
            self.bootstrap_admins = []
        if self.allow_demo_admins:
            if self.environment == "prod":
                raise ValueError("allow_demo_admins is for development and tests, never environment=prod")
            return self
        demo = sorted(set(self.bootstrap_admins) & demo_ids())
        if demo:
            raise ValueError(
                f"bootstrap_admins names demo identities ({', '.join(demo)}); "
                f"name real administrators when environment={self.environment}"
            )
        return self
