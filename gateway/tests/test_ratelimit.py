"""Rate limits shared across gateway replicas (two gateway processes, one Redis), their headers
(draft-ietf-httpapi-ratelimit-headers), and what happens when Redis is unreachable."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

import httpx

from tongban_gateway.ratelimit import LocalBuckets
from tongban_kit.testing.helpers import eventually

from .conftest import ISSUER, PREFIX, Gateway, ThreadServer
from .test_proxy import assert_problem

ROUTES = [
    {"prefix": PREFIX, "upstream": "org", "public": True, "rate_limit": {"per_second": 0.2, "burst": 4}},
    {"prefix": "/api/v1/private", "upstream": "org", "rate_limit": {"per_second": 0.2, "burst": 2}},
    {"prefix": "/api/v1/roomy", "upstream": "org", "public": True},
]
RATELIMIT = re.compile(r'"(client|ip)";r=(\d+);t=(\d+)')


def remaining(resp: httpx.Response) -> tuple[str, int]:
    match = RATELIMIT.fullmatch(resp.headers["ratelimit"])
    assert match, resp.headers["ratelimit"]
    return match.group(1), int(match.group(2))


async def test_two_replicas_share_one_bucket_per_ip(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer, shared_redis: str
) -> None:
    ns = f"tongban-test:{secrets.token_hex(4)}"
    a = start_gateway({"org": [upstream.url]}, ROUTES, rate_limit_namespace=ns)
    b = start_gateway({"org": [upstream.url]}, ROUTES, rate_limit_namespace=ns)
    async with httpx.AsyncClient(timeout=10) as c:
        seen = []
        for gw in (a, b, a, b):
            resp = await c.get(gw.url + PREFIX + "/echo")
            assert resp.status_code == 200, resp.text
            assert resp.headers["ratelimit-policy"] == '"ip";q=4;w=20'
            seen.append(remaining(resp))
        assert seen == [("ip", 3), ("ip", 2), ("ip", 1), ("ip", 0)]
        for gw in (b, a):
            resp = await c.get(gw.url + PREFIX + "/echo")
            body = assert_problem(resp, 429, "rate-limited")
            assert resp.headers["retry-after"] in ("4", "5") and "try again" in body["detail"]
            assert remaining(resp)[1] == 0 and resp.headers["ratelimit-policy"] == '"ip";q=4;w=20'
        # routes without their own limit use the gateway default bucket, untouched by the above
        roomy = await c.get(a.url + "/api/v1/roomy")
        assert roomy.status_code in (200, 404) and roomy.headers["ratelimit-policy"] == '"ip";q=100;w=2'
        metrics = (await c.get(a.url + "/metrics")).text
        assert f'gateway_rate_limited_total{{partition="ip",route="{PREFIX}"}} 1.0' in metrics


async def test_callers_with_tokens_have_a_bucket_per_client(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer, shared_redis: str
) -> None:
    ns = f"tongban-test:{secrets.token_hex(4)}"
    a = start_gateway({"org": [upstream.url]}, ROUTES, rate_limit_namespace=ns)
    b = start_gateway({"org": [upstream.url]}, ROUTES, rate_limit_namespace=ns)
    app1 = {"Authorization": f"Bearer {ISSUER.mint(client_id='app-one')}"}
    app1_again = {"Authorization": f"Bearer {ISSUER.mint(client_id='app-one', sub='user-2')}"}
    app2 = {"Authorization": f"Bearer {ISSUER.mint(client_id='app-two')}"}
    async with httpx.AsyncClient(timeout=10) as c:
        r1 = await c.get(a.url + "/api/v1/private/x", headers=app1)
        r2 = await c.get(b.url + "/api/v1/private/x", headers=app1_again)  # same client, other user and replica
        assert (remaining(r1), remaining(r2)) == (("client", 1), ("client", 0))
        assert_problem(await c.get(a.url + "/api/v1/private/x", headers=app1), 429, "rate-limited")
        other = await c.get(b.url + "/api/v1/private/x", headers=app2)
        assert other.status_code != 429 and remaining(other) == ("client", 1)
        # a refused token never reaches the limiter, so nobody spends another client's tokens
        assert_problem(await c.get(a.url + "/api/v1/private/x"), 401)


async def test_store_down_fails_open_with_a_warning(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer, dead_url: str
) -> None:
    gw = start_gateway({"org": [upstream.url]}, ROUTES, redis_url=dead_url.replace("http", "redis"))
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
        statuses = [(await c.get(PREFIX + "/echo")).status_code for _ in range(8)]  # beyond the burst of 4
        assert statuses == [200] * 8
        resp = await c.get(PREFIX + "/echo")
        assert "ratelimit" not in resp.headers
        ready = (await c.get("/healthz/dependencies")).json()
        assert ready["dependencies"]["rate_limits"].startswith("degraded: store unreachable")

    async def warned() -> bool | None:
        return True if "rate-limit store unreachable" in gw.log.read_text() else None

    await eventually(warned, what="a logged warning")
    assert "serving without limits" in gw.log.read_text()


async def test_store_down_can_fail_closed(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer, dead_url: str
) -> None:
    gw = start_gateway(
        {"org": [upstream.url]}, ROUTES, redis_url=dead_url.replace("http", "redis"), rate_limit_fail_open="false"
    )
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
        resp = await c.get(PREFIX + "/echo")
        assert_problem(resp, 503, "rate-limit-unavailable")
        assert resp.headers["retry-after"] == "2"


def test_local_buckets_refill_at_their_rate_and_forget_full_ones() -> None:
    now = [100.0]
    buckets = LocalBuckets(clock=lambda: now[0])
    assert [buckets.take("k", 0.5, 2)[0] for _ in range(3)] == [True, True, False]
    now[0] += 2.0  # one token back
    assert buckets.take("k", 0.5, 2) == (True, 0.0)
    assert buckets.take("other", 0.5, 2)[0] is True  # buckets are per key
    now[0] += 10.0
    buckets.prune()
    assert buckets.buckets == {}
    buckets.MAX_BUCKETS = 3  # a flood of new callers never grows the table past its bound
    for n in range(10):
        buckets.take(f"ip-{n}", 0.5, 2)
    assert len(buckets.buckets) == 3 and "ip-9" in buckets.buckets


async def test_without_redis_a_single_gateway_limits_in_its_own_process(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer
) -> None:
    gw = start_gateway({"org": [upstream.url]}, ROUTES, redis_url="")
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
        seen = [remaining(await c.get(PREFIX + "/echo")) for _ in range(4)]
        assert seen == [("ip", 3), ("ip", 2), ("ip", 1), ("ip", 0)]
        assert_problem(await c.get(PREFIX + "/echo"), 429, "rate-limited")
        assert (await c.get("/healthz/dependencies")).json()["dependencies"]["rate_limits"] == "ok"


async def test_rate_limits_can_be_switched_off(start_gateway: Callable[..., Gateway], upstream: ThreadServer) -> None:
    gw = start_gateway({"org": [upstream.url]}, ROUTES, rate_limits="false")
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
        statuses = [(await c.get(PREFIX + "/echo")).status_code for _ in range(6)]
    assert statuses == [200] * 6
