"""Fixtures: a real authentication service on PostgreSQL and NATS, driven over HTTP in-process.

Each test module gets a fresh database, migrated to head; the service creates its signing keys at start-up and the
demo clients are seeded.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

import tongban_auth.__main__
from tongban_auth.config import Settings
from tongban_auth.main import create_app
from tongban_auth.seed import seed
from tongban_auth.tokens import Signer
from tongban_kit.db import Database, run_migrations
from tongban_kit.demo import demo_user_id
from tongban_kit.testing.helpers import DEMO_ADMIN_SETTINGS

from .helpers import ADMIN


@pytest.fixture(scope="module")
async def auth_settings(pg_database_url: str, nats_url: str, nats_namespace: str) -> Settings:
    """Settings of an authentication service on a fresh database (migrated to head) with a random key."""
    settings = Settings(
        environment="test",
        **DEMO_ADMIN_SETTINGS,
        cursor_secret=secrets.token_urlsafe(32),
        database_url=pg_database_url,
        nats_url=nats_url,
        nats_namespace=nats_namespace,
        key_encryption_key=secrets.token_urlsafe(32),
        rsa_key_bits=2048,
        outbound_allow_loopback=True,  # clients' JWKS servers run on this machine
        log_json=False,
        log_level="WARNING",
    )
    await asyncio.to_thread(run_migrations, tongban_auth.__main__.MIGRATIONS, pg_database_url)
    return settings


@pytest.fixture(scope="module")
async def auth_app(auth_settings: Settings) -> AsyncIterator[FastAPI]:
    """The authentication service, running, with the demo clients."""
    app = create_app(auth_settings)
    async with app.router.lifespan_context(app):
        await seed(app.state.runtime.db, auth_settings)
        yield app


@pytest.fixture(scope="module")
def auth_db(auth_app: FastAPI) -> Database:
    """The service's database."""
    db: Database = auth_app.state.runtime.db
    return db


@pytest.fixture(scope="module")
def signer(auth_app: FastAPI) -> Signer:
    """The service's token signer."""
    s: Signer = auth_app.state.signer
    return s


@pytest.fixture(scope="module")
async def client(auth_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the service in-process."""
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as c:
        yield c


async def mint_access_token(app: FastAPI, sub: str, scope: str, **claims: object) -> str:
    """An access token signed by the running service, as its token endpoint would issue one."""
    settings: Settings = app.state.runtime.settings
    now = int(time.time())
    body = {
        "iss": settings.issuer,
        "sub": sub,
        "aud": settings.api_audience,
        "client_id": "demo-app",
        "scope": scope,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 300,
        **claims,
    }
    signer: Signer = app.state.signer
    return await signer.sign(body, typ="at+jwt")


@pytest.fixture(autouse=True)
async def _admin_token(request: pytest.FixtureRequest) -> None:
    """Tests of the running service act as the demo platform administrator through `helpers.ADMIN`."""
    if "auth_app" not in request.fixturenames:
        return
    app: FastAPI = request.getfixturevalue("auth_app")
    token = getattr(app.state, "test_admin_token", None)
    if token is None:
        token = app.state.test_admin_token = await mint_access_token(app, demo_user_id("demo-admin"), "admin")
    ADMIN.clear()
    ADMIN["Authorization"] = f"Bearer {token}"
