"""Bounds on request bodies, checked before the app parses them: size for every body, nesting depth for JSON."""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tongban_kit.problems import problem_response

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: how much of a refused body is read and dropped before answering (beyond that the connection just closes)
DRAIN_BYTES = 1024 * 1024
#: far beyond any document of the APIs, far below what recursive parsers (json, pydantic) survive
DEFAULT_MAX_JSON_DEPTH = 64

#: a JSON string literal, or an unterminated one up to the end; possessive, so scanning takes linear time
_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)
#: keeps only brackets, objects' as arrays'
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_too_deep(body: bytes, max_depth: int) -> bool:
    """Whether a JSON text nests arrays and objects more than `max_depth` deep, without parsing it (no recursion).

    Exact for well-formed JSON; for malformed JSON it is true at least when a parser would recurse deeper than
    twice `max_depth` before failing.
    """
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False
    rest = _STRING.sub(b"", body).translate(_BRACKETS, _NOT_BRACKETS)
    run = b"[" * (max_depth + 1)  # that many opened in a row: too deep whatever follows
    for _ in range(max_depth):  # each pass takes away the innermost level
        if run in rest:
            return True
        shorter = rest.replace(b"[]", b"")
        if len(shorter) == len(rest):
            break
        rest = shorter
    opened = rest.find(b"[")
    return opened >= 0 and (rest.find(b"]", opened) >= 0 or rest.count(b"[") > max_depth)


def _may_be_json(content_type: str) -> bool:
    """Whether some route could parse the body as JSON: anything but a form. FastAPI reads JSON only when the
    content type says so, but a route that reads the body itself (RFC 7591 registration) may not ask, so a body
    labelled `text/plain` is bounded as well; forms have no nesting to bound."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media != "application/x-www-form-urlencoded" and not media.startswith("multipart/")


class BodyLimits:
    """ASGI middleware: 413 for a body over its size limit, 400 for JSON nested too deeply (problem+json).

    Bodies are read whole before the app sees them (they are small by this very limit); `path_limits` gives
    exact paths (bulk imports) a size limit of their own.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
        path_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes, self.max_json_depth = max_bytes, max_json_depth
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: str | None = None
        chunked, content_type = False, ""
        for k, v in scope["headers"]:
            if k == b"content-length":
                length = v.decode("latin-1")
            elif k == b"transfer-encoding":
                chunked = True
            elif k == b"content-type":
                content_type = v.decode("latin-1")
        if length is None and not chunked:
            await self.app(scope, receive, send)  # no body
            return
        limit = self.path_limits.get(scope["path"], self.max_bytes)
        if length is not None and length.isdigit() and int(length) > limit:
            await self._too_large(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, receive, send, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if _may_be_json(content_type) and json_too_deep(body, self.max_json_depth):
            detail = f"the JSON body nests arrays and objects more than {self.max_json_depth} levels deep"
            await problem_response(400, detail, type="json-too-deep", instance=scope["path"])(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        # read on (discarding) a while, so that a client still sending its body sees the answer, not a reset
        drained, more = 0, True
        while more and drained <= max(limit, DRAIN_BYTES):
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            more = message.get("more_body", False)
        detail = f"the request body is larger than {limit} bytes"
        response = problem_response(413, detail, type="payload-too-large", instance=scope["path"])
        response.headers["Connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body read already, then whatever comes next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
