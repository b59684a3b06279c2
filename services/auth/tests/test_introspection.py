"""Token introspection (RFC 7662): active tokens and their fields; everything else is simply inactive."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tongban_auth.config import Settings
from tongban_auth.schemas import GrantType
from tongban_auth.tokens import Signer
from tongban_kit.db import Database

from .oauth_support import INTROSPECT, REVOKE, TOKEN, App, make_grant, oauth_error, pkce, post, redeem, register


@pytest.fixture(scope="module")
async def web(auth_db: Database) -> App:
    """The app that holds the tokens."""
    return await register(auth_db)


@pytest.fixture(scope="module")
async def api(auth_db: Database) -> App:
    """A resource server that introspects."""
    return await register(auth_db, grant_types=[GrantType.client_credentials], scopes=["user:read"])


@pytest.fixture(scope="module")
async def tokens(client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App) -> dict[str, Any]:
    """A code exchanged for tokens."""
    verifier, challenge = pkce()
    grant, code = await make_grant(auth_db, auth_settings, web, challenge=challenge, session_id="sid-i")
    return {**(await redeem(client, web, code, verifier)).json(), "grant": grant}


async def test_active_access_token(
    client: httpx.AsyncClient, auth_settings: Settings, web: App, api: App, tokens: dict[str, Any]
) -> None:
    r = await post(client, INTROSPECT, api, {"token": tokens["access_token"]})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["active"] is True and body["token_type"] == "Bearer"
    assert body["client_id"] == web.client_id and body["sub"] == tokens["grant"].user_id
    assert body["aud"] == auth_settings.api_audience and body["iss"] == auth_settings.issuer
    assert body["scope"] == "openid offline_access user:read" and body["sid"] == "sid-i"
    assert body["exp"] > time.time() and body["iat"] <= time.time() and body["jti"]
    hinted = await post(client, INTROSPECT, api, {"token": tokens["access_token"], "token_type_hint": "refresh_token"})
    assert hinted.json() == body


async def test_refresh_token_only_for_its_client(
    client: httpx.AsyncClient, web: App, api: App, tokens: dict[str, Any]
) -> None:
    body = (await post(client, INTROSPECT, web, {"token": tokens["refresh_token"]})).json()
    assert body["active"] is True and body["token_type"] == "refresh_token"
    assert body["client_id"] == web.client_id and body["sub"] == tokens["grant"].user_id
    assert (await post(client, INTROSPECT, api, {"token": tokens["refresh_token"]})).json() == {"active": False}


async def test_inactive_answers(client: httpx.AsyncClient, auth_settings: Settings, signer: Signer, api: App) -> None:
    now = int(time.time())
    base = {"iss": auth_settings.issuer, "aud": auth_settings.api_audience, "sub": "u", "client_id": "c", "jti": "j"}
    expired = await signer.sign({**base, "iat": now - 700, "exp": now - 100}, typ="at+jwt")
    foreign_aud = await signer.sign({**base, "aud": "other", "iat": now, "exp": now + 60}, typ="at+jwt")
    id_token_typ = await signer.sign({**base, "iat": now, "exp": now + 60}, typ="JWT")
    for token in ("unknown", "a.b.c", expired, foreign_aud, id_token_typ, "x" * 5000):
        r = await post(client, INTROSPECT, api, {"token": token})
        assert r.status_code == 200 and r.json() == {"active": False}, token[:20]


async def test_revoked_tokens_are_inactive(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App, api: App
) -> None:
    verifier, challenge = pkce()
    _, code = await make_grant(auth_db, auth_settings, web, challenge=challenge)
    body = (await redeem(client, web, code, verifier)).json()
    assert (await post(client, INTROSPECT, api, {"token": body["access_token"]})).json()["active"] is True
    assert (await post(client, REVOKE, web, {"token": body["access_token"]})).status_code == 200
    assert (await post(client, INTROSPECT, api, {"token": body["access_token"]})).json() == {"active": False}
    # revoking the refresh token revokes the grant: a newer access token of it dies as well
    fresh = (
        await post(client, TOKEN, web, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    ).json()
    assert (await post(client, INTROSPECT, api, {"token": fresh["access_token"]})).json()["active"] is True
    assert (await post(client, REVOKE, web, {"token": fresh["refresh_token"]})).status_code == 200
    assert (await post(client, INTROSPECT, api, {"token": fresh["access_token"]})).json() == {"active": False}
    assert (await post(client, INTROSPECT, web, {"token": fresh["refresh_token"]})).json() == {"active": False}


async def test_requests_that_fail(client: httpx.AsyncClient, api: App) -> None:
    oauth_error(await post(client, INTROSPECT, api, {}), 400, "invalid_request")
    r = await client.post(INTROSPECT, data={"token": "x"}, auth=httpx.BasicAuth(api.client_id, "wrong"))
    oauth_error(r, 401, "invalid_client")
