"""Demo data for development: the clients `demo-app` (confidential) and `demo-spa` (public, PKCE), and the
password `tongban_kit.demo.DEMO_PASSWORD` for every demo account of the user service.

Refused in the production environment: a password printed in the README must never open a real account.
"""

from __future__ import annotations

import asyncio

from tongban_auth import clients, passwords
from tongban_auth.config import Settings
from tongban_auth.models import Client, ClientType, Credential
from tongban_auth.schemas import API_SCOPES, AuthMethod, ClientCreate, GrantType
from tongban_kit.db import Database
from tongban_kit.demo import DEMO_PASSWORD, DEMO_STAFF, demo_user_id
from tongban_kit.outbox import utcnow

DEMO_REDIRECT_URI = "http://127.0.0.1:8765/callback"
DEMO_APP_SECRET = "demo-secret"
#: the demo accounts of the user service (staff, citizens, the enterprise)
DEMO_USERNAMES = (*DEMO_STAFF, "demo-citizen", "demo-citizen2", "demo-citizen3", "demo-enterprise")
USER_SCOPES = ["openid", "profile", "email", "phone", "offline_access"]

DEMO_CLIENTS = [
    ClientCreate(
        client_id="demo-app",
        name="演示应用 (confidential)",
        client_type=ClientType.confidential,
        token_endpoint_auth_method=AuthMethod.client_secret_basic,
        grant_types=[GrantType.client_credentials, GrantType.authorization_code, GrantType.refresh_token],
        scopes=[*USER_SCOPES, *API_SCOPES],
        # its own token sends any template (but the system ones) to any unit and to people by account id
        message_units=["*"],
        message_templates=["*"],
        message_to_accounts=True,
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


class DemoSeedRefused(RuntimeError):
    """Demo data was asked for in the production environment."""


async def seed(db: Database, settings: Settings) -> list[str]:
    """Register the demo clients and demo passwords that do not exist yet; returns the client ids registered now.

    Runs in the dev and test environments; raises DemoSeedRefused in production.
    """
    if settings.environment == "prod":
        raise DemoSeedRefused("demo clients and passwords are never seeded in the production environment")
    made = await _seed_clients(db)
    await seed_passwords(db)
    return made


async def seed_passwords(db: Database) -> list[str]:
    """Give each demo account without a password the demo password; returns the usernames given one now."""
    ids = {demo_user_id(name): name for name in DEMO_USERNAMES}
    async with db.read_session() as s:
        rows = {c.user_id: c for c in [await s.get(Credential, i) for i in ids] if c is not None}
    todo = [i for i in ids if i not in rows or not rows[i].password_hash]
    hashes = await asyncio.gather(*(passwords.hash_password(DEMO_PASSWORD) for _ in todo))
    now = utcnow()
    async with db.session() as s:
        for user_id, hashed in zip(todo, hashes, strict=True):
            row = await s.get(Credential, user_id) or Credential(user_id=user_id)
            if row.password_hash:  # set meanwhile by someone else: keep it
                continue
            row.password_hash, row.password_changed_at, row.updated_at = hashed, now, now
            s.add(row)
        await s.commit()
    return [ids[i] for i in todo]


async def _seed_clients(db: Database) -> list[str]:
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
