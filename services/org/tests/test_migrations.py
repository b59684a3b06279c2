"""Migrations build exactly the schema the models describe, on PostgreSQL and on SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlmodel import SQLModel

import tongban_kit.consumer
import tongban_kit.outbox  # noqa: F401
import tongban_org.models  # noqa: F401
from tongban_kit.db import make_engine, owned_tables, run_migrations
from tongban_kit.testing.pg import PgServer
from tongban_org.__main__ import MIGRATIONS


async def _diff(url: str) -> list[object]:
    engine = make_engine(url)

    def compare(conn: Connection) -> list[object]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": owned_tables(("org_",))})
        return list(compare_metadata(ctx, SQLModel.metadata))

    async with engine.connect() as conn:
        diffs = await conn.run_sync(compare)
    await engine.dispose()
    return diffs


async def test_postgres_schema_matches_models(pg_server: PgServer) -> None:
    name = await pg_server.create_database()
    try:
        url = pg_server.url_for(name)
        await asyncio.to_thread(run_migrations, MIGRATIONS, url)
        await asyncio.to_thread(run_migrations, MIGRATIONS, url)  # upgrading twice is a no-op
        assert await _diff(url) == []
    finally:
        await pg_server.drop_database(name)


async def test_sqlite_schema_matches_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'org.db'}"
    assert len(await _diff(url)) >= 6, "an empty database differs from the models"
    await asyncio.to_thread(run_migrations, MIGRATIONS, url)
    assert await _diff(url) == []
