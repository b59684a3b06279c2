"""Sign-in in a real headless browser (Debian's chromium driven by Playwright): PKCE login through the HTML
form, consent, single sign-on into a second app, MFA step-up with a one-time code, language negotiation.

Two apps are registered for the test with their redirect URI on a small relying-party server the test runs, so
the browser really lands there and the test reads where it was sent.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tongban_auth import clients
from tongban_auth.models import ClientType
from tongban_auth.schemas import AuthMethod, ClientCreate, GrantType
from tongban_kit.demo import DEMO_PASSWORD
from tongban_kit.testing.serve import serve

from .conftest import Stack

pytestmark = pytest.mark.browser


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class RelyingParty:
    """A relying party's callback endpoint: records every URL the browser was sent to."""

    def __init__(self) -> None:
        self.landed: list[str] = []
        self.url = ""
        self.secret = secrets.token_urlsafe(32)

    @property
    def redirect_uri(self) -> str:
        return f"{self.url}/callback"

    async def callback(self, request: Request) -> HTMLResponse:
        self.landed.append(str(request.url))
        return HTMLResponse("<!doctype html><html lang=en><title>app</title><p>signed in</p></html>")


@pytest.fixture(scope="module")
async def rp(stack: Stack) -> AsyncIterator[RelyingParty]:
    """The relying party, serving its callback, with a public (`browser-spa`) and a confidential app (`browser-app`)."""
    party = RelyingParty()
    app = Starlette(routes=[Route("/callback", party.callback)])
    async with serve(app, lifespan="off") as url:
        party.url = url
        base = {"redirect_uris": [party.redirect_uri], "scopes": ["openid", "profile", "email", "offline_access"]}
        async with stack.auth.state.runtime.db.session() as s:
            await clients.register(
                s,
                ClientCreate(
                    client_id="browser-spa",
                    name="浏览器测试应用",
                    client_type=ClientType.public,
                    grant_types=[GrantType.authorization_code, GrantType.refresh_token],
                    **base,
                ),
                actor="test",
                loopback_allowed=True,
            )
        async with stack.auth.state.runtime.db.session() as s:
            await clients.register(
                s,
                ClientCreate(
                    client_id="browser-app",
                    name="Browser test app",
                    client_type=ClientType.confidential,
                    token_endpoint_auth_method=AuthMethod.client_secret_basic,
                    grant_types=[GrantType.authorization_code, GrantType.refresh_token],
                    **base,
                ),
                actor="test",
                loopback_allowed=True,
                secret=party.secret,
            )
        yield party


class App:
    """An app signing people in: builds authorization URLs and catches the browser at its redirect URI."""

    def __init__(self, stack: Stack, rp: RelyingParty, client_id: str, confidential: bool = False) -> None:
        self.stack, self.rp, self.client_id = stack, rp, client_id
        self.secret = rp.secret if confidential else None
        self.verifier, self.challenge = pkce()
        self.state = secrets.token_urlsafe(8)
        self.nonce = secrets.token_urlsafe(8)

    def authorize_url(self, scope: str = "openid profile", **extra: str) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.rp.redirect_uri,
            "scope": scope,
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
            **extra,
        }
        return f"{self.stack.issuer}/oauth2/authorize?{urlencode(params)}"

    async def exchange(self, callback: str) -> dict[str, Any]:
        q = parse_qs(urlsplit(callback).query)
        assert q["state"] == [self.state], callback
        assert q["iss"] == [self.stack.issuer]
        data = {
            "grant_type": "authorization_code",
            "code": q["code"][0],
            "redirect_uri": self.rp.redirect_uri,
            "code_verifier": self.verifier,
        }
        auth = None
        if self.secret is None:
            data["client_id"] = self.client_id
        else:
            auth = (self.client_id, self.secret)
        async with httpx.AsyncClient() as c:
            r = await c.post(f"{self.stack.issuer}/oauth2/token", data=data, auth=auth)
        assert r.status_code == 200, r.text
        tokens: dict[str, Any] = r.json()
        return tokens


async def new_page(browser: Any, rp: RelyingParty, locale: str = "zh-CN") -> tuple[Any, Any, list[str]]:
    context = await browser.new_context(locale=locale)
    page = await context.new_page()
    return context, page, rp.landed


async def login(page: Any, username: str = "demo-citizen") -> None:
    await page.fill("#login", username)
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("#submit")


async def test_pkce_login_consent_and_sso_into_a_second_app(stack: Stack, rp: RelyingParty, browser: Any) -> None:
    context, page, landed = await new_page(browser, rp)
    spa = App(stack, rp, "browser-spa")
    await page.goto(spa.authorize_url())
    assert await page.get_attribute("html", "lang") == "zh-CN"
    assert await page.is_visible("#login") and await page.is_visible("#password")
    await login(page)
    await page.wait_for_selector("button[name=decision][value=approve]")
    await page.click("button[name=decision][value=approve]")
    await page.wait_for_url(f"{rp.redirect_uri}*")
    tokens = await spa.exchange(landed[-1])
    assert tokens["token_type"].lower() == "bearer" and "id_token" in tokens

    # a second app: the SSO session signs the person in without the login form (consent is asked once)
    app = App(stack, rp, "browser-app", confidential=True)
    await page.goto(app.authorize_url())
    assert not await page.is_visible("#password")
    await page.click("button[name=decision][value=approve]")
    await page.wait_for_url(f"{rp.redirect_uri}*")
    second = await app.exchange(landed[-1])
    assert second["access_token"] != tokens["access_token"]

    # and again: consent remembered, straight back to the app
    before = len(landed)
    await page.goto(App(stack, rp, "browser-app", confidential=True).authorize_url())
    await page.wait_for_url(f"{rp.redirect_uri}*")
    assert len(landed) == before + 1 and "code=" in landed[-1]
    await context.close()


async def test_wrong_password_shows_an_accessible_error_in_english(
    stack: Stack, rp: RelyingParty, browser: Any
) -> None:
    context, page, _landed = await new_page(browser, rp, locale="en-US")
    await page.goto(App(stack, rp, "browser-spa").authorize_url())
    assert await page.get_attribute("html", "lang") == "en"
    await page.fill("#login", "demo-citizen2")
    await page.fill("#password", "not-the-password")
    await page.click("#submit")
    alert = page.locator("[role=alert]")
    await alert.wait_for()
    assert (await alert.inner_text()).strip()
    assert await page.input_value("#login") == "demo-citizen2"
    await context.close()


async def test_mfa_step_up_with_a_one_time_code(stack: Stack, rp: RelyingParty, browser: Any) -> None:
    context, page, landed = await new_page(browser, rp)
    spa = App(stack, rp, "browser-spa")
    await page.goto(spa.authorize_url())
    await login(page, "demo-citizen3")
    await page.click("button[name=decision][value=approve]")
    await page.wait_for_url(f"{rp.redirect_uri}*")

    # the app asks for multi-factor authentication: the session has a password only, so a second factor is due
    stepped = App(stack, rp, "browser-spa")
    await page.goto(stepped.authorize_url(acr_values=stack.settings.acr_mfa))
    await page.wait_for_selector("#code")
    await page.click("#send")
    await page.wait_for_selector("#code")
    code = stack.auth.state.otp_outbox[-1]["code"]
    await page.fill("#code", code)
    await page.click("#submit")
    await page.wait_for_url(f"{rp.redirect_uri}*")
    tokens = await stepped.exchange(landed[-1])
    async with httpx.AsyncClient() as c:
        jwks = (await c.get(f"{stack.issuer}/oauth2/jwks")).json()
    from joserfc import jwt
    from joserfc.jwk import KeySet

    claims = jwt.decode(tokens["id_token"], KeySet.import_key_set(jwks)).claims
    assert claims["acr"] == stack.settings.acr_mfa
    assert "pwd" in claims["amr"] and "mfa" in claims["amr"]
    assert claims["nonce"] == stepped.nonce
    await context.close()
