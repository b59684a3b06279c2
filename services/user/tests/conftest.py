"""Fixtures: a real user service and a real org service on PostgreSQL and NATS, driven over HTTP in-process.

Each test module gets its own pair of fresh databases. Both services share the run's NATS namespace, so the user
service asks the org service (over RPC) who administers which subtree, exactly as in production.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

import tongban_org.__main__
import tongban_user.__main__
from tongban_kit.db import Database, run_migrations
from tongban_kit.nats import StreamSpec, connect
from tongban_kit.testing.helpers import DEMO_ADMIN_SETTINGS
from tongban_kit.testing.pg import PgServer
from tongban_org.config import Settings as OrgSettings
from tongban_org.main import create_app as create_org_app
from tongban_org.seed import seed as seed_org
from tongban_user.config import Settings
from tongban_user.crypto import PiiCipher
from tongban_user.main import create_app
from tongban_user.seed import seed as seed_users

from .helpers import as_, issuer_bearer

#: the authentication service's stream, as it declares it (revocations arrive there)
AUTH_STREAM = StreamSpec("AUTH_EVENTS", ("auth.*.*.v1",), "Events of the authentication service")


@pytest.fixture(scope="session")
async def auth_stream(nats_url: str, nats_namespace: str) -> None:
    """The auth service's event stream, so the services' revocation feeds catch up at once on start."""
    bus = await connect(nats_url, name="user-tests", namespace=nats_namespace)
    try:
        await bus.ensure_stream(AUTH_STREAM)
    finally:
        await bus.close()


@pytest.fixture(scope="module")
async def org_database_url(pg_server: PgServer) -> AsyncIterator[str]:
    """A fresh database of the org service for one test module, migrated to head."""
    name = await pg_server.create_database()
    url = pg_server.url_for(name)
    try:
        await asyncio.to_thread(run_migrations, tongban_org.__main__.MIGRATIONS, url)
        yield url
    finally:
        await pg_server.drop_database(name)


@pytest.fixture(scope="module")
async def org_app(
    org_database_url: str, nats_url: str, nats_namespace: str, auth_stream: None
) -> AsyncIterator[FastAPI]:
    """The org service, running (NATS, relay, RPC) and seeded with the Zhejiang directory and demo grants."""
    settings = OrgSettings(
        environment="test",
        **DEMO_ADMIN_SETTINGS,
        cursor_secret=secrets.token_urlsafe(32),
        database_url=org_database_url,
        nats_url=nats_url,
        nats_namespace=nats_namespace,
        log_json=False,
        log_level="WARNING",
    )
    app = create_org_app(settings, bearer=issuer_bearer())
    async with app.router.lifespan_context(app):
        app.state.seed_units = await seed_org(app.state.runtime.db)
        yield app


@pytest.fixture(scope="module")
def org_units(org_app: FastAPI) -> dict[str, str]:
    """The org seed: seed key (e.g. zj-dsj) → unit id."""
    units: dict[str, str] = org_app.state.seed_units
    return units


@pytest.fixture(scope="module")
def dsj_admin(org_units: dict[str, str]) -> dict[str, str]:
    """dsj-admin's token as the auth service issues it: admin scope, admin_units claim (省大数据局; the user service
    asks the org service instead)."""
    return as_("dsj-admin", admin_units=[org_units["zj-dsj"]])


@pytest.fixture(scope="module")
def hz_admin(org_units: dict[str, str]) -> dict[str, str]:
    """hz-admin's token as the auth service issues it: admin scope, admin_units claim (杭州市; the user service asks
    the org service instead)."""
    return as_("hz-admin", admin_units=[org_units["zj-hz"]])


@pytest.fixture(scope="module")
async def org_client(org_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the org service in-process."""
    transport = httpx.ASGITransport(app=org_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://org.test") as c:
        yield c


@pytest.fixture(scope="module")
async def user_settings(pg_database_url: str, nats_url: str, nats_namespace: str) -> Settings:
    """Settings of a user service on a fresh database (migrated to head) with random keys."""
    settings = Settings(
        environment="test",
        **DEMO_ADMIN_SETTINGS,
        cursor_secret=secrets.token_urlsafe(32),
        database_url=pg_database_url,
        nats_url=nats_url,
        nats_namespace=nats_namespace,
        pii_encryption_key=secrets.token_urlsafe(32),
        pii_hash_key=secrets.token_urlsafe(32),
        log_json=False,
        log_level="WARNING",
    )
    await asyncio.to_thread(run_migrations, tongban_user.__main__.MIGRATIONS, pg_database_url)
    return settings


@pytest.fixture(scope="module")
async def user_app(user_settings: Settings, org_app: FastAPI) -> AsyncIterator[FastAPI]:
    """The user service, running next to the org service and seeded with the demo accounts."""
    app = create_app(user_settings, bearer=issuer_bearer())
    async with app.router.lifespan_context(app):
        await seed_users(app.state.runtime.db, app.state.cipher)
        yield app


@pytest.fixture(scope="module")
def user_db(user_app: FastAPI) -> Database:
    """The user service's database."""
    db: Database = user_app.state.runtime.db
    return db


@pytest.fixture(scope="module")
def cipher(user_app: FastAPI) -> PiiCipher:
    """The user service's identity-number cipher."""
    c: PiiCipher = user_app.state.cipher
    return c


@pytest.fixture(scope="module")
async def client(user_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the user service in-process."""
    transport = httpx.ASGITransport(app=user_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://user.test") as c:
        yield c
