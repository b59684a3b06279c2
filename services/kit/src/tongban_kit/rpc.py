"""RPC over the NATS Services API (ADR-32) with typed request/response models and typed errors."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service
from pydantic import BaseModel, ValidationError

from tongban_kit.context import bind_from_headers, current_headers
from tongban_kit.nats import Bus
from tongban_kit.outage import OutageLog, database_unavailable
from tongban_kit.problems import Problem

log = logging.getLogger(__name__)

ERROR_HEADER = "Nats-Service-Error"
ERROR_CODE_HEADER = "Nats-Service-Error-Code"

Req = TypeVar("Req", bound=BaseModel)
Resp = TypeVar("Resp", bound=BaseModel)


class RpcError(Exception):
    """A typed RPC failure carried in the ADR-32 error headers; `code` follows HTTP status meanings."""

    code = 500

    def __init__(self, description: str, code: int | None = None) -> None:
        super().__init__(description)
        self.description = description
        if code is not None:
            self.code = code

    @classmethod
    def from_code(cls, code: int, description: str) -> RpcError:
        """The most specific error class for a code."""
        for sub in (RpcBadRequest, RpcForbidden, RpcNotFound, RpcConflict, RpcUnavailable, RpcTimeout):
            if sub.code == code:
                return sub(description)
        return cls(description, code)


class RpcBadRequest(RpcError):
    """The request was malformed or invalid."""

    code = 400


class RpcForbidden(RpcError):
    """The caller may not do this."""

    code = 403


class RpcNotFound(RpcError):
    """The thing asked for does not exist."""

    code = 404


class RpcConflict(RpcError):
    """The request conflicts with current state."""

    code = 409


class RpcUnavailable(RpcError):
    """No service instance answered."""

    code = 503


class RpcTimeout(RpcError):
    """The service did not answer in time."""

    code = 504


@dataclass(frozen=True)
class RpcSpec:
    """A declared RPC endpoint: subject, request and response models, meaning."""

    name: str
    subject: str
    request: type[BaseModel]
    response: type[BaseModel]
    description: str


@dataclass
class RpcServer:
    """A NATS micro service exposing typed endpoints under one service name."""

    bus: Bus
    name: str
    version: str
    description: str = ""
    handlers: dict[str, tuple[RpcSpec, Callable[[Any], Awaitable[BaseModel]]]] = field(default_factory=dict)
    service: Service | None = None
    #: the service database's outage log: a handler that cannot reach the database answers 503, logged once
    outage: OutageLog | None = None

    def add(self, spec: RpcSpec, handler: Callable[[Any], Awaitable[BaseModel]]) -> None:
        """Register a handler for a declared endpoint."""
        self.handlers[spec.name] = (spec, handler)

    def _wrap(
        self, spec: RpcSpec, handler: Callable[[Any], Awaitable[BaseModel]]
    ) -> Callable[[Request], Awaitable[None]]:
        async def serve(req: Request) -> None:
            bind_from_headers(req.headers)
            try:
                payload = spec.request.model_validate_json(req.data or b"{}")
            except ValidationError as exc:
                await req.respond_error("400", _validation_message(exc))
                return
            try:
                result = await handler(payload)
            except RpcError as exc:
                await req.respond_error(str(exc.code), exc.description)
                return
            except Problem as exc:  # domain code shared with the HTTP API raises problems
                await req.respond_error(str(exc.status), exc.detail or exc.title or "error")
                return
            except Exception as exc:
                if self.outage is not None and database_unavailable(exc):
                    self.outage.failed(exc)
                    await req.respond_error("503", "the database is unavailable")
                    return
                log.exception("rpc handler failed", extra={"endpoint": spec.name})
                await req.respond_error("500", "internal error")
                return
            await req.respond(result.model_dump_json().encode())

        return serve

    async def start(self) -> None:
        """Register the service and its endpoints (queue group `q`, so replicas share load)."""
        self.service = await add_service(
            self.bus.nc,
            name=self.bus.stream_name(self.name),
            version=self.version,
            description=self.description,
        )
        for spec, handler in self.handlers.values():
            await self.service.add_endpoint(
                name=spec.name,
                subject=self.bus.subject(spec.subject),
                handler=self._wrap(spec, handler),
                metadata={"request_schema": spec.request.__name__, "response_schema": spec.response.__name__},
            )

    async def stop(self) -> None:
        """Stop serving."""
        if self.service is not None:
            await self.service.stop()
            self.service = None


def _validation_message(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]]
    return "invalid request: " + "; ".join(parts)


class RpcClient:
    """Calls typed RPC endpoints; errors come back as `RpcError` subclasses."""

    def __init__(self, bus: Bus, *, timeout: float = 2.0) -> None:
        self.bus = bus
        self.timeout = timeout

    async def call(
        self, spec: RpcSpec, request: BaseModel, response: type[Resp], *, timeout: float | None = None
    ) -> Resp:
        """Send a request and parse the typed response."""
        try:
            msg = await self.bus.nc.request(
                self.bus.subject(spec.subject),
                request.model_dump_json().encode(),
                timeout=timeout or self.timeout,
                headers=current_headers() or None,
            )
        except NoRespondersError as exc:
            raise RpcUnavailable(f"no instance of {spec.subject} is available") from exc
        except NatsTimeoutError as exc:
            raise RpcTimeout(f"{spec.subject} did not answer in time") from exc
        headers = msg.headers or {}
        if ERROR_CODE_HEADER in headers:
            try:
                code = int(headers[ERROR_CODE_HEADER])
            except ValueError:
                code = 500
            raise RpcError.from_code(code, headers.get(ERROR_HEADER, "error"))
        return response.model_validate_json(msg.data)


async def discover(bus: Bus, verb: str = "PING", name: str | None = None, *, wait: float = 0.5) -> list[dict[str, Any]]:
    """Collect ADR-32 discovery answers (`$SRV.PING|INFO|STATS[.name]`) for `wait` seconds."""
    subject = f"$SRV.{verb}" + (f".{bus.stream_name(name)}" if name else "")
    inbox = bus.nc.new_inbox()
    replies: list[dict[str, Any]] = []
    sub = await bus.nc.subscribe(inbox)
    await bus.nc.publish(subject, b"", reply=inbox)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=wait)
            except NatsTimeoutError:
                break
            replies.append(orjson.loads(msg.data))
    finally:
        await sub.unsubscribe()
    return replies
