"""Token revocation (RFC 7009) and the revocation helpers for logout and consent withdrawal."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlmodel import select

from tongban_auth.config import Settings
from tongban_auth.models import Grant, RefreshToken, RevokedToken
from tongban_auth.revocation import revoke_grants, revoke_session_grants
from tongban_auth.schemas import GrantType
from tongban_kit.db import Database
from tongban_kit.outbox import OutboxEvent
from tongban_kit.testing.recorder import EventRecorder

from .helpers import event_about
from .oauth_support import INTROSPECT, REVOKE, TOKEN, App, make_grant, pkce, post, redeem, register


@pytest.fixture(scope="module")
async def web(auth_db: Database) -> App:
    """The app that holds the tokens."""
    return await register(auth_db)


@pytest.fixture(scope="module")
async def api(auth_db: Database) -> App:
    """A resource server that introspects."""
    return await register(auth_db, grant_types=[GrantType.client_credentials], scopes=["user:read"])


async def _tokens(
    client: httpx.AsyncClient, db: Database, settings: Settings, app: App, **kw: object
) -> dict[str, Any]:
    verifier, challenge = pkce()
    grant, code = await make_grant(db, settings, app, challenge=challenge, **kw)  # type: ignore[arg-type]
    return {**(await redeem(client, app, code, verifier)).json(), "grant": grant}


async def _revoked_events(db: Database) -> int:
    async with db.session() as s:
        rows = (await s.exec(select(OutboxEvent).where(OutboxEvent.type == "auth.token.revoked.v1"))).all()
    return len(rows)


async def test_refresh_token_revokes_the_grant(
    client: httpx.AsyncClient,
    auth_db: Database,
    auth_settings: Settings,
    web: App,
    event_recorder: EventRecorder,
) -> None:
    t = await _tokens(client, auth_db, auth_settings, web)
    r = await post(client, REVOKE, web, {"token": t["refresh_token"], "token_type_hint": "refresh_token"})
    assert r.status_code == 200 and r.content == b""
    async with auth_db.session() as s:
        grant = await s.get(Grant, t["grant"].id)
        assert grant is not None and grant.revoked_at is not None and grant.revoke_reason == "revoked"
        tokens = (await s.exec(select(RefreshToken).where(RefreshToken.grant_id == grant.id))).all()
        assert tokens and all(rt.revoked_at is not None for rt in tokens)
    event = await event_about(event_recorder, "auth.token.revoked.v1", t["grant"].user_id)
    assert event["data"]["grant_id"] == t["grant"].id and event["data"]["client_id"] == web.client_id
    before = await _revoked_events(auth_db)
    assert (await post(client, REVOKE, web, {"token": t["refresh_token"]})).status_code == 200
    assert await _revoked_events(auth_db) == before  # nothing new to revoke, no event


async def test_access_token_by_jti(
    client: httpx.AsyncClient,
    auth_db: Database,
    auth_settings: Settings,
    web: App,
    api: App,
    event_recorder: EventRecorder,
) -> None:
    t = await _tokens(client, auth_db, auth_settings, web)
    r = await post(client, REVOKE, web, {"token": t["access_token"], "token_type_hint": "access_token"})
    assert r.status_code == 200
    jti = (await post(client, INTROSPECT, api, {"token": t["access_token"]})).json()
    assert jti == {"active": False}
    async with auth_db.session() as s:
        row = (await s.exec(select(RevokedToken).where(RevokedToken.grant_id == t["grant"].id))).one()
    assert row.client_id == web.client_id
    events = await event_about(event_recorder, "auth.token.revoked.v1", t["grant"].user_id)
    assert any(e["data"].get("jti") == row.jti for e in event_recorder.events("auth.token.revoked.v1")), events
    # the grant lives on: the refresh token still works
    r = await post(client, TOKEN, web, {"grant_type": "refresh_token", "refresh_token": t["refresh_token"]})
    assert r.status_code == 200


async def test_other_clients_and_unknown_tokens_have_no_effect(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App, api: App
) -> None:
    t = await _tokens(client, auth_db, auth_settings, web)
    before = await _revoked_events(auth_db)
    for token in (t["refresh_token"], t["access_token"], "unknown", "a.b.c"):
        assert (await post(client, REVOKE, api, {"token": token})).status_code == 200
    assert await _revoked_events(auth_db) == before
    assert (await post(client, INTROSPECT, api, {"token": t["access_token"]})).json()["active"] is True
    assert (await post(client, INTROSPECT, web, {"token": t["refresh_token"]})).json()["active"] is True
    r = await client.post(REVOKE, data={"token": "x"}, auth=httpx.BasicAuth(web.client_id, "wrong"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = await post(client, REVOKE, web, {})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_session_and_grant_helpers(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App, api: App
) -> None:
    online = await _tokens(client, auth_db, auth_settings, web, session_id="sid-r", scopes=["openid", "user:read"])
    offline = await _tokens(client, auth_db, auth_settings, web, session_id="sid-r")
    async with auth_db.session() as s:
        assert await revoke_session_grants(s, "sid-r", "logout") == [online["grant"].id]
        await s.commit()
    assert (await post(client, INTROSPECT, api, {"token": online["access_token"]})).json() == {"active": False}
    assert (await post(client, INTROSPECT, api, {"token": offline["access_token"]})).json()["active"] is True
    async with auth_db.session() as s:
        assert await revoke_session_grants(s, "sid-r", "signout_everywhere", include_offline=True) == [
            offline["grant"].id
        ]
        assert await revoke_grants(s, [offline["grant"].id], "consent_revoked") == []  # already revoked
        await s.commit()
    assert (await post(client, INTROSPECT, api, {"token": offline["access_token"]})).json() == {"active": False}
