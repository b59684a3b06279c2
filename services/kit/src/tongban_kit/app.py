"""The service runtime and app factory: DB, NATS, outbox relay, RPC and consumers behind one lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.bearer import BearerAuth
from tongban_kit.consumer import ConsumerSpec, EventConsumer, Handler
from tongban_kit.db import Database
from tongban_kit.events import EventSpec
from tongban_kit.limits import BodyLimits
from tongban_kit.logging import configure_logging
from tongban_kit.nats import Bus, StreamSpec, connect
from tongban_kit.observe import ContextMiddleware, HttpMetrics, metrics_endpoint
from tongban_kit.outage import DATABASE_ERRORS, database_error_handler
from tongban_kit.outbox import OutboxRelay
from tongban_kit.pagination import CursorCodec, CursorMiddleware, with_cursors
from tongban_kit.problems import ProblemDetail, install_problem_handlers, problem_response
from tongban_kit.rpc import RpcClient, RpcServer, RpcSpec
from tongban_kit.settings import ServiceSettings
from tongban_kit.startup import freeze_startup_objects

log = logging.getLogger(__name__)

STOP_STEP_SECONDS = 8.0


@dataclass
class ServiceContract:
    """What a service declares to the outside: streams, events, RPC endpoints, consumers."""

    name: str
    version: str
    description: str
    streams: Sequence[StreamSpec] = ()
    events: Sequence[EventSpec] = ()
    rpcs: Sequence[RpcSpec] = ()
    consumers: Sequence[ConsumerSpec] = ()


@dataclass
class Runtime:
    """Live resources of a running service."""

    settings: ServiceSettings
    contract: ServiceContract
    db: Database
    bus: Bus | None = None
    relay: OutboxRelay | None = None
    rpc_server: RpcServer | None = None
    #: signs and checks this service's pagination cursors (bound for every HTTP request and RPC call)
    cursors: CursorCodec | None = None
    rpc: RpcClient | None = None
    consumers: list[EventConsumer] = field(default_factory=list)
    #: background tasks of the service, cancelled first at shutdown
    background: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def source(self) -> str:
        """The CloudEvents `source` of this service."""
        return f"/tongban/{self.contract.name}"

    async def start(
        self,
        rpc_handlers: Callable[[Runtime], dict[str, Callable[[Any], Awaitable[Any]]]] | None,
        consumer_handlers: Callable[[Runtime], dict[str, Handler]] | None,
    ) -> None:
        """Connect to NATS, declare streams, start relay, RPC and consumers."""
        s = self.settings
        self.bus = await connect(
            s.nats_url,
            name=self.contract.name,
            user=s.nats_user,
            password=s.nats_password,
            namespace=s.nats_namespace,
        )
        for stream in self.contract.streams:
            await self.bus.ensure_stream(stream)
        self.relay = OutboxRelay(self.db, self.bus)
        self.relay.start()
        self.rpc = RpcClient(self.bus)
        if rpc_handlers is not None:
            self.rpc_server = RpcServer(
                self.bus, self.contract.name, self.contract.version, self.contract.description, outage=self.db.outage
            )
            handlers = rpc_handlers(self)
            codec = self.cursor_codec()
            for spec in self.contract.rpcs:
                self.rpc_server.add(spec, with_cursors(codec, handlers[spec.name]))
            await self.rpc_server.start()
        if consumer_handlers is not None:
            chandlers = consumer_handlers(self)
            for cspec in self.contract.consumers:
                c = EventConsumer(self.bus, self.db, cspec, chandlers[cspec.name])
                c.start()
                self.consumers.append(c)

    def cursor_codec(self) -> CursorCodec:
        """The codec of this service's cursors, from `cursor_secret` (a development key in dev only)."""
        if self.cursors is None:
            s = self.settings
            self.cursors = CursorCodec.for_service(s.cursor_secret, self.contract.name, dev=s.is_dev)
        return self.cursors

    def every(self, seconds: float, job: Callable[[], Awaitable[object]], *, name: str) -> None:
        """Run `job` now and then every `seconds` as a background task (housekeeping every replica may run);
        a failed run is logged and the next one comes on time."""

        async def loop() -> None:
            while True:
                try:
                    await job()
                except Exception:
                    log.exception("background job failed", extra={"job": name})
                await asyncio.sleep(seconds)

        self.background.append(asyncio.create_task(loop(), name=name))

    async def stop(self) -> None:
        """Stop everything in reverse order; no step may hold shutdown up for more than a few seconds."""
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            (f"consumer {c.spec.name}", c.stop) for c in self.consumers
        ]
        if self.rpc_server:
            steps.append(("rpc", self.rpc_server.stop))
        if self.relay:
            steps.append(("outbox relay", self.relay.stop))
        if self.bus:
            steps.append(("nats", self.bus.close))
        steps.append(("database", self.db.dispose))
        for task in self.background:
            task.cancel()
        for name, step in steps:
            try:
                await asyncio.wait_for(step(), STOP_STEP_SECONDS)
            except Exception as exc:  # includes TimeoutError: log and go on stopping the rest
                log.warning("shutdown step %s failed: %s", name, exc or type(exc).__name__)
        if self.bus and not self.bus.nc.is_closed:
            await self.bus.nc.close()

    async def readiness(self) -> dict[str, str]:
        """What this process needs to serve requests: the database ('ok' or why not)."""
        try:
            await asyncio.wait_for(self.db.ping(), 2)
        except Exception as exc:
            return {"database": f"unavailable: {type(exc).__name__}"}
        return {"database": "ok"}

    def dependencies(self) -> dict[str, str]:
        """Dependencies reported, not required: without NATS requests are still served (events wait in the
        outbox, RPC calls to other services fail on their own), so it must not make the process unready."""
        connected = self.bus is not None and self.bus.nc.is_connected
        return {"nats": "ok" if connected else "unavailable: not connected"}


def get_runtime(request: Request) -> Runtime:
    """The running service's runtime."""
    rt: Runtime = request.app.state.runtime
    return rt


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A database session for one request."""
    async with request.app.state.runtime.db.session() as s:
        yield s


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]


def create_service_app(
    settings: ServiceSettings,
    contract: ServiceContract,
    *,
    routers: Sequence[APIRouter],
    title: str,
    summary: str = "",
    rpc_handlers: Callable[[Runtime], dict[str, Callable[[Any], Awaitable[Any]]]] | None = None,
    consumer_handlers: Callable[[Runtime], dict[str, Handler]] | None = None,
    openapi_tags: list[dict[str, Any]] | None = None,
    on_startup: Callable[[Runtime], Awaitable[None]] | None = None,
    on_shutdown: Callable[[Runtime], Awaitable[None]] | None = None,
    accepts_tokens: bool = False,
    bearer: BearerAuth | None = None,
    body_limits: Mapping[str, int] | None = None,
) -> FastAPI:
    """A FastAPI app with problem errors, context middleware, health, readiness and metrics.

    `on_startup` runs once the runtime is up (NATS connected); `on_shutdown` runs before the runtime stops.
    A service that `accepts_tokens` checks them with `bearer` (on `app.state.bearer`, for `bearer.app_requires`),
    which follows token revocations while the service runs; without one (no issuer configured) the service warns
    at start and its protected routes answer 503. Request bodies are bounded before any route parses them
    (`settings.max_body_bytes`, or `body_limits[path]` for the exact paths named there; JSON nesting
    `settings.max_json_depth`).
    """
    configure_logging(contract.name, settings.log_level, settings.log_json)
    runtime = Runtime(settings, contract, Database(settings.database_url, pool_size=settings.database_pool_size))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start(rpc_handlers, consumer_handlers)
        if accepts_tokens and bearer is None:
            name = f"TONGBAN_{contract.name.upper()}_OIDC_ISSUER"
            log.warning("no token issuer configured (%s): the API answers 503 until one is", name)
        elif bearer is not None:
            await bearer.start(runtime.bus)  # follow token revocations
        if on_startup is not None:
            await on_startup(runtime)
        freeze_startup_objects()
        log.info("service started", extra={"port": settings.port})
        try:
            yield
        finally:
            if on_shutdown is not None:
                try:
                    await asyncio.wait_for(on_shutdown(runtime), STOP_STEP_SECONDS)
                except Exception as exc:  # includes TimeoutError: the runtime must stop regardless
                    log.warning("shutdown hook failed: %s", exc or type(exc).__name__)
            if bearer is not None:
                await bearer.close()
            await runtime.stop()

    app = FastAPI(
        title=title,
        summary=summary or None,
        version=contract.version,
        lifespan=lifespan,
        openapi_tags=openapi_tags,
        description=contract.description,
    )
    app.state.runtime = runtime
    app.state.bearer = bearer
    app.state.metrics = HttpMetrics()
    install_problem_handlers(app)
    for error in DATABASE_ERRORS:  # an unreachable database is a 503, not a 500 with a traceback per request
        app.add_exception_handler(error, database_error_handler(runtime.db.outage))
    app.add_middleware(CursorMiddleware, codec=runtime.cursor_codec())
    app.add_middleware(
        BodyLimits,
        max_bytes=settings.max_body_bytes,
        max_json_depth=settings.max_json_depth,
        path_limits=body_limits,
    )
    app.add_middleware(ContextMiddleware, metrics=app.state.metrics)  # outermost: logs and counts refusals too

    ops = APIRouter(tags=["ops"])

    @ops.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @ops.get(
        "/readyz",
        summary="Readiness: this process can serve requests (its database answers)",
        description="`checks` decide readiness; `dependencies` (NATS, the revocation feed) are reported only: "
        "an orchestrator must not take a process that still serves out of rotation because NATS is down.",
        responses={503: {"description": "not ready", "model": ProblemDetail}},
    )
    async def readyz() -> Any:
        checks = await runtime.readiness()
        dependencies = runtime.dependencies()
        if bearer is not None:
            feed = bearer.feed
            caught_up = feed is not None and feed.caught_up.is_set()
            dependencies["revocations"] = "ok" if caught_up else "degraded: not replayed yet"
        if all(v == "ok" for v in checks.values()):
            return {"status": "ok", "checks": checks, "dependencies": dependencies}
        return problem_response(
            503, "this process cannot serve requests", type="not-ready", checks=checks, dependencies=dependencies
        )

    ops.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    app.include_router(ops)
    for r in routers:
        app.include_router(r)
    _register_problem_schema(app)
    return app


def _register_problem_schema(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        comps.setdefault("ProblemDetail", ProblemDetail.model_json_schema(ref_template="#/components/schemas/{model}"))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
