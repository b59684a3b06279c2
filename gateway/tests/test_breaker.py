"""Circuit breakers per upstream instance: the state machine, round-robin that skips open instances, and a real
upstream killed mid-run (503s while its breaker is open, then recovery once it is back)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from tongban_gateway.config import Settings
from tongban_gateway.upstreams import Breaker, Upstreams

from .conftest import PREFIX, Gateway, ThreadServer, upstream_app
from .test_proxy import assert_problem


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_probes_once() -> None:
    clock = Clock()
    states: list[str] = []
    b = Breaker("org[0]", failures=3, open_seconds=5, on_change=states.append, clock=clock)
    b.failure()
    b.failure()
    b.success()  # an answer resets the streak
    b.failure()
    b.failure()
    assert b.state == "closed" and b.allow()
    b.failure()
    assert b.state == "open" and not b.allow() and b.retry_after() == 5
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.2
    assert b.allow() and b.state == "half_open"
    assert not b.allow(), "one probe at a time"
    b.failure()  # the probe failed: open again, for a full period
    assert b.state == "open" and not b.allow() and b.retry_after() == 5
    clock.now += 5
    assert b.allow()
    b.release()  # the probe ended without a verdict (client left): the next request probes
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow() and b.allow()
    assert states == ["open", "half_open", "open", "half_open", "closed"]


def test_round_robin_skips_instances_whose_breaker_is_open() -> None:
    settings = Settings(upstreams={"org": ["http://a", "http://b", "http://c"]}, breaker_failures=1)
    ups = Upstreams(settings)
    firsts = [next(ups.candidates("org"))[0].base_url for _ in range(3)]
    assert firsts == ["http://a", "http://b", "http://c"]
    ups.breakers["org"][1].failure()
    order = [[u.base_url for u, _ in ups.candidates("org")] for _ in range(3)]
    assert order == [["http://a", "http://c"], ["http://c", "http://a"], ["http://c", "http://a"]]
    for b in ups.breakers["org"]:
        b.failure()
    assert list(ups.candidates("org")) == [] and 0 < ups.retry_after("org") <= settings.breaker_open_seconds


async def test_killed_upstream_gives_503s_then_recovers(start_gateway: Callable[..., Gateway]) -> None:
    server = ThreadServer(upstream_app()).__enter__()
    port = server.port
    routes = [{"prefix": PREFIX, "upstream": "flaky", "public": True}]
    gw = start_gateway({"flaky": [server.url]}, routes, breaker_failures="3", breaker_open_seconds="0.5")
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
        assert (await c.get(PREFIX + "/echo")).status_code == 200
        server.__exit__(None, None, None)  # killed mid-run
        statuses = [(await c.get(PREFIX + "/echo")).status_code for _ in range(8)]
        assert statuses[:3] == [502, 502, 502] and set(statuses[3:]) == {503}, statuses
        resp = await c.get(PREFIX + "/echo")
        body = assert_problem(resp, 503, "upstream-unavailable")
        assert body["upstream"] == "flaky" and "flaky" in body["detail"] and str(port) not in resp.text
        assert resp.headers["retry-after"] == "1"  # the open period, rounded up
        metrics = (await c.get("/metrics")).text
        assert 'gateway_breaker_state{instance="0",upstream="flaky"} 1.0' in metrics
        assert 'gateway_upstream_requests_total{outcome="circuit_open",upstream="flaky"}' in metrics

        revived = ThreadServer(upstream_app(), port=port).__enter__()  # back on the same address
        try:
            for _ in range(100):
                resp = await c.get(PREFIX + "/echo")
                if resp.status_code == 200:
                    break
                assert resp.status_code in (502, 503)
                await asyncio.sleep(0.05)
            assert resp.status_code == 200, "the half-open probe closed the breaker"
            assert [(await c.get(PREFIX + "/echo")).status_code for _ in range(5)] == [200] * 5
            metrics = (await c.get("/metrics")).text
            assert 'gateway_breaker_state{instance="0",upstream="flaky"} 0.0' in metrics
        finally:
            revived.__exit__(None, None, None)
