"""Fixtures: a real message service next to a real org service (seeded), on PostgreSQL and NATS, over HTTP in-process.

The message service asks the org service for a unit's members over RPC, exactly as in production; tokens come from
a test issuer that stands in for the auth service.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import tongban_auth.__main__
import tongban_message.__main__
import tongban_org.__main__
import tongban_user.__main__
from tongban_auth import clients as client_registry
from tongban_auth.config import Settings as AuthSettings
from tongban_auth.main import create_app as create_auth_app
from tongban_auth.schemas import ClientCreate
from tongban_auth.seed import seed as seed_auth
from tongban_kit.bearer import BearerAuth
from tongban_kit.db import run_migrations
from tongban_kit.nats import StreamSpec, connect
from tongban_kit.natsserver import free_port
from tongban_kit.testing.helpers import DEMO_ADMIN_SETTINGS
from tongban_kit.testing.pg import PgServer
from tongban_kit.testing.tokens import TestIssuer
from tongban_kit.tokens import JwksSource, RevocationList, TokenVerifier
from tongban_message.config import Settings
from tongban_message.main import create_app
from tongban_message.seed import seed as seed_templates
from tongban_org.config import Settings as OrgSettings
from tongban_org.main import create_app as create_org_app
from tongban_org.seed import seed as seed_org
from tongban_user.config import Settings as UserSettings
from tongban_user.main import create_app as create_user_app
from tongban_user.seed import seed as seed_users

ISSUER = TestIssuer()
AUTH_STREAM = StreamSpec("AUTH_EVENTS", ("auth.*.*.v1",), "Events of the authentication service")


def issuer_bearer() -> BearerAuth:
    """Bearer authentication trusting ISSUER's keys."""
    verifier = TokenVerifier(
        JwksSource.from_jwks(ISSUER.jwks), issuer=ISSUER.issuer, audience=ISSUER.audience, revocations=RevocationList()
    )
    return BearerAuth(verifier)


def as_(sub: str, scopes: str, *, client_id: str = "demo-app", **claims: Any) -> dict[str, str]:
    """Headers of a request with a token for `sub` through `client_id` (sub = client id: the app's own token)."""
    token = ISSUER.mint(sub=sub, client_id=client_id, scope=scopes, exp=int(time.time()) + 3600, **claims)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
async def auth_stream(nats_url: str, nats_namespace: str) -> None:
    """The auth service's event stream, so the revocation feeds catch up at once on start."""
    bus = await connect(nats_url, name="message-tests", namespace=nats_namespace)
    try:
        await bus.ensure_stream(AUTH_STREAM)
    finally:
        await bus.close()


async def _migrated(pg_server: PgServer, migrations: Any) -> tuple[str, str]:
    name = await pg_server.create_database()
    url = pg_server.url_for(name)
    await asyncio.to_thread(run_migrations, migrations, url)
    return name, url


@pytest.fixture(scope="module")
async def org_app(pg_server: PgServer, nats_url: str, nats_namespace: str, auth_stream: None) -> AsyncIterator[FastAPI]:
    """The org service, running (NATS, RPC) and seeded with the Zhejiang directory."""
    name, url = await _migrated(pg_server, tongban_org.__main__.MIGRATIONS)
    settings = OrgSettings(
        environment="test",
        **DEMO_ADMIN_SETTINGS,
        cursor_secret=secrets.token_urlsafe(32),
        database_url=url,
        nats_url=nats_url,
        nats_namespace=nats_namespace,
        log_json=False,
        log_level="WARNING",
    )
    app = create_org_app(settings, bearer=issuer_bearer())
    try:
        async with app.router.lifespan_context(app):
            app.state.seed_units = await seed_org(app.state.runtime.db)
            yield app
    finally:
        await pg_server.drop_database(name)


@pytest.fixture(scope="module")
async def user_app(pg_server: PgServer, nats_url: str, nats_namespace: str, org_app: FastAPI) -> AsyncIterator[FastAPI]:
    """The user service (the contacts of SMS and email recipients), seeded with the demo accounts."""
    name, url = await _migrated(pg_server, tongban_user.__main__.MIGRATIONS)
    settings = UserSettings(
        environment="test",
        **DEMO_ADMIN_SETTINGS,
        cursor_secret=secrets.token_urlsafe(32),
        database_url=url,
        nats_url=nats_url,
        nats_namespace=nats_namespace,
        pii_encryption_key=secrets.token_urlsafe(32),
        pii_hash_key=secrets.token_urlsafe(32),
        log_json=False,
        log_level="WARNING",
    )
    app = create_user_app(settings, bearer=issuer_bearer())
    try:
        async with app.router.lifespan_context(app):
            await seed_users(app.state.runtime.db, app.state.cipher)
            yield app
    finally:
        await pg_server.drop_database(name)


#: apps registered for the tests besides the demo ones: another app that may send anything anywhere, and one that
#: may send only notice.general to the 杭州市 subtree (its unit id is filled in when the org seed is known)
OTHER_APP_ID = "other-app"
NARROW_APP_ID = "narrow-app"


@pytest.fixture(scope="module")
async def auth_app(pg_server: PgServer, nats_url: str, nats_namespace: str, org_app: FastAPI) -> AsyncIterator[FastAPI]:
    """The auth service (what an app's own token may send, over RPC), with the demo clients and two more."""
    name, url = await _migrated(pg_server, tongban_auth.__main__.MIGRATIONS)
    settings = AuthSettings(
        environment="test",
        **DEMO_ADMIN_SETTINGS,
        cursor_secret=secrets.token_urlsafe(32),
        database_url=url,
        nats_url=nats_url,
        nats_namespace=nats_namespace,
        key_encryption_key=secrets.token_urlsafe(32),
        rsa_key_bits=2048,
        log_json=False,
        log_level="WARNING",
    )
    app = create_auth_app(settings)
    units = org_app.state.seed_units
    try:
        async with app.router.lifespan_context(app):
            await seed_auth(app.state.runtime.db, settings)
            async with app.state.runtime.db.session() as s:
                for client_id, extra in (
                    (OTHER_APP_ID, {"message_units": ["*"], "message_templates": ["*"], "message_to_accounts": True}),
                    (NARROW_APP_ID, {"message_units": [units["zj-hz"]], "message_templates": ["notice.general"]}),
                ):
                    body = ClientCreate(
                        client_id=client_id,
                        name=client_id,
                        grant_types=["client_credentials"],  # type: ignore[list-item]
                        scopes=["message:send"],
                        **extra,  # type: ignore[arg-type]
                    )
                    await client_registry.register(s, body, actor="test", loopback_allowed=True)
            yield app
    finally:
        await pg_server.drop_database(name)


class MailServer:
    """A real SMTP server (aiosmtpd, in its own thread) that keeps what it receives; it can refuse the next N."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.received: list[EmailMessage] = []
        self.refuse_next = 0
        server = self

        class Handler:
            async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
                if server.refuse_next > 0:
                    server.refuse_next -= 1
                    return "451 4.3.0 try again later"
                server.received.append(message_from_bytes(envelope.content, policy=default))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> MailServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@pytest.fixture(scope="module")
def mail_server() -> Any:
    """An SMTP server for the email channel."""
    with MailServer() as server:
        yield server


@pytest.fixture(scope="module")
def message_settings() -> dict[str, Any]:
    """Settings a test module gives its message service on top of the common ones (override in the module)."""
    return {}


@pytest.fixture(scope="module")
async def message_app(
    pg_server: PgServer,
    nats_url: str,
    nats_namespace: str,
    org_app: FastAPI,
    user_app: FastAPI,
    auth_app: FastAPI,
    mail_server: MailServer,
    message_settings: dict[str, Any],
) -> AsyncIterator[FastAPI]:
    """The message service next to the org and user services, with the demo templates; SMS go to the log
    provider, email to the SMTP server of the test."""
    name, url = await _migrated(pg_server, tongban_message.__main__.MIGRATIONS)
    settings = Settings(
        environment="test",
        cursor_secret=secrets.token_urlsafe(32),
        database_url=url,
        nats_url=nats_url,
        nats_namespace=nats_namespace,
        log_json=False,
        log_level="WARNING",
        max_recipients=500,
        sms_provider="log",
        email_provider="smtp",
        smtp_host="127.0.0.1",
        smtp_port=mail_server.port,
        smtp_security="none",
        delivery_retry_seconds=0.2,
        dispatch_idle_seconds=0.1,
        fanout_idle_seconds=0.1,
        **message_settings,
    )
    app = create_app(settings, bearer=issuer_bearer())
    try:
        async with app.router.lifespan_context(app):
            await seed_templates(app.state.runtime.db)
            yield app
    finally:
        await pg_server.drop_database(name)


@pytest.fixture(scope="module")
async def client(message_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the message service in-process."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=message_app), base_url="http://message.test") as c:
        yield c


@pytest.fixture(scope="module")
async def org_client(org_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the org service in-process."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=org_app), base_url="http://org.test") as c:
        yield c
