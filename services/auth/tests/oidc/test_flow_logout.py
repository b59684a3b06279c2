"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) and back-channel logout (Back-Channel Logout 1.0)
through HTTP: ending the session with and without `id_token_hint`, where the browser goes afterwards, what happens
to the grants and tokens, the events, and the logout tokens a client receives (also after being down for a while).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tongban_auth.logout import BACKCHANNEL_EVENT
from tongban_kit.testing.browser import Browser, Page
from tongban_kit.testing.helpers import eventually
from tongban_kit.testing.recorder import EventRecorder

from .conftest import Stack
from .flow_support import App, RelyingParty, browser, has_form, id_claims, introspect, refresh, register, rp, sign_in

__all__ = ["rp"]


def logout_url(stack: Stack, **params: str) -> str:
    """The end-session endpoint with parameters."""
    return f"{stack.issuer}/oauth2/logout?{urlencode(params)}"


async def authorize_shows_login(stack: Stack, rp: RelyingParty, b: Browser) -> bool:
    """Whether a new authorization request in this browser asks for the password."""
    return has_form(await b.open(App(stack, rp).url()), "/oauth2/login")


@pytest.fixture(scope="module")
async def bc_client(stack: Stack, rp: RelyingParty) -> AsyncIterator[str]:
    """An app with a back-channel logout URI on the relying party."""
    await register(stack, rp, "flow-bc", confidential=True, backchannel=True)
    yield "flow-bc"


async def test_logout_with_id_token_hint_ends_the_session_at_once(
    stack: Stack, rp: RelyingParty, event_recorder: EventRecorder
) -> None:
    client, b = browser(rp)
    async with client:
        online = await sign_in(stack, rp, b, "demo-citizen", scope="openid profile")
        offline = await sign_in(stack, rp, b, "demo-citizen", scope="openid profile offline_access")
        claims = await id_claims(stack, online["id_token"])
        assert (await introspect(stack, rp, online["access_token"]))["active"]

        where = await b.open(
            logout_url(
                stack,
                id_token_hint=online["id_token"],
                post_logout_redirect_uri=rp.post_logout_uri,
                state="s-123",
            )
        )
        assert isinstance(where, str) and where.startswith(rp.post_logout_uri), where
        assert parse_qs(urlsplit(where).query) == {"state": ["s-123"]}
        assert client.cookies.get(stack.settings.session_cookie) is None
        assert await authorize_shows_login(stack, rp, b)

        # the grant without offline access is revoked; the offline one lives on
        assert not (await introspect(stack, rp, online["access_token"]))["active"]
        r = await refresh(stack, rp, offline["refresh_token"])
        assert r.status_code == 200, r.text

    async def ended() -> dict[str, Any] | None:
        return next(
            (e for e in event_recorder.events("auth.session.ended.v1") if e["data"]["sid"] == claims["sid"]), None
        )

    event = await eventually(ended, what="auth.session.ended.v1")
    assert event["data"]["reason"] == "logout" and event["subject"] == claims["sub"]
    assert len(event["data"]["grant_ids"]) == 2

    async def revoked() -> list[dict[str, Any]] | None:
        found = [
            e
            for e in event_recorder.events("auth.token.revoked.v1")
            if e["data"].get("grant_id") in event["data"]["grant_ids"]
        ]
        return found or None

    assert len(await eventually(revoked, what="auth.token.revoked.v1")) == 1


async def test_post_logout_redirect_uri_must_be_registered(stack: Stack, rp: RelyingParty) -> None:
    client, b = browser(rp)
    async with client:
        tokens = await sign_in(stack, rp, b, "demo-citizen2")
        for params in (
            {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://evil.example/"},
            {"client_id": "flow-app", "post_logout_redirect_uri": rp.post_logout_uri + "/x"},
            {"post_logout_redirect_uri": rp.post_logout_uri},
            {"id_token_hint": tokens["id_token"], "client_id": "flow-spa"},
            {"id_token_hint": "not.a.token"},
            {"id_token_hint": tokens["access_token"]},
            {"client_id": "no-such-app"},
        ):
            page = await b.open(logout_url(stack, **params))
            assert isinstance(page, Page) and page.status == 400, (params, page)
        # the session survived all of that
        assert not await authorize_shows_login(stack, rp, b)


async def test_logout_without_a_hint_asks_first(stack: Stack, rp: RelyingParty) -> None:
    client, b = browser(rp)
    async with client:
        await sign_in(stack, rp, b, "demo-staff")
        page = await b.open(logout_url(stack, client_id="flow-app", post_logout_redirect_uri=rp.post_logout_uri))
        assert isinstance(page, Page) and has_form(page, "/oauth2/logout/confirm")
        # cancel: still signed in
        after = await b.submit(page, "/oauth2/logout/confirm", button=("decision", "cancel"))
        assert isinstance(after, Page) and after.status == 200
        assert not await authorize_shows_login(stack, rp, b)
        # confirm: signed out, back at the app (no state was given, none is added)
        page = await b.open(logout_url(stack, client_id="flow-app", post_logout_redirect_uri=rp.post_logout_uri))
        assert isinstance(page, Page)
        where = await b.submit(page, "/oauth2/logout/confirm", button=("decision", "logout"))
        assert where == rp.post_logout_uri
        assert await authorize_shows_login(stack, rp, b)
        # a confirmation form of this browser cannot be replayed from another one
        other_client, other = browser(rp)
        async with other_client:
            await sign_in(stack, rp, other, "demo-staff")
            r = await other_client.post(
                f"{stack.issuer}/oauth2/logout/confirm",
                data={**page.form("/oauth2/logout/confirm").fields, "decision": "logout"},
            )
            assert r.status_code == 403
            assert not await authorize_shows_login(stack, rp, other)


async def test_logout_without_a_session_just_returns(stack: Stack, rp: RelyingParty) -> None:
    client, b = browser(rp)
    async with client:
        where = await b.open(
            logout_url(stack, client_id="flow-app", post_logout_redirect_uri=rp.post_logout_uri, state="x")
        )
        assert where == rp.post_logout_uri + "?state=x"
        page = await b.open(logout_url(stack))
        assert isinstance(page, Page) and page.status == 200 and not has_form(page, "/oauth2/logout/confirm")


async def logout_tokens(stack: Stack, rp: RelyingParty, sid: str, *, accepted: bool) -> list[dict[str, Any]]:
    """The verified logout tokens the relying party received for a session."""
    async with httpx.AsyncClient() as c:
        jwks = KeySet.import_key_set((await c.get(f"{stack.issuer}/oauth2/jwks")).json())
    out = []
    for token, ok in rp.notices:
        if ok != accepted:
            continue
        decoded = jwt.decode(token, jwks)
        if decoded.claims.get("sid") == sid:
            out.append({"header": dict(decoded.header), "claims": dict(decoded.claims)})
    return out


async def test_back_channel_logout_token(stack: Stack, rp: RelyingParty, bc_client: str) -> None:
    client, b = browser(rp)
    async with client:
        app = App(stack, rp, bc_client)
        page = await b.open(app.url())
        page = await b.submit(page, "/oauth2/login", {"login": "demo-citizen3", "password": "Tongban-Demo-1"})
        page = await b.submit(page, "/oauth2/consent", button=("decision", "approve"))
        claims = await id_claims(stack, (await app.redeem(page))["id_token"])
        page = await b.open(logout_url(stack))
        assert isinstance(page, Page)
        await b.submit(page, "/oauth2/logout/confirm", button=("decision", "logout"))

    async def received() -> list[dict[str, Any]] | None:
        return await logout_tokens(stack, rp, claims["sid"], accepted=True) or None

    [notice] = await eventually(received, timeout=10, what="a back-channel logout token")
    assert notice["header"]["typ"] == "logout+jwt"
    c = notice["claims"]
    assert c["iss"] == stack.issuer and c["aud"] in (bc_client, [bc_client])
    assert c["sub"] == claims["sub"] and c["sid"] == claims["sid"]
    assert c["events"] == {BACKCHANNEL_EVENT: {}}
    assert "nonce" not in c and c["jti"] and c["iat"] <= c["exp"]


async def test_back_channel_logout_is_retried_while_the_client_is_down(
    stack: Stack, rp: RelyingParty, bc_client: str
) -> None:
    client, b = browser(rp)
    async with client:
        app = App(stack, rp, bc_client)
        page = await b.open(app.url())
        page = await b.submit(page, "/oauth2/login", {"login": "demo-admin", "password": "Tongban-Demo-1"})
        page = await b.submit(page, "/oauth2/consent", button=("decision", "approve"))
        tokens = await app.redeem(page)
        claims = await id_claims(stack, tokens["id_token"])
        rp.up = False
        try:
            await b.open(logout_url(stack, id_token_hint=tokens["id_token"]))

            async def refused() -> list[dict[str, Any]] | None:
                return await logout_tokens(stack, rp, claims["sid"], accepted=False) or None

            await eventually(refused, timeout=10, what="a first, refused notice")
        finally:
            rp.up = True

    async def received() -> list[dict[str, Any]] | None:
        return await logout_tokens(stack, rp, claims["sid"], accepted=True) or None

    [notice] = await eventually(received, timeout=20, what="the notice delivered again")
    assert notice["claims"]["sub"] == claims["sub"]
