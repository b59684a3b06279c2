"""Integration tests of the gateway's own endpoints: readiness, aggregated OpenAPI, docs, metrics, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from tongban_gateway.app import create_app
from tongban_gateway.config import Settings
from tongban_kit.natsserver import free_port
from tongban_kit.problems import PROBLEM_JSON
from tongban_kit.testing.helpers import eventually

from .conftest import ISSUER, PREFIX, Gateway, ThreadServer, upstream_app


async def test_healthz(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as c:
        resp = await c.get("/healthz")
    assert resp.json() == {"status": "ok"} and resp.headers["x-request-id"]


async def test_ready_while_an_upstream_is_down_which_the_dependency_view_reports(
    gateway: Gateway, dead_url: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as c:
        resp = await c.get("/readyz")
        assert resp.status_code == 200 and resp.json() == {"status": "ok"}  # it can route: `org` answers
        view = await c.get("/healthz/dependencies")
    assert view.status_code == 200 and view.json()["status"] == "degraded"
    checks = view.json()["upstreams"]
    assert checks["org"] == "ok"
    assert checks["ghost"].startswith("unavailable")
    assert checks["mixed"].startswith("degraded")
    assert dead_url.rsplit(":", 1)[1] not in view.text


async def test_an_upstream_and_nats_down_leave_the_gateway_ready(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer, dead_url: str
) -> None:
    gw = start_gateway(
        {"org": [upstream.url], "auth": [dead_url]},
        nats_url=dead_url.replace("http", "nats"),
        revocation_replay_wait_seconds="0.2",
    )
    async with httpx.AsyncClient(base_url=gw.url) as c:
        ready = await c.get("/readyz")
        assert ready.status_code == 200, ready.text
        token = ISSUER.mint(scope="org:read")
        echoed = await c.get(PREFIX + "/echo", headers={"Authorization": f"Bearer {token}"})
        assert echoed.status_code == 200  # and it does route
        view = (await c.get("/healthz/dependencies")).json()
        assert view["upstreams"] == {"org": "ok", "auth": "unavailable: no instance ready"}
        assert view["dependencies"]["nats"].startswith("degraded")
        metrics = (await c.get("/metrics")).text
    assert 'gateway_dependency_state{dependency="upstream/auth"} 2.0' in metrics
    assert 'gateway_dependency_state{dependency="upstream/org"} 0.0' in metrics
    assert 'gateway_dependency_state{dependency="nats"} 1.0' in metrics


async def test_not_ready_until_it_can_verify_tokens(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer
) -> None:
    port = free_port()
    gw = start_gateway({"org": [upstream.url]}, oidc_jwks_url=f"http://127.0.0.1:{port}/oauth2/jwks")
    async with httpx.AsyncClient(base_url=gw.url) as c:
        resp = await c.get("/readyz")
        assert resp.status_code == 503 and resp.headers["content-type"] == PROBLEM_JSON
        assert resp.headers["retry-after"] == "5" and "signing keys" in resp.json()["detail"]
        with ThreadServer(upstream_app(), port):  # the keys appear: the probe itself gets them fetched again

            async def ready() -> bool | None:
                return True if (await c.get("/readyz")).status_code == 200 else None

            await eventually(ready, timeout=30, what="ready once the keys can be fetched")


async def test_readyz_200_when_every_upstream_is_up(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer
) -> None:
    gw = start_gateway({"org": [upstream.url]})
    async with httpx.AsyncClient(base_url=gw.url) as c:
        resp = await c.get("/readyz")
        assert resp.status_code == 200, resp.text
        view = await c.get("/healthz/dependencies")
        assert view.json() == {
            "status": "degraded",
            "upstreams": {"org": "ok"},
            "dependencies": {
                "jwks": "ok",
                "nats": "ok",
                "rate_limits": "ok",
                # no client registry answers in this test: CORS allows only the fixed origins meanwhile
                "cors_origins": "degraded: registered apps' origins not loaded yet",
            },
        }
        assert (await c.get(PREFIX + "/echo")).status_code == 401  # the built-in route table wants a token
        token = ISSUER.mint(scope="org:read")
        echoed = await c.get(PREFIX + "/echo", headers={"Authorization": f"Bearer {token}"})
        assert echoed.json()["raw_path"] == PREFIX + "/echo"


async def test_openapi_merges_reachable_upstreams(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as c:
        resp = await c.get("/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["servers"] == [{"url": "https://gateway.example"}]
    assert {PREFIX + "/big", PREFIX + "/upload", PREFIX + "/echo{rest}"} <= set(doc["paths"])
    assert "/healthz" not in doc["paths"] and "/readyz" not in doc["paths"]  # not routed to the service
    assert "HTTPValidationError" in doc["components"]["schemas"]
    assert [t["name"] for t in doc["tags"]] == ["echo", "stream"]  # "ops" tags only unrouted paths
    assert doc["x-unavailable"] == ["ghost"]


async def test_docs_page_is_self_contained(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as c:
        resp = await c.get("/docs")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    page = resp.text
    assert "openapi.json" in page and "<script>" in page
    assert "src=" not in page and "http://" not in page and "https://" not in page
    assert "default-src 'none'" in resp.headers["content-security-policy"]


async def test_metrics_label_proxied_requests_by_route(gateway: Gateway) -> None:
    label = f'http_requests_total{{method="GET",route="{PREFIX}/*",status="200"}}'
    async with httpx.AsyncClient(base_url=gateway.url) as c:
        await c.get(PREFIX + "/echo/metrics")
        for _ in range(50):  # recorded just after the last byte is sent
            text = (await c.get("/metrics")).text
            if label in text:
                break
            await asyncio.sleep(0.02)
    assert label in text


async def test_unexpected_errors_answer_problem_json() -> None:
    app = create_app(Settings(upstreams={"auth": ["http://127.0.0.1:9"]}))

    def broken(name: str) -> None:
        raise RuntimeError("a bug")

    app.state.upstreams.candidates = broken
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as c:
        resp = await c.get("/.well-known/openid-configuration")  # a public route: no token check first
    assert resp.status_code == 500 and resp.headers["content-type"] == PROBLEM_JSON
    assert "request id" in resp.json()["detail"]
