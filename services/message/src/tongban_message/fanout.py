"""The fan-out worker: writes the deliveries of messages accepted for a unit's members (or many people).

Every replica runs one. A round claims the oldest queued message nobody holds (`FOR UPDATE SKIP LOCKED` on
PostgreSQL, so replicas share the queue; SQLite serves one process) with a claim token good for
`fanout_claim_seconds`. It resolves the recipients over RPC (a unit's members page by page, at most
`max_recipients`), then writes their deliveries `fanout_batch` at a time, each batch in a transaction that first
renews the claim (a worker whose claim ran out and was taken over stops). Recipients that already have a delivery
of the message are skipped, so the next claimant resumes a worker that died between batches without writing
anything twice; the last transaction marks the message sent with its message.message.sent.v1, exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta

from sqlalchemy import func, or_
from sqlalchemy import update as sql_update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.db import Database, copy_rows
from tongban_kit.ids import new_id
from tongban_kit.outbox import emit, utcnow
from tongban_kit.problems import Problem
from tongban_kit.rpc import RpcClient
from tongban_message.config import Settings
from tongban_message.contract import DELIVERY_FAILED, MESSAGE_FAILED, MESSAGE_SENT, MessageFailed
from tongban_message.dispatcher import Dispatcher
from tongban_message.messages import SOURCE, addresses_of, delivery_rows, recipients_of, sent_event
from tongban_message.models import Channel, Delivery, Message, MessageStatus, Recipients, Template

log = logging.getLogger(__name__)


class FanoutWorker:
    """Runs in every replica of the service; `wake()` after accepting a large send skips the idle wait."""

    def __init__(self, db: Database, settings: Settings, dispatcher: Dispatcher) -> None:
        self.db = db
        self.settings = settings
        self.dispatcher = dispatcher
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A large send was accepted: look at once."""
        self._wake.set()

    async def run(self, rpc: RpcClient) -> None:
        """Fan out queued messages one at a time until cancelled; idle `fanout_idle_seconds` while none waits."""
        while True:
            self._wake.clear()
            try:
                busy = await self.round(rpc)
            except Exception:  # the database or a bug: log, wait, go on (the message stays queued)
                log.exception("fan-out round failed")
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.fanout_idle_seconds)

    async def round(self, rpc: RpcClient) -> bool:
        """Claim one queued message and fan it out; False when none was waiting."""
        message = await self._claim()
        if message is None:
            return False
        started = time.perf_counter()
        try:
            await self.fan_out(message, rpc)
        except Exception as exc:  # the org or user service did not answer, or the database failed: later again
            log.warning(
                "fan-out interrupted; retrying later",
                extra={"message_id": message.id, "error": str(exc) or type(exc).__name__},
            )
            await self._release(message)
        else:
            log.info(
                "message fanned out",
                extra={"message_id": message.id, "seconds": round(time.perf_counter() - started, 3)},
            )
        return True

    async def _claim(self) -> Message | None:
        now = utcnow()
        async with self.db.session() as s:
            free = or_(col(Message.claimed_until).is_(None), col(Message.claimed_until) <= now)
            stmt = (
                select(Message)
                .where(Message.status == MessageStatus.queued, free)
                .order_by(col(Message.created_at))
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            message = (await s.exec(stmt)).first()
            if message is None:
                return None
            message.claim = new_id()
            message.claimed_until = now + timedelta(seconds=self.settings.fanout_claim_seconds)
            message.fanout_attempts += 1
            s.add(message)
            await s.commit()
            return message

    async def _hold(self, s: AsyncSession, message: Message, **values: object) -> bool:
        """Renew this worker's claim (locking the row for the transaction); False when it was taken over."""
        until = utcnow() + timedelta(seconds=self.settings.fanout_claim_seconds)
        done = await s.exec(
            sql_update(Message)
            .where(
                col(Message.id) == message.id,
                col(Message.claim) == message.claim,
                col(Message.status) == MessageStatus.queued,
            )
            .values(**{"claimed_until": until, **values})
        )
        if done.rowcount != 1:
            log.warning("fan-out taken over by another worker", extra={"message_id": message.id})
            return False
        return True

    async def fan_out(self, message: Message, rpc: RpcClient) -> None:
        """Resolve the recipients and write their deliveries batch by batch, then mark the message sent."""
        timeout = self.settings.rpc_timeout_seconds
        to = Recipients.model_validate(message.audience or {})
        try:
            users = await recipients_of(to, rpc, limit=self.settings.max_recipients, timeout=timeout)
        except Problem as problem:
            if problem.status >= 500:
                raise
            await self._fail(message, problem.detail or problem.title or str(problem.status))
            return
        total = len(users)
        if message.fanout_attempts > 1:  # resuming: leave out whoever an earlier attempt reached
            users = await self._not_written(message, users)
        channel = Channel(message.channel)
        batch = self.settings.fanout_batch
        for start in range(0, len(users), batch):
            chunk = users[start : start + batch]
            addresses = await addresses_of(chunk, channel, rpc, timeout=timeout) if channel != Channel.inbox else {}
            if not await self.write_batch(message, chunk, addresses, total=total):
                return
            if channel != Channel.inbox:
                self.dispatcher.wake()
        await self._finish(message)

    async def _not_written(self, message: Message, users: list[str]) -> list[str]:
        async with self.db.read_session() as s:
            rows = await s.exec(select(Delivery.user_id).where(Delivery.message_id == message.id))
            written = set(rows.all())
        return [u for u in users if u not in written]

    async def write_batch(
        self, message: Message, users: list[str], addresses: dict[str, str | None], *, total: int
    ) -> bool:
        """Write the deliveries of `users` in one transaction; False when the claim was lost (nothing written).

        Only the claim holder writes (another worker's claim starts after this transaction, which renews it), and
        the recipients an earlier attempt reached were left out, so nobody gets two."""
        async with self.db.session() as s:
            if not await self._hold(s, message, recipients=total):
                await s.rollback()
                return False
            subject, text = message.subject or "", message.body or ""
            rows, failed = delivery_rows(message.id, users, Channel(message.channel), subject, text, addresses)
            if rows:
                columns = tuple(rows[0])
                await copy_rows(s, Delivery.__table__, columns, [tuple(r[c] for c in columns) for r in rows])  # type: ignore[attr-defined]
            for outcome in failed:
                emit(s, DELIVERY_FAILED, outcome, source=SOURCE, subject=outcome.delivery_id)
            await s.commit()
        return True

    async def _finish(self, message: Message) -> None:
        async with self.db.session() as s:
            if not await self._hold(s, message):
                await s.rollback()
                return
            count = await s.scalar(select(func.count()).select_from(Delivery).where(Delivery.message_id == message.id))
            message.recipients = int(count or 0)
            await s.exec(
                sql_update(Message)
                .where(col(Message.id) == message.id)
                .values(
                    status=MessageStatus.sent.value,
                    sent_at=utcnow(),
                    recipients=message.recipients,
                    claim=None,
                    claimed_until=None,
                    subject=None,
                    body=None,
                )
            )
            template = await s.get(Template, message.template_id)
            code = template.code if template is not None else ""
            emit(s, MESSAGE_SENT, sent_event(message, code), source=SOURCE, subject=message.id)
            await s.commit()

    async def _fail(self, message: Message, error: str) -> None:
        async with self.db.session() as s:
            failed = {"status": MessageStatus.failed.value, "error": error[:500]}
            if not await self._hold(s, message, **failed, claim=None, claimed_until=None, subject=None, body=None):
                await s.rollback()
                return
            template = await s.get(Template, message.template_id)
            data = MessageFailed(
                message_id=message.id,
                template_id=message.template_id,
                template_code=template.code if template is not None else "",
                channel=message.channel,
                sender_client_id=message.sender_client_id,
                reference=message.reference,
                error=error[:500],
            )
            emit(s, MESSAGE_FAILED, data, source=SOURCE, subject=message.id)
            await s.commit()
        log.warning("message could not be fanned out", extra={"message_id": message.id, "error": error})

    async def _release(self, message: Message) -> None:
        """Give the message back, to be tried again after `fanout_retry_seconds` (by any replica)."""
        retry_at = utcnow() + timedelta(seconds=self.settings.fanout_retry_seconds)
        with contextlib.suppress(Exception):  # the database is down too: the claim runs out by itself
            async with self.db.session() as s:
                await s.exec(
                    sql_update(Message)
                    .where(col(Message.id) == message.id, col(Message.claim) == message.claim)
                    .values(claim=None, claimed_until=retry_at)
                )
                await s.commit()
