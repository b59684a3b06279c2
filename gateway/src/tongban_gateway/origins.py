"""The browser origins CORS allows: the registered apps' (from the client registry) plus any fixed in settings.

The auth service answers `auth.rpc.clients.origins` with the origins of its active clients' redirect URIs (as
Keycloak's "web origins: +" does). The gateway asks at start, again whenever an `auth.client.*.v1` event says a
client changed (an ordered JetStream consumer from "now on"), and every `cors_refresh_seconds` in case an event
was missed. Until the first answer only the fixed origins are allowed, and readiness says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from nats.js.api import DeliverPolicy
from pydantic import BaseModel, Field

from tongban_gateway.config import Settings
from tongban_kit.nats import Bus
from tongban_kit.rpc import RpcClient, RpcError, RpcSpec

log = logging.getLogger(__name__)

#: seconds between attempts while the registry cannot be asked
RETRY_SECONDS = 5.0
CLIENT_EVENTS = "auth.client.*.v1"
AUTH_STREAM = "AUTH_EVENTS"


class WebOriginsRequest(BaseModel):
    """Request of auth.rpc.clients.origins (contracts/events/auth.rpc.clients.origins.request.json)."""


class WebOriginsReply(BaseModel):
    """Reply of auth.rpc.clients.origins (contracts/events/auth.rpc.clients.origins.response.json)."""

    origins: list[str] = Field(default_factory=list)


RPC_WEB_ORIGINS = RpcSpec(
    "clients-origins", "auth.rpc.clients.origins", WebOriginsRequest, WebOriginsReply, "Web origins of the clients."
)


class OriginDirectory:
    """Which `Origin` values get CORS answers; kept fresh from the client registry."""

    def __init__(self, settings: Settings) -> None:
        self.fixed = frozenset(o.encode() for o in settings.cors_origins)
        self.allowed: frozenset[bytes] = self.fixed
        self.refresh_seconds = settings.cors_refresh_seconds
        self.loaded = False
        self.bus: Bus | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None

    def allows(self, origin: bytes) -> bool:
        """True for an allowed origin (compared lower-case)."""
        return origin.lower() in self.allowed

    async def start(self, bus: Bus) -> None:
        """Follow the registry over `bus` (in the background)."""
        self.bus = bus
        self._task = asyncio.create_task(self._run(), name="gateway-cors-origins")

    async def _subscribe(self) -> None:
        assert self.bus is not None
        if self._sub is not None:
            return
        bus = self.bus

        async def changed(msg: Any) -> None:
            self._wake.set()

        self._sub = await bus.js.subscribe(
            bus.subject(CLIENT_EVENTS),
            stream=bus.stream_name(AUTH_STREAM),
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            cb=changed,
        )

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            ok = await self.refresh()
            try:
                await self._subscribe()
            except Exception as exc:  # the auth stream does not exist yet: the periodic refresh covers it
                log.info("client changes not followed yet (%s)", type(exc).__name__)
                ok = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.refresh_seconds if ok else RETRY_SECONDS)

    async def refresh(self) -> bool:
        """Ask the registry; True when it answered."""
        if self.bus is None:
            return False
        try:
            reply = await RpcClient(self.bus).call(RPC_WEB_ORIGINS, WebOriginsRequest(), WebOriginsReply)
        except (RpcError, OSError) as exc:
            log.warning("the client registry did not give the web origins (%s); CORS keeps the ones known", exc)
            return False
        allowed = self.fixed | {o.lower().encode() for o in reply.origins}
        if allowed != self.allowed or not self.loaded:
            log.info("CORS origins: %d", len(allowed), extra={"origins": sorted(o.decode() for o in allowed)})
        self.allowed = allowed
        self.loaded = True
        return True

    def readiness(self) -> str:
        """'ok' once the registry answered; 'degraded' before (only the fixed origins are allowed)."""
        return "ok" if self.loaded else "degraded: registered apps' origins not loaded yet"

    async def close(self) -> None:
        """Stop following the registry."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
