"""The user service on the bus: typed RPC endpoints for other services, and masked account events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tongban_kit.nats import Bus, connect
from tongban_kit.rpc import RpcBadRequest, RpcClient, RpcNotFound
from tongban_kit.testing.recorder import EventRecorder
from tongban_user.contract import (
    RPC_CONTACTS,
    RPC_GET_USERS,
    RPC_LOOKUP,
    ContactsReply,
    ContactsRequest,
    GetUsersRequest,
    LookupReply,
    LookupRequest,
    UsersReply,
)
from tongban_user.models import Kind
from tongban_user.seed import DEMO_ENTERPRISE

from .helpers import ADMIN, DEMO, USERS, citizen, create, eventually, staff

MISSING = "00000000-0000-7000-8000-000000000000"


@pytest.fixture(scope="module")
async def rpc(nats_url: str, nats_namespace: str, user_app: object) -> AsyncIterator[RpcClient]:
    """An RPC client of another service: its own NATS connection in the run's namespace."""
    bus: Bus = await connect(nats_url, name="user-rpc-tests", namespace=nats_namespace)
    try:
        yield RpcClient(bus, timeout=3.0)
    finally:
        await bus.close()


async def lookup(rpc: RpcClient, **key: Any) -> LookupReply:
    return await rpc.call(RPC_LOOKUP, LookupRequest(**key), LookupReply)


async def test_get_keeps_order_drops_unknown_and_masks(rpc: RpcClient) -> None:
    ids = [DEMO["hz-staff"], MISSING, DEMO["demo-citizen"], DEMO["hz-staff"], DEMO["demo-enterprise"]]
    reply = await rpc.call(RPC_GET_USERS, GetUsersRequest(ids=ids), UsersReply)
    assert [u.id for u in reply.users] == [DEMO["hz-staff"], DEMO["demo-citizen"], DEMO["demo-enterprise"]]
    person = reply.users[1]
    assert person.masked and person.mobile == "138****8000" and person.id_number == "330106********1233"
    assert person.birth_date is None and person.email == "d***@example.com"
    assert reply.users[2].operator_ids == [DEMO["demo-citizen2"]]
    assert reply.users[2].representative_id == DEMO["demo-citizen"]
    assert (await rpc.call(RPC_GET_USERS, GetUsersRequest(ids=[MISSING]), UsersReply)).users == []


async def test_lookup_by_login_name(rpc: RpcClient) -> None:
    me = DEMO["demo-citizen"]
    for login in ("13800138000", "+86 138 0013 8000", "demo-citizen@EXAMPLE.com", "Demo-Citizen"):
        found = (await lookup(rpc, login=login)).user
        assert found.id == me and found.masked and found.mobile == "138****8000", login
    assert (await lookup(rpc, login="hz-staff")).user.kind == Kind.staff
    with pytest.raises(RpcNotFound):
        await lookup(rpc, login="13100000000")
    with pytest.raises(RpcNotFound):
        await lookup(rpc, login="nobody")


async def test_lookup_by_identity_number_and_credit_code(client: httpx.AsyncClient, rpc: RpcClient) -> None:
    body = citizen()
    person = await create(client, body)
    assert (await lookup(rpc, id_number=body["id_number"])).user.id == person["id"]
    assert (await lookup(rpc, id_number=" " + body["id_number"].lower())).user.id == person["id"]

    # the same person also has a staff account: the number alone is ambiguous
    worker = await create(client, staff(id_number=body["id_number"]))
    with pytest.raises(RpcBadRequest, match="kind"):
        await lookup(rpc, id_number=body["id_number"])
    assert (await lookup(rpc, id_number=body["id_number"], kind=Kind.citizen)).user.id == person["id"]
    assert (await lookup(rpc, id_number=body["id_number"], kind=Kind.staff)).user.id == worker["id"]
    with pytest.raises(RpcNotFound):
        await lookup(rpc, id_number=body["id_number"], kind=Kind.legal_person)

    # deleted accounts are not found
    assert (await client.delete(f"{USERS}/{worker['id']}", headers=ADMIN)).status_code == 204
    assert (await lookup(rpc, id_number=body["id_number"])).user.id == person["id"]

    enterprise = (await lookup(rpc, credit_code=DEMO_ENTERPRISE[1])).user
    assert enterprise.id == DEMO["demo-enterprise"] and enterprise.kind == Kind.legal_person
    assert enterprise.credit_code == DEMO_ENTERPRISE[1]
    assert (await lookup(rpc, credit_code=DEMO_ENTERPRISE[1].lower())).user.id == DEMO["demo-enterprise"]
    with pytest.raises(RpcNotFound):
        await lookup(rpc, credit_code="91330106MA2CTB0023")


async def test_lookup_bad_requests(rpc: RpcClient) -> None:
    with pytest.raises(RpcBadRequest, match="exactly one"):  # bypasses the client-side check on purpose
        await rpc.call(
            RPC_LOOKUP,
            LookupRequest.model_construct(login="x", id_number=None, credit_code=DEMO_ENTERPRISE[1]),
            LookupReply,
        )
    with pytest.raises(RpcBadRequest, match="exactly one"):
        await rpc.call(
            RPC_LOOKUP, LookupRequest.model_construct(login=None, id_number=None, credit_code=None), LookupReply
        )
    with pytest.raises(RpcBadRequest, match="check character"):
        await lookup(rpc, id_number="110105194912310021")


async def test_contacts_are_unmasked(client: httpx.AsyncClient, rpc: RpcClient) -> None:
    body = citizen(email="Msg.Target@Example.com")
    made = await create(client, body)
    ids = [made["id"], MISSING, DEMO["demo-citizen2"]]
    reply = await rpc.call(RPC_CONTACTS, ContactsRequest(ids=ids), ContactsReply)
    by_id = {c.id: c for c in reply.contacts}
    assert set(by_id) == {made["id"], DEMO["demo-citizen2"]}
    assert by_id[made["id"]].mobile == body["mobile"] and by_id[made["id"]].email == "Msg.Target@example.com"
    assert by_id[DEMO["demo-citizen2"]].mobile == "13900139000" and by_id[DEMO["demo-citizen2"]].name == "李四"
    assert by_id[made["id"]].status == "active"


async def test_lifecycle_events_carry_masked_data_only(
    client: httpx.AsyncClient, event_recorder: EventRecorder
) -> None:
    body = citizen()
    made = await create(client, body)
    url = f"{USERS}/{made['id']}"
    assert (await client.patch(url, json={"name": "事件测试"}, headers=ADMIN)).status_code == 200
    assert (await client.post(f"{url}/disable", json={"reason": "核查"}, headers=ADMIN)).status_code == 200
    assert (await client.post(f"{url}/enable", headers=ADMIN)).status_code == 200
    assert (await client.delete(url, headers=ADMIN)).status_code == 204

    async def mine() -> list[dict[str, Any]] | None:
        found = [e for e in event_recorder.events() if e.get("subject") == made["id"]]
        return found if len(found) >= 5 else None

    events = await eventually(mine, what="the five lifecycle events")
    assert [e["type"] for e in events] == [
        "user.account.created.v1",
        "user.account.updated.v1",
        "user.account.disabled.v1",
        "user.account.enabled.v1",
        "user.account.deleted.v1",
    ]
    created, updated, disabled, enabled, deleted = (e["data"] for e in events)
    assert created["via"] == "rest" and created["actor"] == DEMO["demo-admin"]
    assert created["user"]["masked"] is True and created["user"]["mobile"] == made["mobile"]
    assert created["user"]["id_number"] == made["id_number"] and created["user"]["birth_date"] is None
    assert updated["changed"] == ["name"] and updated["user"]["name"] == "事件测试" and updated["user"]["version"] == 2
    assert disabled == disabled | {"user_id": made["id"], "kind": "citizen", "status": "disabled", "reason": "核查"}
    assert enabled["status"] == "active" and deleted["status"] == "deleted"
    assert all(e["source"] == "/tongban/user" and e["specversion"] == "1.0" for e in events)

    everything = json.dumps(event_recorder.events(), ensure_ascii=False)
    assert body["mobile"] not in everything and body["id_number"] not in everything
    assert "13800138000" not in everything  # nor any demo account's plain data
