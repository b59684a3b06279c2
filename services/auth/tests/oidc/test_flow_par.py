"""Pushed authorization requests (RFC 9126) through HTTP: push with client authentication, use once at the
authorization endpoint, refusals (expired, another client, unknown, reused), checks at push time, and parameters
outside the pushed request being ignored.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from urllib.parse import urlencode

import httpx
from sqlmodel import col, update

from tongban_auth.models import PushedRequest
from tongban_kit.outbox import utcnow
from tongban_kit.testing.browser import Page

from .conftest import Stack
from .flow_support import App, RelyingParty, approve, browser, id_claims, login, rp

__all__ = ["rp"]


async def push(stack: Stack, app: App, **extra: str) -> httpx.Response:
    """POST the app's request to /oauth2/par with its client secret."""
    params = {k: v for k, v in app.params(**extra).items() if v != ""}
    async with httpx.AsyncClient() as c:
        return await c.post(f"{stack.issuer}/oauth2/par", data=params, auth=(app.client_id, app.party.secret))


def par_url(stack: Stack, client_id: str, request_uri: str, **extra: str) -> str:
    """The authorization URL that refers to a pushed request."""
    return f"{stack.issuer}/oauth2/authorize?{urlencode({'client_id': client_id, 'request_uri': request_uri, **extra})}"


async def test_push_then_authorize_once(stack: Stack, rp: RelyingParty) -> None:
    app = App(stack, rp)
    r = await push(stack, app, scope="openid profile email")
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    assert body["expires_in"] == stack.settings.par_lifetime_seconds
    client, b = browser(rp)
    async with client:
        # parameters outside the pushed request are ignored: the pushed scope and state count
        page = await b.open(par_url(stack, "flow-app", body["request_uri"], scope="openid", state="not-pushed"))
        page = await login(b, page, "demo-citizen")
        tokens = await app.redeem(await approve(b, page))
        claims = await id_claims(stack, tokens["id_token"])
        assert claims["nonce"] == app.nonce
        assert "email" in tokens["scope"].split()
        # single use
        page = await b.open(par_url(stack, "flow-app", body["request_uri"]))
        assert isinstance(page, Page) and page.status == 400 and "invalid_request_uri" in page.text


async def test_pushed_requests_of_other_clients_expired_or_unknown_are_refused(stack: Stack, rp: RelyingParty) -> None:
    client, b = browser(rp)
    async with client:
        uri = (await push(stack, App(stack, rp))).json()["request_uri"]
        for url in (
            par_url(stack, "flow-spa", uri),  # another client
            par_url(stack, "flow-app", uri + "x"),  # unknown
            par_url(stack, "flow-app", "https://example.com/request"),  # not ours
        ):
            page = await b.open(url)
            assert isinstance(page, Page) and page.status == 400, url
            assert "invalid_request_uri" in page.text
        # still usable by its own client after those attempts; then expire one
        async with stack.auth.state.runtime.db.session() as s:
            await s.exec(
                update(PushedRequest)
                .where(col(PushedRequest.request_uri) == uri)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
            await s.commit()
        page = await b.open(par_url(stack, "flow-app", uri))
        assert isinstance(page, Page) and page.status == 400 and "invalid_request_uri" in page.text
        # a request_uri with a repeated client_id, or none
        page = await b.open(f"{stack.issuer}/oauth2/authorize?{urlencode({'request_uri': uri})}")
        assert isinstance(page, Page) and page.status == 400


async def test_the_same_request_uri_used_twice_at_once_works_once(stack: Stack, rp: RelyingParty) -> None:
    uri = (await push(stack, App(stack, rp))).json()["request_uri"]
    async with httpx.AsyncClient() as one, httpx.AsyncClient() as two:
        answers = await asyncio.gather(*(c.get(par_url(stack, "flow-app", uri)) for c in (one, two)))
    assert sorted(r.status_code for r in answers) == [200, 400], [r.status_code for r in answers]


async def test_pushed_parameters_are_checked_at_push_time(stack: Stack, rp: RelyingParty) -> None:
    app = App(stack, rp)
    cases = (
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_request"),
        ({"scope": "openid bogus"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"code_challenge": ""}, "invalid_request"),
        ({"request_uri": "urn:ietf:params:oauth:request_uri:abc"}, "invalid_request"),
    )
    for extra, error in cases:
        r = await push(stack, app, **extra)
        assert r.status_code == 400, (extra, r.text)
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["error"] == error and r.json()["error_description"], (extra, r.json())
    # client authentication is required
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{stack.issuer}/oauth2/par", data=app.params(), auth=("flow-app", "wrong"))
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"
        r = await c.post(f"{stack.issuer}/oauth2/par", data={**app.params(), "scope": ["openid", "profile"]})
        assert r.status_code in (400, 401) and "error" in r.json()
        # a public client pushes with its client_id
        spa = App(stack, rp, "flow-spa")
        r = await c.post(f"{stack.issuer}/oauth2/par", data=spa.params())
        assert r.status_code == 201, r.text
