"""Token exchange (RFC 8693): a service acts for a person with a token naming it as the actor."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tongban_auth.config import Settings
from tongban_auth.grants import MAX_EXCHANGE_DEPTH
from tongban_auth.issuance import ACCESS_TOKEN_TYPE
from tongban_auth.schemas import GrantType
from tongban_kit.db import Database
from tongban_kit.jwks import JwksSource
from tongban_kit.revocations import RevocationFeed, RevocationList
from tongban_kit.testing.helpers import eventually
from tongban_kit.testing.recorder import EventRecorder
from tongban_kit.tokens import InvalidToken, TokenVerifier

from .conftest import mint_access_token
from .helpers import event_about
from .oauth_support import (
    INTROSPECT,
    REVOKE,
    TOKEN,
    App,
    claims_of,
    make_grant,
    oauth_error,
    pkce,
    post,
    redeem,
    register,
)

EXCHANGE = GrantType.token_exchange.value


@pytest.fixture(scope="module")
async def web(auth_db: Database) -> App:
    """The app the person signed in to."""
    return await register(auth_db)


@pytest.fixture(scope="module")
async def backend(auth_db: Database) -> App:
    """A service that calls other APIs on the person's behalf."""
    return await register(
        auth_db, grant_types=[GrantType.token_exchange, GrantType.client_credentials], scopes=["user:read", "admin"]
    )


async def _user_token(client: httpx.AsyncClient, db: Database, settings: Settings, app: App) -> tuple[str, str]:
    verifier, challenge = pkce()
    grant, code = await make_grant(db, settings, app, challenge=challenge, session_id="sid-x")
    body = (await redeem(client, app, code, verifier)).json()
    return body["access_token"], grant.id


def _exchange(client: httpx.AsyncClient, app: App, token: str, **extra: str):  # type: ignore[no-untyped-def]
    form = {"grant_type": EXCHANGE, "subject_token": token, "subject_token_type": ACCESS_TOKEN_TYPE, **extra}
    return post(client, TOKEN, app, form)


async def test_exchange_names_the_actor(
    client: httpx.AsyncClient,
    auth_db: Database,
    auth_settings: Settings,
    web: App,
    backend: App,
    event_recorder: EventRecorder,
) -> None:
    subject, grant_id = await _user_token(client, auth_db, auth_settings, web)
    r = await _exchange(client, backend, subject)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE and body["token_type"] == "Bearer"
    assert body["scope"] == "user:read" and "refresh_token" not in body  # openid is not the backend's to hold
    jwks = (await client.get("/oauth2/jwks")).json()
    at, original = claims_of(body["access_token"], jwks), claims_of(subject, jwks)
    assert at["sub"] == original["sub"] and at["client_id"] == backend.client_id
    assert at["act"] == {"sub": backend.client_id} and at["gid"] == grant_id and at["sid"] == "sid-x"
    assert at["exp"] <= original["exp"]
    event = await event_about(event_recorder, "auth.token.issued.v1", original["sub"])
    assert any(e["data"].get("actor") == backend.client_id for e in event_recorder.events("auth.token.issued.v1")), (
        event
    )

    # a second hop nests the earlier actor
    second = await register(auth_db, grant_types=[GrantType.token_exchange], scopes=["user:read"])
    r = await _exchange(client, second, body["access_token"])
    nested = claims_of(r.json()["access_token"], jwks)
    assert nested["act"] == {"sub": second.client_id, "act": {"sub": backend.client_id}}


async def test_scopes_are_the_intersection(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App, backend: App
) -> None:
    subject, _ = await _user_token(client, auth_db, auth_settings, web)
    oauth_error(await _exchange(client, backend, subject, scope="admin"), 400, "invalid_scope")
    r = await _exchange(client, backend, subject, scope="user:read admin")
    assert r.json()["scope"] == "user:read"


async def test_bad_subject_tokens(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App, backend: App
) -> None:
    oauth_error(await _exchange(client, backend, "not-a-token"), 400, "invalid_grant")
    subject, _ = await _user_token(client, auth_db, auth_settings, web)
    tampered = subject[:-4] + ("AAAA" if not subject.endswith("AAAA") else "BBBB")
    oauth_error(await _exchange(client, backend, tampered), 400, "invalid_grant")
    own = (await post(client, TOKEN, backend, {"grant_type": "client_credentials"})).json()["access_token"]
    oauth_error(await _exchange(client, backend, own), 400, "invalid_grant")  # names no person

    assert (await post(client, REVOKE, web, {"token": subject})).status_code == 200
    body = oauth_error(await _exchange(client, backend, subject), 400, "invalid_grant")
    assert "unrevoked" in body["error_description"]


async def test_request_checks(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App, backend: App
) -> None:
    subject, _ = await _user_token(client, auth_db, auth_settings, web)
    r = await post(client, TOKEN, backend, {"grant_type": EXCHANGE, "subject_token": subject})
    oauth_error(r, 400, "invalid_request")
    r = await post(
        client,
        TOKEN,
        backend,
        {
            "grant_type": EXCHANGE,
            "subject_token": subject,
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        },
    )
    oauth_error(r, 400, "invalid_request")
    oauth_error(await _exchange(client, backend, subject, audience="elsewhere"), 400, "invalid_target")
    oauth_error(await _exchange(client, web, subject), 400, "unauthorized_client")


async def test_an_exchanged_token_dies_with_its_subject_token(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App, backend: App
) -> None:
    subject, _ = await _user_token(client, auth_db, auth_settings, web)
    exchanged = (await _exchange(client, backend, subject)).json()["access_token"]
    second = await register(auth_db, grant_types=[GrantType.token_exchange], scopes=["user:read"])
    twice = (await _exchange(client, second, exchanged)).json()["access_token"]
    jwks = (await client.get("/oauth2/jwks")).json()
    first_jti = claims_of(subject, jwks)["jti"]
    assert claims_of(twice, jwks)["subject_jtis"] == [first_jti, claims_of(exchanged, jwks)["jti"]]
    for token in (exchanged, twice):  # active, and remembered so by the introspection cache
        assert (await post(client, INTROSPECT, backend, {"token": token})).json()["active"] is True

    # the app revokes the person's access token (RFC 7009): what was exchanged from it goes too, at once
    assert (await post(client, REVOKE, web, {"token": subject, "token_type_hint": "access_token"})).status_code == 200
    for token in (exchanged, twice):
        assert (await post(client, INTROSPECT, backend, {"token": token})).json() == {"active": False}
    oauth_error(await _exchange(client, second, exchanged), 400, "invalid_grant")
    r = await client.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {twice}"})
    assert r.status_code == 401


async def test_exchanges_are_bounded_in_depth(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, web: App, backend: App
) -> None:
    token, _ = await _user_token(client, auth_db, auth_settings, web)
    for _ in range(MAX_EXCHANGE_DEPTH):
        r = await _exchange(client, backend, token)
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
    oauth_error(await _exchange(client, backend, token), 400, "invalid_grant")


async def test_a_verifier_following_revocations_refuses_the_exchanged_token(
    client: httpx.AsyncClient,
    auth_app: FastAPI,
    auth_db: Database,
    auth_settings: Settings,
    web: App,
    backend: App,
) -> None:
    """What every service and the gateway run: the kit's verifier, fed by auth.token.revoked.v1 over JetStream."""
    revocations = RevocationList()
    feed = RevocationFeed(auth_app.state.runtime.bus, revocations, replay_seconds=60)
    assert await feed.start(wait=10)
    verifier = TokenVerifier(
        JwksSource.from_jwks((await client.get("/oauth2/jwks")).json()),
        issuer=auth_settings.issuer,
        audience=auth_settings.api_audience,
        revocations=revocations,
    )
    try:
        subject, _ = await _user_token(client, auth_db, auth_settings, web)
        exchanged = (await _exchange(client, backend, subject)).json()["access_token"]
        assert (await verifier.verify(exchanged)).act == {"sub": backend.client_id}  # accepted, and cached
        assert (
            await post(client, REVOKE, web, {"token": subject, "token_type_hint": "access_token"})
        ).status_code == 200

        async def refused() -> bool | None:
            try:
                await verifier.verify(exchanged)
            except InvalidToken as exc:
                return exc.reason == "revoked" or None
            return None

        assert await eventually(refused, timeout=10, what="the exchanged token refused by a following verifier")
    finally:
        await feed.stop()


async def test_an_exchange_carries_no_scope_the_person_is_not_entitled_to(
    client: httpx.AsyncClient, auth_app: FastAPI, auth_db: Database, auth_settings: Settings, web: App, backend: App
) -> None:
    # a token minted before the person's admin grant was withdrawn (the org service names no grant now)
    grant, _ = await make_grant(auth_db, auth_settings, web, scopes=["openid", "user:read", "admin"])
    subject = await mint_access_token(auth_app, grant.user_id, "user:read admin", gid=grant.id)
    auth_app.state.oauth.issuer.forget_failures()
    r = await _exchange(client, backend, subject, scope="user:read admin")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "user:read"
    oauth_error(await _exchange(client, backend, subject, scope="admin"), 400, "invalid_scope")
