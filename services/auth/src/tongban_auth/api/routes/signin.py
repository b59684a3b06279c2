"""The browser side of the OpenID provider: `/oauth2/authorize`, pushed requests, the login, MFA and consent
pages, RP-initiated logout and the account page (sessions, consents, TOTP enrolment).

Every form is CSRF-protected; the state of a sign-in travels sealed in the form (`tongban_auth.interaction`).
Errors that cannot go back to a client safely are shown on an error page; the rest go back to the client's
redirect URI (RFC 6749 §4.1.2.1, RFC 9207).
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth import authorize, consents, credentials, factors, flow, logout, sessions
from tongban_auth.api.deps import SettingsDep
from tongban_auth.authorize import PAR_URN_PREFIX, PageError, RedirectError
from tongban_auth.client_auth import authenticate_client
from tongban_auth.config import Settings
from tongban_auth.interaction import Interaction, InteractionExpired, open_sealed, seal
from tongban_auth.models import Client, LoginSession, PushedRequest
from tongban_auth.schemas import SCOPES
from tongban_auth.web import ERROR_PAGES, Pages, qr_svg
from tongban_kit.app import SessionDep
from tongban_kit.outbox import utcnow

log = logging.getLogger(__name__)
router = APIRouter(tags=["oidc"], include_in_schema=True)
MAX_FORM_FIELDS = 50


def _pages(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


def _path(settings: Settings, path: str) -> str:
    """A path below the issuer (the issuer may carry a path prefix)."""
    return urlsplit(settings.issuer).path.rstrip("/") + path


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _form(request: Request) -> dict[str, list[str]]:
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    out: dict[str, list[str]] = {}
    for k, v in form.multi_items():
        if isinstance(v, str):
            out.setdefault(k, []).append(v)
    return out


def _one(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name) or []
    return values[0] if len(values) == 1 and values[0] != "" else None


def _session_cookie(request: Request, settings: Settings) -> str | None:
    return request.cookies.get(sessions.cookie_name(settings))


def _set_session_cookie(response: Response, settings: Settings, value: str) -> None:
    response.set_cookie(
        sessions.cookie_name(settings),
        value,
        max_age=settings.session_max_seconds,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )


def _clear_session_cookie(response: Response, settings: Settings) -> None:
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
    return _pages(request).error_page(
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
        self.pages = _pages(request)
        self.box = request.app.state.interaction_box
        self.cookie_to_set: str | None = None
        self.clear_cookie = False

    @property
    def browser_key(self) -> str:
        """The browser's CSRF key, which interactions are bound to."""
        return self.pages.browser_key(self.request)

    async def session(self) -> LoginSession | None:
        """The live SSO session of this browser."""
        cookie = self.cookie_to_set or (None if self.clear_cookie else _session_cookie(self.request, self.settings))
        return await sessions.find(self.s, cookie, self.settings)

    def finish(self, response: Response) -> Response:
        """Apply cookie changes to a response."""
        if self.cookie_to_set:
            _set_session_cookie(response, self.settings, self.cookie_to_set)
        elif self.clear_cookie:
            _clear_session_cookie(response, self.settings)
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
                action=_path(self.settings, "/oauth2/login"),
                client_name=await self.client_name(req.client_id) if req else None,
                login_hint=extra.pop("login_hint", None) or (req.login_hint if req else None),
                retry_after=extra.pop("retry_after", None),
            )
            return self.finish(self.pages.render(self.request, "login.html", status=status, **ctx, **extra))
        if step.page == "mfa":
            ctx["error"] = error
            methods = it.mfa_methods or ["sms"]
            ctx.update(
                action=_path(self.settings, "/oauth2/mfa"),
                methods=methods,
                method=extra.pop("method", None) or methods[0],
                sent_to=extra.pop("sent_to", None),
                retry_after=extra.pop("retry_after", None),
            )
            return self.finish(self.pages.render(self.request, "mfa.html", status=status, **ctx, **extra))
        assert req is not None
        session = await self.session()
        user_name = extra.pop("user_name", None)
        if user_name is None and session is not None:
            user_name = await factors.display_name(factors.bound(self.request.app.state), session.user_id)
        ctx.update(
            action=_path(self.settings, "/oauth2/consent"),
            client_name=await self.client_name(req.client_id),
            client_id=req.client_id,
            scopes=[sc for sc in req.scopes if sc in SCOPES],
            user_name=user_name or "",
        )
        return self.finish(self.pages.render(self.request, "consent.html", status=status, **ctx, **extra))

    async def advance(self, it: Interaction) -> Response:
        """Take the next step for an interaction and answer with its page or redirect."""
        try:
            step = await flow.next_step(
                self.s, it, await self.session(), self.settings, account_url=_path(self.settings, "/oauth2/account")
            )
        except RedirectError as err:
            return self.finish(RedirectResponse(authorize.error_redirect(err, self.settings.issuer), status_code=303))
        if isinstance(step, flow.Done):
            return self.finish(RedirectResponse(step.location, status_code=303))
        return await self.render_step(step)


async def _load_pushed(s: AsyncSession, request_uri: str, client_id: str) -> dict[str, list[str]]:
    if not request_uri.startswith(PAR_URN_PREFIX):
        raise PageError("invalid_request_uri", "request_uri is not one this server issued")
    row = await s.get(PushedRequest, request_uri)
    if row is None or row.client_id != client_id or row.expires_at <= utcnow():
        raise PageError("invalid_request_uri", "the pushed authorization request is unknown or expired")
    await s.delete(row)  # one-time use (RFC 9126 §4)
    await s.commit()
    return {k: [v] for k, v in row.params.items()}


@router.api_route("/oauth2/authorize", methods=["GET", "POST"], summary="Authorization endpoint", response_model=None)
async def authorization(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """Start a sign-in for a client (OAuth 2.0 authorization code flow with PKCE; OpenID Connect)."""
    if request.method == "POST":
        params = await _form(request)
    else:
        params = {}
        for k, v in request.query_params.multi_items():
            params.setdefault(k, []).append(v)
    f = Flow(request, s, settings)
    try:
        client_id = authorize._single(params, "client_id")
        client = await s.get(Client, client_id) if client_id and len(client_id) <= 100 else None
        client = authorize.check_client(client, client_id)
        request_uri = authorize._single(params, "request_uri")
        pushed = False
        if request_uri is not None:
            params = await _load_pushed(s, request_uri, client.client_id)
            pushed = True
        req = authorize.parse(params, client, settings, pushed=pushed)
    except PageError as err:
        return f.finish(error_page(request, 400, err.error, err.description))
    except RedirectError as err:
        return RedirectResponse(authorize.error_redirect(err, settings.issuer), status_code=303)
    return await f.advance(Interaction(request=req))


@router.post("/oauth2/par", summary="Pushed authorization request (RFC 9126)", status_code=201, response_model=None)
async def pushed_authorization(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """Store an authorization request sent over the back channel; answer with its `request_uri`."""
    form = await _form(request)
    client = await authenticate_client(request, s, form, settings)
    if isinstance(client, Response):
        return client
    params = {k: v for k, v in form.items() if not k.startswith("client_assertion") and k != "client_secret"}
    if "request_uri" in params:
        return _oauth_error(400, "invalid_request", "request_uri must not be pushed")
    try:
        req = authorize.parse(params, client, settings)
    except (PageError, RedirectError) as err:
        return _oauth_error(400, err.error, err.description)
    stored = {k: v[0] for k, v in params.items() if k in authorize.KNOWN and v}
    stored["client_id"] = client.client_id
    stored["redirect_uri"] = req.redirect_uri
    uri = PAR_URN_PREFIX + secrets.token_urlsafe(24)
    now = utcnow()
    s.add(
        PushedRequest(
            request_uri=uri,
            client_id=client.client_id,
            params=stored,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.par_lifetime_seconds),
        )
    )
    await s.commit()
    return JSONResponse(
        {"request_uri": uri, "expires_in": settings.par_lifetime_seconds},
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers={"Cache-Control": "no-store"}
    )


async def _interaction(f: Flow, form: dict[str, list[str]]) -> Interaction | Response:
    """The interaction of a posted form, after the CSRF check; or the error page."""
    if not f.pages.check_csrf(f.request, _one(form, "csrf")):
        return error_page(f.request, 403, "csrf", "the form was not sent from this browser's sign-in page")
    try:
        return open_sealed(f.box, _one(form, "interaction"), f.browser_key)
    except InteractionExpired as exc:
        return error_page(f.request, 400, "interaction_expired", str(exc))


@router.post("/oauth2/login", summary="Login form", response_model=None)
async def login(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """Check a login name and password; continue with the second factor, consent, or back to the client."""
    f = Flow(request, s, settings)
    form = await _form(request)
    it = await _interaction(f, form)
    if isinstance(it, Response):
        return it
    login_name, password = (_one(form, "login") or "").strip(), _one(form, "password") or ""
    step = flow.Show("login", it)
    if not login_name or not password or len(login_name) > 254 or len(password) > 1024:
        return await f.render_step(step, error="login.error.required", status=400, login_hint=login_name or None)
    req = it.request
    result = await factors.authenticate_password(
        factors.bound(request.app.state),
        login=login_name,
        password=password,
        ip=_ip(request),
        client_id=req.client_id if req else None,
    )
    if not result.ok:
        status = 429 if result.retry_after else 401
        return await f.render_step(
            step, error=result.error_key, status=status, login_hint=login_name, retry_after=result.retry_after
        )
    assert result.user_id is not None
    it.login_done = True
    wants = req is not None and authorize.wants_mfa(req, settings)
    if result.mfa_methods or wants:
        it.pending_user, it.pending_amr = result.user_id, ["pwd"]
        it.mfa_methods = list(result.mfa_methods) or await factors.methods(
            factors.bound(request.app.state), result.user_id
        )
        return await f.render_step(flow.Show("mfa", it))
    await _start_session(f, result.user_id, ["pwd"], settings.acr_password, req.client_id if req else None)
    return await f.advance(it)


async def _start_session(f: Flow, user_id: str, amr: list[str], acr: str, client_id: str | None) -> LoginSession:
    """Sign the browser in: renew its session for the same person, or replace another person's session."""
    current = await f.session()
    if current is not None and current.user_id == user_id:
        sessions.renew(f.s, current, amr=amr, acr=acr, client_id=client_id)
        await f.s.commit()
        return current
    row, cookie = await sessions.start(
        f.s,
        f.settings,
        user_id=user_id,
        amr=amr,
        acr=acr,
        ip=_ip(f.request),
        user_agent=f.request.headers.get("user-agent"),
        client_id=client_id,
        replace=current,
    )
    await f.s.commit()
    f.cookie_to_set = cookie
    return row


@router.post("/oauth2/mfa", summary="Second-factor form", response_model=None)
async def mfa(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """Check a TOTP, recovery or one-time code (or send a one-time code); then continue the sign-in."""
    f = Flow(request, s, settings)
    form = await _form(request)
    it = await _interaction(f, form)
    if isinstance(it, Response):
        return it
    current = await f.session()
    user_id = it.pending_user or (current.user_id if current else None)
    if user_id is None:
        return error_page(request, 400, "interaction_expired", "no sign-in is waiting for a second factor")
    if not it.mfa_methods:
        it.mfa_methods = await factors.methods(factors.bound(request.app.state), user_id)
    step = flow.Show("mfa", it)
    method = _one(form, "method") or it.mfa_methods[0]
    if method not in it.mfa_methods:
        return await f.render_step(step, error="mfa.error.invalid", status=400)
    req_client = it.request.client_id if it.request else None
    b = factors.bound(request.app.state)
    op = _one(form, "op") or "verify"
    if op == "switch":
        return await f.render_step(step, method=method)
    if op == "send":
        sent = await factors.send(b, user_id, method, ip=_ip(request))
        return await f.render_step(
            step,
            error=sent.error_key,
            status=429 if sent.retry_after else 200,
            method=method,
            sent_to=sent.sent_to,
            retry_after=sent.retry_after,
        )
    code = (_one(form, "code") or "").strip()
    if not code or len(code) > 64:
        return await f.render_step(step, error="mfa.error.required", status=400, method=method)
    checked = await factors.verify(b, user_id, method, code, ip=_ip(request), client_id=req_client)
    if not checked.ok:
        return await f.render_step(
            step,
            error=checked.error_key,
            status=429 if checked.retry_after else 401,
            method=method,
            retry_after=checked.retry_after,
        )
    amr = ["mfa", *checked.amr]
    if it.pending_user is not None:
        await _start_session(f, user_id, [*it.pending_amr, *amr], settings.acr_mfa, req_client)
        it.pending_user, it.pending_amr = None, []
    else:
        assert current is not None
        sessions.step_up(s, current, amr=amr, acr=settings.acr_mfa, client_id=req_client)
        await s.commit()
    return await f.advance(it)


@router.post("/oauth2/consent", summary="Consent form", response_model=None)
async def consent(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """Approve or deny the scopes an app asked for; approval is remembered until withdrawn."""
    f = Flow(request, s, settings)
    form = await _form(request)
    it = await _interaction(f, form)
    if isinstance(it, Response):
        return it
    req = it.request
    current = await f.session()
    if req is None or current is None:
        return error_page(request, 400, "interaction_expired", "sign in again")
    decision = _one(form, "decision")
    if decision == "deny":
        err = RedirectError("access_denied", "the person did not approve the request", req)
        return RedirectResponse(authorize.error_redirect(err, settings.issuer), status_code=303)
    if decision != "approve":
        return await f.render_step(flow.Show("consent", it), status=400)
    await consents.approve(s, current.user_id, req.client_id, [sc for sc in req.scopes if sc != "openid"])
    await s.commit()
    it.consent_done = True
    return await f.advance(it)


@router.get("/oauth2/account", summary="The signed-in person's sessions, app consents and MFA", response_model=None)
async def account(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """The account page; sign in first when there is no session."""
    f = Flow(request, s, settings)
    current = await f.session()
    if current is None:
        return await f.advance(Interaction(request=None))
    return await _account_page(f, current)


async def _account_page(f: Flow, current: LoginSession, *, status: int = 200) -> Response:
    b = factors.bound(f.request.app.state)
    live = await sessions.of_user(f.s, current.user_id, f.settings)
    given = await consents.of_user(f.s, current.user_id)
    names = {c.client_id: await f.client_name(c.client_id) for c in given}
    return f.finish(
        f.pages.render(
            f.request,
            "account.html",
            status=status,
            user_name=await factors.display_name(b, current.user_id) or "",
            sessions=[
                {
                    "sid": r.sid,
                    "created_at": r.created_at,
                    "last_seen_at": r.last_seen_at,
                    "ip": r.ip,
                    "user_agent": r.user_agent,
                    "current": r.sid == current.sid,
                }
                for r in live
            ],
            consents=[
                {
                    "client_id": c.client_id,
                    "client_name": names[c.client_id],
                    "scopes": c.scopes,
                    "granted_at": c.granted_at,
                }
                for c in given
            ],
            totp_enabled=await credentials.totp_enabled(f.s, current.user_id),
            actions={
                "end_session": _path(f.settings, "/oauth2/account/sessions/end"),
                "end_all": _path(f.settings, "/oauth2/account/sessions/end-all"),
                "revoke_consent": _path(f.settings, "/oauth2/account/consents/revoke"),
                "totp_setup": _path(f.settings, "/oauth2/account/totp"),
                "logout": _path(f.settings, "/oauth2/logout"),
            },
        )
    )


async def _account_post(
    request: Request, s: AsyncSession, settings: Settings
) -> tuple[Flow, dict[str, list[str]], LoginSession] | Response:
    f = Flow(request, s, settings)
    form = await _form(request)
    if not f.pages.check_csrf(request, _one(form, "csrf")):
        return error_page(request, 403, "csrf", "the form was not sent from this browser's account page")
    current = await f.session()
    if current is None:
        return RedirectResponse(_path(settings, "/oauth2/account"), status_code=303)
    return f, form, current


@router.post("/oauth2/account/sessions/end", summary="End one of my sessions", response_model=None)
async def end_one_session(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """End one session of the signed-in person (another device, or this one)."""
    got = await _account_post(request, s, settings)
    if isinstance(got, Response):
        return got
    f, form, current = got
    sid = _one(form, "sid")
    target = next((r for r in await sessions.of_user(s, current.user_id, settings) if r.sid == sid), None)
    if target is None:
        return error_page(request, 404, "not_found", "no such session")
    await sessions.end(s, target, "logout")
    await s.commit()
    if target.sid == current.sid:
        f.clear_cookie = True
        return f.finish(f.pages.render(request, "signed_out.html", return_to=None))
    return RedirectResponse(_path(settings, "/oauth2/account"), status_code=303)


@router.post("/oauth2/account/sessions/end-all", summary="Sign out everywhere", response_model=None)
async def end_all_sessions(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """End every session of the signed-in person, on every device; their apps' grants are revoked."""
    got = await _account_post(request, s, settings)
    if isinstance(got, Response):
        return got
    f, _, current = got
    await sessions.end_all(s, current.user_id, settings)
    await s.commit()
    f.clear_cookie = True
    return f.finish(f.pages.render(request, "signed_out.html", return_to=None))


@router.post("/oauth2/account/consents/revoke", summary="Withdraw an app's consent", response_model=None)
async def revoke_consent(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """Forget the approval given to an app and revoke its grants (its tokens stop working)."""
    got = await _account_post(request, s, settings)
    if isinstance(got, Response):
        return got
    _f, form, current = got
    client_id = _one(form, "client_id")
    if not client_id or len(client_id) > 100:
        return error_page(request, 400, "invalid_request", "which app?")
    await consents.withdraw(s, current.user_id, client_id)
    await s.commit()
    return RedirectResponse(_path(settings, "/oauth2/account"), status_code=303)


@router.api_route("/oauth2/logout", methods=["GET", "POST"], summary="RP-initiated logout", response_model=None)
async def end_session_endpoint(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """OpenID Connect RP-Initiated Logout 1.0: end the browser's session, then return to the app if it asked.

    With a valid `id_token_hint` for the current session the session ends at once; otherwise the person confirms.
    """
    params = (
        await _form(request)
        if request.method == "POST"
        else {k: request.query_params.getlist(k) for k in request.query_params}
    )
    f = Flow(request, s, settings)
    try:
        values = {
            n: authorize._single(params, n) for n in ("id_token_hint", "client_id", "post_logout_redirect_uri", "state")
        }
    except PageError as err:
        return error_page(request, 400, err.error, err.description)
    hint = await logout.read_id_token_hint(s, values["id_token_hint"], settings) if values["id_token_hint"] else None
    if values["id_token_hint"] and hint is None:
        return error_page(request, 400, "invalid_request", "id_token_hint is not an ID token issued here")
    client_id = values["client_id"] or (hint["aud"] if hint else None)
    if hint and values["client_id"] and hint["aud"] != values["client_id"]:
        return error_page(request, 400, "invalid_request", "id_token_hint was issued to another client")
    client = await s.get(Client, client_id) if client_id and len(client_id) <= 100 else None
    if client_id and client is None:
        return error_page(request, 400, "invalid_client", "unknown client")
    return_to = None
    if values["post_logout_redirect_uri"]:
        if client is None:
            return error_page(
                request, 400, "invalid_request", "post_logout_redirect_uri needs client_id or id_token_hint"
            )
        if values["post_logout_redirect_uri"] not in client.post_logout_redirect_uris:
            return error_page(
                request, 400, "invalid_request", "post_logout_redirect_uri is not registered for this client"
            )
        return_to = authorize.with_query(values["post_logout_redirect_uri"], {"state": values["state"]})
    current = await f.session()
    if current is None:
        return _after_logout(f, return_to)
    if hint is not None and hint.get("sid") == current.sid and hint.get("sub") == current.user_id:
        return await _do_logout(f, current, return_to)
    blob = f.box.seal(
        json.dumps({"return_to": return_to, "sid": current.sid}).encode(), b"logout:" + f.browser_key.encode()
    )
    return f.finish(
        f.pages.render(
            request,
            "logout.html",
            action=_path(settings, "/oauth2/logout/confirm"),
            client_name=client.name if client else None,
            state_blob=blob,
            redirect_origins=[return_to] if return_to else [],
        )
    )


@router.post("/oauth2/logout/confirm", summary="Confirm logout", response_model=None)
async def confirm_logout(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """The person confirmed signing out."""
    f = Flow(request, s, settings)
    form = await _form(request)
    if not f.pages.check_csrf(request, _one(form, "csrf")):
        return error_page(request, 403, "csrf", "the form was not sent from this browser's logout page")
    if _one(form, "decision") == "cancel":
        return RedirectResponse(_path(settings, "/oauth2/account"), status_code=303)
    try:
        state = json.loads(f.box.open(_one(form, "state_blob") or "", b"logout:" + f.browser_key.encode()))
    except ValueError:
        return error_page(request, 400, "interaction_expired", "the logout form is not valid for this browser")
    current = await f.session()
    if current is None or current.sid != state.get("sid"):
        return _after_logout(f, state.get("return_to"))
    return await _do_logout(f, current, state.get("return_to"))


async def _do_logout(f: Flow, current: LoginSession, return_to: str | None) -> Response:
    await sessions.end(f.s, current, "logout")
    await f.s.commit()
    f.clear_cookie = True
    return _after_logout(f, return_to)


def _after_logout(f: Flow, return_to: str | None) -> Response:
    if return_to:
        return f.finish(RedirectResponse(return_to, status_code=303))
    return f.finish(f.pages.render(f.request, "signed_out.html", return_to=None))


@router.post("/oauth2/account/totp", summary="Set up an authenticator app (TOTP)", response_model=None)
async def totp_setup(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """Without a code: start enrolment and show the secret; with a code: confirm it and show recovery codes once."""
    got = await _account_post(request, s, settings)
    if isinstance(got, Response):
        return got
    f, form, current = got
    b = factors.bound(request.app.state)
    code = (_one(form, "code") or "").strip()
    account_url = _path(settings, "/oauth2/account")
    action = _path(settings, "/oauth2/account/totp")
    if not code:
        if await credentials.totp_enabled(s, current.user_id):
            return RedirectResponse(account_url, status_code=303)
        label = await factors.display_name(b, current.user_id) or current.user_id
        enrol = await credentials.begin_totp_enrolment(b.rt, settings, user_id=current.user_id, label=label)
        return _totp_page(f, enrol.secret, enrol.otpauth_uri, action, account_url)
    done = await credentials.confirm_totp_enrolment(b.rt, settings, user_id=current.user_id, code=code, ip=_ip(request))
    if done.ok:
        return f.finish(
            f.pages.render(
                request,
                "totp_setup.html",
                secret="",
                otpauth_uri="otpauth://totp/",
                action=action,
                recovery_codes=done.recovery_codes,
                back_url=account_url,
            )
        )
    pending = await credentials.pending_totp(b.rt, settings, user_id=current.user_id)
    if pending is None:
        return RedirectResponse(account_url, status_code=303)
    return _totp_page(f, pending.secret, pending.otpauth_uri, action, account_url, error=done.error_key, status=400)


def _totp_page(
    f: Flow, secret: str, uri: str, action: str, back: str, *, error: str | None = None, status: int = 200
) -> Response:
    return f.finish(
        f.pages.render(
            f.request,
            "totp_setup.html",
            status=status,
            secret=secret,
            otpauth_uri=uri,
            qr_svg=qr_svg(uri),
            action=action,
            error=error,
            back_url=back,
        )
    )
