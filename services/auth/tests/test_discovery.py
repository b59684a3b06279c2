"""Discovery: the provider metadata names only what the service serves."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tongban_auth.api.routes.discovery import ENDPOINTS, metadata, serves
from tongban_auth.config import Settings
from tongban_auth.schemas import SCOPES

EXPECTED_SCOPES = [
    *("openid", "profile", "email", "phone", "offline_access", "org:read", "org:write", "user:read", "user:write"),
    *("user:pii", "message:send", "message:read", "affairs:apply", "affairs:handle", "admin"),
]


async def test_openid_configuration(client: httpx.AsyncClient, auth_settings: Settings) -> None:
    r = await client.get("/.well-known/openid-configuration")
    assert r.status_code == 200 and "max-age" in r.headers["cache-control"]
    doc = r.json()
    assert doc["issuer"] == auth_settings.issuer == "http://127.0.0.1:8000"
    assert doc["jwks_uri"] == "http://127.0.0.1:8000/oauth2/jwks"
    assert doc["scopes_supported"] == EXPECTED_SCOPES == list(SCOPES)
    assert doc["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]
    assert (await client.get("/.well-known/oauth-authorization-server")).json() == doc


async def test_every_advertised_endpoint_exists(client: httpx.AsyncClient, auth_app: FastAPI) -> None:
    doc = (await client.get("/.well-known/openid-configuration")).json()
    advertised = {k: v for k, v in doc.items() if k.endswith(("_endpoint", "_uri"))}
    assert advertised, doc
    for name, url in advertised.items():
        assert url.startswith(doc["issuer"] + "/"), name
        path = url.removeprefix(doc["issuer"])
        assert serves(auth_app, path), f"{name} advertises {path}, which the service does not serve"
        assert (await client.get(path)).status_code != 404, name


async def test_endpoints_not_built_are_not_advertised(client: httpx.AsyncClient, auth_app: FastAPI) -> None:
    doc = (await client.get("/.well-known/openid-configuration")).json()
    assert not serves(auth_app, "/oauth2/nowhere") and serves(auth_app, "/api/v1/auth/clients")
    for name, (path, holds) in ENDPOINTS.items():
        if not serves(auth_app, path):
            assert name not in doc
            assert not set(holds) & set(doc), f"{name} is missing, yet {set(holds) & set(doc)} is advertised"
    if "token_endpoint" not in doc:
        assert "grant_types_supported" not in doc


def test_metadata_follows_the_routes(auth_settings: Settings) -> None:
    app = FastAPI()

    @app.get("/oauth2/authorize")
    async def authorize() -> None:
        return None

    doc = metadata(app, auth_settings)
    assert doc["authorization_endpoint"] == auth_settings.issuer + "/oauth2/authorize"
    assert doc["response_types_supported"] == ["code"] and doc["code_challenge_methods_supported"] == ["S256"]
    assert "token_endpoint" not in doc and "jwks_uri" not in doc


def test_issuer_defaults_to_the_public_url_without_trailing_slash() -> None:
    assert Settings(issuer="https://id.example.gov.cn/").issuer == "https://id.example.gov.cn"
    assert Settings(public_url="http://127.0.0.1:9000/").issuer == "http://127.0.0.1:9000"
