"""Fixtures: a real org service on PostgreSQL and NATS, driven over HTTP in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tongban_kit.db import run_migrations
from tongban_org.__main__ import MIGRATIONS
from tongban_org.config import Settings
from tongban_org.main import create_app
from tongban_org.seed import seed

ADMIN = {"X-Tongban-Principal": "demo-admin"}


@pytest.fixture(scope="module")
async def org_settings(pg_database_url: str, nats_url: str, nats_namespace: str) -> Settings:
    """Settings of a service instance on a fresh database, migrated to head."""
    settings = Settings(
        environment="test",
        database_url=pg_database_url,
        nats_url=nats_url,
        nats_namespace=nats_namespace,
        log_json=False,
        log_level="WARNING",
    )
    await asyncio.to_thread(run_migrations, MIGRATIONS, pg_database_url)
    return settings


@pytest.fixture(scope="module")
async def org_app(org_settings: Settings) -> AsyncIterator[FastAPI]:
    """The running service (lifespan started: NATS, relay, RPC)."""
    app = create_app(org_settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def client(org_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process."""
    transport = httpx.ASGITransport(app=org_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://org.test") as c:
        yield c


@pytest.fixture(scope="module")
async def seeded(org_app: FastAPI) -> dict[str, str]:
    """The Zhejiang seed: seed key → unit id."""
    return await seed(org_app.state.runtime.db)
