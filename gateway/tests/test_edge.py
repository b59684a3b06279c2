"""CORS for the registered apps' origins and security headers on every answer, through a real gateway."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tongban_gateway.origins import RPC_WEB_ORIGINS, WebOriginsReply, WebOriginsRequest
from tongban_kit.events import CloudEvent, publish_event
from tongban_kit.nats import Bus
from tongban_kit.problems import PROBLEM_JSON
from tongban_kit.rpc import RpcServer
from tongban_kit.testing.helpers import eventually

from .conftest import ISSUER, PREFIX, Gateway, ThreadServer
from .test_access import bearer
from .test_proxy import assert_problem

APP = "https://app.example.gov.cn"
ROUTES = [
    {"prefix": PREFIX, "upstream": "org", "scopes": {"GET": ["org:read"], "*": ["org:write"]}},
    {"prefix": "/oauth2", "upstream": "org", "public": True},
]


@pytest.fixture(scope="module")
def edge(start_gateway: Callable[..., Gateway], upstream: ThreadServer) -> Gateway:
    return start_gateway({"org": [upstream.url]}, ROUTES, cors_origins=f'["{APP}", "http://127.0.0.1:5173"]')


def assert_security_headers(resp: httpx.Response) -> None:
    h = resp.headers
    assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "no-referrer"
    assert h["strict-transport-security"] == "max-age=31536000"  # the public URL is https


async def test_preflight_from_a_registered_origin(edge: Gateway) -> None:
    async with httpx.AsyncClient(base_url=edge.url) as c:
        resp = await c.options(
            PREFIX + "/echo",
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
    assert resp.status_code == 204  # answered by the gateway: preflights carry no token
    assert resp.headers["access-control-allow-origin"] == APP
    assert "POST" in resp.headers["access-control-allow-methods"]
    assert resp.headers["access-control-allow-headers"] == "authorization, content-type"
    assert "access-control-allow-credentials" not in resp.headers  # tokens travel in headers, not cookies
    assert "Origin" in resp.headers["vary"]
    assert_security_headers(resp)
    async with httpx.AsyncClient(base_url=edge.url) as c:
        metrics = (await c.get("/metrics")).text
    assert 'route="cors-preflight"' in metrics and 'route="unmatched"' not in metrics


async def test_preflight_from_another_origin_is_refused(edge: Gateway) -> None:
    async with httpx.AsyncClient(base_url=edge.url) as c:
        resp = await c.options(
            PREFIX + "/echo", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
        )
        assert resp.status_code == 403 and resp.headers["content-type"] == PROBLEM_JSON
        assert "access-control-allow-origin" not in resp.headers
        bad = await c.options(
            PREFIX + "/echo",
            headers={"Origin": APP, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "a b"},
        )
        assert bad.status_code == 400


async def test_actual_requests_get_cors_headers_only_for_registered_origins(edge: Gateway) -> None:
    token = {"Authorization": f"Bearer {ISSUER.mint(scope='org:read')}"}
    async with httpx.AsyncClient(base_url=edge.url) as c:
        ok = await c.get(PREFIX + "/echo", headers={**token, "Origin": APP})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == APP and "Origin" in ok.headers["vary"]
        assert "X-Request-ID" in ok.headers["access-control-expose-headers"]
        denied = await c.get(PREFIX + "/echo", headers={"Origin": APP})  # a 401 is readable by the app too
        assert_problem(denied, 401)
        assert denied.headers["access-control-allow-origin"] == APP
        assert "WWW-Authenticate" in denied.headers["access-control-expose-headers"]
        foreign = await c.get(PREFIX + "/echo", headers={**token, "Origin": "https://evil.example"})
        assert foreign.status_code == 200 and "access-control-allow-origin" not in foreign.headers


async def test_security_headers_on_every_answer(edge: Gateway) -> None:
    token = {"Authorization": f"Bearer {ISSUER.mint(scope='org:read')}"}
    async with httpx.AsyncClient(base_url=edge.url) as c:
        for resp in (
            await c.get(PREFIX + "/echo", headers=token),
            await c.get(PREFIX + "/echo"),
            await c.get("/nothing"),
            await c.get("/healthz"),
            await c.get("/oauth2/jwks"),
        ):
            assert_security_headers(resp)
            assert resp.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        docs = await c.get("/docs")  # a page with its own policy keeps it
        assert_security_headers(docs)
        assert "script-src 'sha256-" in docs.headers["content-security-policy"]


async def test_registered_apps_origins_come_from_the_client_registry(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer, auth_bus: Bus
) -> None:
    portal, later = "https://portal.example.gov.cn", "https://later.example.gov.cn:8443"
    registered = [portal]

    async def answer(_: WebOriginsRequest) -> WebOriginsReply:
        return WebOriginsReply(origins=list(registered))

    registry = RpcServer(auth_bus, "auth", "0.0.0")  # stands in for the auth service's client registry
    registry.add(RPC_WEB_ORIGINS, answer)
    await registry.start()
    try:
        gw = start_gateway({"org": [upstream.url]}, ROUTES, cors_refresh_seconds="3600")
        async with httpx.AsyncClient(base_url=gw.url) as c:

            async def preflight(origin: str) -> int:
                headers = {"Origin": origin, "Access-Control-Request-Method": "GET"}
                return (await c.options(PREFIX + "/echo", headers=headers)).status_code

            async def allowed(origin: str) -> bool | None:
                return True if await preflight(origin) == 204 else None

            # the gateway's first question may come while this test's loop was blocked starting it: it asks again
            await eventually(lambda: allowed(portal), timeout=15, what="the registered app's origin allowed")
            assert await preflight(later) == 403
            ready = (await c.get("/healthz/dependencies")).json()
            assert ready["dependencies"]["cors_origins"] == "ok"
            registered.append(later)  # a client was enabled again: its event makes the gateway ask again at once
            event = CloudEvent(
                source="/tongban/auth",
                type="auth.client.enabled.v1",
                subject="spa",
                data={"client_id": "spa", "status": "active", "actor": "admin"},
            )
            await publish_event(auth_bus, event)
            await eventually(lambda: allowed(later), what="the new app's origin allowed")
            got = await c.get(PREFIX + "/echo", headers={"Origin": later, **bearer(ISSUER.mint(scope="org:read"))})
            assert got.headers["access-control-allow-origin"] == later
    finally:
        await registry.stop()
