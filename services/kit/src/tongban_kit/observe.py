"""Request middleware (request id, trace context, access log, Prometheus metrics) and /metrics."""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tongban_kit.context import REQUEST_ID_HEADER, TRACEPARENT_HEADER, bind_from_headers

access_log = logging.getLogger("tongban.access")

#: scope key of a dict whose fields the access-log line of the request carries too
ACCESS_LOG_FIELDS = "tongban.access_log"
#: scope key where an ASGI app that routes by itself (the gateway's proxy) puts the route label of its metrics
ROUTE_TEMPLATE = "tongban.route"

_RID = REQUEST_ID_HEADER.lower().encode()
_TRACEPARENT = TRACEPARENT_HEADER.encode()

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    """Request counters and latency histograms in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and record its latency (label children cached: `labels()` is slow on a hot path)."""
        key = (method, route, status)
        counter = self._counted.get(key)
        if counter is None:
            counter = self._counted[key] = self.requests.labels(method, route, str(status))
        counter.inc()
        timed = self._timed.get(key[:2])
        if timed is None:
            timed = self._timed[(method, route)] = self.latency.labels(method, route)
        timed.observe(seconds)

    def render(self) -> Response:
        """The Prometheus text exposition."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _route_template(scope: Scope) -> str:
    label = scope.get(ROUTE_TEMPLATE)
    if label is not None:
        return str(label)
    app = scope.get("app")
    router = getattr(app, "router", None)
    for route in getattr(router, "routes", ()):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", scope["path"]))
    return "unmatched"


class ContextMiddleware:
    """Binds request id and traceparent, echoes them, logs access and records metrics."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: HttpMetrics,
        quiet_paths: tuple[str, ...] = ("/healthz", "/readyz", "/metrics"),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.quiet = quiet_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted: dict[str, str] = {}
        for k, v in scope["headers"]:
            if k in (_RID, _TRACEPARENT):
                wanted[k.decode("latin-1")] = v.decode("latin-1")
        rid, tc = bind_from_headers(wanted)
        start = time.perf_counter()
        status = 500
        extra = [
            (REQUEST_ID_HEADER.lower().encode(), rid.encode()),
            (TRACEPARENT_HEADER.encode(), tc.traceparent.encode()),
        ]

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = _route_template(scope)
            method = scope["method"]
            self.metrics.observe(method, route, status, elapsed)
            if scope["path"] not in self.quiet:
                fields: dict[str, Any] = {
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                }
                fields.update(scope.get(ACCESS_LOG_FIELDS) or ())  # what the app learned (client id, upstream time)
                access_log.info("%s %s %s", method, scope["path"], status, extra=fields)


async def metrics_endpoint(request: Request) -> Response:
    """Serve the app's metrics."""
    metrics: HttpMetrics = request.app.state.metrics
    return metrics.render()
