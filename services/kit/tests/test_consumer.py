"""Idempotent consumers on a real JetStream stream and PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets

from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.consumer import ConsumerSpec, EventConsumer, handle_once
from tongban_kit.db import Database
from tongban_kit.events import CloudEvent
from tongban_kit.nats import StreamSpec, connect


async def test_handle_once_skips_duplicates(kit_db: Database) -> None:
    calls: list[str] = []

    async def handler(_s: AsyncSession, ev: CloudEvent) -> None:
        calls.append(ev.id)

    ev = CloudEvent(source="/t", type="kit.thing.done.v1", data={"x": 1})
    assert await handle_once(kit_db, "c1", ev, handler) is True
    assert await handle_once(kit_db, "c1", ev, handler) is False
    assert await handle_once(kit_db, "c2", ev, handler) is True, "each consumer remembers its own ids"
    assert calls == [ev.id, ev.id]


async def test_failed_handler_rolls_back_and_retries(kit_db: Database, nats_url: str) -> None:
    bus = await connect(nats_url, name="consumer-test", namespace="c" + secrets.token_hex(4))
    stream = StreamSpec("KIT_CONSUMER", ("kit.*.*.v1",))
    await bus.ensure_stream(stream)
    seen: list[int] = []
    attempts = {"n": 0}

    async def handler(_s: AsyncSession, ev: CloudEvent) -> None:
        if ev.data["n"] == 2 and attempts["n"] == 0:
            attempts["n"] += 1
            raise RuntimeError("transient failure")
        seen.append(ev.data["n"])

    spec = ConsumerSpec("kit-test-consumer", "KIT_CONSUMER", ("kit.thing.done.v1",), max_deliver=5)
    consumer = EventConsumer(bus, kit_db, spec, handler)
    events = [CloudEvent(source="/t", type="kit.thing.done.v1", data={"n": n}) for n in range(4)]
    try:
        for ev in events:
            await bus.js.publish(bus.subject(ev.type), ev.to_json(), headers={"Nats-Msg-Id": ev.id})
        # the same event again under another message id (dedupe window bypassed): handled once anyway
        await bus.js.publish(bus.subject(events[1].type), events[1].to_json(), headers={"Nats-Msg-Id": "other"})
        consumer.start()
        for _ in range(600):  # the failed event comes back after a 2 s delay; a loaded machine may take longer
            if sorted(seen) == [0, 1, 2, 3]:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert sorted(seen) == [0, 1, 2, 3], seen
        assert attempts["n"] == 1
    finally:
        await consumer.stop()
        await bus.js.delete_stream(bus.stream_name("KIT_CONSUMER"))
        await bus.close()
