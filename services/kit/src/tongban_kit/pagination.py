"""Cursor pagination: opaque, URL-safe cursors and a generic page model."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, Field
from starlette.responses import Response

from tongban_kit.problems import Problem

T = TypeVar("T")

MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    """One page of a list; pass `next_cursor` back as `cursor` for the next page."""

    items: list[T]
    next_cursor: str | None = Field(None, description="opaque cursor of the next page; null on the last page")


def encode_cursor(key: dict[str, Any]) -> str:
    """Encode the sort key of the last item of a page."""
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    """Decode a cursor; a malformed one is a 400 problem."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise Problem(
            400, "the cursor is not valid; use a next_cursor from a previous page", type="invalid-cursor"
        ) from exc
    if not isinstance(value, dict):
        raise Problem(400, "the cursor is not valid; use a next_cursor from a previous page", type="invalid-cursor")
    return value


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
