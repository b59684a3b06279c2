"""`/oauth2/authorize` and pushed authorization requests (RFC 9126)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import delete
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth import authorize
from tongban_auth.api.deps import SettingsDep
from tongban_auth.api.docs import PAGE_ANSWERS, oauth_error_responses
from tongban_auth.api.routes.signin.common import (
    Flow,
    error_page,
    oauth_error,
    read_form,
    see_other,
)
from tongban_auth.authorize import PAR_URN_PREFIX, PageError, RedirectError
from tongban_auth.client_auth import authenticate_client
from tongban_auth.interaction import Interaction
from tongban_auth.models import Client, PushedRequest
from tongban_kit.app import SessionDep
from tongban_kit.outbox import utcnow

router = APIRouter(tags=["oidc"], include_in_schema=True)


async def _load_pushed(s: AsyncSession, request_uri: str, client_id: str) -> dict[str, list[str]]:
    if not request_uri.startswith(PAR_URN_PREFIX):
        raise PageError("invalid_request_uri", "request_uri is not one this server issued")
    row = await s.get(PushedRequest, request_uri)
    if row is None or row.client_id != client_id or row.expires_at <= utcnow():
        raise PageError("invalid_request_uri", "the pushed authorization request is unknown or expired")
    # one-time use (RFC 9126 §4): of two browsers racing with the same request_uri only one deletes the row
    gone = await s.exec(delete(PushedRequest).where(col(PushedRequest.request_uri) == request_uri))
    await s.commit()
    if gone.rowcount != 1:
        raise PageError("invalid_request_uri", "the pushed authorization request was already used")
    return {k: [v] for k, v in row.params.items()}


@router.get(
    "/oauth2/authorize",
    summary="Authorization endpoint",
    response_model=None,
    response_class=HTMLResponse,
    responses=PAGE_ANSWERS,
    operation_id="authorization_get",
)
@router.post(
    "/oauth2/authorize",
    summary="Authorization endpoint (form post)",
    response_model=None,
    response_class=HTMLResponse,
    responses=PAGE_ANSWERS,
    operation_id="authorization_post",
)
async def authorization(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """Start a sign-in for a client (OAuth 2.0 authorization code flow with PKCE; OpenID Connect)."""
    if request.method == "POST":
        params = await read_form(request)
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
        return see_other(authorize.error_redirect(err, settings.issuer))
    return await f.advance(Interaction(request=req))


@router.post(
    "/oauth2/par",
    summary="Pushed authorization request (RFC 9126)",
    status_code=201,
    response_model=None,
    responses={
        201: {"description": "Stored: `request_uri` and `expires_in`"},
        **oauth_error_responses(400, 401, 405, 413),
    },
)
async def pushed_authorization(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """Store an authorization request sent over the back channel; answer with its `request_uri`."""
    form = await read_form(request)
    client = await authenticate_client(request, s, form, settings)
    if isinstance(client, Response):
        return client
    params = {k: v for k, v in form.items() if not k.startswith("client_assertion") and k != "client_secret"}
    if "request_uri" in params:
        return oauth_error(400, "invalid_request", "request_uri must not be pushed")
    try:
        req = authorize.parse(params, client, settings)
    except (PageError, RedirectError) as err:
        return oauth_error(400, err.error, err.description)
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
