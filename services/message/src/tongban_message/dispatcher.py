"""The dispatcher: hands queued SMS and email deliveries to their providers, retrying with growing delays.

Each round claims due deliveries (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas share the work) by moving
their `next_attempt_at` past the claim time, sends them concurrently outside any transaction, then records each
outcome with its event. An attempt that never reports back (a crash) makes the delivery due again after the claim
time: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from sqlalchemy import update as sql_update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.db import Database
from tongban_kit.outbox import emit, utcnow
from tongban_message.config import Settings
from tongban_message.contract import DELIVERY_DELIVERED, DELIVERY_FAILED, DeliveryOutcome
from tongban_message.models import Channel, Delivery, DeliveryStatus
from tongban_message.providers import DeliveryError, Outgoing, Provider

log = logging.getLogger(__name__)

SOURCE = "/tongban/message"
#: the longest wait between two attempts
MAX_BACKOFF_SECONDS = 3600.0


async def forget_addresses(db: Database, *, older_than: timedelta, now: datetime | None = None) -> int:
    """Clear the number or address of settled SMS and email deliveries older than `older_than`; returns how many."""
    cutoff = (now or utcnow()) - older_than
    async with db.session() as s:
        done = await s.exec(
            sql_update(Delivery)
            .where(
                col(Delivery.address).is_not(None),
                col(Delivery.status).in_([DeliveryStatus.delivered.value, DeliveryStatus.failed.value]),
                col(Delivery.created_at) < cutoff,
            )
            .values(address=None)
        )
        await s.commit()
    return int(done.rowcount or 0)


class Dispatcher:
    """Runs in every replica of the service; `wake()` after queueing skips the idle wait."""

    def __init__(self, db: Database, providers: dict[Channel, Provider], settings: Settings) -> None:
        self.db = db
        self.providers = providers
        self.settings = settings
        self._wake = asyncio.Event()

    @property
    def channels(self) -> frozenset[Channel]:
        """The channels this deployment sends: the inbox, and those with a provider."""
        return frozenset({Channel.inbox, *self.providers})

    def wake(self) -> None:
        """Deliveries were queued: look at once."""
        self._wake.set()

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt after `attempts` failed ones."""
        return float(min(MAX_BACKOFF_SECONDS, self.settings.delivery_retry_seconds * 2 ** (attempts - 1)))

    async def run(self) -> None:
        """Rounds until cancelled; waits `dispatch_idle_seconds` (or a wake-up) while nothing is due."""
        while True:
            self._wake.clear()
            try:
                handled = await self.round()
            except Exception:  # the database or a bug: log, wait, go on (nothing is lost: rows stay queued)
                log.exception("dispatch round failed")
                handled = 0
            if handled < self.settings.dispatch_batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.dispatch_idle_seconds)

    async def round(self) -> int:
        """Claim the due deliveries, attempt them, record the outcomes; returns how many were attempted."""
        now = utcnow()
        claim_until = now + timedelta(seconds=self.settings.delivery_claim_seconds)
        async with self.db.session() as s:
            stmt = (
                select(Delivery)
                .where(Delivery.status == DeliveryStatus.queued, col(Delivery.next_attempt_at) <= now)
                .order_by(col(Delivery.next_attempt_at))
                .limit(self.settings.dispatch_batch)
                .with_for_update(skip_locked=True)
            )
            due = list((await s.exec(stmt)).all())
            work = []
            for d in due:
                d.attempts += 1
                d.next_attempt_at = claim_until
                s.add(d)
                work.append(
                    (
                        Outgoing(d.id, Channel(d.channel), d.address or "", d.subject, d.body),
                        d.attempts,
                        d.message_id,
                        d.user_id,
                    )
                )
            await s.commit()
        if not work:
            return 0
        outcomes = await asyncio.gather(*(self._attempt(item) for item, *_ in work))
        async with self.db.session() as s:
            for (item, attempts, message_id, user_id), error in zip(work, outcomes, strict=True):
                await self._record(s, item, attempts, message_id, user_id, error)
            await s.commit()
        return len(work)

    async def _attempt(self, item: Outgoing) -> DeliveryError | None:
        provider = self.providers.get(item.channel)
        if provider is None:
            return DeliveryError(f"no {item.channel} provider is configured", permanent=True)
        try:
            await provider.send(item)
        except DeliveryError as exc:
            return exc
        except Exception as exc:  # a provider bug must not stop the round; retried like an outage
            log.exception("provider failed", extra={"provider": provider.name, "delivery_id": item.delivery_id})
            return DeliveryError(f"{type(exc).__name__}: {exc}")
        return None

    async def _record(
        self,
        s: AsyncSession,
        item: Outgoing,
        attempts: int,
        message_id: str,
        user_id: str,
        error: DeliveryError | None,
    ) -> None:
        now = utcnow()
        mine = (col(Delivery.id) == item.delivery_id, col(Delivery.attempts) == attempts)
        outcome = DeliveryOutcome(
            delivery_id=item.delivery_id,
            message_id=message_id,
            user_id=user_id,
            channel=item.channel,
            attempts=attempts,
        )
        if error is None:
            values: dict[str, object] = {
                "status": DeliveryStatus.delivered.value,
                "delivered_at": now,
                "last_error": None,
            }
            spec = DELIVERY_DELIVERED
        elif error.permanent or attempts >= self.settings.delivery_max_attempts:
            values = {"status": DeliveryStatus.failed.value, "last_error": str(error)[:500]}
            outcome.error = str(error)[:500]
            spec = DELIVERY_FAILED
        else:
            retry_at = now + timedelta(seconds=self.backoff(attempts))
            await s.exec(
                sql_update(Delivery).where(*mine).values(next_attempt_at=retry_at, last_error=str(error)[:500])
            )
            log.warning(
                "delivery attempt failed; retrying",
                extra={"delivery_id": item.delivery_id, "attempts": attempts, "error": str(error)},
            )
            return
        done = await s.exec(sql_update(Delivery).where(*mine).values(**values))
        if done.rowcount == 1:  # another replica reclaimed it meanwhile: its outcome counts, not this one
            emit(s, spec, outcome, source=SOURCE, subject=item.delivery_id)
