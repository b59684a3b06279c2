"""Management views (metrics, readiness, dependencies) stay off the public port, however the path is spelled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from tongban_kit.natsserver import free_port
from tongban_kit.problems import PROBLEM_JSON

from .conftest import PREFIX, Gateway, ThreadServer

#: the API and a catch-all row: no spelling of a management path may reach a service's own /metrics through it
ROUTES = [{"prefix": PREFIX, "upstream": "org", "public": True}, {"prefix": "/", "upstream": "org", "public": True}]
#: spellings of the metrics and dependency views a lenient server or router might take for them
VIEW_SPELLINGS = [
    "/metrics",
    "/metrics/",
    "//metrics",
    "/%6detrics",
    "/%2fmetrics",
    "/api/../metrics",
    "/api/%2e%2e/metrics",
    "/./metrics",
    "/metrics.",
    "/metrics..",
    "/METRICS",
    "/metrics?x=1",
    "/metrics#frag",
    "/healthz/dependencies",
    "/healthz//dependencies",
    "/healthz/dependencies/",
    PREFIX + "/../../../metrics",
    PREFIX + "/%2e%2e/%2e%2e/%2e%2e/metrics",
    PREFIX + "/..%2f..%2f..%2fmetrics",
]
READY_SPELLINGS = ["/readyz", "//readyz", "/readyz/", "/%72eadyz", PREFIX + "/../../../readyz"]


async def raw_request(gw: Gateway, method: str, target: str) -> tuple[int, bytes]:
    """Send the request target byte for byte (an HTTP client would normalise it) and read the answer."""
    host, port = gw.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode())
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    return int(answer.split(b" ", 2)[1]), answer


async def assert_not_served(gw: Gateway, targets: list[str]) -> None:
    for target in targets:
        for method in ("GET", "HEAD"):
            status, answer = await raw_request(gw, method, target)
            assert status in (404, 405), (method, target, answer[:300])
            assert b"stand_in_secret" not in answer and b"http_requests_total" not in answer, target
            assert b'"checks"' not in answer and b'"upstreams"' not in answer, target


async def test_a_management_port_keeps_management_views_off_the_public_port(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer
) -> None:
    port = free_port()
    gw = start_gateway({"org": [upstream.url]}, ROUTES, management_port=str(port))
    async with httpx.AsyncClient() as c:
        hidden = await c.get(gw.url + "/metrics")
        assert hidden.status_code == 404 and hidden.headers["content-type"] == PROBLEM_JSON
        await assert_not_served(gw, VIEW_SPELLINGS + READY_SPELLINGS)
        assert (await c.get(gw.url + "/healthz")).status_code == 200  # load balancers may still probe here
        routed = await c.get(gw.url + "/api/v1/elsewhere")
        assert routed.status_code == 404 and "stand-in" not in routed.text  # the catch-all does route
        ops = f"http://127.0.0.1:{port}"
        metrics = await c.get(ops + "/metrics")
        assert metrics.status_code == 200 and "http_requests_total" in metrics.text
        assert "stand_in_secret" not in metrics.text
        assert (await c.get(ops + "/readyz")).status_code == 200
        assert (await c.get(ops + "/healthz/dependencies")).json()["upstreams"] == {"org": "ok"}
        assert (await c.get(ops + PREFIX + "/echo")).status_code == 404  # no API on the management port


async def test_in_production_without_a_management_port_no_views_are_served(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer
) -> None:
    gw = start_gateway({"org": [upstream.url]}, ROUTES, environment="prod")
    await assert_not_served(gw, VIEW_SPELLINGS)
    async with httpx.AsyncClient(base_url=gw.url) as c:
        ready = await c.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok"}  # the orchestrator's probe, nothing more
    assert "no management port" in gw.log.read_text()


async def test_in_development_without_a_management_port_views_share_the_public_port(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer
) -> None:
    gw = start_gateway({"org": [upstream.url]}, ROUTES, environment="dev")
    async with httpx.AsyncClient(base_url=gw.url) as c:
        assert "http_requests_total" in (await c.get("/metrics")).text  # `make run`: listening on 127.0.0.1
        assert (await c.get("/healthz/dependencies")).json()["upstreams"] == {"org": "ok"}
    for target in VIEW_SPELLINGS:  # other spellings may answer the gateway's own view, never a service's
        status, answer = await raw_request(gw, "GET", target)
        assert b"stand_in_secret" not in answer and status != 500, target
