"""The authorization_code grant: tokens and their claims, single use, PKCE, binding to client and redirect URI."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from sqlmodel import select

from tongban_auth.config import Settings
from tongban_auth.grants import create_authorization_code
from tongban_auth.models import AuthCode, ClientType, Grant, RefreshToken
from tongban_auth.schemas import AuthMethod, GrantType
from tongban_kit.db import Database
from tongban_kit.ids import new_id
from tongban_kit.outbox import utcnow
from tongban_kit.testing.recorder import EventRecorder

from .helpers import event_about
from .oauth_support import (
    INTROSPECT,
    REDIRECT,
    TOKEN,
    App,
    Directory,
    claims_of,
    directory,
    make_grant,
    oauth_error,
    pkce,
    post,
    redeem,
    register,
)


@pytest.fixture(scope="module")
async def web(auth_db: Database) -> App:
    """A confidential web app (client_secret_basic) with refresh tokens."""
    return await register(auth_db)


@pytest.fixture(scope="module")
async def api(auth_db: Database) -> App:
    """A confidential API client that may introspect."""
    return await register(auth_db, grant_types=[GrantType.client_credentials], scopes=["user:read"])


async def test_code_for_tokens(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App, event_recorder: EventRecorder
) -> None:
    verifier, challenge = pkce()
    grant, code = await make_grant(auth_db, auth_settings, web, challenge=challenge, session_id="sid-1")
    r = await redeem(client, web, code, verifier)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    body = r.json()
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 600
    assert body["scope"] == "openid offline_access user:read"
    assert body["refresh_token"] and len(body["refresh_token"]) >= 43

    jwks = (await client.get("/oauth2/jwks")).json()
    at = claims_of(body["access_token"], jwks)
    header = base64.urlsafe_b64decode(body["access_token"].split(".")[0] + "==")
    assert b'"typ":"at+jwt"' in header
    assert at["iss"] == auth_settings.issuer and at["aud"] == auth_settings.api_audience
    assert at["sub"] == grant.user_id and at["client_id"] == web.client_id and at["gid"] == grant.id
    assert at["sid"] == "sid-1" and at["acr"] == auth_settings.acr_password and at["amr"] == ["pwd"]
    assert at["exp"] - at["iat"] == 600 and at["jti"] and at["auth_time"] <= at["iat"]
    assert "admin_units" not in at

    idt = claims_of(body["id_token"], jwks)
    assert idt["aud"] == web.client_id and idt["sub"] == grant.user_id and idt["nonce"] == "n-0S6_WzA2Mj"
    assert idt["sid"] == "sid-1" and idt["auth_time"] == at["auth_time"]
    digest = hashlib.sha256(body["access_token"].encode()).digest()
    assert idt["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()

    event = await event_about(event_recorder, "auth.token.issued.v1", grant.user_id)
    data = event["data"]
    assert data["jti"] == at["jti"] and data["grant_id"] == grant.id and data["grant_type"] == "authorization_code"
    assert data["refresh_token_issued"] and data["id_token_issued"]
    assert body["access_token"] not in str(event) and body["refresh_token"] not in str(event)


async def test_code_replay_revokes_every_token_of_the_grant(
    client: httpx.AsyncClient,
    auth_db: Database,
    auth_settings: Settings,
    web: App,
    api: App,
    event_recorder: EventRecorder,
) -> None:
    verifier, challenge = pkce()
    grant, code = await make_grant(auth_db, auth_settings, web, challenge=challenge)
    first = await redeem(client, web, code, verifier)
    assert first.status_code == 200
    again = await redeem(client, web, code, verifier)
    oauth_error(again, 400, "invalid_grant")

    async with auth_db.session() as s:
        row = await s.get(Grant, grant.id)
        assert row is not None and row.revoked_at is not None and row.revoke_reason == "code_replay"
    r = await post(client, TOKEN, web, {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]})
    oauth_error(r, 400, "invalid_grant")
    r = await post(client, INTROSPECT, api, {"token": first.json()["access_token"]})
    assert r.json() == {"active": False}
    event = await event_about(event_recorder, "auth.token.revoked.v1", grant.user_id)
    assert event["data"]["grant_id"] == grant.id and event["data"]["reason"] == "code_replay"


async def test_concurrent_redemption_gives_one_answer(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App
) -> None:
    verifier, challenge = pkce()
    _, code = await make_grant(auth_db, auth_settings, web, challenge=challenge)
    results = await asyncio.gather(*(redeem(client, web, code, verifier) for _ in range(3)))
    assert sorted(r.status_code for r in results) == [200, 400, 400]


@pytest.mark.parametrize(
    ("case", "description"),
    [
        ("missing", "code_verifier is required"),
        ("wrong", "does not match"),
        ("short", "43-128 unreserved"),
    ],
)
async def test_pkce_failures(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App, case: str, description: str
) -> None:
    verifier, challenge = pkce()
    _, code = await make_grant(auth_db, auth_settings, web, challenge=challenge)
    sent = {"missing": None, "wrong": pkce()[0], "short": verifier[:42]}[case]
    body = oauth_error(await redeem(client, web, code, sent), 400, "invalid_grant")
    assert description in body["error_description"]
    # the failed attempt used the code up: no second guess, not even the right verifier
    body = oauth_error(await redeem(client, web, code, verifier), 400, "invalid_grant")
    assert "already used" in body["error_description"]


async def test_pkce_downgrade_and_required_pkce(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App
) -> None:
    _, code = await make_grant(auth_db, auth_settings, web, challenge=None)
    body = oauth_error(await redeem(client, web, code, pkce()[0]), 400, "invalid_grant")
    assert "no code_challenge" in body["error_description"]
    _, code = await make_grant(auth_db, auth_settings, web, challenge=None)
    body = oauth_error(await redeem(client, web, code, None), 400, "invalid_grant")  # the client requires PKCE
    assert "must use PKCE" in body["error_description"]
    relaxed = await register(auth_db, require_pkce=False)
    _, code = await make_grant(auth_db, auth_settings, relaxed, challenge=None)
    assert (await redeem(client, relaxed, code, None)).status_code == 200


async def test_plain_challenges_are_refused(auth_db: Database, auth_settings: Settings, web: App) -> None:
    grant, _ = await make_grant(auth_db, auth_settings, web, challenge=pkce()[1])
    async with auth_db.session() as s:
        with pytest.raises(ValueError, match="S256"):
            await create_authorization_code(
                s,
                grant=grant,
                redirect_uri=REDIRECT,
                scopes=["openid"],
                code_challenge="a" * 43,
                code_challenge_method="plain",
                nonce=None,
                settings=auth_settings,
            )


async def test_redirect_uri_must_match_exactly(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App
) -> None:
    verifier, challenge = pkce()
    _, code = await make_grant(auth_db, auth_settings, web, challenge=challenge)
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
    r = await post(client, TOKEN, web, {**data, "redirect_uri": REDIRECT + "/"})
    oauth_error(r, 400, "invalid_grant")
    oauth_error(await post(client, TOKEN, web, data), 400, "invalid_request")


async def test_code_of_another_client(client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings) -> None:
    owner, thief = await register(auth_db), await register(auth_db)
    verifier, challenge = pkce()
    grant, code = await make_grant(auth_db, auth_settings, owner, challenge=challenge)
    oauth_error(await redeem(client, thief, code, verifier), 400, "invalid_grant")
    async with auth_db.session() as s:
        row = await s.get(Grant, grant.id)
        assert row is not None and row.revoked_at is None  # another client cannot get the grant revoked
    assert (await redeem(client, owner, code, verifier)).status_code == 200


async def test_expired_code(client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App) -> None:
    verifier, challenge = pkce()
    _, code = await make_grant(auth_db, auth_settings, web, challenge=challenge)
    async with auth_db.session() as s:
        await s.exec(update(AuthCode).values(expires_at=utcnow() - timedelta(seconds=1)))
        await s.commit()
    body = oauth_error(await redeem(client, web, code, verifier), 400, "invalid_grant")
    assert "expired" in body["error_description"]


async def test_code_lifetime_is_at_most_a_minute(auth_db: Database, auth_settings: Settings, web: App) -> None:
    settings = auth_settings.model_copy(update={"code_lifetime_seconds": 600})
    _, code = await make_grant(auth_db, settings, web, challenge=pkce()[1])
    async with auth_db.session() as s:
        row = await s.get(AuthCode, hashlib.sha256(code.encode()).hexdigest())
        assert row is not None and row.expires_at - row.created_at == timedelta(seconds=60)


async def test_no_refresh_token_without_offline_access(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App
) -> None:
    verifier, challenge = pkce()
    grant, code = await make_grant(auth_db, auth_settings, web, scopes=["openid", "user:read"], challenge=challenge)
    body = (await redeem(client, web, code, verifier)).json()
    assert "refresh_token" not in body and body["id_token"]
    async with auth_db.session() as s:
        assert (await s.exec(select(RefreshToken).where(RefreshToken.grant_id == grant.id))).first() is None


async def test_public_client_with_pkce(client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings) -> None:
    spa = await register(auth_db, client_type=ClientType.public, method=AuthMethod.none)
    verifier, challenge = pkce()
    _, code = await make_grant(auth_db, auth_settings, spa, challenge=challenge)
    r = await redeem(client, spa, code, verifier)
    assert r.status_code == 200, r.text
    assert r.json()["refresh_token"]


async def test_request_errors(client: httpx.AsyncClient, web: App) -> None:
    r = await client.post(TOKEN, json={"grant_type": "authorization_code"}, auth=web.auth())
    oauth_error(r, 400, "invalid_request")
    oauth_error(await post(client, TOKEN, web, {}), 400, "invalid_request")
    oauth_error(await post(client, TOKEN, web, {"grant_type": "password"}), 400, "unsupported_grant_type")
    oauth_error(await post(client, TOKEN, web, {"grant_type": "client_credentials"}), 400, "unauthorized_client")
    r = await client.post(
        TOKEN,
        content="grant_type=refresh_token&grant_type=refresh_token",
        auth=web.auth(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    oauth_error(r, 400, "invalid_request")
    assert (await client.get(TOKEN)).status_code == 405
    oauth_error(await client.post(TOKEN, data={"grant_type": "x", "client_id": "a\x00b"}), 400, "invalid_request")
    r = await client.post(TOKEN, data={"grant_type": "x"}, auth=httpx.BasicAuth("a\x00b", "c"))
    oauth_error(r, 401, "invalid_client")


async def test_a_person_gets_only_the_scopes_they_are_entitled_to(
    client: httpx.AsyncClient, auth_app: FastAPI, auth_db: Database, auth_settings: Settings
) -> None:
    asked = ["openid", "user:read", "admin", "org:write", "message:send", "affairs:handle"]
    app = await register(auth_db, scopes=asked)

    async def redeemed(user_id: str) -> dict[str, object]:
        verifier, challenge = pkce()
        _, code = await make_grant(auth_db, auth_settings, app, scopes=asked, user_id=user_id, challenge=challenge)
        r = await redeem(client, app, code, verifier)
        assert r.status_code == 200, r.text
        body: dict[str, object] = r.json()
        return body

    admin, citizen = new_id(), new_id()
    # the org service does not answer: no entitlement-bearing scope is granted (fail closed), the rest is
    auth_app.state.oauth.issuer.forget_failures()
    assert (await redeemed(admin))["scope"] == "openid user:read"
    data = Directory(admins={admin: ["unit-a"]})
    async with directory(auth_app.state.runtime.bus, data):
        auth_app.state.oauth.issuer.forget_failures()
        granted = await redeemed(admin)
        assert granted["scope"] == " ".join(asked)
        jwks = (await client.get("/oauth2/jwks")).json()
        assert claims_of(str(granted["access_token"]), jwks)["admin_units"] == ["unit-a"]
        # someone the org service names in no grant gets the scopes open to everyone, without an error
        assert (await redeemed(citizen))["scope"] == "openid user:read"
    assert "entitlements" in data.calls
