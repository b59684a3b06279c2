"""Helpers of the SCIM tests (the services themselves come from conftest.py): headers, bodies, checks, events."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from scim2_client.engines.asgi import ASGISCIMClient

from tongban_kit.testing.recorder import EventRecorder
from tongban_user.identity import make_id_number

from .helpers import as_

SCIM = "/scim/v2"
USERS = f"{SCIM}/Users"
SCIM_JSON = "application/scim+json"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
TONGBAN_URN = "urn:tongban:scim:schemas:extension:2.0:User"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
#: the bootstrap administrator; with user:pii contacts come back unmasked (audited)
ADMIN = as_("demo-admin", "user:pii")
MASKED_ADMIN = as_("demo-admin")

_serial = itertools.count(1)


def serial() -> int:
    """A number unique within the test run."""
    return next(_serial)


def scim_mobile(n: int) -> str:
    """A mobile number no other test uses (177 prefix)."""
    return f"177{n:08d}"


def scim_id_number(n: int) -> str:
    """A valid identity number, distinct for each `n`."""
    return make_id_number("330102", date(1970, 1, 1) + timedelta(days=n % 15000), f"{n % 1000:03d}")


def user_body(**extra: Any) -> dict[str, Any]:
    """A SCIM User with fresh unique values (userName, email, mobile)."""
    n = serial()
    return {
        "schemas": [USER_URN],
        "userName": f"scim.user{n}",
        "displayName": f"SCIM 用户{n}",
        "emails": [{"value": f"scim{n}@example.com", "type": "work", "primary": True}],
        "phoneNumbers": [{"value": scim_mobile(n), "type": "mobile"}],
        **extra,
    }


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    """A PatchOp message."""
    return {"schemas": [PATCH_URN], "Operations": list(operations)}


def assert_scim_error(r: httpx.Response, status: int, scim_type: str | None = None) -> dict[str, Any]:
    """Check a SCIM error answer (status as a string, the SCIM media type) and return its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(SCIM_JSON), r.headers["content-type"]
    body: dict[str, Any] = r.json()
    assert body["schemas"] == [ERROR_URN], body
    assert body["status"] == str(status), body
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body
    return body


async def create_user(client: httpx.AsyncClient, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST /Users that must answer 201."""
    r = await client.post(USERS, json=body or user_body(), headers=ADMIN)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def events_of(
    recorder: EventRecorder, type_: str, subject: str | None = None, match: Callable[[dict[str, Any]], bool] = bool
) -> list[dict[str, Any]]:
    """The events of one type (about one account, matching `match`), once one arrived (the relay is asynchronous)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        found = [e for e in recorder.events(type_) if (subject is None or e.get("subject") == subject) and match(e)]
        if found:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"no {type_} event about {subject} within 5 s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def scim_client(user_app: FastAPI) -> AsyncIterator[ASGISCIMClient]:
    """scim2-client's in-process engine on the user service, as the bootstrap administrator (with user:pii)."""
    yield ASGISCIMClient(user_app, base_url=f"http://user.test{SCIM}", headers=ADMIN)
