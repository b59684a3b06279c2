"""Transactional outbox: events are rows written with the change; a relay publishes them in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import BigInteger, Column, Index, Integer, String, Text, delete, update
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.context import TRACEPARENT_HEADER
from tongban_kit.db import Database, UtcDateTime, copy_rows, on_commit
from tongban_kit.events import CONTENT_TYPE, CloudEvent, EventSpec, make_event
from tongban_kit.nats import Bus
from tongban_kit.outage import database_unavailable

log = logging.getLogger(__name__)

_wakers: list[Callable[[], None]] = []


def utcnow() -> datetime:
    """Timezone-aware now in UTC."""
    return datetime.now(UTC)


class OutboxEvent(SQLModel, table=True):
    """An event waiting to be (or already) published."""

    __tablename__ = "kit_outbox"
    __table_args__ = (Index("ix_kit_outbox_unsent", "sent_at", "seq"),)

    seq: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    )
    event_id: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    type: str = Field(sa_column=Column(String(200), nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))
    traceparent: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


def _wake_all() -> None:
    for wake in list(_wakers):
        wake()


def add_event(session: AsyncSession, event: CloudEvent) -> CloudEvent:
    """Write an event into the outbox within the caller's transaction; relays wake on commit."""
    session.add(
        OutboxEvent(
            event_id=event.id,
            type=event.type,
            payload=event.to_json().decode(),
            traceparent=event.traceparent,
        )
    )
    on_commit(session, _wake_all)
    return event


async def add_events(session: AsyncSession, events: list[CloudEvent]) -> None:
    """Write many events into the outbox with one bulk insert, in list order (for bulk operations)."""
    if not events:
        return
    columns = ("event_id", "type", "payload", "traceparent", "created_at")
    rows = [(e.id, e.type, e.to_json().decode(), e.traceparent, e.time) for e in events]
    await copy_rows(session, OutboxEvent.__table__, columns, rows)  # type: ignore[attr-defined]
    on_commit(session, _wake_all)


def emit(
    session: AsyncSession, spec: EventSpec, data: BaseModel, *, source: str, subject: str | None = None
) -> CloudEvent:
    """Build a declared event and add it to the outbox in the caller's transaction."""
    return add_event(session, make_event(spec, data, source=source, subject=subject))


class OutboxRelay:
    """Publishes unsent outbox rows to JetStream in sequence order; waits out NATS outages."""

    def __init__(
        self,
        db: Database,
        bus: Bus,
        *,
        batch: int = 200,
        poll_seconds: float = 2.0,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self.db = db
        self.bus = bus
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.retention = retention
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    def wake(self) -> None:
        """Ask the relay to look for new rows now."""
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish one batch in order; stops at the first failure (later rows wait); returns rows sent."""
        sent: list[int] = []
        error: Exception | None = None
        async with self.db.session() as s:
            stmt = (
                select(OutboxEvent)
                .where(col(OutboxEvent.sent_at).is_(None))
                .order_by(col(OutboxEvent.seq))
                .limit(self.batch)
            )
            if not self.db.sqlite:
                stmt = stmt.with_for_update()  # a second relay waits, so order holds across replicas
            rows = (await s.exec(stmt)).all()
            for row in rows:
                headers = {"Nats-Msg-Id": row.event_id, "Content-Type": CONTENT_TYPE}
                if row.traceparent:
                    headers[TRACEPARENT_HEADER] = row.traceparent
                try:
                    await self.bus.js.publish(
                        self.bus.subject(row.type), row.payload.encode(), headers=headers, timeout=5
                    )
                except Exception as exc:  # NATS down, timeout, no stream: retry later from this row
                    error = exc
                    break
                assert row.seq is not None
                sent.append(row.seq)
            if sent:
                await s.exec(update(OutboxEvent).where(col(OutboxEvent.seq).in_(sent)).values(sent_at=utcnow()))
            await s.commit()
        self.published += len(sent)
        if error is not None:
            raise error
        return len(sent)

    async def purge_sent(self) -> int:
        """Delete rows sent longer ago than the retention."""
        async with self.db.session() as s:
            res = await s.exec(delete(OutboxEvent).where(col(OutboxEvent.sent_at) < utcnow() - self.retention))
            await s.commit()
            return int(res.rowcount or 0)

    async def run(self) -> None:
        """Relay until cancelled."""
        backoff = 0.2
        last_purge = 0.0
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            try:
                n = await self.publish_pending()
                backoff = 0.2
                if n >= self.batch:
                    continue
                if loop.time() - last_purge > 3600:
                    last_purge = loop.time()
                    await self.purge_sent()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if database_unavailable(exc):
                    self.db.outage.failed(exc)  # logged once per outage
                else:
                    log.warning("outbox relay waiting: %r", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that lands as the wake arrives
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()

    def start(self) -> None:
        """Start relaying in the background."""
        _wakers.append(self.wake)
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        """Stop, after one last attempt to flush."""
        if self.wake in _wakers:
            _wakers.remove(self.wake)
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        try:
            await asyncio.wait_for(self.publish_pending(), 3)
        except Exception as exc:
            log.warning("outbox not fully flushed at shutdown: %s", exc)
