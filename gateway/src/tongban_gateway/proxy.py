"""Forwarding: stream a request to an upstream instance and its response back, hop-by-hop headers stripped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tongban_gateway.access import AccessControl
from tongban_gateway.config import Settings
from tongban_gateway.metrics import GatewayMetrics
from tongban_gateway.ratelimit import Decision, RateLimiter
from tongban_gateway.routes import RouteEntry, RouteTable
from tongban_gateway.upstream_http import Exchange, Pool, UpstreamError
from tongban_gateway.upstreams import Upstreams
from tongban_kit.context import current_headers
from tongban_kit.observe import ACCESS_LOG_FIELDS, ROUTE_TEMPLATE
from tongban_kit.problems import PROBLEM_JSON, Problem, problem_response

log = logging.getLogger(__name__)

#: hop-by-hop headers (RFC 9110 §7.6.1); any `Proxy-*` header and any named in Connection go too
HOP_BY_HOP = frozenset({"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"})
#: request headers the gateway sets itself (or frames itself) rather than passing on
_DROP_REQUEST = frozenset(
    {
        b"host",
        b"expect",
        b"x-request-id",
        b"traceparent",
        # the client's own claims of where it is: the gateway decides that (`client.py`) and says it alone
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-prefix",
        b"forwarded",
        b"x-real-ip",
        b"x-client-ip",
        b"true-client-ip",
        b"x-cluster-client-ip",
        b"x-original-forwarded-for",
        b"content-length",
        *(h.encode() for h in HOP_BY_HOP),
    }
)
#: response headers the gateway's own server and middleware set
_OWN_RESPONSE = frozenset({b"server", b"date", b"x-request-id", b"traceparent"})
#: methods retried once on the next instance when the connection could not be made
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: methods whose requests carry a body: an empty one is sent with `Content-Length: 0`
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: identity headers only services set among themselves; a client sending them is trying to forge one
_IDENTITY_PREFIX = b"x-tongban-"
_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
_URL_SAFE = "/%:@!$&'()*+,;=-._~?"
#: bodies up to this size (of declared length) are read whole and sent in one piece, both ways
SMALL_BODY = 64 * 1024
#: the gateway's management paths: answered by the gateway (on the management port when there is one), never proxied
OPS_PATHS = ("/healthz", "/readyz", "/healthz/dependencies", "/metrics")
_SLASHES = re.compile(r"/{2,}")


def _connection_tokens(values: Iterable[str]) -> set[str]:
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}


def _is_hop(name: str, listed: set[str]) -> bool:
    return name in HOP_BY_HOP or name.startswith("proxy-") or name in listed


def forward_head(scope: Scope, target: bytes, authority: bytes, framing: bytes) -> bytes:
    """The request head sent upstream: the caller's headers minus hop-by-hop, `X-Tongban-*` and framing ones, plus
    Host, X-Forwarded-*, request id, traceparent and the body's framing (`framing`: a header line or empty).

    X-Forwarded-For is the one client address the gateway decided (`scope["client"]`), never the caller's chain.
    The Authorization header passes unchanged: services verify the token again.
    """
    raw: list[tuple[bytes, bytes]] = scope["headers"]
    listed = _connection_tokens(v.decode("latin-1") for k, v in raw if k == b"connection")
    lines = [scope["method"].encode(), b" ", target, b" HTTP/1.1\r\nHost: ", authority, b"\r\n"]
    host = None
    for name, value in raw:
        if name == b"host":
            host = value
        if name in _DROP_REQUEST or name.startswith(b"proxy-") or name.startswith(_IDENTITY_PREFIX):
            continue
        if listed and name.decode("latin-1") in listed:
            continue
        lines += [name, b": ", value, b"\r\n"]
    client = scope.get("client")
    if client:
        lines += [b"x-forwarded-for: ", client[0].encode(), b"\r\n"]
    lines += [b"x-forwarded-proto: ", scope.get("scheme", "http").encode(), b"\r\n"]
    if host is not None:
        lines += [b"x-forwarded-host: ", host, b"\r\n"]
    for name_s, value_s in current_headers().items():
        lines += [name_s.encode(), b": ", value_s.encode("latin-1"), b"\r\n"]
    lines += [framing, b"\r\n"]
    return b"".join(lines)


def backward_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers (lower-cased for ASGI) minus hop-by-hop and gateway-owned ones."""
    pairs = [(k.lower(), v) for k, v in raw]
    listed = _connection_tokens(v.decode("latin-1") for k, v in pairs if k == b"connection")
    return [(k, v) for k, v in pairs if not _is_hop(k.decode("latin-1"), listed) and k not in _OWN_RESPONSE]


class _BodyTooLarge(Exception):
    """The request body passed the configured limit while streaming."""


class _ClientGone(Exception):
    """The caller disconnected before its request body was complete."""


class _Body:
    """The caller's body read from the ASGI channel: counted, stopped past the limit."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive = receive
        self.limit = limit
        self.size = 0
        self.started = False
        self.finished = False
        self.too_large = False
        self.client_gone = False

    async def _next(self) -> tuple[bytes, bool]:
        message = await self.receive()
        if message["type"] == "http.disconnect":
            self.client_gone = True
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        self.size += len(chunk)
        if self.size > self.limit:
            self.too_large = True
            raise _BodyTooLarge
        more = bool(message.get("more_body", False))
        self.finished = not more
        return chunk, more

    async def read_all(self) -> bytes:
        """The whole body (for small bodies of declared length: sent in one write, retryable)."""
        self.started = True
        parts = []
        more = True
        while more:
            chunk, more = await self._next()
            parts.append(chunk)
        return b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives."""
        self.started = True
        more = True
        while more:
            chunk, more = await self._next()
            if chunk:
                yield chunk


async def _disconnected(receive: Receive) -> None:
    """Return once the caller has gone (the request body must be consumed already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _send_problem(problem: Problem, scope: Scope) -> Response:
    return JSONResponse(
        problem.body(scope["path"]), status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON
    )


class Proxy:
    """Sends requests to the upstream a route names: round-robin over instances whose breaker is closed, one
    retry on the next instance for idempotent methods when the connection could not be made.

    Serves raw ASGI, without a framework's request and response objects in between: this is the gateway's hot path.
    """

    def __init__(
        self,
        upstreams: Upstreams,
        settings: Settings,
        access: AccessControl | None = None,
        limiter: RateLimiter | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.upstreams = upstreams
        self.settings = settings
        self.access = access
        self.limiter = limiter
        self.metrics = metrics

    async def serve(self, scope: Scope, receive: Receive, send: Send, route: RouteEntry) -> None:
        """Check the token and scopes, take from the rate limit, then forward; refusals answer problem+json."""
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            response = await self._admit_and_forward(scope, receive, tracked, route)
        except Problem as exc:
            response = _send_problem(exc, scope)
        except Exception:
            if started:
                raise  # the status line is out; the server cuts the connection
            log.exception("unhandled error", extra={"path": scope["path"]})
            response = problem_response(
                500, "an unexpected error occurred; quote the request id when reporting it", instance=scope["path"]
            )
        if response is not None:
            await response(scope, receive, send)

    async def _admit_and_forward(
        self, scope: Scope, receive: Receive, send: Send, route: RouteEntry
    ) -> Response | None:
        log_fields: dict[str, Any] | None = scope.get(ACCESS_LOG_FIELDS)
        if log_fields is None:
            log_fields = scope[ACCESS_LOG_FIELDS] = {}
        log_fields["upstream"] = route.upstream
        token = await self.access.check(Request(scope), route) if self.access is not None else None
        if token is not None:
            log_fields["client_id"] = token.client_id
        extra: list[tuple[bytes, bytes]] = []
        if self.limiter is not None:
            client = scope.get("client")
            decision = await self.limiter.check(route, token.client_id if token else None, client[0] if client else "")
            if decision is not None:
                if not decision.allowed:
                    return self._limited(scope, decision)
                extra = decision.headers
        return await self.forward(scope, receive, send, route, extra)

    def _limited(self, scope: Scope, decision: Decision) -> Response:
        retry = str(decision.retry_after)
        if decision.store_down:
            out = problem_response(
                503,
                "the rate limit cannot be checked right now; try again shortly",
                type="rate-limit-unavailable",
                instance=scope["path"],
                headers={"Retry-After": retry},
            )
        else:
            out = problem_response(
                429,
                f"too many requests; try again in {retry} s",
                type="rate-limited",
                title="Too many requests",
                instance=scope["path"],
                headers={"Retry-After": retry},
            )
        out.raw_headers += decision.headers
        return out

    def _too_large(self, scope: Scope, limit: int) -> Response:
        return problem_response(
            413,
            f"the request body exceeds {limit} bytes",
            type="body-too-large",
            instance=scope["path"],
        )

    async def forward(
        self, scope: Scope, receive: Receive, send: Send, route: RouteEntry, extra: list[tuple[bytes, bytes]]
    ) -> Response | None:
        """Forward one request and relay the answer (None once relayed); failures come back as problem+json."""
        path = scope["path"]
        method = scope["method"]
        limit = route.max_body_bytes or self.settings.max_body_bytes
        declared: bytes | None = None
        chunked = False
        for k, v in scope["headers"]:
            if k == b"content-length":
                declared = v
            elif k == b"transfer-encoding":
                chunked = True
        if declared is not None and not declared.isdigit():
            return problem_response(400, "Content-Length is not a number", instance=path)
        length = int(declared) if declared is not None else None
        if length is not None and length > limit:
            return self._too_large(scope, limit)
        body: _Body | None = None
        data: bytes | None = None
        framing = b""
        if length or chunked:
            body = _Body(receive, limit)
            if length is not None and length <= SMALL_BODY:
                try:
                    data = await body.read_all()
                except _BodyTooLarge:
                    return self._too_large(scope, limit)
                except _ClientGone:
                    return None  # nobody to answer
            if data is not None:
                framing = b"content-length: %d\r\n" % len(data)
            elif length is not None:
                framing = b"content-length: %d\r\n" % length
            else:
                framing = b"transfer-encoding: chunked\r\n"
        elif length == 0 or method in _BODY_METHODS:
            framing = b"content-length: 0\r\n"
        # raw bytes as the caller sent them: existing escapes kept, anything unsafe escaped
        target = quote(scope.get("raw_path") or path.encode(), safe=_URL_SAFE)
        if scope.get("query_string"):
            target += "?" + quote(scope["query_string"], safe=_URL_SAFE)
        target_bytes = target.encode("ascii")
        read_timeout = route.timeout or self.settings.upstream_timeout_seconds
        connect_timeout = self.settings.connect_timeout_seconds
        head_only = method == "HEAD"
        tries = 2 if method in IDEMPOTENT else 1
        attempt = 0
        last: UpstreamError | None = None
        replayable = body is None or data is not None
        for pool, breaker in self.upstreams.candidates(route.upstream):
            attempt += 1
            started = time.perf_counter()
            payload = data if body is None or data is not None else body.chunks()
            try:
                conn, status, raw_headers = await self._exchange(
                    pool,
                    forward_head(scope, target_bytes, pool.authority, framing),
                    payload,
                    chunked=length is None,
                    head_only=head_only,
                    again=method in IDEMPOTENT and replayable,
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                )
            except UpstreamError as exc:
                if exc.sent or exc.connect:
                    breaker.failure()
                    self._count(route.upstream, "timeout" if isinstance(exc, TimeoutError) else "unavailable")
                else:
                    breaker.release()  # a kept-alive connection the upstream had closed says nothing of its health
                retry = exc.connect and attempt < tries and replayable
                log.warning(
                    "upstream request failed",
                    extra={
                        "upstream": route.upstream,
                        "instance": pool.authority.decode(),
                        "error": str(exc),
                        "retry": retry,
                    },
                )
                last = exc
                if retry:
                    continue
                return self._failure(scope, route, exc)
            except _BodyTooLarge:
                breaker.release()
                return self._too_large(scope, limit)
            except _ClientGone:
                breaker.release()
                return None  # the caller went away mid-request: nobody to answer
            except BaseException:
                breaker.release()
                raise
            breaker.success()
            upstream_time = time.perf_counter() - started
            fields = scope.get(ACCESS_LOG_FIELDS)
            if fields is not None:
                fields["upstream_ms"] = round(upstream_time * 1000, 2)
            if self.metrics is not None:
                self.metrics.upstream_time(route.upstream, upstream_time)
                self._count(route.upstream, _STATUS_CLASS[status // 100])
            try:
                return await self._relay(
                    conn, status, raw_headers, scope, receive, send, route, extra, body, read_timeout
                )
            finally:
                conn.release()
        if last is not None:
            return self._failure(scope, route, last)
        self._count(route.upstream, "circuit_open")
        retry_after = max(1, math.ceil(self.upstreams.retry_after(route.upstream)))
        return problem_response(
            503,
            f"the {route.upstream} service is unavailable; try again in {retry_after} s",
            type="upstream-unavailable",
            title="Upstream unavailable",
            instance=path,
            headers={"Retry-After": str(retry_after)},
            upstream=route.upstream,
        )

    async def _exchange(
        self,
        pool: Pool,
        head: bytes,
        payload: bytes | AsyncIterator[bytes] | None,
        *,
        chunked: bool,
        head_only: bool,
        again: bool,
        connect_timeout: float,
        read_timeout: float,
    ) -> tuple[Exchange, int, list[tuple[bytes, bytes]]]:
        """Send the request on a pooled connection and read the response head.

        When a kept-alive connection turns out closed by the upstream before any answer (`sent` False) and the
        request may be sent `again`, it goes once more on a new connection.
        """
        fresh = False
        while True:
            conn = await pool.acquire(connect_timeout, fresh=fresh)
            try:
                await conn.send(head, payload, chunked, head_only=head_only)
                status, headers = await conn.read_head(read_timeout)
                return conn, status, headers
            except UpstreamError as exc:
                conn.release()
                if exc.sent or fresh or not again:
                    raise
                fresh = True
            except BaseException:
                conn.release()
                raise

    async def _relay(
        self,
        conn: Exchange,
        status: int,
        raw_headers: list[tuple[bytes, bytes]],
        scope: Scope,
        receive: Receive,
        send: Send,
        route: RouteEntry,
        extra: list[tuple[bytes, bytes]],
        body: _Body | None,
        timeout: float,
    ) -> Response | None:
        """Send the upstream's answer: small bodies of known length in one message, others chunk by chunk."""
        headers = backward_headers(raw_headers)
        headers += extra
        start = {"type": "http.response.start", "status": status, "headers": headers}
        length = None
        for k, v in headers:
            if k == b"content-length" and v.isdigit():
                length = int(v)
        if conn.complete or (length is not None and length <= SMALL_BODY):
            try:
                content = await conn.read_all(timeout)
            except UpstreamError as exc:
                log.warning("upstream response broke off", extra={"upstream": route.upstream, "error": str(exc)})
                return self._failure(scope, route, exc)
            await send(start)
            await send({"type": "http.response.body", "body": content})
            return None
        await send(start)
        copy = asyncio.ensure_future(self._copy(conn, send, route, timeout))
        if body is not None and not body.finished:
            await copy  # the request channel is still the upload's; the send fails if the caller goes
            return None
        gone = asyncio.ensure_future(_disconnected(receive))
        await asyncio.wait({copy, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not copy.done():
            copy.cancel()  # the caller left: stop reading from the upstream
            with contextlib.suppress(asyncio.CancelledError):
                await copy
            return None
        gone.cancel()
        copy.result()
        return None

    async def _copy(self, conn: Exchange, send: Send, route: RouteEntry, timeout: float) -> None:
        try:
            while (chunk := await conn.read_chunk(timeout)) is not None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamError as exc:
            # the status line is out; cutting the connection is the only honest signal left
            log.warning("upstream response broke off", extra={"upstream": route.upstream, "error": str(exc)})
            raise
        await send({"type": "http.response.body", "body": b""})

    def _count(self, upstream: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.upstream_outcome(upstream, outcome)

    def _failure(self, scope: Scope, route: RouteEntry, exc: UpstreamError) -> Response:
        if isinstance(exc, TimeoutError):
            return problem_response(
                504,
                f"the {route.upstream} service did not answer in time",
                type="upstream-timeout",
                title="Upstream timeout",
                instance=scope["path"],
                upstream=route.upstream,
            )
        return problem_response(
            502,
            f"the {route.upstream} service is unavailable",
            type="upstream-unavailable",
            title="Upstream unavailable",
            instance=scope["path"],
            upstream=route.upstream,
        )


def _reserved_form(path: str) -> str:
    """`path` as a lenient server reads it: slashes repeated as one, trailing slashes and dots dropped, any case."""
    if "//" in path:
        path = _SLASHES.sub("/", path)
    return path.rstrip("/.").lower()


class ProxyDispatch:
    """The gateway's ASGI entry below the edge middleware: requests under a row of the route table go straight to
    the proxy; everything else (health, metrics, catalogue, lifespan, 404s) to the ops app.

    The gateway's own paths and the `reserved` ones (management views, in any spelling) never go upstream, even
    under a catch-all route: a service's own /metrics must not answer through the public port either.
    """

    def __init__(
        self,
        table: RouteTable,
        proxy: Proxy,
        ops: ASGIApp,
        own_paths: Iterable[str],
        reserved: Iterable[str] = (),
    ) -> None:
        self.table = table
        self.proxy = proxy
        self.ops = ops
        self.own = frozenset(own_paths)
        self.reserved = frozenset(_reserved_form(p) for p in reserved)
        #: the metrics label of each row: its prefix and `/*`
        self.labels = {e.prefix: e.prefix.rstrip("/") + "/*" for e in table.entries}

    def _reserved(self, path: str) -> bool:
        return _reserved_form(path) in self.reserved

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (path := scope["path"]) not in self.own and not self._reserved(path):
            entry = self.table.match(path)
            if entry is not None:
                scope[ROUTE_TEMPLATE] = self.labels[entry.prefix]
                await self.proxy.serve(scope, receive, send, entry)
                return
        await self.ops(scope, receive, send)
