"""Dynamic client registration (RFC 7591) at `/oauth2/register`, and the initial access tokens administrators
make for it at `/api/v1/auth/registration-tokens`."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from tongban_auth import clients, registration
from tongban_auth.api.deps import AdminDep, SessionDep, SettingsDep
from tongban_auth.registration import InitialTokenCreate, InitialTokenCreated, RegistrationError
from tongban_kit.problems import Problem, problem_responses

router = APIRouter(tags=["clients"])


class OAuthErrorBody(BaseModel):
    """An OAuth error response."""

    error: str
    error_description: str | None = None


NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_BEARER = re.compile(r"[Bb]earer ([A-Za-z0-9._~+/-]+=*)")
MAX_BODY = 64 * 1024


def _error(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers={**NO_STORE, **(headers or {})}
    )


@router.post(
    "/oauth2/register",
    summary="Dynamic client registration (RFC 7591)",
    status_code=201,
    response_model=None,
    responses={
        201: {"description": "the client information response (RFC 7591 §3.2.1)", "model": dict[str, Any]},
        400: {
            "description": "`invalid_redirect_uri` or `invalid_client_metadata` (RFC 7591 §3.2.2)",
            "model": OAuthErrorBody,
        },
        401: {"description": "no, or a used-up, initial access token", "model": OAuthErrorBody},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
        }
    },
)
async def register(
    request: Request,
    s: SessionDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(description="`Bearer <initial access token>`")] = None,
) -> Response:
    """Register an app with RFC 7591 client metadata; needs an initial access token from an administrator."""
    match = _BEARER.fullmatch((authorization or "").strip())
    if match is None:
        return _error(
            401, "invalid_token", "an initial access token is required", {"WWW-Authenticate": 'Bearer realm="tongban"'}
        )
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return _error(400, "invalid_client_metadata", "the metadata document is too large")
    try:
        meta: Any = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):  # the kit bounds nesting first; never a 500 here
        return _error(400, "invalid_client_metadata", "the body must be a JSON object")
    if not isinstance(meta, dict):
        return _error(400, "invalid_client_metadata", "the body must be a JSON object")
    allowed = await registration.spend(s, match.group(1))
    if allowed is None:
        await s.rollback()
        return _error(
            401,
            "invalid_token",
            "the initial access token is unknown, used up or expired",
            {"WWW-Authenticate": 'Bearer realm="tongban", error="invalid_token"'},
        )
    try:
        body = registration.to_client_create(meta, allowed)
        refused = clients.outbound_refusals(body, settings.outbound_policy)
        if refused:  # a back-channel or JWKS URI naming a host this server never calls
            raise RegistrationError("invalid_client_metadata", refused[0]["message"])
        clients.check_loopback(body, settings.loopback_http_allowed)
    except RegistrationError as exc:
        await s.rollback()  # the token's use is not spent on a refused registration
        return _error(400, exc.error, exc.description)
    except Problem as exc:  # the loopback check: a URI that must use https
        await s.rollback()
        return _error(400, "invalid_redirect_uri", exc.detail or "a URI is not acceptable")
    created = await clients.register(
        s,
        body,
        actor=f"registration:{allowed.id}",
        loopback_allowed=settings.loopback_http_allowed,
        outbound=settings.outbound_policy,
    )
    return JSONResponse(registration.response_of(created), status_code=201, headers=NO_STORE)


TokenId = Annotated[str, Path(max_length=36, description="id of the initial access token")]


@router.post(
    "/api/v1/auth/registration-tokens",
    status_code=201,
    summary="Make an initial access token for dynamic registration",
    responses=problem_responses(400, 401, 403, 422),
)
async def make_registration_token(body: InitialTokenCreate, s: SessionDep, admin: AdminDep) -> InitialTokenCreated:
    """A token app developers present at `/oauth2/register`; it is shown only in this answer."""
    made = await registration.create_initial_token(s, body, actor=admin)
    return made


@router.delete(
    "/api/v1/auth/registration-tokens/{token_id}",
    status_code=204,
    summary="Withdraw an initial access token",
    responses=problem_responses(401, 403, 404, 422),
)
async def withdraw_registration_token(token_id: TokenId, s: SessionDep, _admin: AdminDep) -> Response:
    """The token registers no more clients (clients it registered stay)."""
    await registration.revoke_initial_token(s, token_id)
    return Response(status_code=204)
