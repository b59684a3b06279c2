"""Database helpers: async SQLModel engine and sessions, SQLite pragmas, Alembic migrations per service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, String, Table, event, insert, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.outage import OutageLog

AFTER_COMMIT_HOOKS = "tongban_after_commit"
#: seconds to establish a PostgreSQL connection, and to wait for a free one from the pool
CONNECT_TIMEOUT_SECONDS = 5.0
POOL_TIMEOUT_SECONDS = 10.0


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that reads back as UTC on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; use timezone-aware UTC values")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def is_sqlite(url: str) -> bool:
    """True for a SQLite URL."""
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """An async engine; SQLite files get WAL and foreign keys, their folder is created."""
    if is_sqlite(url):
        db = make_url(url).database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, echo=echo, json_serializer=_json_dumps, poolclass=NullPool if db == ":memory:" else None
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,  # a round trip per checkout; disconnects invalidate the pool instead
        pool_recycle=1800,
        # an unreachable server fails requests in seconds (503), not after asyncpg's 60 s or a 30 s queue
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args={"timeout": CONNECT_TIMEOUT_SECONDS},
        json_serializer=_json_dumps,
    )


def _after_commit(session: Session) -> None:
    hooks: list[Callable[[], None]] = session.info.pop(AFTER_COMMIT_HOOKS, [])
    for hook in hooks:
        hook()


def _after_rollback(session: Session) -> None:
    session.info.pop(AFTER_COMMIT_HOOKS, None)


def on_commit(session: AsyncSession, hook: Callable[[], None]) -> None:
    """Run `hook` once the session's current transaction commits (dropped on rollback)."""
    hooks = session.sync_session.info.setdefault(AFTER_COMMIT_HOOKS, [])
    if hook not in hooks:
        hooks.append(hook)


class Database:
    """An engine plus a session factory for one service database."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, echo=echo)
        self.sessionmaker = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        #: sessions for reads only: autocommit, so no BEGIN/ROLLBACK round trips
        self.read_sessionmaker = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), class_=AsyncSession, expire_on_commit=False
        )
        #: logs an outage once when it begins and once when a new connection (or a ping) succeeds again
        self.outage = OutageLog("database")
        event.listen(self.engine.sync_engine, "connect", lambda _conn, _record: self.outage.recovered())

    @property
    def sqlite(self) -> bool:
        """True when backed by SQLite."""
        return is_sqlite(self.url)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; the caller commits."""
        async with self.sessionmaker() as s:
            yield s

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads (each statement commits on its own; never write through it)."""
        async with self.read_sessionmaker() as s:
            yield s

    async def ping(self) -> None:
        """Raise unless the database answers."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        self.outage.recovered()

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


event.listen(Session, "after_commit", _after_commit)
event.listen(Session, "after_soft_rollback", lambda s, _t: _after_rollback(s))


async def copy_rows(session: AsyncSession, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """Bulk-insert Python values in the session's transaction: COPY on PostgreSQL, executemany elsewhere."""
    if not rows:
        return
    conn = await session.connection()
    if conn.dialect.name != "postgresql":
        await session.exec(insert(table), params=[dict(zip(columns, r, strict=True)) for r in rows])
        return
    # COPY takes values in the database's form: JSON as text, string enums as plain strings
    json_at = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSON)]
    str_at = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, String)]
    if json_at or str_at:
        converted = []
        for r in rows:
            row = list(r)
            for i in json_at:
                row[i] = None if row[i] is None else _json_dumps(row[i])
            for i in str_at:
                row[i] = None if row[i] is None else str(row[i])
            converted.append(tuple(row))
        rows = converted
    raw = await conn.get_raw_connection()
    await raw.driver_connection.copy_records_to_table(table.name, records=rows, columns=list(columns))  # type: ignore[union-attr]


def run_migrations(script_location: str | Path, url: str, revision: str = "head") -> None:
    """Upgrade a service database with Alembic (synchronous; call via a thread from async code)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if is_sqlite(url):
        db = make_url(url).database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(cfg, revision)


def owned_tables(prefixes: tuple[str, ...]) -> Callable[..., bool]:
    """An Alembic `include_object` filter: only tables named with the service's prefixes (and the kit's)."""
    wanted = (*prefixes, "kit_")

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        table = obj if type_ == "table" else getattr(obj, "table", None)
        table_name = getattr(table, "name", name) or ""
        return table_name.startswith(wanted)

    return include


def run_alembic_env(target_metadata: Any, table_prefixes: tuple[str, ...]) -> None:
    """Body of a service's alembic/env.py: run migrations online with the async engine."""
    from alembic import context

    include = owned_tables(table_prefixes)

    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not configured"
    batch = is_sqlite(url)

    if context.is_offline_mode():
        context.configure(
            url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=batch, include_object=include
        )
        with context.begin_transaction():
            context.run_migrations()
        return

    def do_run(connection: Connection) -> None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=batch, include_object=include
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = make_engine(url)
        async with engine.connect() as conn:
            await conn.run_sync(do_run)
            await conn.commit()
        await engine.dispose()

    asyncio.run(main())
