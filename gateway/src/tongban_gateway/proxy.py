"""Forwarding: stream a request to an upstream instance and its response back, hop-by-hop headers stripped."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict
from starlette.background import BackgroundTask
from starlette.datastructures import URLPath
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send
from yarl import URL

from tongban_gateway.access import AccessControl
from tongban_gateway.config import Settings
from tongban_gateway.metrics import GatewayMetrics
from tongban_gateway.ratelimit import Decision, RateLimiter
from tongban_gateway.routes import RouteEntry
from tongban_gateway.upstreams import Upstreams
from tongban_kit.context import current_headers
from tongban_kit.observe import ACCESS_LOG_FIELDS
from tongban_kit.problems import problem_response

log = logging.getLogger(__name__)

#: hop-by-hop headers (RFC 9110 §7.6.1); any `Proxy-*` header and any named in Connection go too
HOP_BY_HOP = frozenset({"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"})
#: request headers the gateway sets itself rather than passing on
_OWN_REQUEST = frozenset(
    {"host", "expect", "x-request-id", "traceparent", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}
)
#: response headers the gateway's own server and middleware set
_OWN_RESPONSE = frozenset({b"server", b"date", b"x-request-id", b"traceparent"})
#: methods retried once on the next instance when the connection could not be made
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: identity headers only services set among themselves; a client sending them is trying to forge one
_IDENTITY_PREFIX = "x-tongban-"
_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
_URL_SAFE = "/%:@!$&'()*+,;=-._~?"


def _connection_tokens(values: Iterable[str]) -> set[str]:
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}


def _is_hop(name: str, listed: set[str]) -> bool:
    return name in HOP_BY_HOP or name.startswith("proxy-") or name in listed


def forward_headers(request: Request) -> CIMultiDict[str]:
    """The caller's headers minus hop-by-hop and `X-Tongban-*` ones, plus X-Forwarded-*, request id and traceparent.

    The Authorization header passes unchanged: services verify the token again.
    """
    items = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    listed = _connection_tokens(v for k, v in items if k.lower() == "connection")
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in items:
        lname = name.lower()
        if not _is_hop(lname, listed) and lname not in _OWN_REQUEST and not lname.startswith(_IDENTITY_PREFIX):
            out.add(name, value)
    chain = [*request.headers.getlist("x-forwarded-for"), request.client.host if request.client else ""]
    forwarded_for = ", ".join(c for c in chain if c)
    if forwarded_for:
        out["X-Forwarded-For"] = forwarded_for
    out["X-Forwarded-Proto"] = request.url.scheme
    if "host" in request.headers:
        out["X-Forwarded-Host"] = request.headers["host"]
    out.update(current_headers())
    return out


def backward_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers (lower-cased for ASGI) minus hop-by-hop and gateway-owned ones."""
    pairs = [(k.lower(), v) for k, v in raw]
    listed = _connection_tokens(v.decode("latin-1") for k, v in pairs if k == b"connection")
    return [(k, v) for k, v in pairs if not _is_hop(k.decode("latin-1"), listed) and k not in _OWN_RESPONSE]


class _BodyTooLarge(Exception):
    """The request body passed the configured limit while streaming."""


class _Body:
    """The caller's body as an async generator that counts bytes and stops past the limit."""

    def __init__(self, request: Request, limit: int) -> None:
        self.request = request
        self.limit = limit
        self.started = False
        self.too_large = False
        self.client_gone = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives."""
        self.started = True
        size = 0
        try:
            async for chunk in self.request.stream():
                size += len(chunk)
                if size > self.limit:
                    self.too_large = True
                    raise _BodyTooLarge
                if chunk:
                    yield chunk
        except ClientDisconnect:
            self.client_gone = True
            raise


class Proxy:
    """Sends requests to the upstream a route names: round-robin over instances whose breaker is closed, one
    retry on the next instance for idempotent methods when the connection could not be made."""

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

    async def handle(self, request: Request, route: RouteEntry) -> Response:
        """Check the token and scopes, take from the rate limit, then forward; raises Problem on refusal."""
        token = await self.access.check(request, route) if self.access is not None else None
        log_fields: dict[str, Any] = {"upstream": route.upstream}
        if token is not None:
            log_fields["client_id"] = token.client_id
        request.scope[ACCESS_LOG_FIELDS] = log_fields
        decision = None
        if self.limiter is not None:
            client = request.scope.get("client")
            decision = await self.limiter.check(route, token.client_id if token else None, client[0] if client else "")
            if decision is not None and not decision.allowed:
                return self._limited(request, decision)
        response = await self.forward(request, route)
        if decision is not None:
            response.raw_headers += decision.headers
        return response

    def _limited(self, request: Request, decision: Decision) -> Response:
        retry = str(decision.retry_after)
        if decision.store_down:
            out = problem_response(
                503,
                "the rate limit cannot be checked right now; try again shortly",
                type="rate-limit-unavailable",
                instance=request.url.path,
                headers={"Retry-After": retry},
            )
        else:
            out = problem_response(
                429,
                f"too many requests; try again in {retry} s",
                type="rate-limited",
                title="Too many requests",
                instance=request.url.path,
                headers={"Retry-After": retry},
            )
        out.raw_headers += decision.headers
        return out

    def _too_large(self, request: Request, limit: int) -> Response:
        return problem_response(
            413,
            f"the request body exceeds {limit} bytes",
            type="body-too-large",
            instance=request.url.path,
        )

    async def forward(self, request: Request, route: RouteEntry) -> Response:
        """Forward one request and stream the answer back; upstream failures become problem+json."""
        limit = route.max_body_bytes or self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and not declared.isdigit():
            return problem_response(400, "Content-Length is not a number", instance=request.url.path)
        if declared is not None and int(declared) > limit:
            return self._too_large(request, limit)
        body = None
        if declared not in (None, "0") or "transfer-encoding" in request.headers:
            body = _Body(request, limit)
        # raw bytes as the caller sent them: existing escapes kept, anything unsafe escaped
        tail = quote(request.scope.get("raw_path") or request.scope["path"].encode(), safe=_URL_SAFE)
        if request.scope.get("query_string"):
            tail += "?" + quote(request.scope["query_string"], safe=_URL_SAFE)
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.settings.connect_timeout_seconds,
            sock_read=route.timeout or self.settings.upstream_timeout_seconds,
        )
        headers = forward_headers(request)
        tries = 2 if request.method in IDEMPOTENT else 1
        attempt = 0
        last: BaseException | None = None
        for base, breaker in self.upstreams.candidates(route.upstream):
            attempt += 1
            started = time.perf_counter()
            try:
                resp = await self.upstreams.session.request(
                    request.method,
                    URL(base + tail, encoded=True),
                    headers=headers,
                    timeout=timeout,
                    data=body.chunks() if body is not None else None,
                    allow_redirects=False,
                )
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if body is not None and (body.too_large or body.client_gone):
                    breaker.release()
                    if body.too_large:
                        return self._too_large(request, limit)
                    return problem_response(400, "the client went away mid-request", instance=request.url.path)
                breaker.failure()
                self._count(route.upstream, "timeout" if isinstance(exc, TimeoutError) else "unavailable")
                connect_error = isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
                retry = attempt < tries and connect_error and not (body is not None and body.started)
                log.warning(
                    "upstream request failed",
                    extra={"upstream": route.upstream, "instance": base, "error": repr(exc), "retry": retry},
                )
                last = exc
                if retry:
                    continue
                return self._failure(request, route, exc)
            except BaseException:
                breaker.release()
                raise
            breaker.success()
            upstream_time = time.perf_counter() - started
            fields = request.scope.get(ACCESS_LOG_FIELDS)
            if fields is not None:
                fields["upstream_ms"] = round(upstream_time * 1000, 2)
            if self.metrics is not None:
                self.metrics.upstream_latency.labels(route.upstream).observe(upstream_time)
                self._count(route.upstream, _STATUS_CLASS[resp.status // 100])
            return _relay(resp, route)
        if last is not None:
            return self._failure(request, route, last)
        self._count(route.upstream, "circuit_open")
        retry_after = max(1, math.ceil(self.upstreams.retry_after(route.upstream)))
        return problem_response(
            503,
            f"the {route.upstream} service is unavailable; try again in {retry_after} s",
            type="upstream-unavailable",
            title="Upstream unavailable",
            instance=request.url.path,
            headers={"Retry-After": str(retry_after)},
            upstream=route.upstream,
        )

    def _count(self, upstream: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.upstream_requests.labels(upstream, outcome).inc()

    def _failure(self, request: Request, route: RouteEntry, exc: BaseException) -> Response:
        if isinstance(exc, TimeoutError):
            return problem_response(
                504,
                f"the {route.upstream} service did not answer in time",
                type="upstream-timeout",
                title="Upstream timeout",
                instance=request.url.path,
                upstream=route.upstream,
            )
        return problem_response(
            502,
            f"the {route.upstream} service is unavailable",
            type="upstream-unavailable",
            title="Upstream unavailable",
            instance=request.url.path,
            upstream=route.upstream,
        )


def _relay(resp: aiohttp.ClientResponse, route: RouteEntry) -> Response:
    """Stream the upstream's body back chunk by chunk as it arrives; never buffered whole."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # the status line is out; cutting the connection is the only honest signal left
            log.warning("upstream response broke off", extra={"upstream": route.upstream, "error": repr(exc)})
            raise
        finally:
            resp.release()

    out = StreamingResponse(body(), status_code=resp.status, background=BackgroundTask(resp.release))
    out.raw_headers = backward_headers(resp.raw_headers)
    return out


class ProxyRoute(BaseRoute):
    """The Starlette route of one route-table row; its `path` labels that row's metrics."""

    def __init__(self, entry: RouteEntry, proxy: Proxy) -> None:
        self.entry = entry
        self.proxy = proxy
        self.path = entry.prefix.rstrip("/") + "/*"
        self.name = f"proxy:{entry.prefix}"

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Full match for HTTP requests under the row's prefix."""
        if scope["type"] == "http" and self.entry.matches(scope["path"]):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        """Proxy routes have no reverse URLs."""
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward the request and send the answer."""
        response = await self.proxy.handle(Request(scope, receive), self.entry)
        await response(scope, receive, send)
