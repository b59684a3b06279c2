"""Idempotent JetStream consumers: each event id is handled once per consumer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError
from sqlalchemy import Column, String
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.context import bind_from_headers
from tongban_kit.db import Database, UtcDateTime
from tongban_kit.events import CloudEvent
from tongban_kit.nats import Bus, subject_matches
from tongban_kit.outage import database_unavailable
from tongban_kit.outbox import utcnow

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]


class ProcessedEvent(SQLModel, table=True):
    """An event id a consumer has handled."""

    __tablename__ = "kit_processed_events"

    consumer: str = Field(sa_column=Column(String(100), primary_key=True))
    event_id: str = Field(sa_column=Column(String(64), primary_key=True))
    processed_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable consumer a service runs: which stream, which subjects, and why."""

    name: str
    stream: str
    subjects: tuple[str, ...]
    description: str = ""
    max_deliver: int = 10


async def handle_once(db: Database, consumer: str, event: CloudEvent, handler: Handler) -> bool:
    """Run `handler` unless this consumer already processed the event; False when it was a duplicate."""
    async with db.session() as s:
        if await s.get(ProcessedEvent, (consumer, event.id)) is not None:
            return False
        s.add(ProcessedEvent(consumer=consumer, event_id=event.id))
        await handler(s, event)
        try:
            await s.commit()
        except IntegrityError:  # a concurrent delivery won the race
            await s.rollback()
            return False
    return True


class EventConsumer:
    """Pulls events from a durable consumer and hands each to an idempotent handler."""

    def __init__(self, bus: Bus, db: Database, spec: ConsumerSpec, handler: Handler, *, batch: int = 50) -> None:
        self.bus, self.db, self.spec, self.handler, self.batch = bus, db, spec, handler, batch
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None

    async def _process(self, msg: Msg) -> None:
        if not any(subject_matches(self.bus.subject(p), msg.subject) for p in self.spec.subjects):
            await msg.ack()  # a server that cannot filter on several subjects delivered everything
            return
        bind_from_headers(msg.headers)
        try:
            event = CloudEvent.from_json(msg.data)
        except ValidationError:
            log.error("dropping malformed event", extra={"subject": msg.subject})
            await msg.term()
            return
        try:
            await handle_once(self.db, self.spec.name, event, self.handler)
        except Exception as exc:
            delivered = msg.metadata.num_delivered if msg.metadata else 1
            if database_unavailable(exc) and delivered < self.spec.max_deliver:
                self.db.outage.failed(exc)  # logged once per outage; the event comes again later
                await msg.nak(delay=min(2.0**delivered, 60.0))
                return
            if delivered >= self.spec.max_deliver:
                log.exception("giving up on event", extra={"event_id": event.id, "type": event.type})
                await msg.term()
            else:
                log.exception("event handler failed; will retry", extra={"event_id": event.id})
                await msg.nak(delay=min(2.0**delivered, 60.0))
            return
        await msg.ack()

    async def run(self) -> None:
        """Consume until cancelled."""
        durable = self.bus.stream_name(self.spec.name)
        subjects = [self.bus.subject(s) for s in self.spec.subjects]
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            max_deliver=self.spec.max_deliver,
            # one subject as `filter_subject`: servers before 2.10 ignore `filter_subjects` (and deliver all)
            **({"filter_subject": subjects[0]} if len(subjects) == 1 else {"filter_subjects": subjects}),
            ack_wait=30,
        )
        stream = self.bus.stream_name(self.spec.stream)
        await self.bus.js.add_consumer(stream, config)
        sub = self._sub = await self.bus.js.pull_subscribe_bind(durable, stream=stream)
        while True:
            try:
                msgs = await sub.fetch(self.batch, timeout=2)
            except NatsTimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("consumer %s fetch failed: %s", durable, exc)
                await asyncio.sleep(1)
                continue
            for msg in msgs:
                await self._process(msg)

    def start(self) -> None:
        """Start consuming in the background."""
        self._task = asyncio.create_task(self.run(), name=f"consumer-{self.spec.name}")

    async def stop(self) -> None:
        """Stop consuming."""
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # connection already closed
                pass
            self._sub = None
