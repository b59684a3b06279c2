"""The refresh_token grant: rotation, reuse detection, concurrency, scope narrowing, grant and session state."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from tongban_auth.config import Settings
from tongban_auth.issuance import new_opaque_token
from tongban_auth.models import Grant, LoginSession, RefreshToken
from tongban_kit.db import Database
from tongban_kit.outbox import utcnow
from tongban_kit.testing.recorder import EventRecorder

from .helpers import event_about
from .oauth_support import TOKEN, App, make_grant, oauth_error, pkce, post, redeem, register


@pytest.fixture(scope="module")
async def web(auth_db: Database) -> App:
    """A confidential web app with refresh tokens."""
    return await register(auth_db)


async def _tokens(
    client: httpx.AsyncClient, db: Database, settings: Settings, app: App, **kw: object
) -> dict[str, Any]:
    verifier, challenge = pkce()
    grant, code = await make_grant(db, settings, app, challenge=challenge, **kw)  # type: ignore[arg-type]
    r = await redeem(client, app, code, verifier)
    assert r.status_code == 200, r.text
    return {**r.json(), "grant": grant}


def _refresh(client: httpx.AsyncClient, app: App, token: str, **extra: str):  # type: ignore[no-untyped-def]
    return post(client, TOKEN, app, {"grant_type": "refresh_token", "refresh_token": token, **extra})


async def test_rotation(client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App) -> None:
    first = await _tokens(client, auth_db, auth_settings, web)
    r = await _refresh(client, web, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert second["scope"] == first["scope"] and second["id_token"]
    r = await _refresh(client, web, second["refresh_token"])
    assert r.status_code == 200


async def test_reuse_revokes_the_grant_and_the_new_token(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App, event_recorder: EventRecorder
) -> None:
    first = await _tokens(client, auth_db, auth_settings, web)
    second = (await _refresh(client, web, first["refresh_token"])).json()
    body = oauth_error(await _refresh(client, web, first["refresh_token"]), 400, "invalid_grant")
    assert "already used" in body["error_description"]
    oauth_error(await _refresh(client, web, second["refresh_token"]), 400, "invalid_grant")
    grant: Grant = first["grant"]
    async with auth_db.session() as s:
        row = await s.get(Grant, grant.id)
        assert row is not None and row.revoke_reason == "refresh_reuse"
    event = await event_about(event_recorder, "auth.token.revoked.v1", grant.user_id)
    assert event["data"]["grant_id"] == grant.id and event["data"]["reason"] == "refresh_reuse"


async def test_concurrent_use_one_wins(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App
) -> None:
    first = await _tokens(client, auth_db, auth_settings, web)
    results = await asyncio.gather(*(_refresh(client, web, first["refresh_token"]) for _ in range(4)))
    assert sorted(r.status_code for r in results) == [200, 400, 400, 400]


async def test_scope_may_only_narrow(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App
) -> None:
    first = await _tokens(client, auth_db, auth_settings, web)
    oauth_error(await _refresh(client, web, first["refresh_token"], scope="user:read admin"), 400, "invalid_scope")
    r = await _refresh(client, web, first["refresh_token"], scope="user:read")
    assert r.status_code == 200 and r.json()["scope"] == "user:read" and "id_token" not in r.json()
    # the rotated token keeps the full grant
    r = await _refresh(client, web, r.json()["refresh_token"])
    assert r.json()["scope"] == "openid offline_access user:read"


async def test_another_clients_token(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App
) -> None:
    first = await _tokens(client, auth_db, auth_settings, web)
    other = await register(auth_db)
    oauth_error(await _refresh(client, other, first["refresh_token"]), 400, "invalid_grant")
    assert (await _refresh(client, web, first["refresh_token"])).status_code == 200


async def test_revoked_or_expired_grant(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App
) -> None:
    a = await _tokens(client, auth_db, auth_settings, web)
    b = await _tokens(client, auth_db, auth_settings, web)
    async with auth_db.session() as s:
        await s.exec(update(Grant).where(Grant.id == a["grant"].id).values(revoked_at=utcnow()))
        await s.exec(update(Grant).where(Grant.id == b["grant"].id).values(expires_at=utcnow()))
        await s.commit()
    oauth_error(await _refresh(client, web, a["refresh_token"]), 400, "invalid_grant")
    oauth_error(await _refresh(client, web, b["refresh_token"]), 400, "invalid_grant")


async def test_session_bound_grant_ends_with_its_session(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App
) -> None:
    now = utcnow()
    session = LoginSession(
        sid="sid-ended",
        cookie_digest="d" * 64,
        user_id="u-1",
        auth_time=now,
        amr=["pwd"],
        acr=auth_settings.acr_password,
        expires_at=now + timedelta(hours=1),
        ended_at=now,
    )
    grant, _ = await make_grant(auth_db, auth_settings, web, scopes=["openid", "user:read"], session_id=session.sid)
    value, digest = new_opaque_token()
    async with auth_db.session() as s:
        s.add(session)
        s.add(
            RefreshToken(
                token_digest=digest,
                grant_id=grant.id,
                client_id=web.client_id,
                scopes=grant.scopes,
                expires_at=now + timedelta(hours=1),
            )
        )
        await s.commit()
    body = oauth_error(await _refresh(client, web, value), 400, "invalid_grant")
    assert "session" in body["error_description"]


async def test_unknown_token_and_missing_parameter(client: httpx.AsyncClient, web: App) -> None:
    oauth_error(await _refresh(client, web, "nope"), 400, "invalid_grant")
    oauth_error(await post(client, TOKEN, web, {"grant_type": "refresh_token"}), 400, "invalid_request")
