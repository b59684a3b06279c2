"""Kit test fixtures: a kit-only database on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlmodel import SQLModel

import tongban_kit.consumer
import tongban_kit.outbox
from tongban_kit.db import Database

KIT_TABLES = [tongban_kit.outbox.OutboxEvent.__table__, tongban_kit.consumer.ProcessedEvent.__table__]  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
async def kit_db(pg_database_url: str) -> AsyncIterator[Database]:
    """A PostgreSQL database holding just the kit's tables."""
    db = Database(pg_database_url)
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=KIT_TABLES))
    yield db
    await db.dispose()
