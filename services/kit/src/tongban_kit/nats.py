"""NATS connection with reconnect, subject namespacing, and JetStream streams declared in code."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamSpec:
    """A JetStream stream a service owns: name and subjects (both before namespacing)."""

    name: str
    subjects: tuple[str, ...]
    description: str = ""
    retention: RetentionPolicy = RetentionPolicy.LIMITS
    max_age_seconds: float = 7 * 24 * 3600
    duplicate_window_seconds: float = 120.0
    storage: StorageType = StorageType.FILE
    replicas: int = 1


@dataclass
class Bus:
    """A connected NATS client with JetStream, scoped to a namespace (empty in production)."""

    nc: Client
    namespace: str = ""
    js: JetStreamContext = field(init=False)
    #: called after every reconnect (e.g. to drop caches kept fresh by core subscriptions)
    reconnect_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.js = self.nc.jetstream()

    def subject(self, name: str) -> str:
        """The wire subject for a logical subject."""
        return f"{self.namespace}.{name}" if self.namespace else name

    def unsubject(self, wire: str) -> str:
        """The logical subject for a wire subject."""
        if self.namespace and wire.startswith(self.namespace + "."):
            return wire[len(self.namespace) + 1 :]
        return wire

    def stream_name(self, name: str) -> str:
        """The wire name of a stream (or consumer / service name)."""
        return f"{self.namespace}_{name}" if self.namespace else name

    async def ensure_stream(self, spec: StreamSpec) -> None:
        """Create or update a stream to match its spec."""
        name = self.stream_name(spec.name)
        cfg = StreamConfig(
            name=name,
            subjects=[self.subject(s) for s in spec.subjects],
            description=spec.description or None,
            retention=spec.retention,
            max_age=spec.max_age_seconds,
            duplicate_window=spec.duplicate_window_seconds,
            storage=spec.storage,
            num_replicas=spec.replicas,
            discard=DiscardPolicy.OLD,
        )
        try:
            await self.js.stream_info(name)
        except NotFoundError:
            await self.js.add_stream(cfg)
            log.info("stream created", extra={"stream": name})
            return
        await self.js.update_stream(cfg)

    async def delete_streams(self, specs: list[StreamSpec]) -> None:
        """Delete streams (used by test clean-up)."""
        for spec in specs:
            try:
                await self.js.delete_stream(self.stream_name(spec.name))
            except NotFoundError:
                pass

    async def close(self) -> None:
        """Drain and close."""
        if not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:  # already closing or disconnected
                await self.nc.close()


async def connect(
    url: str,
    *,
    name: str,
    user: str | None = None,
    password: str | None = None,
    namespace: str = "",
    **options: Any,
) -> Bus:
    """Connect with unlimited reconnects; logs disconnects and reconnects."""

    async def disconnected() -> None:
        log.warning("nats disconnected")

    bus: Bus | None = None

    async def reconnected() -> None:
        log.info("nats reconnected")
        for hook in bus.reconnect_hooks if bus else ():
            await hook()

    async def error(e: Exception) -> None:
        log.warning("nats error: %s", e)

    nc = await nats.connect(
        url,
        name=name,
        user=user,
        password=password,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=3,
        drain_timeout=5,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        error_cb=error,
        **options,
    )
    bus = Bus(nc, namespace)
    return bus


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether a NATS subject matches a pattern with `*` (one token) and `>` (the rest) wildcards."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)
