"""Transactional outbox against real PostgreSQL and a nats-server that goes down and comes back."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlalchemy import text, update
from sqlmodel import col, select

from tongban_kit.db import Database
from tongban_kit.events import CloudEvent, EventSpec
from tongban_kit.nats import Bus, StreamSpec, connect
from tongban_kit.natsserver import LocalNatsServer
from tongban_kit.outbox import OutboxEvent, OutboxRelay, emit


class Ping(BaseModel):
    n: int


PING = EventSpec("kit.ping.sent.v1", Ping, "test event")
STREAM = StreamSpec("KIT_TEST", ("kit.*.*.v1",), duplicate_window_seconds=120)


@pytest.fixture
async def own_nats(tmp_path: Path) -> AsyncIterator[LocalNatsServer]:
    """A private nats-server this test may stop and restart."""
    server = LocalNatsServer(tmp_path / "js").start()
    yield server
    server.stop()


async def _write(db: Database, n: int, commit: bool = True) -> str:
    async with db.session() as s:
        ev = emit(s, PING, Ping(n=n), source="/tongban/test", subject=str(n))
        if commit:
            await s.commit()
        else:
            await s.rollback()
    return ev.id


async def _stream_events(bus: Bus) -> list[CloudEvent]:
    name = bus.stream_name(STREAM.name)
    info = await bus.js.stream_info(name)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await bus.js.get_msg(name, seq)
        assert msg.data is not None
        out.append(CloudEvent.from_json(msg.data))
    return out


async def _until(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_events_survive_nats_outage_in_order_once(kit_db: Database, own_nats: LocalNatsServer) -> None:
    await _clear(kit_db)
    bus = await connect(own_nats.url, name="outbox-test", namespace="o" + secrets.token_hex(3))
    await bus.ensure_stream(STREAM)
    relay = OutboxRelay(kit_db, bus, poll_seconds=0.2)
    relay.start()
    try:
        ids = [await _write(kit_db, n) for n in range(5)]
        await _until(lambda: _count(bus, 5))
        own_nats.stop()  # NATS goes away; writes keep committing
        ids += [await _write(kit_db, n) for n in range(5, 25)]
        await asyncio.sleep(1.0)
        async with kit_db.session() as s:
            unsent = (await s.exec(select(OutboxEvent).where(col(OutboxEvent.sent_at).is_(None)))).all()
        assert len(unsent) == 20, "events wait in the outbox while NATS is down"
        own_nats.start()  # same port and store: clients reconnect
        await _until(lambda: _count(bus, 25), timeout=20)
        events = await _stream_events(bus)
        assert [e.id for e in events] == ids, "in commit order, none lost, none twice"
        assert [e.data["n"] for e in events] == list(range(25))
    finally:
        await relay.stop()
        await bus.close()


async def test_republish_is_deduplicated_and_rollback_emits_nothing(
    kit_db: Database, own_nats: LocalNatsServer
) -> None:
    await _clear(kit_db)
    bus = await connect(own_nats.url, name="outbox-test", namespace="d" + secrets.token_hex(3))
    await bus.ensure_stream(STREAM)
    relay = OutboxRelay(kit_db, bus)
    for n in range(3):
        await _write(kit_db, n)
    await _write(kit_db, 99, commit=False)
    assert await relay.publish_pending() == 3
    # a crash between publishing and marking rows sent: the relay publishes them again
    async with kit_db.session() as s:
        await s.exec(update(OutboxEvent).values(sent_at=None))
        await s.commit()
    assert await relay.publish_pending() == 3
    events = await _stream_events(bus)
    assert len(events) == 3, "Nats-Msg-Id de-duplicates the republished events"
    assert 99 not in [e.data["n"] for e in events]
    await bus.close()


async def _count(bus: Bus, n: int) -> bool:
    try:
        info = await bus.js.stream_info(bus.stream_name(STREAM.name))
    except Exception:
        return False
    return bool(info.state.messages >= n)


async def _clear(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM kit_outbox"))


async def test_stop_is_prompt_when_a_wake_meets_the_cancel(kit_db: Database, own_nats: LocalNatsServer) -> None:
    await _clear(kit_db)
    bus = await connect(own_nats.url, name="outbox-test", namespace="w" + secrets.token_hex(3))
    relay = OutboxRelay(kit_db, bus, poll_seconds=30)
    relay.start()
    await asyncio.sleep(0.3)  # idle: waiting for a wake or the next poll
    loop = asyncio.get_running_loop()
    started = loop.time()
    relay.wake()  # a commit's wake lands together with the shutdown's cancel
    await asyncio.wait_for(relay.stop(), 10)
    assert loop.time() - started < 2, "the relay ignored the cancel and waited for its next poll"
    await bus.close()
