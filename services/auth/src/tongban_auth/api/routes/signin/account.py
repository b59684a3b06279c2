"""The account page: sessions, app consents and TOTP enrolment."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth import consents, credentials, factors, sessions
from tongban_auth.api.deps import SettingsDep
from tongban_auth.api.docs import PAGE_ANSWERS
from tongban_auth.api.routes.signin.common import (
    Flow,
    error_page,
    issuer_path,
    one_value,
    read_form,
    see_other,
)
from tongban_auth.config import Settings
from tongban_auth.interaction import Interaction
from tongban_auth.models import LoginSession
from tongban_kit.app import SessionDep

router = APIRouter(tags=["oidc"], include_in_schema=True)


@router.get(
    "/oauth2/account",
    summary="The signed-in person's sessions, app consents and MFA",
    response_model=None,
    response_class=HTMLResponse,
    responses=PAGE_ANSWERS,
)
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
                "end_session": issuer_path(f.settings, "/oauth2/account/sessions/end"),
                "end_all": issuer_path(f.settings, "/oauth2/account/sessions/end-all"),
                "revoke_consent": issuer_path(f.settings, "/oauth2/account/consents/revoke"),
                "totp_setup": issuer_path(f.settings, "/oauth2/account/totp"),
                "logout": issuer_path(f.settings, "/oauth2/logout"),
            },
        )
    )


async def account_post(
    request: Request, s: AsyncSession, settings: Settings
) -> tuple[Flow, dict[str, list[str]], LoginSession] | Response:
    """The flow, form and session of an account-page form after the CSRF check; a redirect when signed out."""
    f = Flow(request, s, settings)
    form = await read_form(request)
    if not f.pages.check_csrf(request, one_value(form, "csrf")):
        return error_page(request, 403, "csrf", "the form was not sent from this browser's account page")
    current = await f.session()
    if current is None:
        return see_other(issuer_path(settings, "/oauth2/account"))
    return f, form, current


@router.post(
    "/oauth2/account/sessions/end",
    summary="End one of my sessions",
    response_model=None,
    response_class=HTMLResponse,
    responses=PAGE_ANSWERS,
)
async def end_one_session(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """End one session of the signed-in person (another device, or this one)."""
    got = await account_post(request, s, settings)
    if isinstance(got, Response):
        return got
    f, form, current = got
    sid = one_value(form, "sid")
    target = next((r for r in await sessions.of_user(s, current.user_id, settings) if r.sid == sid), None)
    if target is None:
        return error_page(request, 404, "not_found", "no such session")
    await sessions.end(s, target, "logout")
    await s.commit()
    if target.sid == current.sid:
        f.clear_cookie = True
        return f.finish(f.pages.render(request, "signed_out.html", return_to=None))
    return see_other(issuer_path(settings, "/oauth2/account"))


@router.post(
    "/oauth2/account/sessions/end-all",
    summary="Sign out everywhere",
    response_model=None,
    response_class=HTMLResponse,
    responses=PAGE_ANSWERS,
)
async def end_all_sessions(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """End every session of the signed-in person, on every device; their apps' grants are revoked."""
    got = await account_post(request, s, settings)
    if isinstance(got, Response):
        return got
    f, _, current = got
    await sessions.end_all(s, current.user_id, settings)
    await s.commit()
    f.clear_cookie = True
    return f.finish(f.pages.render(request, "signed_out.html", return_to=None))


@router.post(
    "/oauth2/account/consents/revoke",
    summary="Withdraw an app's consent",
    response_model=None,
    response_class=HTMLResponse,
    responses=PAGE_ANSWERS,
)
async def revoke_consent(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """Forget the approval given to an app and revoke its grants (its tokens stop working)."""
    got = await account_post(request, s, settings)
    if isinstance(got, Response):
        return got
    _f, form, current = got
    client_id = one_value(form, "client_id")
    if not client_id or len(client_id) > 100:
        return error_page(request, 400, "invalid_request", "which app?")
    await consents.withdraw(s, current.user_id, client_id)
    await s.commit()
    return see_other(issuer_path(settings, "/oauth2/account"))
