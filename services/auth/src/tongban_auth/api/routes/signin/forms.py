"""The login, second-factor and consent forms of a sign-in."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from tongban_auth import authorize, consents, devices, factors, flow, sessions
from tongban_auth.api.deps import SettingsDep
from tongban_auth.api.docs import PAGE_ANSWERS
from tongban_auth.api.routes.signin.common import (
    Flow,
    client_ip,
    device_cookie,
    error_page,
    one_value,
    open_interaction,
    read_form,
    see_other,
)
from tongban_auth.authorize import RedirectError
from tongban_auth.models import LoginSession
from tongban_kit.app import SessionDep

router = APIRouter(tags=["oidc"], include_in_schema=True)


@router.post(
    "/oauth2/login", summary="Login form", response_model=None, response_class=HTMLResponse, responses=PAGE_ANSWERS
)
async def login(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """Check a login name and password; continue with the second factor, consent, or back to the client."""
    f = Flow(request, s, settings)
    form = await read_form(request)
    it = await open_interaction(f, form)
    if isinstance(it, Response):
        return it
    login_name, password = (one_value(form, "login") or "").strip(), one_value(form, "password") or ""
    step = flow.Show("login", it)
    if not login_name or not password or len(login_name) > 254 or len(password) > 1024:
        return await f.render_step(step, error="login.error.required", status=400, login_hint=login_name or None)
    req = it.request
    result = await factors.authenticate_password(
        factors.bound(request.app.state),
        login=login_name,
        password=password,
        ip=client_ip(request),
        client_id=req.client_id if req else None,
        device_cookie=device_cookie(request, settings),
    )
    if not result.ok:
        status = 429 if result.retry_after else 401
        return await f.render_step(
            step, error=result.error_key, status=status, login_hint=login_name, retry_after=result.retry_after
        )
    assert result.user_id is not None
    it.login_done = True
    wants = req is not None and authorize.wants_mfa(req, settings)
    if result.mfa_methods or wants or result.step_up:
        methods = list(result.mfa_methods) or await factors.methods(factors.bound(request.app.state), result.user_id)
        if methods:
            it.pending_user, it.pending_amr, it.mfa_methods = result.user_id, ["pwd"], methods
            return await f.render_step(flow.Show("mfa", it), step_up=result.step_up)
        if result.step_up:
            # its second factor went away meanwhile (or cannot be reached): refused like any unconfirmed password
            it.login_done = False
            return await f.render_step(
                step, error="login.error.throttled", status=429, login_hint=login_name, retry_after=5
            )
        if wants:
            # the app wants a second factor this person has none of: signed in with the password (so the account
            # page can set one up at once), and the app is told
            await _start_session(f, result.user_id, ["pwd"], settings.acr_password, req.client_id if req else None)
            return f.no_second_factor(it)
    await _start_session(f, result.user_id, ["pwd"], settings.acr_password, req.client_id if req else None)
    return await f.advance(it)


async def _start_session(f: Flow, user_id: str, amr: list[str], acr: str, client_id: str | None) -> LoginSession:
    """Sign the browser in: renew its session for the same person, or replace another person's session; after a
    password, the browser's device cookie remembers the account."""
    if "pwd" in amr:
        f.device_to_set = devices.remember(f.settings, device_cookie(f.request, f.settings), user_id)
    current = await f.session()
    if current is not None and current.user_id == user_id:
        cookie = sessions.renew(f.s, current, amr=amr, acr=acr, client_id=client_id)
        await f.s.commit()
        f.cookie_to_set = cookie
        return current
    row, cookie = await sessions.start(
        f.s,
        f.settings,
        user_id=user_id,
        amr=amr,
        acr=acr,
        ip=client_ip(f.request),
        user_agent=f.request.headers.get("user-agent"),
        client_id=client_id,
        replace=current,
    )
    await f.s.commit()
    f.cookie_to_set = cookie
    return row


@router.post(
    "/oauth2/mfa",
    summary="Second-factor form",
    response_model=None,
    response_class=HTMLResponse,
    responses=PAGE_ANSWERS,
)
async def mfa(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """Check a TOTP, recovery or one-time code (or send a one-time code); then continue the sign-in."""
    f = Flow(request, s, settings)
    form = await read_form(request)
    it = await open_interaction(f, form)
    if isinstance(it, Response):
        return it
    current = await f.session()
    user_id = it.pending_user or (current.user_id if current else None)
    if user_id is None:
        return error_page(request, 400, "interaction_expired", "no sign-in is waiting for a second factor")
    if not it.mfa_methods:
        it.mfa_methods = await factors.methods(factors.bound(request.app.state), user_id)
    if not it.mfa_methods:  # nothing to check: no authenticator, no reachable phone or email
        return f.no_second_factor(it)
    step = flow.Show("mfa", it)
    method = one_value(form, "method") or it.mfa_methods[0]
    if method not in it.mfa_methods:
        return await f.render_step(step, error="mfa.error.invalid", status=400)
    req_client = it.request.client_id if it.request else None
    b = factors.bound(request.app.state)
    op = one_value(form, "op") or "verify"
    if op == "switch":
        return await f.render_step(step, method=method)
    if op == "send":
        sent = await factors.send(b, user_id, method, ip=client_ip(request))
        return await f.render_step(
            step,
            error=sent.error_key,
            status=429 if sent.retry_after else 200,
            method=method,
            sent_to=sent.sent_to,
            retry_after=sent.retry_after,
        )
    code = (one_value(form, "code") or "").strip()
    if not code or len(code) > 64:
        return await f.render_step(step, error="mfa.error.required", status=400, method=method)
    checked = await factors.verify(b, user_id, method, code, ip=client_ip(request), client_id=req_client)
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
        cookie = sessions.step_up(s, current, amr=amr, acr=settings.acr_mfa, client_id=req_client)
        await s.commit()
        f.cookie_to_set = cookie
    return await f.advance(it)


@router.post(
    "/oauth2/consent", summary="Consent form", response_model=None, response_class=HTMLResponse, responses=PAGE_ANSWERS
)
async def consent(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """Approve or deny the scopes an app asked for; approval is remembered until withdrawn."""
    f = Flow(request, s, settings)
    form = await read_form(request)
    it = await open_interaction(f, form)
    if isinstance(it, Response):
        return it
    req = it.request
    current = await f.session()
    if req is None or current is None:
        return error_page(request, 400, "interaction_expired", "sign in again")
    decision = one_value(form, "decision")
    if decision == "deny":
        err = RedirectError("access_denied", "the person did not approve the request", req)
        return see_other(authorize.error_redirect(err, settings.issuer))
    if decision != "approve":
        return await f.render_step(flow.Show("consent", it), status=400)
    await consents.approve(s, current.user_id, req.client_id, [sc for sc in req.scopes if sc != "openid"])
    await s.commit()
    it.consent_done = True
    return await f.advance(it)
