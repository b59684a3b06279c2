"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) and its confirmation page."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from tongban_auth import authorize, logout, sessions
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
from tongban_auth.authorize import PageError
from tongban_auth.models import Client, LoginSession
from tongban_kit.app import SessionDep

router = APIRouter(tags=["oidc"], include_in_schema=True)


@router.get(
    "/oauth2/logout",
    summary="RP-initiated logout",
    response_model=None,
    response_class=HTMLResponse,
    responses=PAGE_ANSWERS,
    operation_id="end_session_get",
)
@router.post(
    "/oauth2/logout",
    summary="RP-initiated logout (form post)",
    response_model=None,
    response_class=HTMLResponse,
    responses=PAGE_ANSWERS,
    operation_id="end_session_post",
)
async def end_session_endpoint(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """OpenID Connect RP-Initiated Logout 1.0: end the browser's session, then return to the app if it asked.

    With a valid `id_token_hint` for the current session the session ends at once; otherwise the person confirms.
    """
    params = (
        await read_form(request)
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
            action=issuer_path(settings, "/oauth2/logout/confirm"),
            client_name=client.name if client else None,
            state_blob=blob,
            redirect_origins=[return_to] if return_to else [],
        )
    )


@router.post(
    "/oauth2/logout/confirm",
    summary="Confirm logout",
    response_model=None,
    response_class=HTMLResponse,
    responses=PAGE_ANSWERS,
)
async def confirm_logout(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """The person confirmed signing out."""
    f = Flow(request, s, settings)
    form = await read_form(request)
    if not f.pages.check_csrf(request, one_value(form, "csrf")):
        return error_page(request, 403, "csrf", "the form was not sent from this browser's logout page")
    if one_value(form, "decision") == "cancel":
        return see_other(issuer_path(settings, "/oauth2/account"))
    try:
        state = json.loads(f.box.open(one_value(form, "state_blob") or "", b"logout:" + f.browser_key.encode()))
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
        return f.finish(see_other(return_to))
    return f.finish(f.pages.render(f.request, "signed_out.html", return_to=None))
