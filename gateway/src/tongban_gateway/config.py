"""Settings of the gateway, from `TONGBAN_GATEWAY_*` environment variables."""

from __future__ import annotations

import ipaddress
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
    #: a second port for ops only (metrics, readiness, the dependency view), not published. When set, those are
    #: answered only there (they name routes, upstreams and refusal counts); unset: /readyz on `port`, and the
    #: others there too outside production only
    management_port: int | None = Field(None, ge=1, le=65535)
    #: service name → base URLs of its instances (round-robin); env as JSON
    upstreams: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "org": ["http://127.0.0.1:8101"],
            "user": ["http://127.0.0.1:8102"],
            "auth": ["http://127.0.0.1:8103"],
            "message": ["http://127.0.0.1:8104"],
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

    # client connections, after nginx's defaults: a slow or idle client is cut off, a huge head refused
    #: seconds a client may take to send a request's head, counted from its first byte (or from connecting)
    header_timeout_seconds: float = Field(60.0, gt=0)
    #: seconds a client may pause between two pieces of a request body
    body_timeout_seconds: float = Field(60.0, gt=0)
    #: seconds an idle keep-alive connection stays open between requests
    keepalive_timeout_seconds: float = Field(75.0, ge=1)
    #: seconds a client may leave the answer unread (the send buffer full) before the connection is cut
    send_timeout_seconds: float = Field(60.0, gt=0)
    #: longest request line (method, target, version): 414 beyond
    max_request_line_bytes: int = Field(8192, ge=256)
    #: longest header line (name and value): 431 beyond
    max_header_line_bytes: int = Field(8192, ge=256)
    #: largest request head (request line and every header): 431 beyond
    max_header_bytes: int = Field(32768, ge=1024)
    #: open client connections per gateway process; more are answered 503 and closed. The management port's
    #: connections are neither counted nor refused
    max_connections: int = Field(10_000, ge=1)
    #: open connections per client address (the TCP peer; IPv6 by /64), after nginx's `limit_conn`: more are
    #: answered 503, so one host cannot hold the whole cap. Trusted proxies are exempt (they carry many clients)
    max_connections_per_client: int = Field(256, ge=1)
    #: seconds a connection made while over 90 % of `max_connections` are open may take for a head: near the
    #: cap, idle and slow clients give their place up first
    busy_header_timeout_seconds: float = Field(5.0, gt=0)
    #: addresses or networks (CIDR) of proxies in front of the gateway whose X-Forwarded-For is believed;
    #: empty: the client is the connection's peer and any X-Forwarded-For it sends is ignored
    trusted_proxies: list[str] = Field(default_factory=list)

    # access tokens: issuer defaults to `public_url`, keys to the auth upstream's /oauth2/jwks
    #: seconds a revocation replay may take at start-up before the gateway serves anyway
    revocation_replay_wait_seconds: float = 5.0

    # circuit breaker per upstream instance
    #: consecutive failures (no connection, timeout) that open an instance's breaker
    breaker_failures: int = Field(5, ge=1)
    #: seconds an open breaker refuses requests before letting one probe through (half-open)
    breaker_open_seconds: float = Field(5.0, gt=0)

    # rate limits, shared by every gateway replica through Redis
    #: False: no rate limits at all
    rate_limits: bool = True
    #: Redis holding the buckets; empty: buckets in this process (right for a single gateway only)
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: key prefix in Redis (isolates deployments or test runs sharing one Redis)
    rate_limit_namespace: str = "tongban:gateway"
    #: default bucket per client id (or per IP without a token): refill per second and size
    rate_limit_per_second: float = Field(50.0, gt=0)
    rate_limit_burst: int = Field(100, gt=0)
    #: when Redis is unreachable: serve without limits (True, logged) or answer 503 (False)
    rate_limit_fail_open: bool = True
    #: seconds to wait for Redis before treating it as down
    rate_limit_timeout_seconds: float = Field(0.25, gt=0)

    # browsers
    #: origins CORS allows besides the registered apps' (which come from the client registry over NATS)
    cors_origins: list[str] = Field(default_factory=list)
    #: seconds between reloads of the registered apps' origins (client changes reload them at once)
    cors_refresh_seconds: float = Field(300.0, gt=0)
    #: Strict-Transport-Security on every answer when `public_url` is https
    hsts_seconds: int = 31_536_000

    @property
    def token_issuer(self) -> str:
        """The `iss` access tokens must carry: `oidc_issuer`, else the gateway's public URL."""
        return (self.oidc_issuer or self.public_url).rstrip("/")

    @property
    def jwks_url(self) -> str:
        """Where the signing keys are: `oidc_jwks_url`, else the auth upstream's, else below the issuer."""
        if self.oidc_jwks_url:
            return self.oidc_jwks_url
        if "auth" in self.upstreams:
            return self.upstreams["auth"][0] + "/oauth2/jwks"
        return self.token_issuer + "/oauth2/jwks"

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

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://")):
            raise ValueError("redis_url must start with redis:// or rediss:// (or be empty: buckets in the process)")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"trusted proxy {entry!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            scheme, sep, rest = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
                raise ValueError(f"CORS origin {origin!r} must be scheme://host[:port] without a path")
        return [o.lower() for o in value]
