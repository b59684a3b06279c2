"""Group commit of auth.token.issued.v1: every token's event is durable before its answer, many share a commit."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from tongban_auth.issuance import AccessToken, IssuedEventWriter, issued_event
from tongban_kit.db import Database
from tongban_kit.ids import new_id
from tongban_kit.outbox import OutboxEvent


def _access(client_id: str) -> AccessToken:
    claims = {"client_id": client_id, "sub": client_id, "scope": "user:read", "jti": new_id(), "exp": 2_000_000_000}
    return AccessToken("not-a-real-token", claims)


async def _rows(db: Database, ids: list[str]) -> int:
    async with db.read_session() as s:
        return int((await s.exec(select(func.count()).where(col(OutboxEvent.event_id).in_(ids)))).one())


async def test_concurrent_events_are_committed_before_each_returns_and_share_commits(auth_db: Database) -> None:
    writer = IssuedEventWriter(auth_db)
    commits = 0
    original = auth_db.session

    def counting_session() -> Any:
        nonlocal commits
        commits += 1
        return original()

    events = [issued_event(_access("writer-app"), grant_type="client_credentials") for _ in range(200)]
    ids = [e.id for e in events]
    seen_after_return: list[int] = []

    async def one(event: Any) -> None:
        await writer.record(event)
        async with auth_db.read_session() as s:  # committed, visible to any other connection
            found = (await s.exec(select(OutboxEvent.event_id).where(OutboxEvent.event_id == event.id))).all()
        seen_after_return.append(len(found))

    auth_db.session = counting_session  # type: ignore[method-assign]
    try:
        await asyncio.gather(*(one(e) for e in events))
    finally:
        auth_db.session = original  # type: ignore[method-assign]
    assert seen_after_return == [1] * len(events)
    assert await _rows(auth_db, ids) == len(events)
    assert 1 <= commits < len(events) // 4  # many requests per transaction


async def test_a_lone_event_is_written_at_once(auth_db: Database) -> None:
    writer = IssuedEventWriter(auth_db)
    event = issued_event(_access("writer-app"), grant_type="token_exchange")
    await asyncio.wait_for(writer.record(event), 5)
    assert await _rows(auth_db, [event.id]) == 1


async def test_a_failed_commit_fails_every_waiter_of_the_batch(auth_db: Database) -> None:
    writer = IssuedEventWriter(auth_db)
    event = issued_event(_access("writer-app"), grant_type="client_credentials")
    await writer.record(event)
    # the same event id again violates the unique event_id: the whole batch fails, and each waiter hears of it
    again = [event, issued_event(_access("writer-app"), grant_type="client_credentials")]
    outcomes = await asyncio.gather(*(writer.record(e) for e in again), return_exceptions=True)
    assert all(isinstance(o, Exception) for o in outcomes), outcomes
    # the writer keeps working afterwards
    later = issued_event(_access("writer-app"), grant_type="client_credentials")
    await writer.record(later)
    assert await _rows(auth_db, [later.id, again[1].id]) == 1
