"""Back-channel OAuth endpoints: token (RFC 6749), introspection (RFC 7662), revocation (RFC 7009), userinfo."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import FormData

from tongban_auth import clients, revocation
from tongban_auth.client_auth import NO_STORE, ClientAuthenticator, ClientCache, OAuthError, invalid_client
from tongban_auth.config import Settings
from tongban_auth.grants import TokenEndpoint
from tongban_auth.issuance import TokenIssuer, token_digest
from tongban_auth.models import ClientType
from tongban_auth.token_state import TokenChecker, introspection_of, refresh_introspection
from tongban_auth.userinfo import user_claims
from tongban_kit.problems import Problem, problem_responses
from tongban_kit.rpc import RpcError
from tongban_kit.tokens import InvalidToken

log = logging.getLogger(__name__)
router = APIRouter(prefix="/oauth2", tags=["oauth"])

FORM = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 64 * 1024
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
#: RFC 6750 §3.1: the errors come with `WWW-Authenticate: Bearer error=…` (as problem+json bodies)
USERINFO_ERRORS = problem_responses(400, 401, 403, 422, 503)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "RFC 6749 §5.2 error (`error`, `error_description`)"},
    401: {"description": "invalid_client"},
}


@dataclass
class OAuthServices:
    """What the back-channel endpoints share: client cache and authentication, token checks and issuance."""

    settings: Settings
    cache: ClientCache
    authenticator: ClientAuthenticator
    checker: TokenChecker
    issuer: TokenIssuer
    tokens: TokenEndpoint
    undo: list[Any]


def install(app: FastAPI, settings: Settings) -> OAuthServices:
    """Build the endpoints' services on `app.state.oauth` and hook the caches to this process's changes."""
    runtime = app.state.runtime
    db = runtime.db
    cache = ClientCache(db)
    checker = TokenChecker(db, settings)
    issuer = TokenIssuer(app.state.signer, settings, lambda: runtime.rpc)
    services = OAuthServices(
        settings=settings,
        cache=cache,
        authenticator=ClientAuthenticator(db, settings, cache),
        checker=checker,
        issuer=issuer,
        tokens=TokenEndpoint(db, settings, issuer, checker),
        undo=[clients.on_client_change(cache.invalidate), revocation.on_revoked(checker.forget)],
    )
    app.state.oauth = services
    app.state.client_authenticator = services.authenticator
    return services


async def uninstall(app: FastAPI) -> None:
    """Detach the caches and close outgoing HTTP sessions (shutdown)."""
    services: OAuthServices | None = getattr(app.state, "oauth", None)
    if services is not None:
        for undo in services.undo:
            undo()
        await services.authenticator.close()


def _services(request: Request) -> OAuthServices:
    services: OAuthServices = request.app.state.oauth
    return services


async def _form(request: Request) -> dict[str, str]:
    """The form-encoded body; every parameter at most once (RFC 6749 §3.1, §3.2)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        raise OAuthError("invalid_request", f"the body must be {FORM}")
    length = request.headers.get("content-length") or "0"
    if not length.isdigit() or int(length) > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", "the body is too large or its length is malformed")
    try:
        data: FormData = await request.form()
    except Exception:  # malformed bodies of any kind are the client's error
        raise OAuthError("invalid_request", "the body is not valid form data") from None
    out: dict[str, str] = {}
    for key, value in data.multi_items():
        if not isinstance(value, str):
            raise OAuthError("invalid_request", f"{key} must be a plain value")
        if key in out:
            raise OAuthError("invalid_request", f"parameter {key} is repeated")
        if "\x00" in value:
            raise OAuthError("invalid_request", f"parameter {key} contains a NUL character")
        out[key] = value
    return out


def _json(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers=NO_STORE)


@router.post(
    "/token",
    summary="Token endpoint",
    responses=ERROR_RESPONSES,
    openapi_extra={"requestBody": {"content": {FORM: {"schema": {"type": "object"}}}, "required": True}},
)
async def token(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
    """Issue tokens for the grants `authorization_code`, `refresh_token`, `client_credentials` and token exchange."""
    services = _services(request)
    url = services.settings.issuer + "/oauth2/token"
    try:
        form = await _form(request)
        caller = await services.authenticator.authenticate(form, authorization, endpoint_url=url)
        result = await services.tokens.handle(form, caller)
    except OAuthError as exc:
        return exc.response()
    return _json(result.body())


@router.post(
    "/introspect",
    summary="Token introspection (RFC 7662)",
    responses=ERROR_RESPONSES,
    openapi_extra={"requestBody": {"content": {FORM: {"schema": {"type": "object"}}}, "required": True}},
)
async def introspect(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
    """Whether a token is active, and what it grants; for confidential clients."""
    services = _services(request)
    url = services.settings.issuer + "/oauth2/introspect"
    try:
        form = await _form(request)
        caller = await services.authenticator.authenticate(form, authorization, endpoint_url=url)
        if caller.client.client_type != ClientType.confidential:
            raise invalid_client("only confidential clients may introspect tokens")
        value = form.get("token")
        if not value:
            raise OAuthError("invalid_request", "token is required")
    except OAuthError as exc:
        return exc.response()
    hint = form.get("token_type_hint")
    order = ("refresh", "access") if hint == "refresh_token" else ("access", "refresh")
    for kind in order:
        if kind == "access" and "." in value:
            vt = await services.checker.active(value)
            if vt is not None:
                return _json(introspection_of(vt))
        elif kind == "refresh":
            state = await services.checker.refresh_state(value)
            if state is not None and state[0].client_id == caller.client_id:
                return _json(refresh_introspection(*state, services.settings.issuer))
    return _json({"active": False})


@router.post(
    "/revoke",
    summary="Token revocation (RFC 7009)",
    responses=ERROR_RESPONSES,
    openapi_extra={"requestBody": {"content": {FORM: {"schema": {"type": "object"}}}, "required": True}},
)
async def revoke(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
    """Revoke a refresh token (its whole grant) or an access token; unknown tokens are answered 200 all the same."""
    services = _services(request)
    url = services.settings.issuer + "/oauth2/revoke"
    try:
        form = await _form(request)
        caller = await services.authenticator.authenticate(form, authorization, endpoint_url=url)
        value = form.get("token")
        if not value:
            raise OAuthError("invalid_request", "token is required")
    except OAuthError as exc:
        return exc.response()
    db = request.app.state.runtime.db
    async with db.session() as s:
        done = False
        if form.get("token_type_hint") != "access_token" or "." not in value:
            done = len(value) <= 200 and await revocation.revoke_refresh_token(s, token_digest(value), caller.client_id)
        if not done and "." in value:
            try:
                vt = await services.checker.verify(value)
            except InvalidToken:  # expired, malformed or foreign: nothing to revoke (RFC 7009 §2.2)
                vt = None
            if vt is not None and vt.client_id == caller.client_id:
                await revocation.revoke_access_token(
                    s,
                    jti=vt.jti,
                    client_id=vt.client_id,
                    grant_id=vt.grant_id,
                    sub=vt.sub,
                    expires_at=datetime.fromtimestamp(vt.exp, UTC),
                )
        await revocation.purge_expired(s)
        await s.commit()
    return Response(status_code=200, headers=NO_STORE)


def _bearer_problem(status: int, error: str | None, detail: str) -> Problem:
    challenge = 'Bearer realm="tongban"'
    if error:
        challenge += f', error="{error}", error_description="{detail}"'
    if error == "insufficient_scope":
        challenge += ', scope="openid"'
    return Problem(
        status,
        detail,
        type=error.replace("_", "-") if error else "unauthenticated",
        headers={"WWW-Authenticate": challenge},
    )


async def _userinfo(request: Request, authorization: str | None) -> Response:
    services = _services(request)
    token: str | None = None
    if authorization:
        match = _BEARER.fullmatch(authorization.strip())
        if match is None:
            raise _bearer_problem(401, "invalid_request", "the Authorization header must be a Bearer token")
        token = match.group(1)
    elif request.method == "POST" and request.headers.get("content-type", "").startswith(FORM):
        try:
            token = (await _form(request)).get("access_token")
        except OAuthError as exc:
            raise _bearer_problem(400, "invalid_request", exc.description or "bad form") from None
    if not token:
        raise _bearer_problem(401, None, "an access token is required")
    vt = await services.checker.active(token)
    if vt is None:
        raise _bearer_problem(401, "invalid_token", "the access token is invalid, expired or revoked")
    if "openid" not in vt.scopes:
        raise _bearer_problem(403, "insufficient_scope", "the access token lacks the openid scope")
    claims: dict[str, Any] = {"sub": vt.sub}
    rpc = request.app.state.runtime.rpc
    if vt.scopes & {"profile", "email", "phone"}:
        if rpc is None:
            raise Problem(503, "the user directory is not reachable", type="unavailable")
        try:
            claims.update(await user_claims(rpc, vt.sub, vt.scopes))
        except RpcError as exc:
            log.warning("userinfo: the user service did not answer (%s)", exc)
            raise Problem(503, "the user directory did not answer; try again", type="unavailable") from None
    return JSONResponse(claims, headers={"Cache-Control": "no-store"})


@router.get("/userinfo", summary="UserInfo (OpenID Connect Core §5.3)", responses=USERINFO_ERRORS)
async def userinfo_get(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
    """Claims about the signed-in person, by the access token's scopes."""
    return await _userinfo(request, authorization)


@router.post("/userinfo", summary="UserInfo (OpenID Connect Core §5.3)", responses=USERINFO_ERRORS)
async def userinfo_post(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
    """Claims about the signed-in person; the token may also come as the `access_token` form parameter."""
    return await _userinfo(request, authorization)
