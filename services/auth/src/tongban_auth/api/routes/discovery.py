"""OpenID Provider metadata (discovery, RFC 8414) and the published signing keys (JWKS)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import Match

from tongban_auth import keys
from tongban_auth.api.deps import SettingsDep
from tongban_auth.config import Settings
from tongban_auth.schemas import SCOPES
from tongban_kit.app import SessionDep

router = APIRouter(tags=["discovery"])

JWKS_PATH = "/oauth2/jwks"
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
AUTH_METHODS = [*CONFIDENTIAL_AUTH_METHODS, "none"]
#: algorithms accepted for private_key_jwt client assertions
ASSERTION_ALGS = ["ES256", "RS256"]
CLAIMS = [
    *("sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "at_hash", "azp"),
    *("name", "preferred_username", "email", "email_verified", "phone_number"),
]
#: metadata name → (path below the issuer, metadata that holds only while that endpoint exists)
ENDPOINTS: dict[str, tuple[str, dict[str, Any]]] = {
    "authorization_endpoint": (
        "/oauth2/authorize",
        {
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "authorization_response_iss_parameter_supported": True,
            "prompt_values_supported": ["none", "login", "consent", "select_account"],
            "ui_locales_supported": ["zh-CN", "en"],
            "request_parameter_supported": False,
            "claims_parameter_supported": False,
        },
    ),
    "token_endpoint": (
        "/oauth2/token",
        {
            "token_endpoint_auth_methods_supported": AUTH_METHODS,
            "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        },
    ),
    "userinfo_endpoint": ("/oauth2/userinfo", {"claims_supported": CLAIMS}),
    "jwks_uri": (JWKS_PATH, {}),
    "revocation_endpoint": (
        "/oauth2/revoke",
        {
            "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
            "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        },
    ),
    "introspection_endpoint": (
        "/oauth2/introspect",
        {
            "introspection_endpoint_auth_methods_supported": CONFIDENTIAL_AUTH_METHODS,
            "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        },
    ),
    "end_session_endpoint": (
        "/oauth2/logout",
        {"backchannel_logout_supported": True, "backchannel_logout_session_supported": True},
    ),
    "pushed_authorization_request_endpoint": ("/oauth2/par", {"require_pushed_authorization_requests": False}),
    "registration_endpoint": ("/oauth2/register", {}),
}
#: grant types with a working handler at the token endpoint; each grant adds itself when it is built
GRANT_TYPES_SUPPORTED: list[str] = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:token-exchange",
]


def serves(app: FastAPI, path: str) -> bool:
    """Whether some route of the app answers at `path` (with any method)."""
    scope = {"type": "http", "path": path, "root_path": "", "method": "GET", "headers": [], "query_string": b""}
    return any(r.matches(scope)[0] != Match.NONE for r in app.router.routes)


def metadata(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The provider metadata: only endpoints this app serves, and only what they support."""
    doc: dict[str, Any] = {"issuer": settings.issuer}
    extra: dict[str, Any] = {}
    for name, (path, holds) in ENDPOINTS.items():
        if serves(app, path):
            doc[name] = settings.issuer + path
            extra.update(holds)
    if "token_endpoint" in doc and GRANT_TYPES_SUPPORTED:
        extra["grant_types_supported"] = list(GRANT_TYPES_SUPPORTED)
    doc["scopes_supported"] = list(SCOPES)
    doc["id_token_signing_alg_values_supported"] = list(settings.signing_algs)
    if "authorization_endpoint" in doc:
        doc["acr_values_supported"] = [settings.acr_password, settings.acr_mfa]
    doc.update(extra)
    return doc


def _cached(request: Request, settings: Settings) -> dict[str, Any]:
    doc: dict[str, Any] | None = getattr(request.app.state, "discovery", None)
    if doc is None:
        doc = metadata(request.app, settings)
        request.app.state.discovery = doc
    return doc


@router.get("/.well-known/openid-configuration", summary="OpenID Provider metadata")
async def openid_configuration(request: Request, settings: SettingsDep) -> JSONResponse:
    """OpenID Connect Discovery 1.0: where the endpoints are and what they support."""
    return JSONResponse(_cached(request, settings), headers={"Cache-Control": "public, max-age=3600"})


@router.get("/.well-known/oauth-authorization-server", summary="OAuth 2.0 authorization server metadata")
async def oauth_metadata(request: Request, settings: SettingsDep) -> JSONResponse:
    """RFC 8414: the same document as the OpenID configuration."""
    return JSONResponse(_cached(request, settings), headers={"Cache-Control": "public, max-age=3600"})


@router.get(JWKS_PATH, summary="Published signing keys (JWK Set)")
async def jwks(s: SessionDep, settings: SettingsDep) -> JSONResponse:
    """Public keys of the active, next and recently retired signing keys; verifiers pick by `kid`."""
    return JSONResponse(
        await keys.jwks(s), headers={"Cache-Control": f"public, max-age={settings.jwks_max_age_seconds}"}
    )
