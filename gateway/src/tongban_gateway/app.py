"""The gateway app: health, readiness, metrics, aggregated OpenAPI and docs, then the proxied routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tongban_gateway.access import AccessControl
from tongban_gateway.client import ClientAddress, TrustedProxies
from tongban_gateway.config import Settings
from tongban_gateway.edge import EdgeMiddleware
from tongban_gateway.metrics import GatewayMetrics
from tongban_gateway.openapi import OpenApiAggregator, docs_page
from tongban_gateway.origins import OriginDirectory
from tongban_gateway.proxy import OPS_PATHS, Proxy, ProxyDispatch
from tongban_gateway.ratelimit import RateLimiter
from tongban_gateway.routes import load_routes
from tongban_gateway.upstreams import Upstreams
from tongban_kit.observe import ContextMiddleware, metrics_endpoint
from tongban_kit.problems import install_problem_handlers, problem_response
from tongban_kit.startup import freeze_startup_objects

log = logging.getLogger(__name__)

#: seconds between checks of the upstreams and dependencies (for the metrics; the view checks on each request)
DEPENDENCY_CHECK_SECONDS = 15.0
#: Retry-After of a not-ready answer
NOT_READY_RETRY_SECONDS = 5


class Gateway:
    """The gateway as one ASGI app: the kit's context middleware, then CORS and security headers, then the proxy
    for the route table's rows (raw ASGI, the hot path) and a Starlette app for the rest (ops routes, lifespan,
    problem+json 404s). `state` is the Starlette app's, where tests and ops code find the parts."""

    def __init__(self, asgi: ASGIApp, ops: Starlette, management: ASGIApp | None = None, port: int | None = None):
        self.asgi = asgi
        self.ops = ops
        self.state = ops.state
        self.management = management
        self.management_port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.management is not None and scope["type"] == "http" and _local_port(scope) == self.management_port:
            await self.management(scope, receive, send)
            return
        await self.asgi(scope, receive, send)


def _local_port(scope: Scope) -> int | None:
    server = scope.get("server")
    return server[1] if server else None


def create_app(settings: Settings | None = None) -> Gateway:
    """The gateway app: ops routes and the proxied routes behind token, scope and rate-limit checks."""
    settings = settings or Settings()
    table = load_routes(settings.routes_file)
    if settings.routes_file:
        table.check_upstreams(settings.upstreams)  # an explicit table must name only configured services
    else:
        table = table.only(settings.upstreams)
    metrics = GatewayMetrics()
    upstreams = Upstreams(settings, metrics)
    access = AccessControl(settings, metrics)
    origins = OriginDirectory(settings)
    access.on_connect.append(origins.start)
    limiter = RateLimiter(settings, metrics)
    proxy = Proxy(upstreams, settings, access, limiter, metrics)
    aggregator = OpenApiAggregator(upstreams, table, settings)
    # without a management port, development and test gateways show metrics on the public port (`make run`
    # listens on 127.0.0.1 only); a production one never does
    public_ops = settings.management_port is None and settings.environment != "prod"

    proxies = TrustedProxies(settings.trusted_proxies)
    protected = any(not e.public for e in table.entries)

    async def dependency_view() -> dict[str, dict[str, str]]:
        """What the gateway sees of what it talks to; recorded in the metrics too."""
        checks = await upstreams.readiness()
        dependencies = {**access.readiness(), "rate_limits": await limiter.ping(), "cors_origins": origins.readiness()}
        metrics.dependencies({**{f"upstream/{k}": v for k, v in checks.items()}, **dependencies})
        return {"upstreams": checks, "dependencies": dependencies}

    async def watch_dependencies() -> None:
        while True:
            try:
                await dependency_view()
            except Exception:  # a probe that breaks must not end the watch
                log.exception("dependency check failed")
            await asyncio.sleep(DEPENDENCY_CHECK_SECONDS)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await upstreams.start()
        await access.start()
        freeze_startup_objects()
        watch = asyncio.create_task(watch_dependencies(), name="gateway-dependencies")
        if settings.management_port is None and not public_ops:
            log.warning("no management port: /metrics and /healthz/dependencies are not served")
        log.info(
            "gateway started",
            extra={"port": settings.port, "routes": len(table.entries), "upstreams": sorted(settings.upstreams)},
        )
        try:
            yield
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            await origins.close()
            await access.close()
            await limiter.close()
            await upstreams.close()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        # ready = able to route: the route table is loaded (or the process would not be up) and access tokens can
        # be verified. Upstreams, NATS, Redis and the origin registry are dependencies: one of them down degrades
        # some answers but never makes the gateway unready (an orchestrator would turn a partial fault into an
        # outage); they are under /healthz/dependencies and in the metrics.
        why = access.unready() if protected else None
        if why is None:
            return JSONResponse({"status": "ok"})
        return problem_response(
            503,
            f"not ready: {why}",
            type="not-ready",
            instance=request.url.path,
            headers={"Retry-After": str(NOT_READY_RETRY_SECONDS)},
        )

    async def dependencies(request: Request) -> Response:
        view = await dependency_view()
        states = [*view["upstreams"].values(), *view["dependencies"].values()]
        return JSONResponse({"status": "ok" if all(v == "ok" for v in states) else "degraded", **view})

    async def openapi(request: Request) -> Response:
        return Response(await aggregator.document(), media_type="application/json")

    async def docs(request: Request) -> Response:
        return docs_page()

    liveness = Route("/healthz", healthz, methods=["GET"])
    readiness = Route("/readyz", readyz, methods=["GET"])
    # management views: what the gateway knows of its routes, upstreams and refusals is not for the public
    views = [Route("/healthz/dependencies", dependencies, methods=["GET"]), Route("/metrics", metrics_endpoint)]
    routes: list[BaseRoute] = [
        liveness,  # load balancers may probe the public port
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
    management: ASGIApp | None = None
    if settings.management_port is not None:
        ops_only = Starlette(routes=[liveness, readiness, *views])
        ops_only.state.metrics = metrics
        install_problem_handlers(ops_only)
        management = ContextMiddleware(ops_only, metrics=metrics)
    else:
        routes.append(readiness)  # the orchestrator's probe has no other port; it says only ready or why not
        if public_ops:
            routes += views
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.routes = table
    app.state.upstreams = upstreams
    app.state.access = access
    app.state.limiter = limiter
    app.state.origins = origins
    # the kit's handlers only use add_exception_handler, which a plain Starlette app has too
    install_problem_handlers(app)
    own_paths = [r.path for r in routes if isinstance(r, Route)]
    dispatch = ProxyDispatch(table, proxy, app, own_paths, reserved=OPS_PATHS)
    public = ContextMiddleware(ClientAddress(EdgeMiddleware(dispatch, settings, origins), proxies), metrics=metrics)
    return Gateway(public, app, management, settings.management_port)
