"""Assertions and polling shared by every service's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from tongban_kit.demo import demo_user_id

T = TypeVar("T")


def assert_problem(r: httpx.Response, status: int, type_suffix: str | None = None) -> dict[str, Any]:
    """Check an RFC 9457 problem answer and return its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json", r.headers["content-type"]
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"]
    if type_suffix is not None:
        assert body["type"].endswith("/" + type_suffix), body
    return body


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout: float = 5.0, what: str = "") -> T:
    """Poll `probe` until it returns something other than None (or fail after `timeout` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if value is not None:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or 'a condition'}")
        await asyncio.sleep(0.02)


#: settings of a test service whose platform administrator is the demo `demo-admin` (refused unless allowed outside
#: dev; see tongban_kit.settings.AdminSettings)
DEMO_ADMIN_SETTINGS: dict[str, Any] = {"bootstrap_admins": [demo_user_id("demo-admin")], "allow_demo_admins": True}
