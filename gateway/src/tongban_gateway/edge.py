"""Browser-facing edge: CORS for the registered apps' origins and security headers on every answer."""

from __future__ import annotations

import re

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tongban_gateway.config import Settings
from tongban_gateway.origins import OriginDirectory
from tongban_kit.observe import ROUTE_TEMPLATE
from tongban_kit.problems import problem_response

#: methods a browser app may use cross-origin
CORS_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE"
#: response headers a browser app may read cross-origin (besides the CORS-safelisted ones)
CORS_EXPOSE = b"Location, Retry-After, RateLimit, RateLimit-Policy, WWW-Authenticate, X-Request-ID, traceparent"
CORS_MAX_AGE = b"600"
_TOKEN_LIST = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")


class EdgeMiddleware:
    """Answers CORS preflights for allowed origins, adds CORS and security headers the upstream did not set.

    The allowed origins are the registered browser apps' (`OriginDirectory`). Requests from other origins get no
    CORS headers, and their preflights a 403.
    """

    def __init__(self, app: ASGIApp, settings: Settings, origins: OriginDirectory) -> None:
        self.app = app
        self.origins = origins
        security = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]
        if settings.public_url.startswith("https://") and settings.hsts_seconds > 0:
            security.append((b"strict-transport-security", f"max-age={settings.hsts_seconds}".encode()))
        self.security = tuple(security)
        self._security_names = frozenset(k for k, _ in security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin: bytes | None = None
        preflight_method: bytes | None = None
        preflight_headers: bytes | None = None
        for k, v in scope["headers"]:
            if k == b"origin":
                origin = v
            elif k == b"access-control-request-method":
                preflight_method = v
            elif k == b"access-control-request-headers":
                preflight_headers = v
        allowed = origin is not None and self.origins.allows(origin)
        if scope["method"] == "OPTIONS" and origin is not None and preflight_method is not None:
            scope[ROUTE_TEMPLATE] = "cors-preflight"  # the metrics label: answered here, never proxied
            await self._preflight(scope, receive, send, origin if allowed else None, preflight_headers)
            return
        cors = allowed and origin is not None

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self.security if k not in present]
                if b"content-security-policy" not in present and not _is_html(headers):
                    headers.append((b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"))
                if cors and b"access-control-allow-origin" not in present:
                    assert origin is not None
                    headers += [
                        (b"access-control-allow-origin", origin),
                        (b"access-control-expose-headers", CORS_EXPOSE),
                    ]
                if self.origins.allowed:
                    headers.append((b"vary", b"Origin"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _preflight(
        self, scope: Scope, receive: Receive, send: Send, origin: bytes | None, requested: bytes | None
    ) -> None:
        if origin is None:
            response = problem_response(
                403, "this origin is not a registered app's origin", type="cors-origin-not-allowed"
            )
        elif requested is not None and requested.strip() and not _TOKEN_LIST.fullmatch(requested.decode("latin-1")):
            response = problem_response(400, "Access-Control-Request-Headers is not a list of header names")
        else:
            response = Response(status_code=204)
            response.raw_headers = [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-methods", CORS_METHODS),
                (b"access-control-max-age", CORS_MAX_AGE),
                (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
            ]
            if requested is not None and requested.strip():
                response.raw_headers.append((b"access-control-allow-headers", requested))
        response.raw_headers += list(self.security)
        await response(scope, receive, send)


def _is_html(headers: list[tuple[bytes, bytes]]) -> bool:
    for k, v in headers:
        if k.lower() == b"content-type":
            return v.lower().startswith(b"text/html")
    return False
