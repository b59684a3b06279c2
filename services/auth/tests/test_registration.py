"""Dynamic client registration (RFC 7591) behind administrator-issued initial access tokens."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tongban_kit.demo import demo_user_id

from .conftest import mint_access_token
from .helpers import ADMIN, CLIENTS, assert_problem

TOKENS = "/api/v1/auth/registration-tokens"
REGISTER = "/oauth2/register"
META = {
    "client_name": "社保查询 (dynamic)",
    "redirect_uris": ["https://app.example.gov.cn/callback"],
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "token_endpoint_auth_method": "client_secret_basic",
    "scope": "openid profile",
    "logo_uri": "https://app.example.gov.cn/logo.png",  # not understood: ignored (RFC 7591 §2)
}


async def initial_token(client: httpx.AsyncClient, **body: object) -> dict[str, object]:
    r = await client.post(TOKENS, json={"scopes": ["openid", "profile", "user:read"], **body}, headers=ADMIN)
    assert r.status_code == 201, r.text
    made: dict[str, object] = r.json()
    return made


async def test_register_with_an_initial_access_token(client: httpx.AsyncClient) -> None:
    made = await initial_token(client, owner_unit_id="unit-9", max_uses=2)
    assert str(made["token"]).startswith("tbiat_")
    r = await client.post(REGISTER, json=META, headers={"Authorization": f"Bearer {made['token']}"})
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    info = r.json()
    assert info["client_secret"] and info["client_secret_expires_at"] == 0
    assert info["redirect_uris"] == META["redirect_uris"] and info["scope"] == "openid profile"
    assert info["token_endpoint_auth_method"] == "client_secret_basic" and "logo_uri" not in info

    # an ordinary registry entry, owned by the unit the token named; the secret works at the token endpoint
    entry = (await client.get(f"{CLIENTS}/{info['client_id']}", headers=ADMIN)).json()
    assert entry["owner_unit_id"] == "unit-9" and entry["client_type"] == "confidential"
    r = await client.post("/oauth2/introspect", data={"token": "x"}, auth=(info["client_id"], info["client_secret"]))
    assert r.status_code == 200 and r.json() == {"active": False}


async def test_a_public_client_and_the_use_limit(client: httpx.AsyncClient) -> None:
    made = await initial_token(client, max_uses=1)
    auth = {"Authorization": f"Bearer {made['token']}"}
    spa = {"redirect_uris": ["https://spa.example/cb"], "token_endpoint_auth_method": "none", "scope": "openid"}
    r = await client.post(REGISTER, json=spa, headers=auth)
    assert r.status_code == 201 and "client_secret" not in r.json()
    r = await client.post(REGISTER, json=spa, headers=auth)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


async def test_refused_metadata_does_not_spend_the_token(client: httpx.AsyncClient) -> None:
    made = await initial_token(client, max_uses=1)
    auth = {"Authorization": f"Bearer {made['token']}"}
    cases = [
        ({**META, "scope": "openid admin"}, "invalid_client_metadata"),  # beyond what the token allows
        ({**META, "redirect_uris": ["http://app.example/cb"]}, "invalid_redirect_uri"),
        ({**META, "redirect_uris": ["https://app.example/cb#frag"]}, "invalid_redirect_uri"),
        ({**META, "redirect_uris": []}, "invalid_client_metadata"),
        ({**META, "response_types": ["token"]}, "invalid_client_metadata"),
        ({**META, "grant_types": ["implicit"]}, "invalid_client_metadata"),
        ({**META, "token_endpoint_auth_method": "tls_client_auth"}, "invalid_client_metadata"),
        ({**META, "redirect_uris": "https://app.example/cb"}, "invalid_client_metadata"),
        ({**META, "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),  # no keys
    ]
    for meta, error in cases:
        r = await client.post(REGISTER, json=meta, headers=auth)
        assert r.status_code == 400 and r.json()["error"] == error, (meta, r.text)
    r = await client.post(REGISTER, content=b"[1, 2", headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_client_metadata"
    assert (await client.post(REGISTER, json=META, headers=auth)).status_code == 201


async def test_tokens_are_required_and_withdrawable(client: httpx.AsyncClient, auth_app: FastAPI) -> None:
    r = await client.post(REGISTER, json=META)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = await client.post(REGISTER, json=META, headers={"Authorization": "Bearer tbiat_unknown"})
    assert r.status_code == 401
    made = await initial_token(client, max_uses=5)
    assert (await client.delete(f"{TOKENS}/{made['id']}", headers=ADMIN)).status_code == 204
    r = await client.post(REGISTER, json=META, headers={"Authorization": f"Bearer {made['token']}"})
    assert r.status_code == 401
    assert_problem(await client.delete(f"{TOKENS}/nope", headers=ADMIN), 404, "not-found")
    # only platform administrators make initial access tokens
    citizen = await mint_access_token(auth_app, demo_user_id("demo-citizen"), "admin")
    r = await client.post(TOKENS, json={}, headers={"Authorization": f"Bearer {citizen}"})
    assert_problem(r, 403, "forbidden")
    assert_problem(await client.post(TOKENS, json={"scopes": ["nonsense"]}, headers=ADMIN), 422)


WILDCARDS = [
    "https://*.example.gov.cn/callback",
    "https://app.example.gov.cn/*",
    "https://app.example.gov.cn/cb/*/done",
    "https://%2A.example.gov.cn/callback",
    "https://app.example.gov.cn/%2a",
    "https://*/callback",
]


async def test_wildcard_looking_redirect_uris_are_refused(client: httpx.AsyncClient) -> None:
    made = await initial_token(client, max_uses=1)
    auth = {"Authorization": f"Bearer {made['token']}"}
    for uri in WILDCARDS:
        for name in ("redirect_uris", "post_logout_redirect_uris"):
            r = await client.post(REGISTER, json={**META, name: [uri]}, headers=auth)
            assert r.status_code == 400 and r.json()["error"] == "invalid_redirect_uri", (name, uri, r.text)
            assert "wildcard" in r.json()["error_description"]
        # the registry API refuses them too
        r = await client.post(
            CLIENTS,
            json={"name": "通配", "redirect_uris": [uri], "grant_types": ["authorization_code"], "scopes": ["openid"]},
            headers=ADMIN,
        )
        body = assert_problem(r, 422, "validation-error")
        assert body["errors"][0]["location"].startswith("body.redirect_uris"), body
        assert "wildcard" in body["errors"][0]["message"], body
    # a literal * in the query is data, not a pattern
    ok = {**META, "redirect_uris": ["https://app.example.gov.cn/cb?fields=*"]}
    assert (await client.post(REGISTER, json=ok, headers=auth)).status_code == 201
