"""Fixtures for the credential tests (import the `*_fixture` functions; they register as `db`, `pg_db`,
`sqlite_db` and `directory`): the auth database migrated on SQLite and on PostgreSQL, settings, and a
stand-in user directory answering the user service's RPC endpoints on the real NATS."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

import tongban_auth.__main__
from tongban_auth.config import Settings
from tongban_kit.db import Database, run_migrations
from tongban_kit.nats import Bus, connect
from tongban_kit.rpc import RpcBadRequest, RpcClient, RpcNotFound, RpcServer
from tongban_user.contract import (
    RPC_CONTACTS,
    RPC_LOOKUP,
    Contact,
    ContactsReply,
    ContactsRequest,
    LookupReply,
    LookupRequest,
)
from tongban_user.models import Kind, Status, UserPublic

KEY = secrets.token_urlsafe(32)


def make_settings(url: str = "sqlite+aiosqlite:///:memory:", **overrides: object) -> Settings:
    """Auth settings for tests (environment `test`, a random key-encryption key)."""
    values: dict[str, object] = {
        "environment": "test",
        "database_url": url,
        "key_encryption_key": KEY,
        "cursor_secret": KEY,
        "log_json": False,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def migrated(url: str) -> Database:
    """A Database on `url`, migrated to head."""
    await asyncio.to_thread(run_migrations, tongban_auth.__main__.MIGRATIONS, url)
    return Database(url)


@pytest.fixture(scope="module", name="pg_db")
async def pg_db_fixture(pg_database_url: str) -> AsyncIterator[Database]:
    """The auth tables on a fresh PostgreSQL database."""
    db = await migrated(pg_database_url)
    yield db
    await db.dispose()


@pytest.fixture(name="sqlite_db")
async def sqlite_db_fixture(tmp_path: Path) -> AsyncIterator[Database]:
    """The auth tables in a fresh SQLite file."""
    db = await migrated(f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}")
    yield db
    await db.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)], name="db")
def db_fixture(request: pytest.FixtureRequest) -> Database:
    """Each backend in turn (SQLite file per test; one PostgreSQL database per module)."""
    name = "sqlite_db" if request.param == "sqlite" else "pg_db"
    found: Database = request.getfixturevalue(name)
    return found


@dataclass
class Directory:
    """A stand-in for the user service's RPC endpoints: accounts by id, found by username/mobile/email."""

    accounts: dict[str, UserPublic] = field(default_factory=dict)
    contacts: dict[str, Contact] = field(default_factory=dict)
    calls: int = 0
    #: a user-service replica that is not answering
    down: bool = False

    def add(
        self,
        user_id: str,
        username: str,
        *,
        kind: Kind = Kind.citizen,
        status: Status = Status.active,
        mobile: str | None = None,
        email: str | None = None,
        name: str = "测试用户",
    ) -> None:
        """Register an account."""
        now = datetime.now(UTC)
        self.accounts[user_id] = UserPublic(
            id=user_id,
            kind=kind,
            name=name,
            username=username,
            mobile=mobile,
            email=email,
            status=status,
            masked=True,
            version=1,
            created_at=now,
            updated_at=now,
        )
        self.contacts[user_id] = Contact(id=user_id, name=name, mobile=mobile, email=email, status=status)

    async def lookup(self, req: LookupRequest) -> LookupReply:
        """`users-lookup` as the user service answers it (deleted accounts are invisible)."""
        self.calls += 1
        if self.down:
            await asyncio.sleep(1.5)
        login = (req.login or "").strip().lower()
        rows = [
            u
            for u in self.accounts.values()
            if login in {u.username, u.mobile, u.email}
            and u.status != Status.deleted
            and (req.kind is None or u.kind == req.kind)
        ]
        if not rows:
            raise RpcNotFound("no account matches")
        if len(rows) > 1:
            raise RpcBadRequest("more than one account matches; give the kind")
        return LookupReply(user=rows[0])

    async def contacts_list(self, req: ContactsRequest) -> ContactsReply:
        """`contacts-list` as the user service answers it."""
        return ContactsReply(contacts=[self.contacts[i] for i in req.ids if i in self.contacts])


@dataclass
class DirectoryStack:
    """The stand-in directory, served on NATS, and an RPC client of the auth service."""

    directory: Directory
    rpc: RpcClient
    bus: Bus


@pytest.fixture(scope="module", name="directory")
async def directory_fixture(nats_url: str) -> AsyncIterator[DirectoryStack]:
    """A user directory on the real NATS in a namespace of its own; the client times out quickly."""
    namespace = "c" + secrets.token_hex(5)
    bus = await connect(nats_url, name="credential-tests", namespace=namespace)
    d = Directory()
    server = RpcServer(bus, "user", "0.0.0-test", "stand-in user directory")
    server.add(RPC_LOOKUP, d.lookup)
    server.add(RPC_CONTACTS, d.contacts_list)
    await server.start()
    try:
        yield DirectoryStack(d, RpcClient(bus, timeout=1.0), bus)
    finally:
        await server.stop()
        await bus.close()
