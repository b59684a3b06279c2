"""The sign-in pages: both languages, escaping, security headers, CSRF, catalogues and static files."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from tongban_auth.config import Settings
from tongban_auth.schemas import SCOPES
from tongban_auth.web import (
    ERROR_PAGES,
    LOCALES,
    LOGIN_ERRORS,
    MFA_ERRORS,
    TEMPLATES,
    TOTP_ERRORS,
    CsrfError,
    Pages,
    format_datetime,
    qr_svg,
)
from tongban_auth.web.i18n import from_accept_language, load_catalogue, negotiate, placeholders
from tongban_auth.web.pages import MFA_METHODS, content_security_policy
from tongban_auth.web.static import assets
from tongban_kit.problems import install_problem_handlers
from tongban_kit.testing.helpers import assert_problem

HOSTILE = '<script>alert("x")</script>'
WHEN = datetime(2025, 3, 4, 6, 5, tzinfo=UTC)
OTPAUTH = "otpauth://totp/Tongban:demo-citizen?secret=JBSWY3DPEHPK3PXP&issuer=Tongban"
ACTIONS = {k: f"/oauth2/account/{k}" for k in ("end_session", "end_all", "revoke_consent", "totp_setup", "logout")}
#: representative contexts: case name → (template, context)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "login": ("login.html", {"action": "/oauth2/login", "interaction": "i-1", "client_name": "浙里办"}),
    "login-error": (
        "login.html",
        {"action": "/oauth2/login", "interaction": "i-1", "login_hint": "zhang.san", "error": "login.error.throttled"}
        | {"retry_after": 300},
    ),
    "mfa-totp": (
        "mfa.html",
        {"action": "/oauth2/mfa", "interaction": "i-2", "methods": ["totp", "recovery", "sms"], "method": "totp"},
    ),
    "mfa-sms": (
        "mfa.html",
        {"action": "/oauth2/mfa", "interaction": "i-2", "methods": ["totp", "sms", "email"], "method": "sms"}
        | {"sent_to": "138****8000", "error": "mfa.error.invalid", "retry_after": 30},
    ),
    "mfa-recovery": (
        "mfa.html",
        {"action": "/oauth2/mfa", "interaction": "i-2", "methods": ["recovery"], "method": "recovery"},
    ),
    "consent": (
        "consent.html",
        {"action": "/oauth2/consent", "interaction": "i-3", "client_name": "社保查询", "client_id": "demo-app"}
        | {"scopes": list(SCOPES), "user_name": "张三"},
    ),
    "logout": ("logout.html", {"action": "/oauth2/logout", "client_name": "社保查询", "state_blob": "s.b.1"}),
    "signed-out": ("signed_out.html", {"return_to": "https://app.example.gov.cn/bye"}),
    "error": (
        "error.html",
        {"title_key": "error.invalid_client.title", "message_key": "error.invalid_client.message"}
        | {"detail": "unknown client_id", "error_code": "invalid_client", "request_id": "req-42"},
    ),
    "account": (
        "account.html",
        {
            "user_name": "张三",
            "sessions": [
                {"sid": "s1", "created_at": WHEN, "last_seen_at": WHEN, "ip": "10.0.0.1"}
                | {"user_agent": "Firefox", "current": True},
                {"sid": "s2", "created_at": "2025-03-01T00:00:00Z", "last_seen_at": WHEN, "ip": None}
                | {"user_agent": None, "current": False},
            ],
            "consents": [
                {
                    "client_id": "demo-app",
                    "client_name": "社保查询",
                    "scopes": ["openid", "profile"],
                    "granted_at": WHEN,
                }
            ],
            "totp_enabled": False,
            "actions": ACTIONS,
        },
    ),
    "totp": (
        "totp_setup.html",
        {"secret": "JBSWY3DPEHPK3PXP", "otpauth_uri": OTPAUTH, "action": "/oauth2/account/totp"}
        | {"qr_svg": qr_svg(OTPAUTH), "error": "totp.error.invalid"},
    ),
    "totp-replace": (
        "totp_setup.html",
        {
            "replace": True,
            "action": "/oauth2/account/totp",
            "error": "mfa.error.invalid",
            "back_url": "/oauth2/account",
        },
    ),
    "totp-done": (
        "totp_setup.html",
        {"secret": "JBSWY3DPEHPK3PXP", "otpauth_uri": OTPAUTH, "action": "/oauth2/account/totp"}
        | {"recovery_codes": ["a1b2-c3d4", "e5f6-g7h8"], "back_url": "/oauth2/account"},
    ),
    "hostile": (
        "consent.html",
        {"action": "/oauth2/consent", "interaction": HOSTILE, "client_name": HOSTILE, "client_id": "x"}
        | {"scopes": ["openid", HOSTILE], "user_name": HOSTILE},
    ),
}


class Doc(HTMLParser):
    """The tags of a page, with the form each one sits in."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str], int | None]] = []
        self.forms: list[dict[str, str]] = []
        self._form: int | None = None
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(a)
            self._form = len(self.forms) - 1
        self.tags.append((tag, a, self._form))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a, _ in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    def fields(self, form: int) -> list[tuple[str, dict[str, str]]]:
        return [(t, a) for t, a, f in self.tags if f == form and t in {"input", "button", "select", "textarea"}]


def make_settings(**kw: Any) -> Settings:
    return Settings(
        environment="test",
        key_encryption_key=secrets.token_urlsafe(32),
        cursor_secret=secrets.token_urlsafe(32),
        log_json=False,
        **kw,
    )


def make_app(pages: Pages) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    pages.install(app)

    @app.get("/page/{case}")
    async def page(case: str, request: Request) -> HTMLResponse:
        name, ctx = CASES[case]
        origins = request.query_params.getlist("origin")
        return pages.render(request, name, redirect_origins=origins, **ctx)

    @app.post("/submit")
    async def submit(request: Request) -> HTMLResponse:
        await pages.checked_form(request)
        return pages.render(request, "signed_out.html")

    return app


@pytest.fixture(scope="module")
def pages() -> Pages:
    return Pages(make_settings(issuer="http://auth.test"))


@pytest.fixture(scope="module")
async def web(pages: Pages) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(pages))
    async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as c:
        yield c


async def fetch(web: httpx.AsyncClient, case: str, lang: str = "zh-CN", **kw: Any) -> tuple[httpx.Response, Doc]:
    web.cookies.clear()
    r = await web.get(f"/page/{case}", params={"ui_locales": lang, **kw.pop("params", {})}, **kw)
    assert r.status_code == 200, r.text
    return r, Doc(r.text)


def csrf_cookie(r: httpx.Response) -> str:
    return r.cookies["tongban_csrf"]


# -- rendering ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["zh-CN", "en"])
@pytest.mark.parametrize("case", list(CASES))
async def test_every_page_renders_in_both_languages(web: httpx.AsyncClient, case: str, lang: str) -> None:
    r, doc = await fetch(web, case, lang)
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert doc.find("html")[0]["lang"] == lang and r.headers["content-language"] == lang
    title = "".join(doc.text[doc.text.index(next(t for t in doc.text if "·" in t)) :][:1])
    assert re.search(r"[\u4e00-\u9fff]", title) if lang == "zh-CN" else not re.search(r"[\u4e00-\u9fff]", title)
    # no scripts, no inline styles, one stylesheet from the static route
    assert "<script" not in r.text.replace("&lt;script", "") and "<style" not in r.text
    assert all("style" not in a and not any(k.startswith("on") for k in a) for _, a, _ in doc.tags)
    (sheet,) = doc.find("link", rel="stylesheet")
    assert re.fullmatch(r"/oauth2/static/tongban\.[0-9a-f]{16}\.css", sheet["href"])
    # the switch link leads to the other language and keeps the rest of the query
    switch = doc.find("a", hreflang="en" if lang == "zh-CN" else "zh-CN")
    assert len(switch) == 1
    assert dict(parse_qsl(switch[0]["href"].lstrip("?")))["ui_locales"] == switch[0]["hreflang"]
    assert "{" not in "".join(doc.text), "a placeholder was left unfilled"


@pytest.mark.parametrize("case", list(CASES))
async def test_labels_describedby_and_ids(web: httpx.AsyncClient, case: str) -> None:
    _, doc = await fetch(web, case)
    ids = [a["id"] for _, a, _ in doc.tags if "id" in a]
    assert len(ids) == len(set(ids)), "ids must be unique"
    labelled = {a["for"] for a in doc.find("label")}
    for tag, a, _ in doc.tags:
        if tag == "input" and a.get("type") != "hidden":
            assert a.get("id") in labelled, f"input {a} has no label"
        for ref in a.get("aria-describedby", "").split() + a.get("aria-labelledby", "").split():
            assert ref in ids, f"{tag} refers to missing #{ref}"


@pytest.mark.parametrize("case", list(CASES))
async def test_every_post_form_carries_the_csrf_token(web: httpx.AsyncClient, pages: Pages, case: str) -> None:
    r, doc = await fetch(web, case)
    assert all(f.get("method") == "post" and f.get("action") for f in doc.forms)
    for index, _ in enumerate(doc.forms):
        tokens = [a for t, a in doc.fields(index) if t == "input" and a.get("name") == "csrf"]
        assert len(tokens) == 1 and tokens[0]["type"] == "hidden", (case, index)
        cookie = csrf_cookie(r)
        assert tokens[0]["value"] == pages._signer.token(cookie)


def test_every_form_in_the_templates_includes_the_csrf_fields() -> None:
    folder = resources.files("tongban_auth.web").joinpath("templates")
    for name in TEMPLATES:
        source = folder.joinpath(name).read_text("utf-8")
        for form in re.findall(r"<form\b.*?</form>", source, re.S):
            assert 'method="post"' in form and "m.form_fields(" in form, f"{name}: {form[:80]}"
    macros = folder.joinpath("_macros.html").read_text("utf-8")
    assert 'name="csrf" value="{{ csrf }}"' in macros


async def test_login_page_fields(web: httpx.AsyncClient) -> None:
    _, doc = await fetch(web, "login-error", "en")
    login, password = doc.find("input", id="login")[0], doc.find("input", id="password")[0]
    assert login["autocomplete"] == "username" and login["value"] == "zhang.san"
    assert password["autocomplete"] == "current-password" and password["type"] == "password"
    (alert,) = doc.find("p", role="alert")
    assert "form-error" in login["aria-describedby"].split() and password["aria-describedby"] == alert["id"]
    assert login["aria-invalid"] == "true" and doc.find("button", id="submit")
    text = " ".join(doc.text)
    assert "Too many failed attempts" in text and "account. Please try again in 5 minutes." in text
    _, zh = await fetch(web, "login-error", "zh-CN")
    assert "已暂时锁定。请在 5 分钟后重试。" in " ".join(zh.text), "no gap between Chinese sentences"
    hidden = {a["name"]: a["value"] for t, a in doc.fields(0) if a.get("type") == "hidden"}
    assert hidden["interaction"] == "i-1" and hidden["ui_locales"] == "en"
    _, plain = await fetch(web, "login", "zh-CN")
    assert not plain.find("p", role="alert") and "aria-invalid" not in plain.find("input", id="login")[0]
    assert "浙里办" in " ".join(plain.text) and "手机号" in plain.find("label")[0].get("for", "") + " ".join(plain.text)


async def test_mfa_page_methods(web: httpx.AsyncClient) -> None:
    _, doc = await fetch(web, "mfa-sms", "en")
    code = doc.find("input", id="code")[0]
    assert code["inputmode"] == "numeric" and code["autocomplete"] == "one-time-code"
    assert doc.find("button", id="send")[0]["value"] == "send" and "138****8000" in " ".join(doc.text)
    switch = doc.find("button", name="method")
    assert sorted(b["value"] for b in switch) == ["email", "totp"]
    assert "Please try again in 30 seconds." in " ".join(doc.text)
    _, totp = await fetch(web, "mfa-totp")
    assert not totp.find("button", id="send")
    _, recovery = await fetch(web, "mfa-recovery")
    assert not recovery.find("button", name="method") and "inputmode" not in recovery.find("input", id="code")[0]


async def test_consent_page_describes_every_scope(web: httpx.AsyncClient) -> None:
    for lang in LOCALES:
        catalogue = load_catalogue(lang)
        r, doc = await fetch(web, "consent", lang)
        for scope in SCOPES:
            assert catalogue[f"scope.{scope}"] in r.text.replace("&#34;", '"').replace("&#39;", "'")
        decisions = sorted(b["value"] for b in doc.find("button", name="decision"))
        assert decisions == ["approve", "deny"] and doc.find("button", id="submit")[0]["value"] == "approve"


async def test_account_page_has_one_form_per_session_and_consent(web: httpx.AsyncClient) -> None:
    _, doc = await fetch(web, "account", "zh-CN")
    by_action: dict[str, list[dict[str, str]]] = {}
    for index, form in enumerate(doc.forms):
        by_action.setdefault(form["action"], []).append(
            {a["name"]: a["value"] for t, a in doc.fields(index) if a.get("type") == "hidden"}
        )
    assert [f["sid"] for f in by_action[ACTIONS["end_session"]]] == ["s1", "s2"]
    assert [f["client_id"] for f in by_action[ACTIONS["revoke_consent"]]] == ["demo-app"]
    assert {ACTIONS["end_all"], ACTIONS["totp_setup"], ACTIONS["logout"]} <= set(by_action)
    times = doc.find("time")
    assert times[0]["datetime"] == "2025-03-04T14:05+08:00" and "2025年3月4日 14:05" in "".join(doc.text)
    assert "2025年3月1日 08:00" in "".join(doc.text), "naive-free ISO text is shown in Shanghai time"


async def test_totp_setup_shows_qr_secret_and_recovery_codes(web: httpx.AsyncClient) -> None:
    r, doc = await fetch(web, "totp", "en")
    assert doc.find("svg", role="img") and doc.find("code", id="secret")
    assert "JBSW Y3DP EHPK 3PXP" in r.text and doc.find("input", id="code")[0]["autocomplete"] == "one-time-code"
    r, doc = await fetch(web, "totp-done", "en")
    assert not doc.forms and "a1b2-c3d4" in r.text and "shown only once" in r.text


async def test_hostile_values_are_escaped(web: httpx.AsyncClient) -> None:
    r, doc = await fetch(web, "hostile", "en")
    assert HOSTILE not in r.text and "<script" not in r.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in r.text
    hidden = {a["name"]: a["value"] for t, a in doc.fields(0) if a.get("type") == "hidden"}
    assert hidden["interaction"] == HOSTILE, "the value survives as text inside the attribute"
    assert "Other permission" in r.text


async def test_signed_out_links_back_only_to_http_urls(web: httpx.AsyncClient, pages: Pages) -> None:
    _, doc = await fetch(web, "signed-out")
    assert doc.find("a", id="return")[0]["href"] == "https://app.example.gov.cn/bye"
    CASES["signed-out-js"] = ("signed_out.html", {"return_to": "javascript:alert(1)"})
    r, doc = await fetch(web, "signed-out-js")
    assert not doc.find("a", id="return") and "javascript:" not in r.text


async def test_error_page(web: httpx.AsyncClient) -> None:
    _r, doc = await fetch(web, "error", "en")
    text = " ".join(doc.text)
    assert "Unknown app" in text and "unknown client_id" in text and "req-42" in text and "invalid_client" in text


async def test_context_contract_is_enforced(pages: Pages) -> None:
    request = Request({"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": []})
    with pytest.raises(TypeError, match="takes no"):
        pages.render(request, "logout.html", action="/x", state_blob="s", typo=1)
    with pytest.raises(TypeError, match="needs"):
        pages.render(request, "consent.html", action="/x")
    with pytest.raises(ValueError, match="subset"):
        pages.render(request, "mfa.html", action="/x", interaction="i", methods=["totp"], method="sms")
    with pytest.raises(ValueError, match="otpauth"):
        pages.render(request, "totp_setup.html", secret="A", otpauth_uri="javascript:x", action="/x")
    with pytest.raises(KeyError):
        pages.render(request, "nope.html")


# -- headers -----------------------------------------------------------------------------------------------------
async def test_security_headers_on_every_page(web: httpx.AsyncClient) -> None:
    for case in CASES:
        r, _ = await fetch(web, case)
        assert r.headers["content-security-policy"] == (
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
        assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store" and r.headers["x-content-type-options"] == "nosniff"


async def test_form_action_allows_the_redirect_origins(web: httpx.AsyncClient) -> None:
    origins = ["https://app.example.gov.cn/cb?x=1", "http://127.0.0.1:8765/callback", "https://a.b; script-src *"]
    r, _ = await fetch(web, "consent", params={"origin": [*origins, "https://app.example.gov.cn/other"]})
    csp = r.headers["content-security-policy"]
    assert "form-action 'self' https://app.example.gov.cn http://127.0.0.1:8765;" in csp
    assert "script-src" not in csp
    assert "javascript" not in content_security_policy(["javascript:alert(1)", "data:x"])


# -- language ----------------------------------------------------------------------------------------------------
async def lang_of(web: httpx.AsyncClient, query: str = "", **headers: str) -> str:
    web.cookies.clear()
    r = await web.get(f"/page/login{query}", headers=headers)
    return Doc(r.text).find("html")[0]["lang"]


async def test_locale_negotiation_order(web: httpx.AsyncClient) -> None:
    assert await lang_of(web) == "zh-CN"
    assert await lang_of(web, **{"Accept-Language": "en-GB,en;q=0.9"}) == "en"
    assert await lang_of(web, **{"Accept-Language": "fr, en;q=0.5, zh-CN;q=0.8"}) == "zh-CN"
    assert await lang_of(web, **{"Accept-Language": "zh;q=0, en;q=0.1"}) == "en"
    assert await lang_of(web, **{"Accept-Language": "de"}) == "zh-CN"
    assert await lang_of(web, **{"Accept-Language": "zh-CN", "Cookie": "tongban_lang=en"}) == "en"
    assert await lang_of(web, **{"Cookie": "tongban_lang=fr"}) == "zh-CN"
    both = {"Accept-Language": "en", "Cookie": "tongban_lang=en"}
    assert await lang_of(web, "?ui_locales=fr-CA%20zh-Hans-CN%20en", **both) == "zh-CN"
    assert await lang_of(web, "?ui_locales=fr", **both) == "en"


def test_negotiation_functions() -> None:
    assert negotiate("en", "zh-CN", "zh") == ("en", True)
    assert negotiate(None, "en", "zh") == ("en", False)
    assert negotiate("xx", None, "en-US;q=0.8, zh-TW;q=0.9") == ("zh-CN", False)
    assert from_accept_language("en;q=abc, *") is None and from_accept_language("") is None


async def test_explicit_choice_is_remembered_and_switch_keeps_the_query(web: httpx.AsyncClient) -> None:
    web.cookies.clear()
    r = await web.get("/page/login", params={"ui_locales": "en", "client_id": "demo-app", "x": "a b"})
    assert r.cookies.get("tongban_lang") == "en"
    set_cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("tongban_lang=")).lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie and "path=/" in set_cookie
    href = Doc(r.text).find("a", hreflang="zh-CN")[0]["href"]
    assert parse_qsl(urlsplit(href).query) == [("client_id", "demo-app"), ("x", "a b"), ("ui_locales", "zh-CN")]
    r = await web.get("/page/login", headers={"Accept-Language": "zh"})
    assert Doc(r.text).find("html")[0]["lang"] == "en", "the cookie now wins over Accept-Language"
    web.cookies.clear()
    r = await web.get("/page/login", headers={"Accept-Language": "en"})
    assert "tongban_lang" not in r.cookies, "a negotiated language is not stored"


# -- catalogues ----------------------------------------------------------------------------------------------------
def template_sources() -> dict[str, str]:
    folder = resources.files("tongban_auth.web").joinpath("templates")
    return {entry.name: entry.read_text("utf-8") for entry in folder.iterdir() if entry.name.endswith(".html")}


def test_catalogues_have_the_same_keys_and_placeholders() -> None:
    zh, en = load_catalogue("zh-CN"), load_catalogue("en")
    assert set(zh) == set(en)
    for key in zh:
        assert zh[key].strip() and en[key].strip(), key
        assert placeholders(zh[key]) == placeholders(en[key]), key
        assert not re.search(r"[\u4e00-\u9fff]", en[key]) or key == "nav.switch", key


def test_every_key_the_templates_use_exists() -> None:
    zh = load_catalogue("zh-CN")
    used: set[str] = set()
    for name, source in template_sources().items():
        for call in re.finditer(r"\bt\(", source):
            literal = re.match(r"""t\(\s*(["'])([^"']+)\1""", source[call.start() :])
            assert literal, f"{name}: t() must take a literal key (use tk() for computed ones)"
            used.add(literal.group(2))
    assert used - set(zh) == set(), used - set(zh)
    # keys computed with tk(): the families the templates build, and the keys callers may pass
    dynamic = {f"mfa.{part}.{m}" for part in ("intro", "code_label", "code_help", "method") for m in MFA_METHODS}
    dynamic |= {f"error.{e}.{part}" for e in ERROR_PAGES for part in ("title", "message")}
    dynamic |= {f"scope.{s}" for s in SCOPES} | {"scope.unknown", "error.csrf.cookie"}
    dynamic |= set(LOGIN_ERRORS) | set(MFA_ERRORS) | set(TOTP_ERRORS)
    assert dynamic - set(zh) == set(), dynamic - set(zh)
    prefixes = ("mfa.intro.", "mfa.code_label.", "mfa.code_help.", "mfa.method.")
    tk_calls = {m.group(1) for s in template_sources().values() for m in re.finditer(r"\btk\(\s*([^)]*)\)", s)}
    for expr in tk_calls:
        literal = re.match(r'"([^"]+)"\s*~', expr)
        assert literal is None or literal.group(1) in prefixes, expr
    unused = set(zh) - used - dynamic - {"common.retry_after_seconds", "common.retry_after_minutes"}
    assert unused == set(), f"catalogue keys no page uses: {unused}"


def test_format_datetime() -> None:
    assert format_datetime(WHEN, "zh-CN") == "2025年3月4日 14:05"
    assert format_datetime(WHEN.replace(tzinfo=None), "en") == "4 Mar 2025, 14:05"
    assert format_datetime("2025-12-31T16:30:00+00:00", "en") == "1 Jan 2026, 00:30"
    assert format_datetime(None, "en") == ""


# -- CSRF ----------------------------------------------------------------------------------------------------------
async def form_page(web: httpx.AsyncClient) -> tuple[str, str]:
    web.cookies.clear()
    r = await web.get("/page/login")
    token = next(a for a in Doc(r.text).find("input") if a.get("name") == "csrf")["value"]
    return csrf_cookie(r), token


async def post(web: httpx.AsyncClient, cookie: str | None, form: dict[str, str]) -> httpx.Response:
    web.cookies.clear()
    headers = {"Cookie": f"tongban_csrf={cookie}"} if cookie is not None else {}
    return await web.post("/submit", data=form, headers=headers)


def assert_csrf_page(r: httpx.Response, lang: str = "zh-CN") -> Doc:
    assert r.status_code == 403 and r.headers["content-type"] == "text/html; charset=utf-8", r.text
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    doc = Doc(r.text)
    assert doc.find("html")[0]["lang"] == lang and "csrf_failed" in r.text
    return doc


async def test_csrf_accepts_the_token_of_the_browser_cookie(web: httpx.AsyncClient) -> None:
    cookie, token = await form_page(web)
    r = await post(web, cookie, {"csrf": token, "ui_locales": "en"})
    assert r.status_code == 200 and Doc(r.text).find("html")[0]["lang"] == "en", "the posted language is kept"


async def test_csrf_rejects_bad_posts(web: httpx.AsyncClient, pages: Pages) -> None:
    cookie, token = await form_page(web)
    other_cookie, other_token = await form_page(web)
    assert other_cookie != cookie and other_token != token
    doc = assert_csrf_page(await post(web, None, {"csrf": token}))
    assert load_catalogue("zh-CN")["error.csrf.cookie"] in "".join(doc.text), "missing cookie explains cookies"
    assert_csrf_page(await post(web, cookie, {}))
    assert_csrf_page(await post(web, cookie, {"csrf": ""}))
    assert_csrf_page(await post(web, cookie, {"csrf": token[:-1] + ("A" if token[-1] != "A" else "B")}))
    assert_csrf_page(
        await post(web, cookie, {"csrf": other_token}),
    )
    assert_csrf_page(await post(web, "short", {"csrf": token}))
    assert_csrf_page(await post(web, cookie, {"csrf": token + "x" * 5000, "ui_locales": "en"}), "en")
    r = await post(web, other_cookie, {"csrf": cookie})
    assert_csrf_page(r)


async def test_csrf_key_survives_a_key_rotation_and_differs_between_keys() -> None:
    old = make_settings(issuer="http://auth.test")
    rotated = make_settings(issuer="http://auth.test", old_key_encryption_keys=[old.key_encryption_key])
    stranger = make_settings(issuer="http://auth.test")
    cookie = "A" * 43
    token = Pages(old)._signer.token(cookie)
    Pages(rotated)._signer.check(cookie, token)
    with pytest.raises(CsrfError) as err:
        Pages(stranger)._signer.check(cookie, token)
    assert err.value.status == 403 and err.value.type == "csrf-failed"


async def test_without_the_page_handler_a_csrf_failure_is_a_problem(pages: Pages) -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/bare")
    async def bare(request: Request) -> None:
        pages.check_csrf(request, await request.form())

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert_problem(await c.post("/bare", data={"a": "b"}), 403, "csrf-failed")


async def test_csrf_cookie_attributes_and_reuse(web: httpx.AsyncClient) -> None:
    web.cookies.clear()
    r = await web.get("/page/login")
    header = next(h for h in r.headers.get_list("set-cookie") if h.startswith("tongban_csrf=")).lower()
    assert "httponly" in header and "samesite=lax" in header and "path=/" in header and "secure" not in header
    cookie = csrf_cookie(r)
    again = await web.get("/page/consent", headers={"Cookie": f"tongban_csrf={cookie}"})
    assert "tongban_csrf" not in again.cookies, "a valid browser secret is kept"
    secure = Pages(make_settings(issuer="https://id.example.gov.cn/idp"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(secure)), base_url="https://t") as c:
        r = await c.get("/page/login")
        header = next(h for h in r.headers.get_list("set-cookie") if h.startswith("__Host-tongban_csrf=")).lower()
        assert "secure" in header and "path=/" in header and "domain" not in header
        sheet = Doc(r.text).find("link", rel="stylesheet")[0]["href"]
        assert sheet.startswith("/idp/oauth2/static/tongban."), "links honour the issuer's path"
        token = next(a for a in Doc(r.text).find("input") if a.get("name") == "csrf")["value"]
        secret_value = r.cookies["__Host-tongban_csrf"]
        ok = await c.post("/submit", data={"csrf": token}, headers={"Cookie": f"__Host-tongban_csrf={secret_value}"})
        assert ok.status_code == 200
        plain = await c.post("/submit", data={"csrf": token}, headers={"Cookie": f"tongban_csrf={secret_value}"})
        assert plain.status_code == 403, "on https only the __Host- cookie counts"


# -- static files ----------------------------------------------------------------------------------------------------
async def test_static_stylesheet_is_served_immutable_by_hash(web: httpx.AsyncClient) -> None:
    _, doc = await fetch(web, "login")
    href = doc.find("link", rel="stylesheet")[0]["href"]
    r = await web.get(href)
    assert r.status_code == 200 and r.headers["content-type"] == "text/css; charset=utf-8"
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["x-content-type-options"] == "nosniff" and r.content == assets()["tongban.css"][0].body
    assert (await web.get(href, headers={"If-None-Match": r.headers["etag"]})).status_code == 304
    head = await web.head(href)
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(r.content))
    plain = await web.get("/oauth2/static/tongban.css")
    assert plain.status_code == 200 and plain.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    [
        "nope.css",
        "tongban.0000000000000000.css",
        "%2e%2e/pages.py",
        "..%2f__init__.py",
        "%2e%2e%2f%2e%2e%2fconfig.py",
        "..%5c__init__.py",
        "",
        "static/tongban.css",
        "/etc/passwd",
    ],
)
async def test_static_refuses_unknown_files_and_traversal(web: httpx.AsyncClient, path: str) -> None:
    r = await web.get(f"/oauth2/static/{path}")
    assert_problem(r, 404)


def test_stylesheet_is_self_contained_readable_and_accessible() -> None:
    css = assets()["tongban.css"][0].body.decode("utf-8")
    assert "@import" not in css and "url(" not in css and "@font-face" not in css
    for font in ('"PingFang SC"', '"Microsoft YaHei"', '"Noto Sans CJK SC"', "system-ui", "sans-serif"):
        assert font in css
    assert ":focus-visible" in css and "outline: 3px solid var(--focus)" in css
    colors = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", css))

    def luminance(hex_color: str) -> float:
        channels = [int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    def contrast(a: str, b: str) -> float:
        hi, lo = sorted((luminance(colors[a]), luminance(colors[b])), reverse=True)
        return (hi + 0.05) / (lo + 0.05)

    text_pairs = [
        ("fg", "bg"),
        ("fg", "card"),
        ("muted", "card"),
        ("muted", "bg"),
        ("link", "card"),
        ("link", "bg"),
        ("on-primary", "primary"),
        ("on-primary", "primary-hover"),
        ("error", "error-bg"),
        ("error", "card"),
        ("warning", "warning-bg"),
        ("badge", "badge-bg"),
        ("primary", "card"),
        ("primary", "bg"),
    ]
    for fg, bg in text_pairs:
        assert contrast(fg, bg) >= 4.5, (fg, bg, contrast(fg, bg))
    for ui, bg in [("border", "card"), ("focus", "card"), ("focus", "bg")]:
        assert contrast(ui, bg) >= 3.0, (ui, bg)


async def test_check_csrf_takes_the_token_itself_and_browser_key_is_stable(pages: Pages) -> None:
    def request(cookie: str | None) -> Request:
        headers = [(b"cookie", f"tongban_csrf={cookie}".encode())] if cookie else []
        return Request({"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": headers})

    cookie, other = "A" * 43, "B" * 43
    token = pages._signer.token(cookie)
    assert pages.check_csrf(request(cookie), token) is True
    assert pages.check_csrf(request(cookie), {"csrf": token}) is True
    for bad in (None, "", pages._signer.token(other)):
        with pytest.raises(CsrfError):
            pages.check_csrf(request(cookie), bad)
    key = pages.browser_key(request(cookie))
    assert key == pages.browser_key(request(cookie)) != pages.browser_key(request(other))
    assert key not in {cookie, token}
    fresh = request(None)
    assert pages.browser_key(fresh) == pages.browser_key(fresh), "a minted secret is kept for the request"
