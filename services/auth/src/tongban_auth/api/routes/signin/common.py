"""What the browser-side routes share: form reading, cookies, the error page and the sign-in `Flow`."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth import authorize, devices, factors, flow, sessions
from tongban_auth.authorize import RedirectError
from tongban_auth.config import Settings
from tongban_auth.interaction import Interaction, InteractionExpired, open_sealed, seal
from tongban_auth.models import Client, LoginSession
from tongban_auth.schemas import SCOPES
from tongban_auth.web import ERROR_PAGES, Pages

log = logging.getLogger(__name__)
MAX_FORM_FIELDS = 50


def pages_of(request: Request) -> Pages:
    """The page renderer of the app."""
    pages: Pages = request.app.state.pages
    return pages


def issuer_path(settings: Settings, path: str) -> str:
    """A path below the issuer (the issuer may carry a path prefix)."""
    return urlsplit(settings.issuer).path.rstrip("/") + path


def client_ip(request: Request) -> str | None:
    """The client address of a request: the peer, or what a trusted proxy (the gateway) says it saw.

    uvicorn rewrites the peer from `X-Forwarded-For` only for the proxies in `forwarded_allow_ips`
    (`tongban_kit.settings.forwarding_options`); from anyone else the header is ignored.
    """
    return request.client.host if request.client else None


def device_cookie(request: Request, settings: Settings) -> str | None:
    """The browser's device cookie (`tongban_auth.devices`)."""
    return request.cookies.get(devices.cookie_name(settings))


async def read_form(request: Request) -> dict[str, list[str]]:
    """A posted form as lists of values (no files, at most MAX_FORM_FIELDS fields)."""
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    out: dict[str, list[str]] = {}
    for k, v in form.multi_items():
        if isinstance(v, str):
            out.setdefault(k, []).append(v)
    return out


def one_value(form: dict[str, list[str]], name: str) -> str | None:
    """The single non-empty value of a form field, or None (also when it is repeated)."""
    values = form.get(name) or []
    return values[0] if len(values) == 1 and values[0] != "" else None


def see_other(location: str) -> RedirectResponse:
    """A 303 redirect that no cache keeps (it may carry a code or lead out of a session)."""
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


def session_cookie(request: Request, settings: Settings) -> str | None:
    """The SSO cookie of a request."""
    return request.cookies.get(sessions.cookie_name(settings))


def set_session_cookie(response: Response, settings: Settings, value: str) -> None:
    """Set the SSO cookie (HttpOnly, SameSite=Lax, Secure on https)."""
    response.set_cookie(
        sessions.cookie_name(settings),
        value,
        max_age=settings.session_max_seconds,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    """Remove the SSO cookie."""
    response.delete_cookie(
        sessions.cookie_name(settings), path="/", secure=settings.cookie_secure, httponly=True, samesite="lax"
    )


#: OAuth error codes → the error page that explains them
PAGE_OF_ERROR = {"invalid_request_uri": "invalid_request", "unauthorized_client": "invalid_client"}


def error_page(request: Request, status: int, error: str, description: str) -> Response:
    """The error page for a request that cannot be sent back to a client."""
    name = PAGE_OF_ERROR.get(error, error)
    if name not in ERROR_PAGES:
        name = "invalid_request"
    return pages_of(request).error_page(
        request,
        status=status,
        title_key=f"error.{name}.title",
        message_key=f"error.{name}.message",
        detail=description,
        error_code=error,
    )


class Flow:
    """One request's view of the sign-in flow: pages, cookies and the database session."""

    def __init__(self, request: Request, s: AsyncSession, settings: Settings) -> None:
        """Bind to a request."""
        self.request, self.s, self.settings = request, s, settings
        self.pages = pages_of(request)
        self.box = request.app.state.interaction_box
        self.cookie_to_set: str | None = None
        self.clear_cookie = False
        self.device_to_set: str | None = None

    @property
    def browser_key(self) -> str:
        """The browser's CSRF key, which interactions are bound to."""
        return self.pages.browser_key(self.request)

    async def session(self) -> LoginSession | None:
        """The live SSO session of this browser."""
        cookie = self.cookie_to_set or (None if self.clear_cookie else session_cookie(self.request, self.settings))
        return await sessions.find(self.s, cookie, self.settings)

    def finish(self, response: Response, retry_after: int | None = None) -> Response:
        """Apply cookie changes (and a `Retry-After` for throttled attempts) to a response."""
        if retry_after:
            response.headers["Retry-After"] = str(retry_after)
        if self.cookie_to_set:
            set_session_cookie(response, self.settings, self.cookie_to_set)
        elif self.clear_cookie:
            clear_session_cookie(response, self.settings)
        if self.device_to_set:  # outlives sign-outs: it only says this browser signed in to the account before
            response.set_cookie(
                devices.cookie_name(self.settings),
                self.device_to_set,
                max_age=self.settings.device_cookie_days * 86400,
                path="/",
                secure=self.settings.cookie_secure,
                httponly=True,
                samesite="lax",
            )
        return response

    async def client_name(self, client_id: str) -> str:
        """The display name of a client."""
        client = await self.s.get(Client, client_id)
        return client.name if client else client_id

    async def render_step(
        self, step: flow.Show, *, error: str | None = None, status: int = 200, **extra: Any
    ) -> Response:
        """Render the page of a step."""
        it = step.interaction
        req = it.request
        sealed = seal(self.box, it, self.browser_key)
        # Chrome applies CSP form-action to the redirect that follows a form post: allow the client's origin
        ctx: dict[str, Any] = {"interaction": sealed, "redirect_origins": [req.redirect_uri] if req else []}
        if step.page == "login":
            ctx["error"] = error
            ctx.update(
                action=issuer_path(self.settings, "/oauth2/login"),
                client_name=await self.client_name(req.client_id) if req else None,
                login_hint=extra.pop("login_hint", None) or (req.login_hint if req else None),
                retry_after=extra.pop("retry_after", None),
            )
            page = self.pages.render(self.request, "login.html", status=status, **ctx, **extra)
            return self.finish(page, ctx["retry_after"])
        if step.page == "mfa":
            ctx["error"] = error
            if not it.mfa_methods:
                current = await self.session()
                user_id = it.pending_user or (current.user_id if current else None)
                if user_id is not None:
                    it.mfa_methods = await factors.methods(factors.bound(self.request.app.state), user_id)
            if not it.mfa_methods:
                return self.no_second_factor(it)
            methods = it.mfa_methods
            ctx.update(
                action=issuer_path(self.settings, "/oauth2/mfa"),
                methods=methods,
                method=extra.pop("method", None) or methods[0],
                sent_to=extra.pop("sent_to", None),
                retry_after=extra.pop("retry_after", None),
            )
            return self.finish(
                self.pages.render(self.request, "mfa.html", status=status, **ctx, **extra), ctx["retry_after"]
            )
        assert req is not None
        session = await self.session()
        user_name = extra.pop("user_name", None)
        if user_name is None and session is not None:
            user_name = await factors.display_name(factors.bound(self.request.app.state), session.user_id)
        ctx.update(
            action=issuer_path(self.settings, "/oauth2/consent"),
            client_name=await self.client_name(req.client_id),
            client_id=req.client_id,
            scopes=[sc for sc in req.scopes if sc in SCOPES],
            user_name=user_name or "",
        )
        return self.finish(self.pages.render(self.request, "consent.html", status=status, **ctx, **extra))

    async def entitled_scopes(self, user_id: str, scopes: list[str]) -> list[str]:
        """The scopes of a request the person is entitled to (asked of the org service)."""
        granted, _ = await self.request.app.state.oauth.issuer.person_scopes(user_id, scopes)
        return list(granted)

    def no_second_factor(self, it: Interaction) -> Response:
        """The app asked for a second factor the person has none of (no authenticator app, no reachable phone or
        email): tell the app (`unmet_authentication_requirements`, OpenID Connect Core 1.0 errata set 2 §3.1.2.6);
        the person can set one up on the account page and try again."""
        if it.request is None:
            return error_page(self.request, 400, "invalid_request", NO_SECOND_FACTOR)
        err = RedirectError("unmet_authentication_requirements", NO_SECOND_FACTOR, it.request)
        return self.finish(see_other(authorize.error_redirect(err, self.settings.issuer)))

    async def advance(self, it: Interaction) -> Response:
        """Take the next step for an interaction and answer with its page or redirect."""
        try:
            step = await flow.next_step(
                self.s,
                it,
                await self.session(),
                self.settings,
                account_url=issuer_path(self.settings, "/oauth2/account"),
                entitled=self.entitled_scopes,
            )
        except RedirectError as err:
            return self.finish(see_other(authorize.error_redirect(err, self.settings.issuer)))
        if isinstance(step, flow.Done):
            return self.finish(see_other(step.location))
        return await self.render_step(step)


NO_SECOND_FACTOR = "a second factor is required and none is set up for this account; set one up on the account page"


def oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """An RFC 6749 JSON error response."""
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers={"Cache-Control": "no-store"}
    )


async def open_interaction(f: Flow, form: dict[str, list[str]]) -> Interaction | Response:
    """The interaction of a posted form, after the CSRF check; or the error page."""
    if not f.pages.check_csrf(f.request, one_value(form, "csrf")):
        return error_page(f.request, 403, "csrf", "the form was not sent from this browser's sign-in page")
    try:
        return open_sealed(f.box, one_value(form, "interaction"), f.browser_key)
    except InteractionExpired as exc:
        return error_page(f.request, 400, "interaction_expired", str(exc))
