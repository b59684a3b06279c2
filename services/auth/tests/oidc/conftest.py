"""The whole sign-in stack for end-to-end tests: org, user and auth services on PostgreSQL and NATS, the auth
service on a real loopback port (issuer = its URL), demo data seeded (directory, accounts, passwords, clients).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI

import tongban_auth.__main__
import tongban_org.__main__
import tongban_user.__main__
from tongban_auth.config import Settings as AuthSettings
from tongban_auth.main import create_app as create_auth_app
from tongban_auth.seed import seed as seed_auth
from tongban_kit.db import run_migrations
from tongban_kit.settings import forwarding_options
from tongban_kit.testing.helpers import DEMO_ADMIN_SETTINGS
from tongban_kit.testing.pg import PgServer
from tongban_kit.testing.serve import reserve_socket, serve, url_of
from tongban_org.config import Settings as OrgSettings
from tongban_org.main import create_app as create_org_app
from tongban_org.seed import seed as seed_org
from tongban_user.config import Settings as UserSettings
from tongban_user.main import create_app as create_user_app
from tongban_user.seed import seed as seed_users

#: Debian's chromium (`make browser` installs it); the browser tests drive it headless through Playwright
CHROMIUM = os.environ.get("TONGBAN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """Headless Chromium; without it the test is skipped with the reason (and fails in CI, which installs it)."""
    if not shutil.which(CHROMIUM):  # a name on PATH or an executable path
        reason = f"chromium not found at {CHROMIUM}: `make browser` installs Debian's chromium"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


class RecordingDeliverer:
    """Keeps one-time codes for the test to read (what an SMS gateway would deliver)."""

    def __init__(self, outbox: list[dict[str, Any]]) -> None:
        self.outbox = outbox

    async def deliver(
        self, *, channel: str, destination: str, code: str, expires_in: int, user_id: str, reference: str
    ) -> None:
        self.outbox.append({"channel": channel, "destination": destination, "code": code, "reference": reference})


@dataclass
class Stack:
    """The running services of an end-to-end test."""

    issuer: str
    auth: FastAPI
    user: FastAPI
    org: FastAPI
    settings: AuthSettings


async def _database(pg_server: PgServer, migrations: object) -> str:
    name = await pg_server.create_database()
    url = pg_server.url_for(name)
    await asyncio.to_thread(run_migrations, migrations, url)
    return url


@pytest.fixture(scope="module")
def auth_overrides() -> dict[str, Any]:
    """Settings of the module's auth service besides the defaults (a module overrides this fixture)."""
    return {}


@pytest.fixture(scope="module")
async def stack(
    pg_server: PgServer, nats_url: str, nats_namespace: str, auth_overrides: dict[str, Any]
) -> AsyncIterator[Stack]:
    """Org, user and auth services; the auth service listens on a real port, served as `serve` serves it."""
    common = {
        "environment": "test",
        "cursor_secret": secrets.token_urlsafe(32),
        **DEMO_ADMIN_SETTINGS,
        "nats_url": nats_url,
        "nats_namespace": nats_namespace,
        "log_json": False,
        "log_level": "WARNING",
    }
    org_url = await _database(pg_server, tongban_org.__main__.MIGRATIONS)
    user_url = await _database(pg_server, tongban_user.__main__.MIGRATIONS)
    auth_url = await _database(pg_server, tongban_auth.__main__.MIGRATIONS)
    sock = reserve_socket()
    issuer = url_of(sock)
    org = create_org_app(OrgSettings(database_url=org_url, **common))
    user = create_user_app(
        UserSettings(
            database_url=user_url,
            pii_encryption_key=secrets.token_urlsafe(32),
            pii_hash_key=secrets.token_urlsafe(32),
            **common,
        )
    )
    settings = AuthSettings(
        database_url=auth_url,
        issuer=issuer,
        key_encryption_key=secrets.token_urlsafe(32),
        rsa_key_bits=2048,
        outbound_allow_loopback=True,  # the apps' back-channel logout endpoints run on this machine
        **common,
        **auth_overrides,
    )
    auth = create_auth_app(settings)
    auth.state.otp_outbox = []
    auth.state.otp_deliverer = RecordingDeliverer(auth.state.otp_outbox)
    try:
        async with org.router.lifespan_context(org), user.router.lifespan_context(user):
            await seed_org(org.state.runtime.db)
            await seed_users(user.state.runtime.db, user.state.cipher)
            async with auth.router.lifespan_context(auth):
                await seed_auth(auth.state.runtime.db, settings)
                async with serve(auth, sock, lifespan="off", **forwarding_options(settings)):
                    yield Stack(issuer=issuer, auth=auth, user=user, org=org, settings=settings)
    finally:
        for url in (org_url, user_url, auth_url):
            await pg_server.drop_database(url.rsplit("/", 1)[1])
