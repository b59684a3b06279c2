"""Rate limits shared by every gateway replica: token buckets in Redis, one per (route policy, client or IP).

Redis rather than NATS KV: a bucket update is read-modify-write, and a Lua script does it atomically in one
round trip with the server's clock (no compare-and-swap retries between replicas, no clock skew between them),
and keys expire on their own once a bucket is full again. Headers follow draft-ietf-httpapi-ratelimit-headers:
`RateLimit-Policy: "client";q=100;w=2` and `RateLimit: "client";r=57;t=1`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from tongban_gateway.config import Settings
from tongban_gateway.metrics import GatewayMetrics
from tongban_gateway.resp import Redis, ReplyError, Script, StoreError
from tongban_gateway.routes import RateLimit, RouteEntry

log = logging.getLogger(__name__)

#: seconds the store is left alone after it failed (requests meanwhile follow the fail-open setting)
STORE_BACKOFF_SECONDS = 2.0
#: seconds between repeated warnings that the store is down
WARN_EVERY_SECONDS = 30.0

#: KEYS[1] the bucket; ARGV rate per second, burst. Returns {allowed, tokens left, seconds until the next token}.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one check: allowed or not, and the RateLimit headers to send either way."""

    allowed: bool
    headers: list[tuple[bytes, bytes]]
    retry_after: int
    #: refused because the store is down and the limiter fails closed
    store_down: bool = False


class LocalBuckets:
    """Token buckets in this process: exact for a single gateway (`make run`); with several replicas each would
    count on its own, which is why deployments share buckets in Redis."""

    #: buckets kept before full ones are dropped (a full bucket is the same as no bucket)
    MAX_BUCKETS = 100_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        #: key → [tokens, last update, rate, burst]
        self.buckets: dict[str, list[float]] = {}

    def take(self, key: str, rate: float, burst: int) -> tuple[bool, float]:
        """Take one token if there is one; (allowed, tokens left)."""
        now = self.clock()
        bucket = self.buckets.get(key)
        tokens = float(burst) if bucket is None else min(burst, bucket[0] + (now - bucket[1]) * rate)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        if bucket is None:
            if len(self.buckets) >= self.MAX_BUCKETS:
                self.prune()
                while len(self.buckets) >= self.MAX_BUCKETS:  # none refilled (a flood of new callers): oldest go
                    del self.buckets[next(iter(self.buckets))]
            self.buckets[key] = [tokens, now, rate, burst]
        else:
            bucket[0], bucket[1] = tokens, now
        return allowed, tokens

    def prune(self) -> None:
        """Drop the buckets that have refilled (they would start full anyway)."""
        now = self.clock()
        full = [k for k, (t, at, rate, burst) in self.buckets.items() if t + (now - at) * rate >= burst]
        for k in full:
            del self.buckets[k]


class RateLimiter:
    """Checks requests against their route's bucket: in Redis (shared by every replica; fails open or closed when
    Redis is down), or in this process when no Redis is configured."""

    def __init__(self, settings: Settings, metrics: GatewayMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.default = RateLimit(per_second=settings.rate_limit_per_second, burst=settings.rate_limit_burst)
        self.prefix = settings.rate_limit_namespace
        self.redis: Redis | None = None
        self.local = LocalBuckets()
        if settings.redis_url:
            self.redis = Redis(settings.redis_url, timeout=settings.rate_limit_timeout_seconds)
            self._script = Script(self.redis, _TOKEN_BUCKET)
        self._down_until = 0.0
        self._warned_at = -math.inf
        #: per route prefix: (policy, its key part, the RateLimit-Policy value per partition)
        self._policies: dict[str, tuple[RateLimit, str, dict[str, bytes]]] = {}

    @property
    def enabled(self) -> bool:
        """True when requests are limited at all."""
        return self.settings.rate_limits

    def _policy(self, route: RouteEntry) -> tuple[RateLimit, str, dict[str, bytes]]:
        found = self._policies.get(route.prefix)
        if found is None:
            limit = route.rate_limit or self.default
            scope = route.prefix if route.rate_limit else "*"
            window = max(1, math.ceil(limit.burst / limit.per_second))
            values = {p: f'"{p}";q={limit.burst};w={window}'.encode() for p in ("client", "ip")}
            found = self._policies[route.prefix] = (limit, scope, values)
        return found

    async def check(self, route: RouteEntry, client_id: str | None, ip: str) -> Decision | None:
        """Take a token from the caller's bucket; None when no limit applies (no store, or store down and failing open).

        Callers with a verified token share a bucket per client id; anonymous ones one per IP address.
        """
        if not self.settings.rate_limits:
            return None
        limit, scope, policies = self._policy(route)
        partition, who = ("client", client_id) if client_id else ("ip", ip)
        key = f"{self.prefix}:{scope}:{partition}:{who}"
        if self.redis is None:
            allowed, tokens = self.local.take(key, limit.per_second, limit.burst)
            return self._decide(route, limit, policies, partition, allowed, tokens)
        if time.monotonic() < self._down_until:
            return self._store_down(partition)
        try:
            allowed, left = await self._script(keys=[key], args=[limit.per_second, limit.burst])
        except (StoreError, ReplyError) as exc:
            self._down_until = time.monotonic() + STORE_BACKOFF_SECONDS
            if self.metrics is not None:
                self.metrics.rate_limit_store_errors.inc()
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_SECONDS:
                self._warned_at = now
                mode = "serving without limits" if self.settings.rate_limit_fail_open else "refusing requests"
                log.warning("rate-limit store unreachable (%s); %s", type(exc).__name__, mode)
            return self._store_down(partition)
        return self._decide(route, limit, policies, partition, bool(allowed), float(left))

    def _decide(
        self,
        route: RouteEntry,
        limit: RateLimit,
        policies: dict[str, bytes],
        partition: str,
        allowed: bool,
        tokens: float,
    ) -> Decision:
        remaining = math.floor(tokens)
        if allowed:
            reset = math.ceil((limit.burst - tokens) / limit.per_second) if remaining < limit.burst else 0
            retry = 0
        else:
            reset = retry = max(1, math.ceil((1 - tokens) / limit.per_second))
            if self.metrics is not None:
                self.metrics.rate_limited.labels(route.prefix, partition).inc()
        headers = [
            (b"ratelimit-policy", policies[partition]),
            (b"ratelimit", f'"{partition}";r={remaining};t={reset}'.encode()),
        ]
        return Decision(bool(allowed), headers, retry)

    def _store_down(self, partition: str) -> Decision | None:
        if self.settings.rate_limit_fail_open:
            return None
        return Decision(False, [], int(STORE_BACKOFF_SECONDS), store_down=True)

    async def ping(self) -> str:
        """'ok' when the store answers; for readiness."""
        if self.redis is None:
            return "ok"
        try:
            reply = await self.redis.execute("PING")
            if isinstance(reply, ReplyError):
                raise reply
        except (StoreError, ReplyError) as exc:
            mode = "serving without limits" if self.settings.rate_limit_fail_open else "refusing requests"
            return f"degraded: store unreachable ({type(exc).__name__}), {mode}"
        return "ok"

    async def close(self) -> None:
        """Close the connection pool."""
        if self.redis is not None:
            await self.redis.close()
