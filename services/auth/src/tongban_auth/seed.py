"""Demo clients for development: `demo-app` (confidential) and `demo-spa` (public, PKCE)."""

from __future__ import annotations

from tongban_auth import clients
from tongban_auth.config import Settings
from tongban_auth.models import Client, ClientType
from tongban_auth.schemas import API_SCOPES, AuthMethod, ClientCreate, GrantType
from tongban_kit.db import Database

DEMO_REDIRECT_URI = "http://127.0.0.1:8765/callback"
DEMO_APP_SECRET = "demo-secret"
USER_SCOPES = ["openid", "profile", "email", "phone", "offline_access"]

DEMO_CLIENTS = [
    ClientCreate(
        client_id="demo-app",
        name="演示应用 (confidential)",
        client_type=ClientType.confidential,
        token_endpoint_auth_method=AuthMethod.client_secret_basic,
        grant_types=[GrantType.client_credentials, GrantType.authorization_code, GrantType.refresh_token],
        scopes=[*USER_SCOPES, *API_SCOPES],
        redirect_uris=[DEMO_REDIRECT_URI],
        post_logout_redirect_uris=["http://127.0.0.1:8765/"],
    ),
    ClientCreate(
        client_id="demo-spa",
        name="演示单页应用 (public, PKCE)",
        client_type=ClientType.public,
        grant_types=[GrantType.authorization_code, GrantType.refresh_token],
        scopes=[*USER_SCOPES, "user:read", "message:read", "affairs:apply"],
        redirect_uris=[DEMO_REDIRECT_URI],
        post_logout_redirect_uris=["http://127.0.0.1:8765/"],
    ),
]


async def seed(db: Database, settings: Settings) -> list[str]:
    """Register the demo clients that do not exist yet; returns the ids registered now."""
    made: list[str] = []
    for body in DEMO_CLIENTS:
        assert body.client_id is not None
        async with db.session() as s:
            if await s.get(Client, body.client_id) is not None:
                continue
            secret = DEMO_APP_SECRET if body.client_type == ClientType.confidential else None
            await clients.register(s, body, actor="seed", loopback_allowed=True, secret=secret)
            made.append(body.client_id)
    return made
