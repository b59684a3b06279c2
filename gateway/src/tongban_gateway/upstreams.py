"""The upstream services: one shared HTTP client session and round-robin over each service's instances."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from tongban_gateway.config import Settings
from tongban_kit.context import current_headers

log = logging.getLogger(__name__)

#: seconds an upstream's /readyz or /openapi.json may take
PROBE_TIMEOUT = 2.0
#: idle keep-alive kept below uvicorn's 5 s so the upstream never closes a connection we are about to reuse
KEEPALIVE_SECONDS = 4.0


class Upstreams:
    """Base URLs per service, the shared client session and probes of the services' health."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.targets: dict[str, list[str]] = dict(settings.upstreams)
        self._turn: dict[str, int] = dict.fromkeys(self.targets, 0)
        self._session: aiohttp.ClientSession | None = None

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
        """Close the session and its pooled connections."""
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
