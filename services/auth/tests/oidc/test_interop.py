"""Two independent OAuth/OIDC client libraries against the provider, end to end over real HTTP:
discovery → authorize (logging in through the HTML form) → token → userinfo → refresh → revoke.

- Authlib's httpx client (`AsyncOAuth2Client`) as the public SPA client `demo-spa` with PKCE;
- requests-oauthlib (on oauthlib, no code shared with Authlib) as the confidential `demo-app` with
  `client_secret_basic` and PKCE.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet
from requests_oauthlib import OAuth2Session

from tongban_auth.seed import DEMO_APP_SECRET, DEMO_REDIRECT_URI
from tongban_kit.demo import DEMO_PASSWORD, demo_user_id
from tongban_kit.testing.browser import Browser, Page

from .conftest import Stack


async def sign_in(stack: Stack, authorize_url: str, username: str) -> str:
    """Follow the authorization URL in a fresh browser: log in, approve, return the callback URL."""
    async with httpx.AsyncClient() as http:
        b = Browser(http, DEMO_REDIRECT_URI)
        page = await b.open(authorize_url)
        assert isinstance(page, Page), page
        page = await b.submit(page, "/oauth2/login", {"login": username, "password": DEMO_PASSWORD})
        if isinstance(page, Page):
            assert page.status == 200, page.text[:500]
            page = await b.submit(page, "/oauth2/consent", button=("decision", "approve"))
        assert isinstance(page, str), page.text[:500] if isinstance(page, Page) else page
        return page


async def metadata(stack: Stack) -> dict[str, Any]:
    async with httpx.AsyncClient() as c:
        doc: dict[str, Any] = (await c.get(f"{stack.issuer}/.well-known/openid-configuration")).json()
    return doc


def verify_id_token(token: str, jwks: dict[str, Any], *, issuer: str, client_id: str, nonce: str) -> dict[str, Any]:
    claims = CodeIDToken(jwt.decode(token, KeySet.import_key_set(jwks)).claims, {}, {"nonce": {"value": nonce}})
    claims.validate()  # Authlib's OIDC Core ID token rules (exp, iat, nonce ...)
    assert claims["iss"] == issuer and claims["aud"] == client_id
    return dict(claims)


async def test_authlib_public_client_with_pkce(stack: Stack) -> None:
    meta = await metadata(stack)
    assert meta["issuer"] == stack.issuer
    assert "S256" in meta["code_challenge_methods_supported"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    client = AsyncOAuth2Client(
        client_id="demo-spa",
        redirect_uri=DEMO_REDIRECT_URI,
        scope="openid profile email offline_access",
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )
    verifier = generate_token(48)
    nonce = generate_token(16)
    url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    callback = await sign_in(stack, url, "demo-citizen")
    token = await client.fetch_token(
        meta["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state
    )
    assert token["token_type"].lower() == "bearer" and token["refresh_token"]
    async with httpx.AsyncClient() as c:
        jwks = (await c.get(meta["jwks_uri"])).json()
    id_claims = verify_id_token(token["id_token"], jwks, issuer=stack.issuer, client_id="demo-spa", nonce=nonce)
    assert id_claims["sub"] == demo_user_id("demo-citizen")

    info = (await client.get(meta["userinfo_endpoint"])).json()
    assert info["sub"] == id_claims["sub"] and info["name"]
    assert "email" in info

    refreshed = await client.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]
    assert refreshed["refresh_token"] != token["refresh_token"]

    # the rotated refresh token is dead: presenting it again revokes the grant (reuse detection)
    async with httpx.AsyncClient() as c:
        reuse = await c.post(
            meta["token_endpoint"],
            data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": "demo-spa"},
        )
        assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
        after = await c.post(
            meta["token_endpoint"],
            data={"grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"], "client_id": "demo-spa"},
        )
        assert after.status_code == 400, "reuse must revoke the whole grant"
    await client.aclose()


async def test_requests_oauthlib_confidential_client(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the test stack listens on plain-http loopback
    meta = await metadata(stack)
    nonce = secrets.token_urlsafe(16)
    session = OAuth2Session(
        "demo-app", redirect_uri=DEMO_REDIRECT_URI, scope=["openid", "profile", "offline_access"], pkce="S256"
    )
    url, _state = session.authorization_url(meta["authorization_endpoint"], nonce=nonce)
    callback = await sign_in(stack, url, "demo-staff")

    def fetch() -> dict[str, Any]:
        return dict(
            session.fetch_token(
                meta["token_endpoint"],
                authorization_response=callback,
                client_secret=DEMO_APP_SECRET,
                include_client_id=False,  # HTTP Basic (client_secret_basic)
            )
        )

    token = await asyncio.to_thread(fetch)
    async with httpx.AsyncClient() as c:
        jwks = (await c.get(meta["jwks_uri"])).json()
    claims = verify_id_token(token["id_token"], jwks, issuer=stack.issuer, client_id="demo-app", nonce=nonce)
    assert claims["sub"] == demo_user_id("demo-staff")

    info = await asyncio.to_thread(lambda: session.get(meta["userinfo_endpoint"]).json())
    assert info["sub"] == claims["sub"]

    def refresh() -> dict[str, Any]:
        return dict(session.refresh_token(meta["token_endpoint"], auth=("demo-app", DEMO_APP_SECRET)))

    refreshed = await asyncio.to_thread(refresh)
    assert refreshed["access_token"] != token["access_token"]

    async with httpx.AsyncClient() as c:
        revoked = await c.post(
            meta["revocation_endpoint"],
            data={"token": refreshed["refresh_token"], "token_type_hint": "refresh_token"},
            auth=("demo-app", DEMO_APP_SECRET),
        )
        assert revoked.status_code == 200
        gone = await c.post(
            meta["introspection_endpoint"],
            data={"token": refreshed["access_token"]},
            auth=("demo-app", DEMO_APP_SECRET),
        )
        assert gone.json() == {"active": False}, "revoking the refresh token revokes the grant's access tokens"


@pytest.mark.parametrize("bad", ["https://evil.example/callback", DEMO_REDIRECT_URI + "/x"])
async def test_a_foreign_redirect_uri_is_never_followed(stack: Stack, bad: str) -> None:
    meta = await metadata(stack)
    async with httpx.AsyncClient() as c:
        r = await c.get(
            meta["authorization_endpoint"],
            params={
                "response_type": "code",
                "client_id": "demo-spa",
                "redirect_uri": bad,
                "scope": "openid",
                "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                "code_challenge_method": "S256",
            },
        )
    assert r.status_code == 400 and "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")
