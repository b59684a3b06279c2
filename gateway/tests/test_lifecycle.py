"""The access log's fields, and graceful shutdown: in-flight requests finish, new connections are refused."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable

import httpx
import pytest

from tongban_kit.testing.helpers import eventually

from .conftest import ISSUER, PREFIX, Gateway, ThreadServer

ROUTES = [{"prefix": PREFIX, "upstream": "org", "scopes": {"*": ["org:read"]}}]


async def test_access_log_names_request_client_route_status_and_upstream_time(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer
) -> None:
    gw = start_gateway({"org": [upstream.url]}, ROUTES)
    token = ISSUER.mint(scope="org:read", client_id="app-logged")
    async with httpx.AsyncClient(base_url=gw.url) as c:
        resp = await c.get(PREFIX + "/echo/logged", headers={"Authorization": f"Bearer {token}"})
    rid = resp.headers["x-request-id"]

    async def line() -> dict[str, object] | None:
        for raw in gw.log.read_text().splitlines():
            if rid in raw and "/echo/logged" in raw:
                entry: dict[str, object] = json.loads(raw)
                return entry
        return None

    entry = await eventually(line, what="the access-log line")
    assert entry["request_id"] == rid and entry["client_id"] == "app-logged" and entry["status"] == 200
    assert entry["route"] == PREFIX + "/*" and entry["upstream"] == "org"
    assert isinstance(entry["upstream_ms"], float) and 0 <= entry["upstream_ms"] <= entry["duration_ms"]  # type: ignore[operator]


async def test_sigterm_drains_in_flight_requests(start_gateway: Callable[..., Gateway], upstream: ThreadServer) -> None:
    routes = [{"prefix": PREFIX, "upstream": "org", "public": True}]
    gw = start_gateway({"org": [upstream.url]}, routes)
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
        slow = asyncio.create_task(c.get(PREFIX + "/slow", params={"seconds": 1.5}))
        await asyncio.sleep(0.5)  # in flight
        gw.proc.send_signal(signal.SIGTERM)
        resp = await slow
        assert resp.status_code == 200 and resp.json() == {"status": "late"}
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=gw.url, timeout=2) as fresh:
            await fresh.get("/healthz")
    # uvicorn re-raises the signal once drained, so the exit status reports SIGTERM
    assert await asyncio.to_thread(gw.proc.wait, 10) in (0, -signal.SIGTERM)
