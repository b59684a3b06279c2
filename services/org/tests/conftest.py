"""Fixtures: a real org service on PostgreSQL and NATS, driven over HTTP in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tongban_kit.db import run_migrations
from tongban_kit.nats import StreamSpec, connect
from tongban_kit.testing.helpers import DEMO_ADMIN_SETTINGS
from tongban_org.__main__ import MIGRATIONS
from tongban_org.config import Settings
from tongban_org.main import create_app
from tongban_org.seed import seed

from .helpers import READER, issuer_bearer

#: the authentication service's stream, as it declares it (revocations arrive there)
AUTH_STREAM = StreamSpec("AUTH_EVENTS", ("auth.*.*.v1",), "Events of the authentication service")


@pytest.fixture(scope="session")
async def auth_stream(nats_url: str, nats_namespace: str) -> None:
    """The auth service's event stream, so the service's revocation feed catches up at once on start."""
    bus = await connect(nats_url, name="org-tests", namespace=nats_namespace)
    try:
        await bus.ensure_stream(AUTH_STREAM)
    finally:
        await bus.close()


@pytest.fixture(scope="module")
async def org_settings(pg_database_url: str, nats_url: str, nats_namespace: str) -> Settings:
    """Settings of a service instance on a fresh database, migrated to head."""
    settings = Settings(
        environment="test",
        **DEMO_ADMIN_SETTINGS,
        cursor_secret="org-test-cursor-secret-" + "x" * 16,
        database_url=pg_database_url,
        nats_url=nats_url,
        nats_namespace=nats_namespace,
        log_json=False,
        log_level="WARNING",
    )
    await asyncio.to_thread(run_migrations, MIGRATIONS, pg_database_url)
    return settings


@pytest.fixture(scope="module")
async def org_app(org_settings: Settings, auth_stream: None) -> AsyncIterator[FastAPI]:
    """The running service (lifespan started: NATS, relay, RPC, revocation feed), trusting the test issuer."""
    app = create_app(org_settings, bearer=issuer_bearer())
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def client(org_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process; sends a read-only token unless a request names another."""
    transport = httpx.ASGITransport(app=org_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://org.test", headers=READER) as c:
        yield c


@pytest.fixture(scope="module")
async def anonymous(org_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that sends no access token."""
    transport = httpx.ASGITransport(app=org_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://org.test") as c:
        yield c


@pytest.fixture(scope="module")
async def seeded(org_app: FastAPI) -> dict[str, str]:
    """The Zhejiang seed: seed key → unit id."""
    return await seed(org_app.state.runtime.db)
