"""Prompts and session checks of the authorization endpoint through HTTP: `prompt=none|login|consent`, `max_age`,
`login_hint`, `acr_values` step-up, and the interaction binding (CSRF, other browsers, tampering, expiry).
"""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import urlencode

import httpx

from tongban_auth.interaction import LIFETIME_SECONDS, open_sealed, seal
from tongban_auth.web.csrf import CsrfSigner
from tongban_kit.testing.browser import Page

from .conftest import Stack
from .flow_support import App, RelyingParty, approve, browser, has_form, id_claims, introspect, login, rp, sign_in

__all__ = ["rp"]


async def test_prompt_none_without_a_session_is_login_required(stack: Stack, rp: RelyingParty) -> None:
    client, b = browser(rp)
    async with client:
        app = App(stack, rp)
        q = app.callback(await b.open(app.url(prompt="none")))
        assert q["error"] == "login_required"


async def test_prompt_none_with_a_session_needs_consent_then_answers_without_a_page(
    stack: Stack, rp: RelyingParty
) -> None:
    client, b = browser(rp)
    async with client:
        await sign_in(stack, rp, b, "demo-citizen", scope="openid profile")
        # email was never approved
        app = App(stack, rp)
        q = app.callback(await b.open(app.url("openid profile email", prompt="none")))
        assert q["error"] == "consent_required"
        # what was approved: a code at once, no page
        app = App(stack, rp)
        tokens = await app.redeem(await b.open(app.url("openid profile", prompt="none")))
        assert (await id_claims(stack, tokens["id_token"]))["nonce"] == app.nonce
        # MFA asked with prompt=none and a password-only session
        app = App(stack, rp)
        q = app.callback(await b.open(app.url(prompt="none", acr_values=stack.settings.acr_mfa)))
        assert q["error"] == "interaction_required"


async def test_prompt_login_forces_the_login_page_and_keeps_or_replaces_the_session(
    stack: Stack, rp: RelyingParty
) -> None:
    client, b = browser(rp)
    async with client:
        first_tokens = await sign_in(stack, rp, b, "demo-citizen2")
        first = await id_claims(stack, first_tokens["id_token"])
        # the same person again: the same session, a fresh auth_time
        app = App(stack, rp)
        page = await b.open(app.url(prompt="login"))
        assert has_form(page, "/oauth2/login")
        await asyncio.sleep(1.1)
        again = await id_claims(stack, (await app.redeem(await login(b, page, "demo-citizen2")))["id_token"])
        assert again["sid"] == first["sid"] and again["sub"] == first["sub"]
        assert again["auth_time"] > first["auth_time"]
        # another person: a new session replaces the old one
        app = App(stack, rp)
        page = await login(b, await b.open(app.url(prompt="login")), "demo-citizen3")
        page = await approve(b, page)
        other = await id_claims(stack, (await app.redeem(page))["id_token"])
        assert other["sub"] != first["sub"] and other["sid"] != first["sid"]
        # the browser now carries the second person's session
        app = App(stack, rp)
        tokens = await app.redeem(await b.open(app.url(prompt="none")))
        assert (await id_claims(stack, tokens["id_token"]))["sid"] == other["sid"]
        # and the first person's session is over: its grant's access token is no longer active
        assert not (await introspect(stack, rp, first_tokens["access_token"]))["active"]


async def test_max_age_forces_a_fresh_login(stack: Stack, rp: RelyingParty) -> None:
    client, b = browser(rp)
    async with client:
        first = await id_claims(stack, (await sign_in(stack, rp, b, "demo-staff"))["id_token"])
        # a generous max_age: single sign-on
        app = App(stack, rp)
        tokens = await app.redeem(await b.open(app.url(max_age="3600")))
        assert (await id_claims(stack, tokens["id_token"]))["auth_time"] == first["auth_time"]
        # max_age=0: the login page again, and with prompt=none an error instead
        await asyncio.sleep(1.1)
        app = App(stack, rp)
        q = app.callback(await b.open(app.url(max_age="0", prompt="none")))
        assert q["error"] == "login_required"
        app = App(stack, rp)
        page = await b.open(app.url(max_age="0"))
        assert has_form(page, "/oauth2/login")
        claims = await id_claims(stack, (await app.redeem(await login(b, page, "demo-staff")))["id_token"])
        assert claims["auth_time"] > first["auth_time"] and claims["sid"] == first["sid"]


async def test_prompt_consent_asks_again_and_login_hint_prefills(stack: Stack, rp: RelyingParty) -> None:
    client, b = browser(rp)
    async with client:
        app = App(stack, rp)
        page = await b.open(app.url(login_hint="demo-admin"))
        assert isinstance(page, Page) and 'value="demo-admin"' in page.text
        page = await approve(b, await login(b, page, "demo-admin"))
        await app.redeem(page)
        # remembered: no page
        app = App(stack, rp)
        await app.redeem(await b.open(app.url()))
        # prompt=consent: asked again; denying goes back with access_denied
        app = App(stack, rp)
        page = await b.open(app.url(prompt="consent"))
        assert has_form(page, "/oauth2/consent")
        assert isinstance(page, Page)
        q = app.callback(await b.submit(page, "/oauth2/consent", button=("decision", "deny")))
        assert q["error"] == "access_denied"
        app = App(stack, rp)
        await app.redeem(await approve(b, await b.open(app.url(prompt="consent"))))


async def test_acr_values_step_up_through_the_forms(stack: Stack, rp: RelyingParty) -> None:
    client, b = browser(rp)
    async with client:
        await sign_in(stack, rp, b, "demo-citizen3")
        app = App(stack, rp)
        page = await b.open(app.url(acr_values=stack.settings.acr_mfa))
        assert has_form(page, "/oauth2/mfa") and isinstance(page, Page)
        method = page.form("/oauth2/mfa").fields.get("method")
        assert method in ("sms", "email"), page.form("/oauth2/mfa")
        page = await b.submit(page, "/oauth2/mfa", {"op": "send", "method": method})
        assert isinstance(page, Page) and page.status == 200
        code = stack.auth.state.otp_outbox[-1]["code"]
        wrong = await b.submit(page, "/oauth2/mfa", {"op": "verify", "method": method, "code": "000000"[: len(code)]})
        assert isinstance(wrong, Page) and wrong.status == 401
        tokens = await app.redeem(
            await b.submit(wrong, "/oauth2/mfa", {"op": "verify", "method": method, "code": code})
        )
        claims = await id_claims(stack, tokens["id_token"])
        assert claims["acr"] == stack.settings.acr_mfa and "mfa" in claims["amr"]
        # the session now satisfies MFA, also with prompt=none
        app = App(stack, rp)
        assert "code" in app.callback(await b.open(app.url(prompt="none", acr_values=stack.settings.acr_mfa)))


async def test_a_login_form_posted_from_another_browser_is_refused(stack: Stack, rp: RelyingParty) -> None:
    app = App(stack, rp)
    one, b1 = browser(rp)
    two, b2 = browser(rp)
    async with one, two:
        page1 = await b1.open(app.url())
        page2 = await b2.open(app.url())
        assert isinstance(page1, Page) and isinstance(page2, Page)
        stolen = page1.form("/oauth2/login").fields["interaction"]
        own = page2.form("/oauth2/login").fields
        r = await two.post(
            f"{stack.issuer}/oauth2/login",
            data={**own, "interaction": stolen, "login": "demo-citizen", "password": "Tongban-Demo-1"},
        )
        assert r.status_code == 400 and "interaction_expired" in r.text
        assert stack.settings.session_cookie not in r.headers.get("set-cookie", "")
        # the other browser's cookie with the first browser's token: CSRF check fails
        r = await two.post(f"{stack.issuer}/oauth2/login", data={**page1.form("/oauth2/login").fields, "login": "x"})
        assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")


async def test_tampered_expired_or_missing_state_gives_an_error_page(stack: Stack, rp: RelyingParty) -> None:
    client, b = browser(rp)
    async with client:
        page = await b.open(App(stack, rp).url())
        assert isinstance(page, Page)
        fields = page.form("/oauth2/login").fields
        creds = {"login": "demo-citizen", "password": "Tongban-Demo-1"}
        url = f"{stack.issuer}/oauth2/login"
        sealed = fields["interaction"]
        tampered = sealed[:-6] + ("AAAAAA" if not sealed.endswith("AAAAAA") else "BBBBBB")
        for bad in (tampered, "", "x" * 20_000):
            r = await client.post(url, data={**fields, "interaction": bad, **creds})
            assert r.status_code == 400 and "interaction_expired" in r.text, (bad[:20], r.status_code)
        # an interaction older than its lifetime
        cookie = client.cookies.get("tongban_csrf")
        key = CsrfSigner(stack.settings.key_encryption_key).browser_key(cookie or "")
        box = stack.auth.state.interaction_box
        it = open_sealed(box, sealed, key)
        it.started = time.time() - LIFETIME_SECONDS - 5
        r = await client.post(url, data={**fields, "interaction": seal(box, it, key), **creds})
        assert r.status_code == 400 and "interaction_expired" in r.text
        # no CSRF token, a wrong one, or no cookie at all
        for data in ({k: v for k, v in fields.items() if k != "csrf"}, {**fields, "csrf": "A" * 43}):
            r = await client.post(url, data={**data, **creds})
            assert r.status_code == 403 and r.headers["content-type"].startswith("text/html"), r.text[:200]
            assert r.headers["cache-control"] == "no-store"
        async with httpx.AsyncClient() as bare:
            r = await bare.post(url, data={**fields, **creds})
            assert r.status_code == 403
        # other forms too
        for path in ("/oauth2/mfa", "/oauth2/consent", "/oauth2/logout/confirm", "/oauth2/account/sessions/end-all"):
            r = await client.post(f"{stack.issuer}{path}", data={"interaction": sealed})
            assert r.status_code == 403, (path, r.status_code)
        # odd input never gives a 500
        for body in ("interaction=%ff%fe", "a=" + "b" * 100 + "&a=c" * 60, "\x00\x01"):
            r = await client.post(url, content=body, headers={"content-type": "application/x-www-form-urlencoded"})
            assert r.status_code < 500, (body[:20], r.status_code)
        r = await client.get(f"{stack.issuer}/oauth2/authorize?{urlencode({'client_id': 'x' * 3000})}")
        assert r.status_code == 400


async def test_mfa_asked_of_a_person_without_a_second_factor_is_reported_to_the_app(
    stack: Stack, rp: RelyingParty
) -> None:
    deliverer = stack.auth.state.otp_deliverer
    stack.auth.state.otp_deliverer = None  # no SMS or email channel: this person has no usable second factor
    try:
        client, b = browser(rp)
        async with client:
            app = App(stack, rp)
            page = await b.open(app.url(acr_values=stack.settings.acr_mfa))
            q = app.callback(await login(b, page, "demo-citizen"))
            assert q["error"] == "unmet_authentication_requirements", q
            assert "account page" in q["error_description"] and q["state"] == app.state
            # the password sign-in stands (so the account page can set up an authenticator at once) ...
            account = await b.open(f"{stack.issuer}/oauth2/account")
            assert isinstance(account, Page) and has_form(account, "/oauth2/account/totp")
            # ... and a later step-up from that session gets the same answer, not a page it cannot pass
            app = App(stack, rp)
            q = app.callback(await b.open(app.url(acr_values=stack.settings.acr_mfa)))
            assert q["error"] == "unmet_authentication_requirements", q
    finally:
        stack.auth.state.otp_deliverer = deliverer


async def test_the_consent_page_lists_only_the_scopes_the_person_is_entitled_to(stack: Stack, rp: RelyingParty) -> None:
    client, b = browser(rp)
    async with client:
        app = App(stack, rp)
        page = await login(b, await b.open(app.url("openid profile admin message:read")), "demo-citizen")
        assert isinstance(page, Page) and has_form(page, "/oauth2/consent")
        listed = re.findall(r'<code class="scope-name">([^<]+)</code>', page.text)
        assert listed == ["openid", "profile", "message:read"]
        tokens = await app.redeem(await approve(b, page))
        assert tokens["scope"].split() == ["openid", "profile", "message:read"]
        # an administrator of the whole tree is asked for admin, and gets it
        client2, b2 = browser(rp)
        async with client2:
            app = App(stack, rp)
            page = await login(b2, await b2.open(app.url("openid admin")), "demo-admin")
            assert isinstance(page, Page)
            assert re.findall(r'<code class="scope-name">([^<]+)</code>', page.text) == ["openid", "admin"]
            tokens = await app.redeem(await approve(b2, page))
            assert tokens["scope"].split() == ["openid", "admin"]
