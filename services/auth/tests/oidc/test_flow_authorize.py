"""The authorization endpoint through HTTP with the form browser: request checks, error pages and error redirects,
POST requests, repeated parameters, the security headers and cookies of the pages, and session fixation.
"""

from __future__ import annotations

from urllib.parse import urlencode

import httpx

from tongban_auth import clients
from tongban_auth.models import ClientType
from tongban_auth.schemas import ClientCreate, GrantType
from tongban_kit.testing.browser import Page

from .conftest import Stack
from .flow_support import App, RelyingParty, browser, has_form, id_claims, login, rp, session_cookie, sign_in

__all__ = ["rp"]


def error_page(page: Page | str, status: int, code: str) -> Page:
    """Check that the browser stayed on our error page (no redirect anywhere) with an OAuth error code."""
    assert isinstance(page, Page), f"redirected to {page}"
    assert page.status == status, (page.status, page.text[:500])
    assert code in page.text, page.text[:1000]
    assert not page.forms or all("/oauth2/" in f.action for f in page.forms)
    return page


async def test_unknown_client_and_bad_redirect_uri_show_the_error_page(stack: Stack, rp: RelyingParty) -> None:
    async with httpx.AsyncClient() as c:
        app = App(stack, rp)
        for params, code in (
            ({**app.params(), "client_id": "no-such-app"}, "invalid_client"),
            ({**app.params(), "redirect_uri": "https://evil.example/callback"}, "invalid_request"),
            ({**app.params(), "redirect_uri": rp.redirect_uri + "/more"}, "invalid_request"),
            ({k: v for k, v in app.params().items() if k != "client_id"}, "invalid_request"),
        ):
            r = await c.get(f"{stack.issuer}/oauth2/authorize?{urlencode(params)}")
            assert r.status_code == 400, (params, r.status_code, r.headers.get("location"))
            assert "location" not in r.headers
            assert r.headers["content-type"].startswith("text/html")
            assert r.headers["cache-control"] == "no-store"
            assert code in r.text


async def test_errors_after_the_redirect_check_go_back_with_state_and_iss(stack: Stack, rp: RelyingParty) -> None:
    client, b = browser(rp)
    async with client:
        for extra, error in (
            ({"scope": "openid bogus"}, "invalid_scope"),
            ({"response_type": "token"}, "unsupported_response_type"),
            ({"code_challenge_method": "plain"}, "invalid_request"),
            ({"prompt": "none login"}, "invalid_request"),
            ({"max_age": "-1"}, "invalid_request"),
            ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
        ):
            app = App(stack, rp)
            q = app.callback(await b.open(app.url(**extra)))
            assert q["error"] == error and q["error_description"], (extra, q)
            assert "code" not in q


async def test_redirect_uri_is_required_by_openid_requests_and_with_several_registered(
    stack: Stack, rp: RelyingParty
) -> None:
    body = ClientCreate(
        client_id="flow-two",
        name="App with two callbacks",
        client_type=ClientType.public,
        grant_types=[GrantType.authorization_code],
        scopes=["openid", "profile"],
        redirect_uris=[rp.redirect_uri, rp.url + "/other"],
    )
    async with stack.auth.state.runtime.db.session() as s:
        await clients.register(s, body, actor="test", loopback_allowed=True)
    async with httpx.AsyncClient() as c:
        one, two = App(stack, rp), App(stack, rp, "flow-two")
        for app, scope in ((one, "openid profile"), (two, "profile"), (two, "openid")):
            params = {k: v for k, v in app.params(scope).items() if k != "redirect_uri"}
            r = await c.get(f"{stack.issuer}/oauth2/authorize?{urlencode(params)}")
            assert r.status_code == 400 and "location" not in r.headers, (app.client_id, scope, r.status_code)
            assert "redirect_uri is required" in r.text
        # a plain OAuth request of a client with one registered URI may leave it out
        params = {k: v for k, v in one.params("profile").items() if k != "redirect_uri"}
        r = await c.get(f"{stack.issuer}/oauth2/authorize?{urlencode(params)}")
        assert r.status_code == 200 and "/oauth2/login" in r.text, r.text[:300]


async def test_post_to_the_authorization_endpoint(stack: Stack, rp: RelyingParty) -> None:
    client, b = browser(rp)
    async with client:
        app = App(stack, rp)
        r = await client.post(f"{stack.issuer}/oauth2/authorize", data=app.params())
        assert r.status_code == 200 and "/oauth2/login" in r.text
        page = await b._follow(r)
        page = await login(b, page, "demo-citizen")
        assert has_form(page, "/oauth2/consent")
        assert isinstance(page, Page)
        tokens = await app.redeem(await b.submit(page, "/oauth2/consent", button=("decision", "approve")))
        assert (await id_claims(stack, tokens["id_token"]))["nonce"] == app.nonce


async def test_repeated_parameters_are_refused(stack: Stack, rp: RelyingParty) -> None:
    client, _ = browser(rp)
    async with client:
        app = App(stack, rp)
        base = list(app.params().items())
        # before the client and redirect URI are trusted: the error page
        for name in ("client_id", "redirect_uri"):
            value = dict(base)[name]
            r = await client.get(f"{stack.issuer}/oauth2/authorize?{urlencode([*base, (name, value)])}")
            assert r.status_code == 400 and "location" not in r.headers, name
            assert "more than once" in r.text
        # afterwards: back to the app
        for name in ("scope", "state", "code_challenge", "prompt"):
            r = await client.get(f"{stack.issuer}/oauth2/authorize?{urlencode([*base, (name, 'x')])}")
            assert r.status_code == 303, (name, r.text[:300])
            q = app.callback(r.headers["location"]) if name != "state" else None
            if q is not None:
                assert q["error"] == "invalid_request", q
        # a repeated state is refused too; the redirect carries no state then (which one would it be?)
        r = await client.get(f"{stack.issuer}/oauth2/authorize?{urlencode([*base, ('state', 'other')])}")
        assert "error=invalid_request" in r.headers["location"]


async def test_pages_are_not_cached_and_cookies_are_httponly_samesite(stack: Stack, rp: RelyingParty) -> None:
    client, b = browser(rp)
    async with client:
        app = App(stack, rp)
        r = await client.get(app.url())
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        for header in r.headers.get_list("set-cookie"):
            assert "httponly" in header.lower() and "samesite=lax" in header.lower(), header
        page = await b._follow(r)
        assert isinstance(page, Page)
        form = page.form("/oauth2/login")
        r = await client.post(
            f"{stack.issuer}/oauth2/login", data={**form.fields, "login": "demo-citizen", "password": "Tongban-Demo-1"}
        )
        assert r.headers["cache-control"] == "no-store"
        cookies = [h for h in r.headers.get_list("set-cookie") if h.startswith(stack.settings.session_cookie + "=")]
        assert len(cookies) == 1, r.headers.get_list("set-cookie")
        assert "httponly" in cookies[0].lower() and "samesite=lax" in cookies[0].lower()


async def test_the_session_cookie_changes_at_every_login(stack: Stack, rp: RelyingParty) -> None:
    client, b = browser(rp)
    async with client:
        # a cookie planted before sign-in is never adopted
        client.cookies.set(stack.settings.session_cookie, "planted-by-someone-else", domain="127.0.0.1")
        first = await sign_in(stack, rp, b, "demo-citizen2")
        one = session_cookie(client, stack)
        assert one and one != "planted-by-someone-else"
        sid = (await id_claims(stack, first["id_token"]))["sid"]
        # signing in again (prompt=login) keeps the session of the same person but with a new cookie
        app = App(stack, rp)
        page = await b.open(app.url(prompt="login"))
        tokens = await app.redeem(await login(b, page, "demo-citizen2"))
        two = session_cookie(client, stack)
        assert two and two != one
        assert (await id_claims(stack, tokens["id_token"]))["sid"] == sid
        # the old cookie no longer names the session
        async with httpx.AsyncClient() as other:
            other.cookies.set(stack.settings.session_cookie, one)
            r = await other.get(App(stack, rp).url(prompt="none"))
            assert "error=login_required" in r.headers["location"]
