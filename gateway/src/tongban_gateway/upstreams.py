"""The upstream services: one shared HTTP client session, round-robin over each service's instances and a
circuit breaker per instance (passive health: instances that keep failing are skipped until a probe succeeds)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

from tongban_gateway.config import Settings
from tongban_gateway.metrics import BREAKER_STATES, GatewayMetrics
from tongban_gateway.upstream_http import Pool
from tongban_kit.context import current_headers

log = logging.getLogger(__name__)

#: seconds an upstream's /readyz or /openapi.json may take
PROBE_TIMEOUT = 2.0
#: idle keep-alive kept below uvicorn's 5 s so the upstream never closes a connection we are about to reuse
KEEPALIVE_SECONDS = 4.0


class Breaker:
    """The circuit breaker of one upstream instance.

    Closed: requests pass; `failures` consecutive failures open it. Open: requests are refused for
    `open_seconds`; then one probe request passes (half-open): success closes it, failure opens it again.
    """

    __slots__ = ("_clock", "_gauge", "failures", "instance", "open_seconds", "opened_at", "probing", "state", "streak")

    def __init__(
        self,
        instance: str,
        *,
        failures: int,
        open_seconds: float,
        on_change: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.instance = instance
        self.failures, self.open_seconds = failures, open_seconds
        self.state = "closed"
        self.streak = 0
        self.opened_at = 0.0
        self.probing = False
        self._gauge = on_change
        self._clock = clock

    def _set(self, state: str) -> None:
        if state != self.state:
            log.warning("circuit breaker %s", state.replace("_", "-"), extra={"instance": self.instance})
            self.state = state
            if self._gauge is not None:
                self._gauge(state)

    def allow(self) -> bool:
        """True when a request may go to this instance now (takes the one probe slot when half-open)."""
        if self.state == "closed":
            return True
        if self.probing:
            return False
        if self.state == "open" and self._clock() - self.opened_at < self.open_seconds:
            return False
        self._set("half_open")
        self.probing = True
        return True

    def retry_after(self) -> float:
        """Seconds until this instance takes a request again (0 when it takes one now)."""
        if self.state == "closed" or (self.state == "half_open" and not self.probing):
            return 0.0
        return max(0.0, self.open_seconds - (self._clock() - self.opened_at))

    def success(self) -> None:
        """The instance answered: close the breaker."""
        self.streak = 0
        self.probing = False
        self._set("closed")

    def failure(self) -> None:
        """No answer (connection refused, timeout, broken off): count it; open the breaker at the limit."""
        self.streak += 1
        if self.state == "half_open" or self.streak >= self.failures:
            self.opened_at = self._clock()
            self.probing = False
            self._set("open")

    def release(self) -> None:
        """The request ended without telling anything about the instance: free the probe slot."""
        self.probing = False


class Upstreams:
    """Base URLs per service, a connection pool and a breaker per instance, and probes of the services' health.

    Proxied requests go through the pools (`upstream_http`, the hot path); probes and catalogue fetches through
    one aiohttp session.
    """

    def __init__(self, settings: Settings, metrics: GatewayMetrics | None = None) -> None:
        self.settings = settings
        self.targets: dict[str, list[str]] = dict(settings.upstreams)
        self._turn: dict[str, int] = dict.fromkeys(self.targets, 0)
        self._session: aiohttp.ClientSession | None = None
        self.breakers: dict[str, list[Breaker]] = {}
        self.pools: dict[str, list[Pool]] = {
            name: [Pool(url, max_idle=settings.pool_per_host, idle_seconds=KEEPALIVE_SECONDS) for url in urls]
            for name, urls in self.targets.items()
        }
        for name, urls in self.targets.items():
            self.breakers[name] = [
                Breaker(
                    f"{name}[{i}]",
                    failures=settings.breaker_failures,
                    open_seconds=settings.breaker_open_seconds,
                    on_change=_gauge_setter(metrics, name, i),
                )
                for i in range(len(urls))
            ]

    async def start(self) -> None:
        """Open the shared session (called once from the app lifespan)."""
        s = self.settings
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=s.pool_per_host,
            keepalive_timeout=KEEPALIVE_SECONDS,
            ttl_dns_cache=60,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout_seconds),
            auto_decompress=False,  # bodies pass through as the upstream encoded them
            cookie_jar=aiohttp.DummyCookieJar(),  # never carry one caller's cookies to another
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            trust_env=False,
        )

    async def close(self) -> None:
        """Close the session and the pooled connections."""
        for pools in self.pools.values():
            for pool in pools:
                pool.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared client session."""
        if self._session is None:
            raise RuntimeError("upstream session not started (the app lifespan did not run)")
        return self._session

    def instances(self, name: str) -> list[str]:
        """The service's base URLs, starting at the next one in round-robin order."""
        urls = self.targets[name]
        turn = self._turn[name]
        self._turn[name] = (turn + 1) % len(urls)
        return urls[turn:] + urls[:turn]

    def candidates(self, name: str) -> Iterator[tuple[Pool, Breaker]]:
        """The service's instances in round-robin order, skipping those whose breaker refuses requests.

        Lazy: an instance's breaker is asked (and a half-open probe slot taken) only when the caller moves on to it.
        """
        pools, breakers = self.pools[name], self.breakers[name]
        turn = self._turn[name]
        n = len(pools)
        self._turn[name] = (turn + 1) % n
        for k in range(n):
            i = (turn + k) % n
            if breakers[i].allow():
                yield pools[i], breakers[i]

    def retry_after(self, name: str) -> float:
        """Seconds until some instance of the service takes requests again."""
        return min(b.retry_after() for b in self.breakers[name])

    async def _probe(self, url: str) -> int | None:
        try:
            timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
            async with self.session.get(url, timeout=timeout, headers=current_headers(), allow_redirects=False) as resp:
                await resp.read()
                return resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.info("upstream probe failed", extra={"url": url, "error": type(exc).__name__})
            return None

    async def _service_ready(self, name: str) -> str:
        statuses = await asyncio.gather(*(self._probe(f"{base}/readyz") for base in self.targets[name]))
        ready = sum(1 for st in statuses if st == 200)
        if ready == len(statuses):
            return "ok"
        if ready:
            return f"degraded: {ready} of {len(statuses)} instances ready"
        return "unavailable: no instance ready"

    async def readiness(self) -> dict[str, str]:
        """Per service: 'ok', 'degraded: …' (still serving) or 'unavailable: …'."""
        names = list(self.targets)
        results = await asyncio.gather(*(self._service_ready(n) for n in names))
        return dict(zip(names, results, strict=True))

    async def fetch_json(self, name: str, path: str) -> Any | None:
        """GET `path` from the first instance that answers 200 with JSON; None when none does."""
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
        for base in self.instances(name):
            try:
                async with self.session.get(
                    f"{base}{path}", timeout=timeout, headers=current_headers(), allow_redirects=False
                ) as resp:
                    if resp.status == 200:
                        return await resp.json(content_type=None)
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
                log.info("upstream fetch failed", extra={"upstream": name, "path": path, "error": type(exc).__name__})
        return None


def _gauge_setter(metrics: GatewayMetrics | None, name: str, index: int) -> Callable[[str], None] | None:
    if metrics is None:
        return None
    gauge = metrics.breaker_state.labels(name, str(index))
    gauge.set(0)
    return lambda state: gauge.set(BREAKER_STATES[state])
