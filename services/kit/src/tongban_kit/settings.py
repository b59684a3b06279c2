"""Settings base shared by every service: env prefix per service, no default secrets outside dev."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
