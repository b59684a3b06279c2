"""Unit tests of the route table: segment-boundary longest-prefix matching and loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from tongban_gateway.config import Settings
from tongban_gateway.routes import RouteEntry, RouteTable, load_routes, parse_routes


def table(*prefixes: str) -> RouteTable:
    return RouteTable(RouteEntry(prefix=p, upstream=f"svc{i}") for i, p in enumerate(prefixes))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/orgs", "/api/v1/orgs"),
        ("/api/v1/orgs/", "/api/v1/orgs"),
        ("/api/v1/orgs/tree/42", "/api/v1/orgs"),
        ("/api/v1/orgs/units", "/api/v1/orgs/units"),
        ("/api/v1/orgs/units/42/children", "/api/v1/orgs/units"),
        ("/api/v1/orgs/unitsx", "/api/v1/orgs"),
        ("/api/v1/orgsx", None),
        ("/api/v1/org", None),
        ("/api/v1", None),
        ("/", None),
        ("/api/v1/orgs/../admin", None),
        ("/api/v1/orgs/./units", None),
        ("/api/v1/orgs/a..b", "/api/v1/orgs"),
    ],
)
def test_longest_prefix_at_segment_boundaries(path: str, expected: str | None) -> None:
    t = table("/api/v1/orgs", "/api/v1/orgs/units", "/api/v1/users")
    hit = t.match(path)
    assert (hit.prefix if hit else None) == expected


def test_order_of_rows_does_not_matter() -> None:
    assert table("/a", "/a/b/c", "/a/b").match("/a/b/c/d").prefix == "/a/b/c"  # type: ignore[union-attr]
    assert table("/a/b/c", "/a/b", "/a").match("/a/b/x").prefix == "/a/b"  # type: ignore[union-attr]


def test_root_prefix_is_a_catch_all() -> None:
    t = table("/", "/api")
    assert t.match("/anything/at/all").prefix == "/"  # type: ignore[union-attr]
    assert t.match("/api/x").prefix == "/api"  # type: ignore[union-attr]


def test_trailing_slash_in_prefix_is_normalised() -> None:
    assert RouteEntry(prefix="/api/v1/orgs/", upstream="org").prefix == "/api/v1/orgs"


@pytest.mark.parametrize("prefix", ["api/v1", "/api/../x", "/api?x=1", "/api//v1", "/a#b"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValidationError):
        RouteEntry(prefix=prefix, upstream="org")


def test_duplicate_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        table("/api", "/api/")


def test_defaults_route_orgs_to_org() -> None:
    t = load_routes(None)
    entry = t.match("/api/v1/orgs/units")
    assert entry is not None and entry.upstream == "org" and entry.timeout is None
    t.check_upstreams(Settings().upstreams)


def test_load_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "- prefix: /api/v1/orgs\n  upstream: org\n  timeout: 5\n- {prefix: /api/v1/docs, upstream: doc, public: true}\n"
    )
    t = load_routes(str(tmp_path / "r.yaml"))
    assert t.match("/api/v1/orgs/x").timeout == 5  # type: ignore[union-attr]
    assert t.match("/api/v1/docs").public is True  # type: ignore[union-attr]
    (tmp_path / "r.json").write_text(json.dumps({"routes": [{"prefix": "/x", "upstream": "y"}]}))
    assert load_routes(str(tmp_path / "r.json")).upstreams == {"y"}


def test_unknown_keys_and_upstreams_are_refused() -> None:
    with pytest.raises(ValidationError):
        parse_routes([{"prefix": "/x", "upstream": "y", "timout": 3}])
    with pytest.raises(ValueError, match="no base URLs: ghost"):
        parse_routes([{"prefix": "/x", "upstream": "ghost"}]).check_upstreams(["org"])
    with pytest.raises(ValueError, match="list"):
        parse_routes({"prefix": "/x"})


def test_upstreams_from_env_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGBAN_GATEWAY_UPSTREAMS", '{"org": ["http://org:8101/", "http://org2:8101"]}')
    s = Settings()
    assert s.upstreams == {"org": ["http://org:8101", "http://org2:8101"]}
    assert (s.port, s.host, s.max_body_bytes) == (8000, "127.0.0.1", 10 * 1024 * 1024)
    monkeypatch.setenv("TONGBAN_GATEWAY_UPSTREAMS", '{"org": ["org:8101"]}')
    with pytest.raises(ValidationError):
        Settings()


def test_default_scopes_per_prefix_and_method() -> None:
    t = load_routes(None)

    def needs(method: str, path: str) -> set[str]:
        entry = t.match(path)
        assert entry is not None and not entry.public
        return set(entry.required_scopes(method))

    assert needs("GET", "/api/v1/orgs/units") == {"org:read"} == needs("HEAD", "/api/v1/orgs/units")
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert needs(method, "/api/v1/orgs/units/1") == {"org:write"}
        assert needs(method, "/api/v1/users/1") == {"user:write"} == needs(method, "/scim/v2/Users/1")
    assert needs("GET", "/api/v1/users/me") == {"user:read"} == needs("GET", "/scim/v2/Users")
    assert needs("GET", "/api/v1/auth/clients") == {"admin"} == needs("POST", "/api/v1/auth/clients/x/disable")
    assert needs("POST", "/api/v1/auth/registration-tokens") == {"admin"}
    for path in ("/oauth2/token", "/oauth2/login", "/.well-known/openid-configuration", "/oauth2/jwks"):
        entry = t.match(path)
        assert entry is not None and entry.public and entry.required_scopes("POST") == frozenset()


def test_scopes_by_method_with_default_and_head_as_get() -> None:
    e = RouteEntry(prefix="/x", upstream="y", scopes={"get": ["a:read"], "DELETE": ["a:admin"], "*": ["a:write"]})
    assert e.required_scopes("GET") == {"a:read"} == e.required_scopes("HEAD")
    assert e.required_scopes("DELETE") == {"a:admin"} and e.required_scopes("POST") == {"a:write"}
    assert e.required_scopes("PROPFIND") == {"a:write"}
    only_get = RouteEntry(prefix="/x", upstream="y", scopes={"GET": ["a:read"]})
    assert only_get.required_scopes("POST") == frozenset()  # any valid token
    assert RouteEntry(prefix="/x", upstream="y").required_scopes("GET") == frozenset()


@pytest.mark.parametrize(
    "row",
    [
        {"prefix": "/x", "upstream": "y", "public": True, "scopes": {"*": ["a"]}},
        {"prefix": "/x", "upstream": "y", "scopes": {"FETCH": ["a"]}},
        {"prefix": "/x", "upstream": "y", "scopes": {"GET": ["a b"]}},
        {"prefix": "/x", "upstream": "y", "scopes": {"GET": ['a"']}},
        {"prefix": "/x", "upstream": "y", "rate_limit": {"per_second": 0, "burst": 1}},
        {"prefix": "/x", "upstream": "y", "rate_limit": {"per_second": 1}},
        {"prefix": "/x", "upstream": "y", "max_body_bytes": 0},
    ],
)
def test_bad_policies_are_refused(row: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        parse_routes([row])


def test_policies_load_from_yaml(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "- prefix: /api/v1/docs\n  upstream: doc\n  max_body_bytes: 1024\n"
        "  scopes: {GET: [doc:read], '*': [doc:write]}\n  rate_limit: {per_second: 5, burst: 10}\n"
    )
    entry = load_routes(str(tmp_path / "r.yaml")).match("/api/v1/docs/1")
    assert entry is not None and entry.max_body_bytes == 1024
    assert entry.required_scopes("PUT") == {"doc:write"} and entry.rate_limit is not None
    assert (entry.rate_limit.per_second, entry.rate_limit.burst) == (5, 10)


def test_token_settings_default_to_the_public_url_and_the_auth_upstream() -> None:
    s = Settings(public_url="https://gov.example/", upstreams={"auth": ["http://auth:8103"], "org": ["http://o"]})
    assert s.token_issuer == "https://gov.example" and s.jwks_url == "http://auth:8103/oauth2/jwks"
    explicit = Settings(
        oidc_issuer="https://id.example", oidc_jwks_url="http://keys/jwks", upstreams={"o": ["http://o"]}
    )
    assert (explicit.token_issuer, explicit.jwks_url) == ("https://id.example", "http://keys/jwks")
    with pytest.raises(ValidationError):
        Settings(cors_origins=["https://app.example/path"])
