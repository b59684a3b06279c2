"""The account page through HTTP: sessions (current marked, ending another, signing out everywhere), withdrawing an
app's consent, and TOTP enrolment with recovery codes, then signing in with them.
"""

from __future__ import annotations

import html
import re
import time
from urllib.parse import parse_qs, urlsplit

import httpx

from tongban_auth import totp
from tongban_kit.testing.browser import Browser, Page

from .conftest import Stack
from .flow_support import App, RelyingParty, browser, has_form, id_claims, introspect, login, rp, sign_in

__all__ = ["rp"]


async def account(stack: Stack, b: Browser) -> Page:
    """The account page of a signed-in browser."""
    page = await b.open(f"{stack.issuer}/oauth2/account")
    assert isinstance(page, Page) and page.status == 200 and has_form(page, "/oauth2/account/sessions/end")
    assert "no-store" in (await b.client.get(f"{stack.issuer}/oauth2/account")).headers["cache-control"]
    return page


def session_forms(page: Page) -> dict[str, dict[str, str]]:
    """The end-session forms of the account page by sid."""
    return {f.fields["sid"]: f.fields for f in page.forms if "sessions/end" in f.action and "sid" in f.fields}


async def signed_out(stack: Stack, rp: RelyingParty, b: Browser) -> bool:
    """Whether the browser has to log in again."""
    return has_form(await b.open(App(stack, rp).url()), "/oauth2/login")


async def test_sessions_are_listed_and_can_be_ended(stack: Stack, rp: RelyingParty) -> None:
    (ca, a), (cb, b), (cc, c) = browser(rp), browser(rp), browser(rp)
    async with ca, cb, cc:
        sid_a = (await id_claims(stack, (await sign_in(stack, rp, a, "hz-staff"))["id_token"]))["sid"]
        sid_b = (await id_claims(stack, (await sign_in(stack, rp, b, "hz-staff"))["id_token"]))["sid"]
        sid_c = (await id_claims(stack, (await sign_in(stack, rp, c, "hz-staff"))["id_token"]))["sid"]
        page = await account(stack, a)
        assert set(session_forms(page)) == {sid_a, sid_b, sid_c}
        assert page.text.count('class="item current"') == 1
        current = page.text.index('class="item current"')
        assert page.text.index(sid_a) > current and page.text.index(sid_a) - current < 2000

        # end another browser's session: back at the account page, that browser signs in again
        page = await a.submit(page, "/oauth2/account/sessions/end", session_forms(page)[sid_b])
        assert isinstance(page, Page) and set(session_forms(page)) == {sid_a, sid_c}
        assert await signed_out(stack, rp, b)
        # someone else's sid, or nonsense: not found
        r = await ca.post(
            f"{stack.issuer}/oauth2/account/sessions/end", data={**session_forms(page)[sid_a], "sid": sid_b}
        )
        assert r.status_code == 404

        # sign out everywhere: every session ends, this browser's cookie is cleared
        r = await ca.post(f"{stack.issuer}/oauth2/account/sessions/end-all", data=page.form("end-all").fields)
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        assert any(
            h.startswith(stack.settings.session_cookie + "=") and "max-age=0" in h.lower()
            for h in r.headers.get_list("set-cookie")
        ), r.headers.get_list("set-cookie")
        assert await signed_out(stack, rp, a) and await signed_out(stack, rp, c)


async def test_withdrawing_consent_revokes_the_grants_and_asks_again(stack: Stack, rp: RelyingParty) -> None:
    client, b = browser(rp)
    async with client:
        tokens = await sign_in(stack, rp, b, "demo-citizen", scope="openid profile email offline_access")
        page = await account(stack, b)
        form = next(f for f in page.forms if "consents/revoke" in f.action and f.fields.get("client_id") == "flow-app")
        page = await b.submit(page, "/oauth2/account/consents/revoke", form.fields)
        assert isinstance(page, Page) and not any("consents/revoke" in f.action for f in page.forms)
        assert not (await introspect(stack, rp, tokens["access_token"]))["active"]
        async with httpx.AsyncClient() as c:
            r = await c.post(
                f"{stack.issuer}/oauth2/token",
                data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                auth=("flow-app", rp.secret),
            )
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
        # still signed in, but the app must ask again
        assert has_form(await b.open(App(stack, rp).url()), "/oauth2/consent")


def otpauth_secret(page: Page) -> str:
    """The TOTP secret in the enrolment page's otpauth link."""
    link = re.search(r'href="(otpauth://[^"]+)"', page.text)
    assert link, page.text[:2000]
    return parse_qs(urlsplit(html.unescape(link.group(1))).query)["secret"][0]


def code_at(secret: str, offset_steps: int = 0) -> str:
    """The TOTP code of a step relative to now."""
    return totp.totp(totp.decode_secret(secret), time.time() + offset_steps * totp.STEP_SECONDS)


async def test_totp_enrolment_then_sign_in_with_totp_and_a_recovery_code(stack: Stack, rp: RelyingParty) -> None:
    user = "sw-staff"
    client, b = browser(rp)
    async with client:
        # without a session the account page asks for the password first
        page = await b.open(f"{stack.issuer}/oauth2/account")
        page = await login(b, page, user)
        assert isinstance(page, Page) and has_form(page, "/oauth2/account/totp")
        page = await b.submit(page, "/oauth2/account/totp")
        assert isinstance(page, Page) and page.status == 200
        secret = otpauth_secret(page)
        assert re.sub(r"\s", "", re.search(r'id="secret">([^<]+)<', page.text).group(1)) == secret  # type: ignore[union-attr]
        page = await b.submit(page, "/oauth2/account/totp", {"code": "000000" if code_at(secret) != "000000" else "1"})
        assert isinstance(page, Page) and page.status == 400 and page.alerts
        assert otpauth_secret(page) == secret  # the same pending secret
        page = await b.submit(page, "/oauth2/account/totp", {"code": code_at(secret)})
        assert isinstance(page, Page) and page.status == 200
        codes = re.findall(r"<li><code>([^<]+)</code></li>", page.text)
        assert len(codes) == totp.RECOVERY_COUNT and secret not in page.text
        # shown once: asking again asks for a code of the app now set up (to replace it), and shows nothing
        page = await b.submit(await account(stack, b), "/oauth2/account/totp")
        assert isinstance(page, Page) and not re.findall(r"<li><code>", page.text) and "otpauth://" not in page.text

    # a password login now asks for the authenticator code (the enrolment's step is used up: take the next)
    client, b = browser(rp)
    async with client:
        app = App(stack, rp)
        page = await login(b, await b.open(app.url()), user)
        assert isinstance(page, Page) and has_form(page, "/oauth2/mfa")
        assert page.form("/oauth2/mfa").fields.get("method") == "totp"
        page = await b.submit(page, "/oauth2/mfa", {"op": "verify", "method": "totp", "code": code_at(secret, 1)})
        if isinstance(page, Page) and has_form(page, "/oauth2/consent"):
            page = await b.submit(page, "/oauth2/consent", button=("decision", "approve"))
        claims = await id_claims(stack, (await app.redeem(page))["id_token"])
        assert claims["acr"] == stack.settings.acr_mfa and "otp" in claims["amr"] and "pwd" in claims["amr"]

    # a recovery code works once
    for attempt in (1, 2):
        client, b = browser(rp)
        async with client:
            app = App(stack, rp)
            page = await login(b, await b.open(app.url()), user)
            assert isinstance(page, Page)
            page = await b.submit(page, "/oauth2/mfa", {"op": "switch", "method": "recovery"})
            assert isinstance(page, Page) and page.form("/oauth2/mfa").fields.get("method") == "recovery"
            page = await b.submit(page, "/oauth2/mfa", {"op": "verify", "method": "recovery", "code": codes[0]})
            if attempt == 1:
                claims = await id_claims(stack, (await app.redeem(page))["id_token"])
                assert claims["acr"] == stack.settings.acr_mfa
            else:
                assert isinstance(page, Page) and page.status == 401 and page.alerts


async def test_replacing_the_authenticator_takes_a_code_of_the_current_one(stack: Stack, rp: RelyingParty) -> None:
    user = "demo-citizen3"
    client, b = browser(rp)
    async with client:
        page = await login(b, await b.open(f"{stack.issuer}/oauth2/account"), user)
        page = await b.submit(page, "/oauth2/account/totp")
        assert isinstance(page, Page)
        old_secret = otpauth_secret(page)
        page = await b.submit(page, "/oauth2/account/totp", {"code": code_at(old_secret)})
        assert isinstance(page, Page)
        old_codes = re.findall(r"<li><code>([^<]+)</code></li>", page.text)

        # the session alone is not enough: the current app's code (or a recovery code) is asked for
        page = await b.submit(await account(stack, b), "/oauth2/account/totp")
        assert isinstance(page, Page) and page.status == 200 and "current_code" in page.text
        assert "otpauth://" not in page.text
        wrong = await b.submit(page, "/oauth2/account/totp", {"current_code": "000000"})
        assert isinstance(wrong, Page) and wrong.status == 401 and wrong.alerts and "otpauth://" not in wrong.text
        page = await b.submit(wrong, "/oauth2/account/totp", {"current_code": old_codes[0]})
        assert isinstance(page, Page) and page.status == 200
        new_secret = otpauth_secret(page)
        assert new_secret != old_secret
        page = await b.submit(page, "/oauth2/account/totp", {"code": code_at(new_secret)})
        assert isinstance(page, Page)
        new_codes = re.findall(r"<li><code>([^<]+)</code></li>", page.text)
        assert len(new_codes) == totp.RECOVERY_COUNT and not set(new_codes) & set(old_codes)

    # the old app's codes and recovery codes are gone; the new app signs in
    client, b = browser(rp)
    async with client:
        app = App(stack, rp)
        page = await login(b, await b.open(app.url()), user)
        assert isinstance(page, Page) and page.form("/oauth2/mfa").fields.get("method") == "totp"
        old = await b.submit(page, "/oauth2/mfa", {"op": "verify", "method": "totp", "code": code_at(old_secret, 1)})
        if code_at(old_secret, 1) != code_at(new_secret, 1):
            assert isinstance(old, Page) and old.status == 401
        page = await b.submit(page, "/oauth2/mfa", {"op": "switch", "method": "recovery"})
        assert isinstance(page, Page)
        gone = await b.submit(page, "/oauth2/mfa", {"op": "verify", "method": "recovery", "code": old_codes[1]})
        assert isinstance(gone, Page) and gone.status == 401
        page = await b.submit(gone, "/oauth2/mfa", {"op": "switch", "method": "totp"})
        assert isinstance(page, Page)
        page = await b.submit(page, "/oauth2/mfa", {"op": "verify", "method": "totp", "code": code_at(new_secret, 1)})
        if isinstance(page, Page) and has_form(page, "/oauth2/consent"):
            page = await b.submit(page, "/oauth2/consent", button=("decision", "approve"))
        claims = await id_claims(stack, (await app.redeem(page))["id_token"])
        assert claims["acr"] == stack.settings.acr_mfa
