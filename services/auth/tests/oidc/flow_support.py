"""Shared pieces of the sign-in flow tests: a relying party on a real port (its callback and back-channel logout
endpoint), clients registered for it, and an app that builds authorization requests and redeems codes.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tongban_auth import clients
from tongban_auth.models import ClientType
from tongban_auth.schemas import AuthMethod, ClientCreate, GrantType
from tongban_kit.demo import DEMO_PASSWORD
from tongban_kit.testing.browser import Browser, Page, pkce_pair
from tongban_kit.testing.serve import serve

from .conftest import Stack

PASSWORD = DEMO_PASSWORD
SCOPES = ["openid", "profile", "email", "phone", "offline_access", "message:read", "admin"]


@dataclass
class RelyingParty:
    """The apps' server: a callback (never actually reached by the form browser) and a back-channel logout URI."""

    url: str = ""
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: whether the back-channel endpoint accepts notices (503 while down)
    up: bool = True
    #: logout tokens received (accepted or not), with whether they were accepted
    notices: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def redirect_uri(self) -> str:
        """Where the apps receive codes."""
        return f"{self.url}/callback"

    @property
    def post_logout_uri(self) -> str:
        """Where the apps want people back after logout."""
        return f"{self.url}/bye"

    @property
    def backchannel_uri(self) -> str:
        """The apps' back-channel logout endpoint."""
        return f"{self.url}/backchannel"

    async def backchannel(self, request: Request) -> Response:
        """Record a logout token; refuse while down."""
        form = await request.form()
        token = form.get("logout_token")
        self.notices.append((str(token), self.up))
        if not self.up:
            return PlainTextResponse("down", status_code=503)
        return Response(status_code=200, headers={"Cache-Control": "no-store"})

    async def page(self, request: Request) -> Response:
        """The app's own pages (callback and post-logout landing)."""
        return PlainTextResponse("app")


@pytest.fixture(scope="module")
async def rp(stack: Stack) -> AsyncIterator[RelyingParty]:
    """The relying party server of the module, with a confidential app `flow-app` and a public app `flow-spa`."""
    party = RelyingParty()
    app = Starlette(
        routes=[
            Route("/backchannel", party.backchannel, methods=["POST"]),
            Route("/callback", party.page),
            Route("/bye", party.page),
        ]
    )
    async with serve(app, lifespan="off") as url:
        party.url = url
        await register(stack, party, "flow-app", confidential=True)
        await register(stack, party, "flow-spa", confidential=False)
        yield party


async def register(
    stack: Stack, party: RelyingParty, client_id: str, *, confidential: bool, backchannel: bool = False
) -> None:
    """Register an app of the relying party."""
    body = ClientCreate(
        client_id=client_id,
        name=f"App {client_id}",
        client_type=ClientType.confidential if confidential else ClientType.public,
        token_endpoint_auth_method=AuthMethod.client_secret_basic if confidential else None,
        grant_types=[GrantType.authorization_code, GrantType.refresh_token],
        scopes=SCOPES,
        redirect_uris=[party.redirect_uri],
        post_logout_redirect_uris=[party.post_logout_uri],
        backchannel_logout_uri=party.backchannel_uri if backchannel else None,
    )
    async with stack.auth.state.runtime.db.session() as s:
        await clients.register(
            s,
            body,
            actor="test",
            loopback_allowed=True,
            secret=party.secret if confidential else None,
            outbound=stack.settings.outbound_policy,
        )


class App:
    """One authorization request of an app, and the redemption of its code."""

    def __init__(self, stack: Stack, party: RelyingParty, client_id: str = "flow-app") -> None:
        """A fresh state, nonce and PKCE pair."""
        self.stack, self.party, self.client_id = stack, party, client_id
        self.secret = party.secret if client_id != "flow-spa" else None
        self.verifier, self.challenge = pkce_pair()
        self.state = secrets.token_urlsafe(8)
        self.nonce = secrets.token_urlsafe(8)

    def params(self, scope: str = "openid profile", **extra: str) -> dict[str, str]:
        """The parameters of the authorization request."""
        return {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.party.redirect_uri,
            "scope": scope,
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
            **extra,
        }

    def url(self, scope: str = "openid profile", **extra: str) -> str:
        """The authorization URL."""
        return f"{self.stack.issuer}/oauth2/authorize?{urlencode(self.params(scope, **extra))}"

    def callback(self, location: Page | str) -> dict[str, str]:
        """The single-valued query of the redirect back to the app (checks `state` and `iss`)."""
        assert isinstance(location, str), f"no redirect: {location.status} {location.url} {location.alerts}"
        assert location.startswith(self.party.redirect_uri), location
        q = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert q.get("state") == self.state, location
        assert q.get("iss") == self.stack.issuer, location
        return q

    async def redeem(self, location: Page | str) -> dict[str, Any]:
        """Exchange the code in the redirect for tokens."""
        q = self.callback(location)
        assert "code" in q, q
        data = {
            "grant_type": "authorization_code",
            "code": q["code"],
            "redirect_uri": self.party.redirect_uri,
            "code_verifier": self.verifier,
        }
        auth = (self.client_id, self.secret) if self.secret else None
        if auth is None:
            data["client_id"] = self.client_id
        async with httpx.AsyncClient() as c:
            r = await c.post(f"{self.stack.issuer}/oauth2/token", data=data, auth=auth)
        assert r.status_code == 200, r.text
        tokens: dict[str, Any] = r.json()
        return tokens


def browser(party: RelyingParty) -> tuple[httpx.AsyncClient, Browser]:
    """A fresh form browser (its own cookie jar) that stops at the relying party."""
    client = httpx.AsyncClient(timeout=20)
    return client, Browser(client, party.url)


def has_form(page: Page | str, action_part: str) -> bool:
    """Whether a page shows a form posting to `action_part`."""
    return isinstance(page, Page) and any(action_part in f.action for f in page.forms)


async def login(b: Browser, page: Page | str, username: str, password: str = PASSWORD) -> Page | str:
    """Submit the login form."""
    assert isinstance(page, Page) and has_form(page, "/oauth2/login"), page
    return await b.submit(page, "/oauth2/login", {"login": username, "password": password})


async def approve(b: Browser, page: Page | str) -> Page | str:
    """Approve on the consent page."""
    assert has_form(page, "/oauth2/consent"), page
    assert isinstance(page, Page)
    return await b.submit(page, "/oauth2/consent", button=("decision", "approve"))


async def sign_in(stack: Stack, party: RelyingParty, b: Browser, username: str, **extra: str) -> dict[str, Any]:
    """A full sign-in of `username` into `flow-app` (login and consent when asked); returns the tokens."""
    app = App(stack, party)
    page = await b.open(app.url(**extra))
    if has_form(page, "/oauth2/login"):
        page = await login(b, page, username)
    if has_form(page, "/oauth2/consent"):
        page = await approve(b, page)
    return await app.redeem(page)


async def id_claims(stack: Stack, token: str) -> dict[str, Any]:
    """The verified claims of a token signed by the service."""
    async with httpx.AsyncClient() as c:
        jwks = (await c.get(f"{stack.issuer}/oauth2/jwks")).json()
    return dict(jwt.decode(token, KeySet.import_key_set(jwks)).claims)


def session_cookie(client: httpx.AsyncClient, stack: Stack) -> str | None:
    """The browser's SSO cookie."""
    return client.cookies.get(stack.settings.session_cookie)


async def introspect(stack: Stack, party: RelyingParty, token: str) -> dict[str, Any]:
    """What the introspection endpoint says about a token (asked by `flow-app`)."""
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{stack.issuer}/oauth2/introspect", data={"token": token}, auth=("flow-app", party.secret))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def refresh(stack: Stack, party: RelyingParty, token: str) -> httpx.Response:
    """Use a refresh token of `flow-app`."""
    async with httpx.AsyncClient() as c:
        return await c.post(
            f"{stack.issuer}/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            auth=("flow-app", party.secret),
        )
