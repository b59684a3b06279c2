"""A small form-filling browser over httpx for sign-in pages: cookies, redirects, forms as the HTML says.

It follows redirects itself and stops at the app's redirect URI (nothing needs to listen there), returning that
URL, so tests can run an OAuth authorization code flow end to end without a real browser.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx


@dataclass
class Form:
    """A form on a page: where it posts and the values it would send as is."""

    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.alerts: list[str] = []
        self._in_alert = 0
        self.lang: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.lang = a.get("lang")
        if tag == "form":
            self.forms.append(Form(action=a.get("action", ""), method=a.get("method", "get").lower()))
        elif tag == "input" and self.forms:
            name = a.get("name")
            if name:
                kind = a.get("type", "text")
                if kind == "hidden":
                    self.forms[-1].fields[name] = a.get("value", "")
                elif kind == "submit":
                    self.forms[-1].buttons.append((name, a.get("value", "")))
                elif kind in ("radio", "checkbox"):
                    if "checked" in a:
                        self.forms[-1].fields[name] = a.get("value", "on")
                else:
                    self.forms[-1].inputs.append(name)
        elif tag == "button" and self.forms and a.get("name"):
            self.forms[-1].buttons.append((a["name"], a.get("value", "")))
        if a.get("role") == "alert":
            self._in_alert += 1
            self.alerts.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._in_alert and tag in ("div", "p", "section"):
            self._in_alert -= 1

    def handle_data(self, data: str) -> None:
        if self._in_alert and self.alerts:
            self.alerts[-1] += data


@dataclass
class Page:
    """A page the browser landed on."""

    url: str
    status: int
    text: str
    forms: list[Form]
    alerts: list[str]
    lang: str | None

    def form(self, action_part: str) -> Form:
        """The form whose action contains `action_part`."""
        for f in self.forms:
            if action_part in f.action:
                return f
        raise AssertionError(f"no form posting to {action_part} on {self.url}: {[f.action for f in self.forms]}")


class Browser:
    """Cookies, redirects and forms; `stop_at` is the app's redirect URI prefix."""

    def __init__(self, client: httpx.AsyncClient, stop_at: str) -> None:
        """Drive `client` (its cookie jar is the browser's)."""
        self.client = client
        self.stop_at = stop_at

    async def _follow(self, resp: httpx.Response) -> Page | str:
        for _ in range(10):
            if resp.status_code in (301, 302, 303, 307, 308):
                location = urljoin(str(resp.url), resp.headers["location"])
                if location.startswith(self.stop_at):
                    return location
                resp = await self.client.get(location)
                continue
            parser = _FormParser()
            parser.feed(resp.text)
            return Page(str(resp.url), resp.status_code, resp.text, parser.forms, parser.alerts, parser.lang)
        raise AssertionError("too many redirects")

    async def open(self, url: str) -> Page | str:
        """GET a URL and follow redirects."""
        return await self._follow(await self.client.get(url))

    async def submit(
        self,
        page: Page,
        action_part: str,
        values: dict[str, str] | None = None,
        *,
        button: tuple[str, str] | None = None,
    ) -> Page | str:
        """Fill and post a form of `page`; `button` picks the submit button by (name, value)."""
        form = page.form(action_part)
        data: dict[str, Any] = dict(form.fields)
        data.update(values or {})
        if button is not None:
            assert button in form.buttons, f"no button {button} in {form.buttons}"
            data[button[0]] = button[1]
        url = urljoin(page.url, form.action)
        return await self._follow(await self.client.post(url, data=data))


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


async def sign_in(
    client: httpx.AsyncClient,
    issuer: str,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str,
    login: str,
    password: str,
    client_secret: str | None = None,
    acr_values: str | None = None,
    second_factor: Callable[[Browser, Page], Awaitable[Page | str]] | None = None,
) -> dict[str, Any]:
    """Run the authorization code flow with PKCE through the HTML pages (login, second factor, consent) and return
    the tokens; `second_factor` answers the MFA page when one is shown."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(8)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            **({"acr_values": acr_values} if acr_values else {}),
        }
    )
    b = Browser(client, redirect_uri)
    page = await b.open(f"{issuer}/oauth2/authorize?{query}")
    if isinstance(page, Page) and any("/oauth2/login" in f.action for f in page.forms):
        page = await b.submit(page, "/oauth2/login", {"login": login, "password": password})
    if isinstance(page, Page) and second_factor is not None and any("/oauth2/mfa" in f.action for f in page.forms):
        page = await second_factor(b, page)
    if isinstance(page, Page) and any("/oauth2/consent" in f.action for f in page.forms):
        page = await b.submit(page, "/oauth2/consent", button=("decision", "approve"))
    if not isinstance(page, str):
        raise AssertionError(f"sign-in stopped at {page.url} ({page.status}): {page.alerts or page.text[:300]}")
    params = parse_qs(urlsplit(page).query)
    if params.get("state") != [state] or "code" not in params:
        raise AssertionError(f"unexpected redirect {page}")
    form = {
        "grant_type": "authorization_code",
        "code": params["code"][0],
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    if client_secret:
        r = await client.post(f"{issuer}/oauth2/token", data=form, auth=(client_id, client_secret))
    else:
        r = await client.post(f"{issuer}/oauth2/token", data={**form, "client_id": client_id})
    if r.status_code != 200:
        raise AssertionError(f"token endpoint answered {r.status_code}: {r.text}")
    tokens: dict[str, Any] = r.json()
    return tokens
