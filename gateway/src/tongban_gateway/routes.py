"""The route table: which path prefix goes to which upstream service; data, not code per route."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, field_validator, model_validator

#: the HTTP methods a `scopes` map may name, besides the `*` default
_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})


def _read_write(read: str, write: str) -> dict[str, list[str]]:
    """Read scopes for the methods that only read, write scopes for every other."""
    return {"GET": [read], "HEAD": [read], "OPTIONS": [read], "*": [write]}


#: the built-in table, used when no routes file is configured
DEFAULT_ROUTES: list[dict[str, Any]] = [
    {"prefix": "/api/v1/orgs", "upstream": "org", "scopes": _read_write("org:read", "org:write")},
    {"prefix": "/api/v1/users", "upstream": "user", "scopes": _read_write("user:read", "user:write")},
    {"prefix": "/scim/v2", "upstream": "user", "scopes": _read_write("user:read", "user:write")},
    {"prefix": "/.well-known", "upstream": "auth", "public": True},
    {"prefix": "/oauth2", "upstream": "auth", "public": True},
    {"prefix": "/api/v1/auth", "upstream": "auth", "scopes": {"*": ["admin"]}},
    {"prefix": "/api/v1/auth/clients", "upstream": "auth", "scopes": {"*": ["admin"]}},
    # apps send (message:send), people read their inbox (message:read), administrators write templates
    {"prefix": "/api/v1/messages", "upstream": "message", "scopes": {"*": ["message:send"]}},
    {"prefix": "/api/v1/messages/inbox", "upstream": "message", "scopes": {"*": ["message:read"]}},
    {"prefix": "/api/v1/messages/templates", "upstream": "message", "scopes": _read_write("message:send", "admin")},
]


class RateLimit(BaseModel):
    """A token bucket: `burst` requests at once, refilled at `per_second`; one bucket per client (or IP)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_second: float = Field(gt=0, description="tokens added per second")
    burst: int = Field(gt=0, description="bucket size: the most requests accepted at once")


class RouteEntry(BaseModel):
    """One row: requests under `prefix` go to the `upstream` service, path unchanged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field(description="path prefix matched at segment boundaries, e.g. /api/v1/orgs")
    upstream: str = Field(min_length=1, description="service name, a key of the gateway's upstreams")
    timeout: float | None = Field(None, gt=0, description="seconds to wait for the upstream")
    public: bool = Field(False, description="reachable without an access token")
    scopes: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="method (or `*` for any other) → scopes the access token must hold; HEAD falls back to GET",
    )
    rate_limit: RateLimit | None = Field(None, description="this route's bucket; the gateway default when unset")
    max_body_bytes: int | None = Field(None, gt=0, description="largest request body; the gateway default when unset")

    _required: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)

    @field_validator("scopes")
    @classmethod
    def _check_scopes(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for method, scopes in value.items():
            name = method.upper()
            if name != "*" and name not in _METHODS:
                raise ValueError(f"scopes: {method!r} is not an HTTP method or '*'")
            if any(not s or any(c in s for c in ' "\\') for s in scopes):
                raise ValueError("scopes: a scope is a non-empty token without spaces, quotes or backslashes")
            out[name] = tuple(scopes)
        return out

    @model_validator(mode="after")
    def _index(self) -> RouteEntry:
        if self.public and self.scopes:
            raise ValueError(f"route {self.prefix}: a public route cannot require scopes")
        default = frozenset(self.scopes.get("*", ()))
        required = {m: frozenset(self.scopes.get(m, default)) for m in _METHODS}
        if "HEAD" not in self.scopes and "GET" in self.scopes:
            required["HEAD"] = required["GET"]
        self._required = required
        return self

    def required_scopes(self, method: str) -> frozenset[str]:
        """The scopes a request with `method` needs (empty: any valid token; public routes need none)."""
        found = self._required.get(method)
        return found if found is not None else frozenset(self.scopes.get("*", ()))

    @field_validator("prefix")
    @classmethod
    def _normalise_prefix(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in "?#") or "//" in value:
            raise ValueError("prefix must be an absolute path without query, fragment or empty segments")
        if _has_dot_segment(value):
            raise ValueError("prefix must not contain '.' or '..' segments")
        return value.rstrip("/") or "/"

    def matches(self, path: str) -> bool:
        """True when `path` is the prefix or lies below it (segment boundary) and has no dot segments."""
        p = self.prefix
        if p != "/" and not (path == p or (path.startswith(p) and path[len(p)] == "/")):
            return False
        return "/." not in path or not _has_dot_segment(path)


def _has_dot_segment(path: str) -> bool:
    return any(seg in (".", "..") for seg in path.split("/"))


class RouteTable:
    """Routes ordered longest prefix first; `match` returns the most specific one."""

    def __init__(self, entries: Iterable[RouteEntry]) -> None:
        ordered = sorted(entries, key=lambda e: len(e.prefix), reverse=True)
        seen: set[str] = set()
        for e in ordered:
            if e.prefix in seen:
                raise ValueError(f"route prefix {e.prefix} is listed twice")
            seen.add(e.prefix)
        self.entries: tuple[RouteEntry, ...] = tuple(ordered)

    def match(self, path: str) -> RouteEntry | None:
        """The longest-prefix route for a (decoded) request path, or None."""
        for entry in self.entries:
            if entry.matches(path):
                return entry
        return None

    @property
    def upstreams(self) -> set[str]:
        """Names of the services the table routes to."""
        return {e.upstream for e in self.entries}

    def only(self, known: Iterable[str]) -> RouteTable:
        """The rows whose service has configured base URLs (the built-in table covers every service)."""
        names = set(known)
        return RouteTable([e for e in self.entries if e.upstream in names])

    def check_upstreams(self, known: Iterable[str]) -> None:
        """Refuse a table naming services that have no configured base URLs."""
        missing = self.upstreams - set(known)
        if missing:
            raise ValueError(f"routes name upstreams with no base URLs: {', '.join(sorted(missing))}")


_ENTRIES = TypeAdapter(list[RouteEntry])


def parse_routes(data: Any) -> RouteTable:
    """Build a table from parsed YAML/JSON: a list of rows, or a mapping with a `routes` list."""
    if isinstance(data, dict):
        data = data.get("routes")
    if not isinstance(data, list):
        raise ValueError("a route table is a list of {prefix, upstream, timeout?, public?, scopes?, ...} rows")
    return RouteTable(_ENTRIES.validate_python(data))


def load_routes(path: str | None = None) -> RouteTable:
    """The table from a YAML or JSON file (YAML parses both), else the built-in defaults."""
    if not path:
        return parse_routes(DEFAULT_ROUTES)
    return parse_routes(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
