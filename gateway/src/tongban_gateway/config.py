"""Settings of the gateway, from `TONGBAN_GATEWAY_*` environment variables."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from tongban_kit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Gateway settings: where the services live and how long to wait for them."""

    model_config = SettingsConfigDict(env_prefix="TONGBAN_GATEWAY_", extra="ignore")
    service_name: ClassVar[str] = "gateway"

    host: str = "127.0.0.1"
    port: int = 8000
    #: service name → base URLs of its instances (round-robin); env as JSON
    upstreams: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "org": ["http://127.0.0.1:8101"],
            "user": ["http://127.0.0.1:8102"],
            "auth": ["http://127.0.0.1:8103"],
        }
    )
    #: optional YAML or JSON route table; the built-in table is used when unset
    routes_file: str | None = None
    #: default wait for an upstream's response (per route override: `timeout`)
    upstream_timeout_seconds: float = 30
    #: wait for a TCP connection to an upstream instance
    connect_timeout_seconds: float = 3
    #: largest request body accepted
    max_body_bytes: int = 10 * 1024 * 1024
    #: idle keep-alive connections kept per upstream instance
    pool_per_host: int = 100

    @field_validator("upstreams")
    @classmethod
    def _check_upstreams(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, urls in value.items():
            if not urls:
                raise ValueError(f"upstream {name!r} has no base URLs")
            for url in urls:
                if not url.startswith(("http://", "https://")):
                    raise ValueError(f"upstream {name!r}: base URLs must start with http:// or https://")
            out[name] = [u.rstrip("/") for u in urls]
        return out
