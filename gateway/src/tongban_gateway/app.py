"""The gateway app: health, readiness, metrics, aggregated OpenAPI and docs, then the proxied routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tongban_gateway.config import Settings
from tongban_gateway.openapi import OpenApiAggregator, docs_page
from tongban_gateway.proxy import Proxy, ProxyRoute
from tongban_gateway.routes import load_routes
from tongban_gateway.upstreams import Upstreams
from tongban_kit.observe import ContextMiddleware, HttpMetrics, metrics_endpoint
from tongban_kit.problems import install_problem_handlers, problem_response

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Starlette:
    """A lean Starlette app: the kit's context middleware and problem handlers, ops routes, the proxy."""
    settings = settings or Settings()
    table = load_routes(settings.routes_file)
    if settings.routes_file:
        table.check_upstreams(settings.upstreams)  # an explicit table must name only configured services
    else:
        table = table.only(settings.upstreams)
    upstreams = Upstreams(settings)
    proxy = Proxy(upstreams, settings)
    aggregator = OpenApiAggregator(upstreams, table, settings)
    metrics = HttpMetrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await upstreams.start()
        log.info(
            "gateway started",
            extra={"port": settings.port, "routes": len(table.entries), "upstreams": sorted(settings.upstreams)},
        )
        try:
            yield
        finally:
            await upstreams.close()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks = await upstreams.readiness()
        if not any(v.startswith("unavailable") for v in checks.values()):
            return JSONResponse({"status": "ok", "checks": checks})
        return problem_response(
            503, "an upstream service is unavailable", type="not-ready", instance=request.url.path, checks=checks
        )

    async def openapi(request: Request) -> Response:
        return Response(await aggregator.document(), media_type="application/json")

    async def docs(request: Request) -> Response:
        return docs_page()

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        *(ProxyRoute(entry, proxy) for entry in table.entries),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(ContextMiddleware, metrics=metrics)])
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.routes = table
    app.state.upstreams = upstreams
    # the kit's handlers only use add_exception_handler, which a plain Starlette app has too
    install_problem_handlers(app)
    return app
