"""Masking (数据脱敏): masked by default everywhere, audited unmasking by scope and purpose, encryption at rest."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tongban_kit.db import Database
from tongban_kit.rpc import RpcClient
from tongban_kit.testing.recorder import EventRecorder
from tongban_user.contract import RPC_LOOKUP, LookupReply, LookupRequest

from .helpers import (
    ADMIN,
    CHECK,
    CITIZEN,
    DEMO,
    PII_ADMIN,
    USERS,
    as_,
    assert_problem,
    citizen,
    create,
    eventually,
    search,
)

MASKED_ID = re.compile(r"^\d{6}\*{8}\d{3}[\dX]$")
MASKED_MOBILE = re.compile(r"^1\d{2}\*{4}\d{4}$")
MASKED_EMAIL = re.compile(r"^[^*@]\*{3}@[a-z0-9.-]+$")
PII_FIELDS = ["birth_date", "email", "id_number", "mobile"]


def assert_masked(user: dict[str, Any]) -> None:
    """Personal data of one account body is masked (and the birth date left out)."""
    assert user["masked"] is True
    assert user["birth_date"] is None
    if user["id_number"] is not None:
        assert MASKED_ID.match(user["id_number"]), user
    if user["mobile"] is not None:
        assert MASKED_MOBILE.match(user["mobile"]), user
    if user["email"] is not None:
        assert MASKED_EMAIL.match(user["email"]), user


async def pii_event(recorder: EventRecorder, purpose: str, timeout: float = 5.0) -> dict[str, Any]:
    """The user.pii.accessed.v1 event of one purpose (waiting for the outbox relay)."""

    async def probe() -> dict[str, Any] | None:
        found = [e for e in recorder.events("user.pii.accessed.v1") if e["data"]["purpose"] == purpose]
        return found[0] if found else None

    return await eventually(probe, timeout=timeout, what=f"the audit event of {purpose!r}")


def purpose() -> str:
    """A distinct purpose, so each test finds its own audit event."""
    return f"核验身份 {secrets.token_hex(4)}"


async def test_the_demo_citizen_is_masked_in_every_read(client: httpx.AsyncClient) -> None:
    me = DEMO["demo-citizen"]
    bodies = [
        (await client.get(f"{USERS}/{me}", headers=ADMIN)).json(),
        (await client.get(f"{USERS}/me", headers=CITIZEN)).json(),
        (await search(client, PII_ADMIN, purpose=CHECK, login="13800138000"))["items"][0],
        (await search(client, CITIZEN))["items"][0],
    ]
    for body in bodies:
        assert body["id"] == me
        assert body["id_number"] == "330106********1233"  # 330106 19900512 123 + check character 3
        assert body["mobile"] == "138****8000" and body["email"] == "d***@example.com"
        assert body["gender"] == "male"
        assert_masked(body)


async def test_created_and_updated_bodies_are_masked(client: httpx.AsyncClient) -> None:
    made = await create(client, citizen())
    assert_masked(made)
    r = await client.patch(f"{USERS}/{made['id']}", json={"email": "New.Mail@Example.org"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["email"] == "N***@example.org"
    assert_masked(r.json())
    for item in (await search(client, limit=500))["items"]:
        assert_masked(item)


async def test_unmask_needs_the_scope_then_a_purpose(client: httpx.AsyncClient) -> None:
    url = f"{USERS}/{DEMO['demo-citizen']}"
    r = await client.get(url, params={"unmask": "true", "purpose": "x"}, headers=ADMIN)
    assert "user:pii" in assert_problem(r, 403, "insufficient-scope")["detail"]
    r = await client.get(url, params={"unmask": "true"}, headers=PII_ADMIN)
    assert_problem(r, 400, "purpose-required")
    r = await client.get(url, params={"unmask": "true", "purpose": "   "}, headers=PII_ADMIN)
    assert_problem(r, 400, "purpose-required")
    r = await client.get(USERS, params={"unmask": "true"}, headers=ADMIN)
    assert_problem(r, 403, "insufficient-scope")
    r = await client.get(f"{USERS}/me", params={"unmask": "true"}, headers=as_("demo-citizen", "user:pii"))
    assert_problem(r, 400, "purpose-required")
    # the scope alone unmasks nothing
    assert_masked((await client.get(url, headers=PII_ADMIN)).json())


async def test_unmasked_get_is_audited(client: httpx.AsyncClient, event_recorder: EventRecorder) -> None:
    body = citizen(email="Wu.Jiu@Example.com")
    made = await create(client, body)
    why = purpose()
    r = await client.get(f"{USERS}/{made['id']}", params={"unmask": "true", "purpose": why}, headers=PII_ADMIN)
    assert r.status_code == 200, r.text
    full = r.json()
    assert full["masked"] is False
    assert full["id_number"] == body["id_number"] and full["mobile"] == body["mobile"]
    assert full["email"] == "Wu.Jiu@example.com"
    assert full["birth_date"] == f"{body['id_number'][6:10]}-{body['id_number'][10:12]}-{body['id_number'][12:14]}"

    event = await pii_event(event_recorder, why)
    assert event["source"] == "/tongban/user"
    data = event["data"]
    assert data["actor"] == DEMO["demo-admin"] and data["user_ids"] == [made["id"]]
    assert data["fields"] == PII_FIELDS and data["action"] == "users.get"
    assert data["request_id"] == r.headers["x-request-id"]


async def test_unmasked_search_and_me_are_audited(client: httpx.AsyncClient, event_recorder: EventRecorder) -> None:
    staff_only = as_("demo-admin", "user:pii")
    why = purpose()
    page = await search(client, staff_only, kind="staff", limit=3, unmask="true", purpose=why)
    assert len(page["items"]) == 3 and all(u["masked"] is False for u in page["items"])
    assert all(re.fullmatch(r"1350000\d{4}", u["mobile"]) for u in page["items"])
    data = (await pii_event(event_recorder, why))["data"]
    assert data["action"] == "users.search" and data["user_ids"] == [u["id"] for u in page["items"]]
    assert data["fields"] == ["email", "mobile"]  # demo staff have no identity number

    why = purpose()
    r = await client.get(
        f"{USERS}/me", params={"unmask": "true", "purpose": why}, headers=as_("demo-citizen", "user:pii")
    )
    assert r.status_code == 200 and r.json()["mobile"] == "13800138000" and r.json()["birth_date"] == "1990-05-12"
    data = (await pii_event(event_recorder, why))["data"]
    assert data == data | {"actor": DEMO["demo-citizen"], "user_ids": [DEMO["demo-citizen"]], "action": "users.me"}
    assert data["fields"] == PII_FIELDS

    # an empty result unmasks nothing and is not audited
    why = purpose()
    assert (await search(client, staff_only, q="没有这个人", unmask="true", purpose=why))["items"] == []
    with pytest.raises(AssertionError, match="timed out"):
        await pii_event(event_recorder, why, timeout=0.5)


async def test_identity_numbers_are_stored_encrypted_and_found_by_keyed_hash(
    client: httpx.AsyncClient, user_db: Database, user_app: FastAPI
) -> None:
    body = citizen()
    plain = body["id_number"]
    made = await create(client, body)
    async with user_db.engine.connect() as conn:
        row = (
            (await conn.execute(text("SELECT * FROM user_account WHERE id = :id"), {"id": made["id"]})).mappings().one()
        )
        everything = (await conn.execute(text("SELECT t::text FROM user_account t"))).scalars().all()
        outbox = (await conn.execute(text("SELECT payload FROM kit_outbox"))).scalars().all()
    assert row["id_number_enc"].startswith("v1.") and re.fullmatch(r"[0-9a-f]{64}", row["id_number_hash"])
    assert row["id_number_masked"] == made["id_number"]
    for column, value in row.items():
        assert plain not in str(value), f"the identity number is readable in column {column}"
    assert not any(plain in r for r in everything)
    assert not any(plain in p or body["mobile"] in p for p in outbox)

    rpc: RpcClient = user_app.state.runtime.rpc
    found = await rpc.call(RPC_LOOKUP, LookupRequest(id_number=plain.lower()), LookupReply)
    assert found.user.id == made["id"] and found.user.id_number == made["id_number"] and found.user.masked
