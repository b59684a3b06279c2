"""Where a real browser matters: after the logout confirmation form, Chromium must be allowed (CSP `form-action`)
to follow the redirect back to the app, and a pushed request must run through the pages like any other.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from .conftest import Stack
from .flow_support import PASSWORD, App, RelyingParty, rp

__all__ = ["rp"]


pytestmark = pytest.mark.browser


async def test_pushed_request_sign_in_then_confirmed_logout_back_to_the_app(
    stack: Stack, rp: RelyingParty, browser: Any
) -> None:
    app = App(stack, rp)
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{stack.issuer}/oauth2/par", data=app.params(), auth=("flow-app", rp.secret))
    assert r.status_code == 201, r.text
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    try:
        query = urlencode({"client_id": "flow-app", "request_uri": r.json()["request_uri"]})
        await page.goto(f"{stack.issuer}/oauth2/authorize?{query}")
        await page.fill("#login", "demo-citizen2")
        await page.fill("#password", PASSWORD)
        await page.click("#submit")
        await page.click("button[name=decision][value=approve]")
        await page.wait_for_url(f"{rp.redirect_uri}*")
        tokens = await app.redeem(page.url)

        query = urlencode({"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": rp.post_logout_uri})
        # a hint of the current session ends it at once
        await page.goto(f"{stack.issuer}/oauth2/logout?{query}&state=done")
        await page.wait_for_url(f"{rp.post_logout_uri}?state=done")

        # a new session, logged out through the confirmation form
        await page.goto(App(stack, rp).url())
        await page.fill("#login", "demo-citizen2")
        await page.fill("#password", PASSWORD)
        await page.click("#submit")
        await page.wait_for_url(f"{rp.redirect_uri}*")
        query = urlencode({"client_id": "flow-app", "post_logout_redirect_uri": rp.post_logout_uri, "state": "s1"})
        await page.goto(f"{stack.issuer}/oauth2/logout?{query}")
        await page.click("#submit")
        await page.wait_for_url(f"{rp.post_logout_uri}?state=s1")
        cookies = {c["name"]: c for c in await context.cookies(stack.issuer)}
        assert stack.settings.session_cookie not in cookies
        assert cookies["tongban_csrf"]["httpOnly"] and cookies["tongban_csrf"]["sameSite"] == "Lax"
    finally:
        await context.close()
