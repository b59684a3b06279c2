"""Revoked access tokens and grants: an in-memory list fed from `auth.token.revoked.v1` on JetStream."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from tongban_kit.events import CloudEvent
from tongban_kit.nats import Bus

log = logging.getLogger(__name__)

REVOKED_SUBJECT = "auth.token.revoked.v1"
AUTH_STREAM = "AUTH_EVENTS"
#: the longest access-token lifetime: a revocation older than this covers no token still valid
DEFAULT_REPLAY_SECONDS = 3600.0


class RevocationList:
    """Revoked token ids (`jti`) and grant ids, each kept until its expiry plus `grace_seconds`."""

    def __init__(self, *, grace_seconds: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.grace_seconds = grace_seconds
        self._clock = clock
        self._jtis: dict[str, float] = {}
        self._grants: dict[str, float] = {}
        self._next_prune = 0.0

    def add(self, *, jti: str | None = None, grant_id: str | None = None, expires_at: datetime | float) -> None:
        """Deny a token id and/or every token of a grant until `expires_at` (plus the grace period)."""
        until = (expires_at.timestamp() if isinstance(expires_at, datetime) else float(expires_at)) + self.grace_seconds
        now = self._clock()
        if until <= now:
            return
        for table, key in ((self._jtis, jti), (self._grants, grant_id)):
            if key:
                table[key] = max(until, table.get(key, until))
        if now >= self._next_prune:
            self.prune()

    def is_revoked(self, jti: str | None, grant_id: str | None = None, *, subject_jtis: Iterable[str] = ()) -> bool:
        """True when the token id, its grant, or a token it was exchanged from (`subject_jtis`) is revoked."""
        now = self._clock()
        for table, key in ((self._jtis, jti), (self._grants, grant_id)):
            if key is not None:
                until = table.get(key)
                if until is not None and until > now:
                    return True
        return any(self._jtis.get(s, now) > now for s in subject_jtis)

    def prune(self) -> int:
        """Drop expired entries; returns how many went."""
        now = self._clock()
        self._next_prune = now + 60.0
        gone = 0
        for table in (self._jtis, self._grants):
            stale = [k for k, until in table.items() if until <= now]
            for k in stale:
                del table[k]
            gone += len(stale)
        return gone

    def __len__(self) -> int:
        return len(self._jtis) + len(self._grants)


def parse_revocation(data: dict[str, Any]) -> tuple[str | None, str | None, datetime]:
    """The (jti, grant_id, expires_at) of an `auth.token.revoked.v1` payload; ValueError when unusable."""
    jti, grant_id, expires = data.get("jti"), data.get("grant_id"), data.get("expires_at")
    if not all(v is None or isinstance(v, str) for v in (jti, grant_id)) or not (jti or grant_id):
        raise ValueError("a revocation names a jti or a grant_id")
    if not isinstance(expires, str):
        raise ValueError("a revocation needs expires_at")
    at = datetime.fromisoformat(expires)
    return jti, grant_id, at if at.tzinfo else at.replace(tzinfo=UTC)


class RevocationFeed:
    """Keeps a RevocationList current from JetStream: replays the last `replay_seconds`, then follows.

    One ephemeral, in-order pull consumer (no acks) per feed. It is replaced, resuming after the last stream
    sequence applied, only when it is lost (e.g. a server restart), after a reconnect (deliveries to the old
    connection's pull requests are gone) or on a gap in delivery; an idle poll or a transient error keeps it.
    """

    def __init__(
        self,
        bus: Bus,
        revocations: RevocationList,
        *,
        stream: str = AUTH_STREAM,
        subject: str = REVOKED_SUBJECT,
        replay_seconds: float = DEFAULT_REPLAY_SECONDS,
        batch: int = 256,
        poll_seconds: float = 1.0,
        check_seconds: float = 30.0,
        retry_seconds: float = 2.0,
    ) -> None:
        self.bus, self.revocations = bus, revocations
        self.stream, self.subject = stream, subject
        self.replay_seconds = replay_seconds
        self.batch, self.poll_seconds, self.check_seconds, self.retry_seconds = (
            batch,
            poll_seconds,
            check_seconds,
            retry_seconds,
        )
        #: revocations applied so far
        self.applied = 0
        #: consumers created so far (one, unless the feed had to resume)
        self.consumers_created = 0
        #: set once the replay reached the end of the stream
        self.caught_up = asyncio.Event()
        self._last_seq = 0
        #: where the replay starts, fixed at the first consumer (a later one resumes there until one event came)
        self._since: datetime | None = None
        self._resume = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, wait: float | None = 10.0) -> bool:
        """Start following in the background; wait up to `wait` seconds for the replay (False if not caught up)."""
        if self._task is None:
            self.bus.reconnect_hooks.append(self._on_reconnect)
            self._task = asyncio.create_task(self._run(), name=f"revocation-feed-{self.subject}")
        if wait is None:
            return self.caught_up.is_set()
        try:
            await asyncio.wait_for(self.caught_up.wait(), wait)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Stop following."""
        if self._on_reconnect in self.bus.reconnect_hooks:
            self.bus.reconnect_hooks.remove(self._on_reconnect)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _on_reconnect(self) -> None:
        self._resume.set()

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # stream missing, consumer lost, gap in delivery: a new consumer
                log.warning(
                    "revocation feed on %s restarts after %r",
                    self.subject,
                    exc,
                    extra={"reason": type(exc).__name__, "after_sequence": self._last_seq},
                )
                await asyncio.sleep(self.retry_seconds)

    def _config(self, name: str) -> ConsumerConfig:
        config = ConsumerConfig(
            name=name,
            filter_subject=self.bus.subject(self.subject),
            ack_policy=AckPolicy.NONE,
            inactive_threshold=max(60.0, 4 * self.check_seconds),
            mem_storage=True,
            num_replicas=1,
        )
        if self._last_seq:
            config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, self._last_seq + 1
        else:
            if self._since is None:
                self._since = datetime.now(UTC) - timedelta(seconds=self.replay_seconds)
            config.deliver_policy, config.opt_start_time = DeliverPolicy.BY_START_TIME, self._since
        return config

    async def _follow(self) -> None:
        js, stream = self.bus.js, self.bus.stream_name(self.stream)
        name = f"revocations_{secrets.token_hex(8)}"
        self._resume.clear()
        info = await js.add_consumer(stream, self._config(name))
        self.consumers_created += 1
        if not info.num_pending:
            self.caught_up.set()
        sub = await js.pull_subscribe_bind(consumer=name, stream=stream)
        expected, checked = 1, time.monotonic()
        try:
            while True:
                if time.monotonic() - checked >= self.check_seconds:
                    await self._check(stream, name)
                    checked = time.monotonic()
                msgs = await self._fetch(sub)
                if msgs is None:
                    log.info("revocation feed on %s resumes after a reconnect", self.subject)
                    return
                for msg in msgs:
                    meta = msg.metadata
                    if meta.sequence.consumer != expected:
                        raise RuntimeError(f"gap in delivery (consumer sequence {meta.sequence.consumer})")
                    expected += 1
                    self._apply(msg.data)
                    self._last_seq = meta.sequence.stream
                    if not meta.num_pending:
                        self.caught_up.set()
        finally:
            try:
                await sub.unsubscribe()
                await js.delete_consumer(stream, name)
            except Exception:  # gone already, or disconnected: the server drops it when inactive
                pass

    async def _fetch(self, sub: Any) -> list[Any] | None:
        """The next batch (empty when idle), or None on a reconnect: the pull of the old connection is lost."""
        fetch = asyncio.ensure_future(sub.fetch(self.batch, timeout=self.poll_seconds))
        resumed = asyncio.ensure_future(self._resume.wait())
        try:
            await asyncio.wait((fetch, resumed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            resumed.cancel()
            fetch.cancel()  # still pulling only on a reconnect or when the feed stops
        if self._resume.is_set():
            if fetch.done() and not fetch.cancelled():
                fetch.exception()  # retrieved: whatever it was, the next consumer starts afresh
            return None
        try:
            msgs: list[Any] = fetch.result()
        except TimeoutError:
            # nothing new: fetch raises nats' TimeoutError or, when its deadline passes while the event loop is
            # busy, the builtin one that nats' derives from (whose text is empty)
            self.caught_up.set()
            return []
        return msgs

    async def _check(self, stream: str, name: str) -> None:
        """Raise NotFoundError when the consumer is gone; other failures (e.g. a slow server) keep it."""
        try:
            await self.bus.js.consumer_info(stream, name)
        except NotFoundError:
            raise
        except Exception as exc:
            log.info("revocation feed on %s could not check its consumer: %r", self.subject, exc)

    def _apply(self, raw: bytes) -> None:
        try:
            event = CloudEvent.from_json(raw)
            jti, grant_id, expires_at = parse_revocation(event.data)
        except (ValidationError, ValueError) as exc:
            log.error("ignoring malformed revocation event: %s", exc)
            return
        self.revocations.add(jti=jti, grant_id=grant_id, expires_at=expires_at)
        self.applied += 1
