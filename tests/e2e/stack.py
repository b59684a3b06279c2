"""The whole stack in one test process: org, user, auth and message services on PostgreSQL and NATS, each served
by uvicorn on a loopback port, behind a real gateway; tokens come from the auth service through the gateway."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

import tongban_auth.__main__
import tongban_message.__main__
import tongban_org.__main__
import tongban_user.__main__
from tongban_auth.config import Settings as AuthSettings
from tongban_auth.main import create_app as create_auth
from tongban_auth.seed import DEMO_APP_SECRET, DEMO_REDIRECT_URI
from tongban_auth.seed import seed as seed_auth
from tongban_gateway.app import create_app as create_gateway
from tongban_gateway.config import Settings as GatewaySettings
from tongban_kit.db import run_migrations
from tongban_kit.demo import DEMO_PASSWORD
from tongban_kit.testing.browser import sign_in
from tongban_kit.testing.helpers import DEMO_ADMIN_SETTINGS
from tongban_kit.testing.pg import PgServer
from tongban_kit.testing.serve import reserve_socket, serve, url_of
from tongban_message.config import Settings as MessageSettings
from tongban_message.main import create_app as create_message
from tongban_message.seed import seed as seed_templates
from tongban_org.config import Settings as OrgSettings
from tongban_org.main import create_app as create_org
from tongban_org.seed import seed as seed_org
from tongban_user.config import Settings as UserSettings
from tongban_user.main import create_app as create_user
from tongban_user.seed import seed as seed_users


@dataclass
class Stack:
    """The running stack: the gateway's URL (the issuer), the apps, the org seed (key → unit id)."""

    base: str
    apps: dict[str, Any]
    units: dict[str, str]
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def person_token(self, login: str, scope: str, *, client_id: str = "demo-app") -> dict[str, Any]:
        """Tokens of a demo person signed in through the HTML pages of the auth service, via the gateway."""
        async with httpx.AsyncClient(timeout=20) as http:
            return await sign_in(
                http,
                self.base,
                client_id=client_id,
                client_secret=DEMO_APP_SECRET if client_id == "demo-app" else None,
                redirect_uri=DEMO_REDIRECT_URI,
                scope=scope,
                login=login,
                password=DEMO_PASSWORD,
            )

    async def app_token(self, scope: str) -> dict[str, Any]:
        """The demo app's own token (client credentials), through the gateway."""
        async with httpx.AsyncClient(timeout=20) as http:
            r = await http.post(
                f"{self.base}/oauth2/token",
                data={"grant_type": "client_credentials", "scope": scope},
                auth=("demo-app", DEMO_APP_SECRET),
            )
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out


async def _database(pg: PgServer, migrations: Any, dbs: list[str]) -> str:
    name = await pg.create_database()
    dbs.append(name)
    url = pg.url_for(name)
    await asyncio.to_thread(run_migrations, migrations, url)
    return url


@asynccontextmanager
async def running_stack(pg: PgServer, nats_url: str, namespace: str) -> AsyncIterator[Stack]:
    """Start org, user, auth and message (migrated, seeded) and a gateway in front of them; stop them after."""
    socks = {name: reserve_socket() for name in ("gateway", "org", "user", "auth", "message")}
    base = url_of(socks["gateway"])
    common: dict[str, Any] = {
        "environment": "test",
        "cursor_secret": secrets.token_urlsafe(32),
        "nats_url": nats_url,
        "nats_namespace": namespace,
        "log_json": False,
        "log_level": "WARNING",
        "public_url": base,
        "oidc_issuer": base,
        "oidc_jwks_url": f"{url_of(socks['auth'])}/oauth2/jwks",
    }
    dbs: list[str] = []
    apps: dict[str, Any] = {}
    try:
        async with AsyncExitStack() as stack:
            m = tongban_org.__main__.MIGRATIONS
            org = create_org(OrgSettings(**common, **DEMO_ADMIN_SETTINGS, database_url=await _database(pg, m, dbs)))
            await stack.enter_async_context(serve(org, socks["org"]))
            units = await seed_org(org.state.runtime.db)
            user = create_user(
                UserSettings(
                    **common,
                    **DEMO_ADMIN_SETTINGS,
                    database_url=await _database(pg, tongban_user.__main__.MIGRATIONS, dbs),
                    pii_encryption_key=secrets.token_urlsafe(32),
                    pii_hash_key=secrets.token_urlsafe(32),
                )
            )
            await stack.enter_async_context(serve(user, socks["user"]))
            await seed_users(user.state.runtime.db, user.state.cipher)
            auth_settings = AuthSettings(
                **common,
                **DEMO_ADMIN_SETTINGS,
                database_url=await _database(pg, tongban_auth.__main__.MIGRATIONS, dbs),
                key_encryption_key=secrets.token_urlsafe(32),
                rsa_key_bits=2048,
                allow_loopback_http_redirects=True,
            )
            auth = create_auth(auth_settings)
            await stack.enter_async_context(serve(auth, socks["auth"]))
            await seed_auth(auth.state.runtime.db, auth_settings)
            message = create_message(
                MessageSettings(**common, database_url=await _database(pg, tongban_message.__main__.MIGRATIONS, dbs))
            )
            await stack.enter_async_context(serve(message, socks["message"]))
            await seed_templates(message.state.runtime.db)
            upstreams = {name: [url_of(socks[name])] for name in ("org", "user", "auth", "message")}
            gateway = create_gateway(
                GatewaySettings(
                    **{k: v for k, v in common.items() if not k.startswith("oidc_")},
                    upstreams=upstreams,
                    redis_url="",
                    rate_limits=False,
                )
            )
            await stack.enter_async_context(serve(gateway, socks["gateway"]))
            apps.update(org=org, user=user, auth=auth, message=message, gateway=gateway)
            yield Stack(base=base, apps=apps, units=units)
    finally:
        for name in dbs:
            await pg.drop_database(name)
