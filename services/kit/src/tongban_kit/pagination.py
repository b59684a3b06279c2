"""Cursor pagination: opaque, URL-safe, signed cursors and a generic page model."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, Field
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tongban_kit.problems import Problem
from tongban_kit.secrets import b64url, derive_key

T = TypeVar("T")
R = TypeVar("R")

MAX_LIMIT = 500
#: used only in development when no `cursor_secret` is set (refused outside dev, like every default secret)
DEV_CURSOR_SECRET = "tongban-dev-cursor-secret"
TAG_BYTES = 16
_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,4096}\.[A-Za-z0-9_-]{22}", re.ASCII)
_INVALID = "the cursor is not valid; use a next_cursor from a previous page"


class Page(BaseModel, Generic[T]):
    """One page of a list; pass `next_cursor` back as `cursor` for the next page."""

    items: list[T]
    next_cursor: str | None = Field(None, description="opaque cursor of the next page; null on the last page")


def invalid_cursor() -> Problem:
    """The 400 problem of a cursor this service did not issue (malformed, altered or forged)."""
    return Problem(400, _INVALID, type="invalid-cursor")


class CursorCodec:
    """Signs cursors with HMAC-SHA256 (a key derived from the service's secret), so they cannot be forged or altered.

    A cursor is `<base64url(JSON sort key)>.<base64url(tag)>`: opaque to clients, URL-safe, and bound to the
    service (its name is part of the key derivation, so one service's cursors are refused by another).
    """

    def __init__(self, secret: str | None, service: str) -> None:
        """No secret: cursors cannot be made or read (a deployment error, reported on first use)."""
        self.service = service
        self._key = derive_key(secret, b"tongban-cursor/" + service.encode()) if secret else None

    @classmethod
    def for_service(cls, secret: str, service: str, *, dev: bool) -> CursorCodec:
        """The codec of a service: its configured secret, or the development fallback in dev only."""
        return cls(secret or (DEV_CURSOR_SECRET if dev else None), service)

    def _tag(self, body: str) -> str:
        if self._key is None:
            raise RuntimeError(f"cursor_secret of the {self.service} service is not set")
        return b64url(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest()[:TAG_BYTES])

    def encode(self, key: dict[str, Any]) -> str:
        """A signed cursor of a sort key."""
        body = b64url(orjson.dumps(key))
        return f"{body}.{self._tag(body)}"

    def decode(self, cursor: str) -> dict[str, Any]:
        """The sort key of a cursor this service issued; a 400 problem (invalid-cursor) for anything else."""
        if not _SHAPE.fullmatch(cursor):
            raise invalid_cursor()
        body, _, tag = cursor.partition(".")
        if not hmac.compare_digest(tag, self._tag(body)):
            raise invalid_cursor()
        try:
            value = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, ValueError) as exc:
            raise invalid_cursor() from exc
        if not isinstance(value, dict):
            raise invalid_cursor()
        return value


_codec: ContextVar[CursorCodec | None] = ContextVar("tongban_cursor_codec", default=None)


@contextmanager
def signing_cursors(codec: CursorCodec) -> Iterator[None]:
    """Make `codec` the one encode_cursor / decode_cursor use within the block (one request or RPC call)."""
    token = _codec.set(codec)
    try:
        yield
    finally:
        _codec.reset(token)


def _current() -> CursorCodec:
    codec = _codec.get()
    if codec is None:
        raise RuntimeError("cursors are used outside a service request (no cursor codec bound)")
    return codec


def encode_cursor(key: dict[str, Any]) -> str:
    """Encode (and sign) the sort key of the last item of a page."""
    return _current().encode(key)


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    """Decode a cursor; a malformed, altered or forged one is a 400 problem."""
    if not cursor:
        return None
    return _current().decode(cursor)


class CursorMiddleware:
    """Binds the service's cursor codec for every HTTP request."""

    def __init__(self, app: ASGIApp, codec: CursorCodec) -> None:
        self.app = app
        self.codec = codec

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with signing_cursors(self.codec):
            await self.app(scope, receive, send)


def with_cursors(codec: CursorCodec, handler: Callable[[Any], Awaitable[R]]) -> Callable[[Any], Awaitable[R]]:
    """An RPC handler that runs with the service's cursor codec bound."""

    async def bound(payload: Any) -> R:
        with signing_cursors(codec):
            return await handler(payload)

    return bound


def page_of(items: list[T], limit: int, key: Any) -> Page[T]:
    """Build a page from `limit + 1` fetched items; `key(item)` gives the cursor dict of an item."""
    more = len(items) > limit
    items = items[:limit]
    nxt = encode_cursor(key(items[-1])) if more and items else None
    return Page[T](items=items, next_cursor=nxt)


def page_response(items: list[dict[str, Any]], next_cursor: str | None) -> Response:
    """A page of plain rows serialised straight to JSON (for large pages read with Core selects)."""
    body = orjson.dumps({"items": items, "next_cursor": next_cursor}, option=orjson.OPT_UTC_Z)
    return Response(body, media_type="application/json")
