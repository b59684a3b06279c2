"""UserInfo (OIDC Core §5.3): claims by scope from the user service; RFC 6750 errors for bad tokens."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tongban_auth.config import Settings
from tongban_auth.schemas import GrantType
from tongban_kit.db import Database
from tongban_kit.ids import new_id
from tongban_kit.testing.helpers import assert_problem

from .oauth_support import (
    REVOKE,
    TOKEN,
    USERINFO,
    App,
    Directory,
    claims_of,
    directory,
    make_grant,
    pkce,
    post,
    redeem,
    register,
)

USER = new_id()
PERSON = {"id": USER, "name": "张三", "username": "zhangsan", "email": "zs@example.cn", "mobile": "13800138000"}


@pytest.fixture(scope="module")
async def web(auth_db: Database) -> App:
    """The app the person signed in to."""
    return await register(auth_db)


async def _token(
    client: httpx.AsyncClient, db: Database, settings: Settings, app: App, scopes: list[str]
) -> dict[str, Any]:
    verifier, challenge = pkce()
    _, code = await make_grant(db, settings, app, challenge=challenge, scopes=scopes, user_id=USER)
    r = await redeem(client, app, code, verifier)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_claims_by_scope(
    client: httpx.AsyncClient, auth_app: FastAPI, auth_db: Database, auth_settings: Settings, web: App
) -> None:
    data = Directory(users={USER: PERSON})
    async with directory(auth_app.state.runtime.bus, data):
        full = await _token(client, auth_db, auth_settings, web, ["openid", "profile", "email", "phone"])
        r = await client.get(USERINFO, headers=_bearer(full["access_token"]))
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        assert r.json() == {
            "sub": USER,
            "name": "张三",
            "preferred_username": "zhangsan",
            "email": "zs@example.cn",
            "email_verified": False,
            "phone_number": "+8613800138000",
        }
        # the ID token carries the same claims
        idt = claims_of(full["id_token"], (await client.get("/oauth2/jwks")).json())
        assert idt["name"] == "张三" and idt["email"] == "zs@example.cn" and idt["phone_number"] == "+8613800138000"

        data.calls.clear()
        bare = await _token(client, auth_db, auth_settings, web, ["openid", "user:read"])
        r = await client.post(USERINFO, data={"access_token": bare["access_token"]})
        assert r.status_code == 200 and r.json() == {"sub": USER} and data.calls == []
        profile = await _token(client, auth_db, auth_settings, web, ["openid", "profile"])
        r = await client.post(USERINFO, headers=_bearer(profile["access_token"]))
        assert r.json() == {"sub": USER, "name": "张三", "preferred_username": "zhangsan"}
        assert data.calls == ["users-get", "users-get"]  # ID token and userinfo; no contacts read


async def test_user_service_down(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App
) -> None:
    t = await _token(client, auth_db, auth_settings, web, ["openid", "email"])  # issued without the claims
    assert_problem(await client.get(USERINFO, headers=_bearer(t["access_token"])), 503, "unavailable")


async def test_token_errors(client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App) -> None:
    r = await client.get(USERINFO)
    assert_problem(r, 401)
    assert r.headers["www-authenticate"] == 'Bearer realm="tongban"'
    r = await client.get(USERINFO, headers=_bearer("not.a.token"))
    assert_problem(r, 401, "invalid-token")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    r = await client.get(USERINFO, headers={"Authorization": "Basic abc"})
    assert_problem(r, 401, "invalid-request")

    service = await register(auth_db, grant_types=[GrantType.client_credentials], scopes=["user:read"])
    own = (await post(client, TOKEN, service, {"grant_type": "client_credentials"})).json()["access_token"]
    r = await client.get(USERINFO, headers=_bearer(own))
    assert_problem(r, 403, "insufficient-scope")
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]

    t = await _token(client, auth_db, auth_settings, web, ["openid"])
    assert (await client.get(USERINFO, headers=_bearer(t["access_token"]))).status_code == 200
    assert (await post(client, REVOKE, web, {"token": t["access_token"]})).status_code == 200
    assert_problem(await client.get(USERINFO, headers=_bearer(t["access_token"])), 401, "invalid-token")
