"""Bearer authentication on a FastAPI app: RFC 6750 challenges, problem answers, scopes, settings."""

from __future__ import annotations

import re
import time
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI

from tongban_kit.bearer import BearerAuth, Principal, bearer_from_settings, verifier_from_settings
from tongban_kit.problems import install_problem_handlers
from tongban_kit.settings import ServiceSettings
from tongban_kit.testing.helpers import assert_problem
from tongban_kit.testing.tokens import TestIssuer
from tongban_kit.tokens import JwksSource, RevocationList, TokenVerifier

ISSUER = "http://127.0.0.1:8000"
ISSUER_KEYS = TestIssuer(ISSUER)
REVOCATIONS = RevocationList()
AUTH = BearerAuth(
    TokenVerifier(
        JwksSource.from_jwks(ISSUER_KEYS.jwks), issuer=ISSUER, audience="tongban-api", revocations=REVOCATIONS
    )
)

app = FastAPI()
install_problem_handlers(app)


@app.get("/me")
async def me(principal: Annotated[Principal, Depends(AUTH.require())]) -> dict[str, object]:
    return {
        "sub": principal.sub,
        "client_id": principal.client_id,
        "scopes": sorted(principal.scopes),
        "actor": principal.actor,
        "admin_units": list(principal.admin_units),
        "grant_id": principal.grant_id,
        "jti": principal.token.jti,
    }


@app.post("/units")
async def write_units(principal: Annotated[Principal, Depends(AUTH.require("org:write", "org:read"))]) -> str:
    return principal.sub


@pytest.fixture
async def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def challenge(r: httpx.Response) -> dict[str, str]:
    value = r.headers["www-authenticate"]
    assert value.startswith("Bearer "), value
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


async def test_valid_token_gives_the_principal(client: httpx.AsyncClient) -> None:
    token = ISSUER_KEYS.mint(
        sub="u1", client_id="app", scope="openid org:read", act={"sub": "gw"}, admin_units=["unit-1"], gid="g1"
    )
    r = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sub"] == "u1" and body["client_id"] == "app" and body["scopes"] == ["openid", "org:read"]
    assert body["actor"] == "gw" and body["admin_units"] == ["unit-1"] and body["grant_id"] == "g1"
    r = await client.get("/me", headers={"Authorization": f"bearer {token}"})  # the scheme is case-insensitive
    assert r.status_code == 200


async def test_no_credentials_get_a_challenge_without_error(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        r = await client.get("/me", headers=headers)
        assert_problem(r, 401, "authentication-required")
        assert challenge(r) == {"realm": "tongban"}


@pytest.mark.parametrize(
    ("make", "reason_words"),
    [
        (lambda: ISSUER_KEYS.expired(), "expired"),
        (lambda: ISSUER_KEYS.tampered(), "signature"),
        (lambda: ISSUER_KEYS.unsigned(), "algorithm"),
        (lambda: ISSUER_KEYS.hs256_with_public_key(), "algorithm"),
        (lambda: ISSUER_KEYS.mint(aud="elsewhere"), "not meant for"),
        (lambda: ISSUER_KEYS.unknown_kid(), "no key"),
        (lambda: "a.b", "compact JWS"),
        (lambda: "not a token", "bearer token"),
    ],
)
async def test_invalid_tokens_get_invalid_token(client: httpx.AsyncClient, make, reason_words: str) -> None:  # type: ignore[no-untyped-def]
    r = await client.get("/me", headers={"Authorization": f"Bearer {make()}"})
    body = assert_problem(r, 401, "invalid-token")
    attrs = challenge(r)
    assert attrs["realm"] == "tongban" and attrs["error"] == "invalid_token"
    assert reason_words in attrs["error_description"] and reason_words in body["detail"]
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in attrs["error_description"])


async def test_missing_scope_is_403_insufficient_scope(client: httpx.AsyncClient) -> None:
    token = ISSUER_KEYS.mint(scope="org:read")
    r = await client.post("/units", headers={"Authorization": f"Bearer {token}"})
    body = assert_problem(r, 403, "insufficient-scope")
    attrs = challenge(r)
    assert attrs["error"] == "insufficient_scope" and attrs["scope"] == "org:read org:write"
    assert body["required_scopes"] == ["org:read", "org:write"] and "org:write" in body["detail"]
    ok = ISSUER_KEYS.mint(scope="org:read org:write", sub="writer")
    r = await client.post("/units", headers={"Authorization": f"Bearer {ok}"})
    assert r.status_code == 200 and r.json() == "writer"


async def test_token_only_in_the_authorization_header(client: httpx.AsyncClient) -> None:
    token = ISSUER_KEYS.mint()
    r = await client.get("/me", params={"access_token": token})
    assert_problem(r, 400, "invalid-request")
    assert challenge(r)["error"] == "invalid_request"
    r = await client.get("/me", params={"access_token": token}, headers={"Authorization": f"Bearer {token}"})
    assert_problem(r, 400, "invalid-request")
    r = await client.get("/me", headers=[("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")])
    assert_problem(r, 400, "invalid-request")


async def test_revoked_token_is_refused_even_after_use(client: httpx.AsyncClient) -> None:
    token = ISSUER_KEYS.mint(gid="g-revoke")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/me", headers=headers)).status_code == 200
    REVOCATIONS.add(grant_id="g-revoke", expires_at=time.time() + 600)
    r = await client.get("/me", headers=headers)
    assert_problem(r, 401, "invalid-token")
    assert "revoked" in challenge(r)["error_description"]


def test_openapi_documents_the_bearer_scheme() -> None:
    schema = app.openapi()
    schemes = schema["components"]["securitySchemes"]
    assert any(s == {"type": "http", "scheme": "bearer", "description": s.get("description")} for s in schemes.values())
    assert schema["paths"]["/units"]["post"]["security"]


def test_verifier_from_settings() -> None:
    assert verifier_from_settings(ServiceSettings()) is None
    assert bearer_from_settings(ServiceSettings()) is None
    settings = ServiceSettings(oidc_issuer="https://id.example.gov.cn", oidc_audience="org-api")
    verifier = verifier_from_settings(settings)
    assert verifier is not None and verifier.issuer == "https://id.example.gov.cn" and verifier.audience == "org-api"
    assert verifier.source.url == "https://id.example.gov.cn/oauth2/jwks" and verifier.revocations is not None
    explicit = ServiceSettings(oidc_issuer="https://id.example.gov.cn/", oidc_jwks_url="http://auth:8103/oauth2/jwks")
    ev = verifier_from_settings(explicit)
    assert ev is not None and ev.source.url == "http://auth:8103/oauth2/jwks"
    bearer = bearer_from_settings(settings)
    assert bearer is not None and bearer.verifier.audience == "org-api"
