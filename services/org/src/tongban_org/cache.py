"""A per-replica cache of units for RPC reads, kept fresh by the service's own unit events."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from sqlmodel import col, select

from tongban_kit.db import Database
from tongban_kit.nats import Bus
from tongban_org.models import Unit, UnitPublic

log = logging.getLogger(__name__)


class UnitCache:
    """Units by id. Any unit event drops that unit (a move drops everything: descendants' depths change).

    Reads after a write may lag by the time the event takes to arrive (milliseconds); a load that overlaps an
    invalidation is not stored, and entries expire after `ttl` seconds in case an event is ever missed.
    """

    def __init__(self, db: Database, *, max_size: int = 50_000, ttl: float = 30.0) -> None:
        self.db = db
        self.max_size = max_size
        self.ttl = ttl
        self._units: OrderedDict[str, tuple[float, UnitPublic]] = OrderedDict()
        self._generation = 0
        self._sub: Subscription | None = None
        self.hits = self.misses = 0

    async def start(self, bus: Bus) -> None:
        """Follow unit events (a plain subscription: every replica sees every event)."""
        self._sub = await bus.nc.subscribe(bus.subject("org.unit.*.v1"), cb=self._on_event)

        async def reconnected() -> None:
            self.clear()  # events may have been missed while disconnected

        bus.reconnect_hooks.append(reconnected)

    async def stop(self) -> None:
        """Stop following events."""
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # already closed
                pass

    async def _on_event(self, msg: Msg) -> None:
        if msg.subject.endswith(".moved.v1"):
            self.clear()
            return
        try:
            import orjson

            unit_id = orjson.loads(msg.data).get("subject")
        except Exception:
            self.clear()
            return
        self._generation += 1
        self._units.pop(str(unit_id), None)

    def clear(self) -> None:
        """Forget everything."""
        self._generation += 1
        self._units.clear()

    async def get_many(self, ids: list[str]) -> dict[str, UnitPublic]:
        """The units found among `ids` (cached, or loaded in one query)."""
        now = time.monotonic()
        out: dict[str, UnitPublic] = {}
        missing: list[str] = []
        for i in ids:
            hit = self._units.get(i)
            if hit is not None and now - hit[0] < self.ttl:
                out[i] = hit[1]
                self._units.move_to_end(i)
            else:
                missing.append(i)
        self.hits += len(out)
        self.misses += len(missing)
        if missing:
            generation = self._generation
            async with self.db.read_session() as s:
                rows = (await s.exec(select(Unit).where(col(Unit.id).in_(missing)))).all()
            loaded = {u.id: UnitPublic.model_validate(u, from_attributes=True) for u in rows}
            out.update(loaded)
            if self._sub is not None and generation == self._generation:  # following events, and no race
                for uid, unit in loaded.items():
                    self._units[uid] = (now, unit)
                while len(self._units) > self.max_size:
                    self._units.popitem(last=False)
        return out
