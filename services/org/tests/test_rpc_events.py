"""The org service on the bus: typed RPC endpoints, ADR-32 discovery, and CloudEvents on JetStream."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from pydantic import BaseModel

from tongban_kit.nats import Bus
from tongban_kit.rpc import RpcBadRequest, RpcClient, RpcNotFound, discover
from tongban_kit.testing.recorder import EventRecorder
from tongban_org.contract import (
    CONTRACT,
    RPC_ADMIN_SCOPES,
    RPC_ANCESTORS,
    RPC_CONTAINS_USER,
    RPC_GET_UNITS,
    RPC_MEMBERS,
    AdminScopesReply,
    AdminScopesRequest,
    AncestorsRequest,
    ContainsUserReply,
    ContainsUserRequest,
    GetUnitsRequest,
    ListMembersRequest,
    MembersReply,
    UnitsReply,
)

from .helpers import ADMIN, HZ_ADMIN, MEMBERSHIPS, UNITS, account, add_member, create_unit, eventually

MISSING = "00000000-0000-7000-8000-000000000000"


@pytest.fixture(scope="module")
def bus(org_app: FastAPI) -> Bus:
    b: Bus = org_app.state.runtime.bus
    return b


@pytest.fixture(scope="module")
def rpc(bus: Bus) -> RpcClient:
    return RpcClient(bus, timeout=3.0)


async def test_units_get_keeps_order_and_drops_unknown_ids(rpc: RpcClient, seeded: dict[str, str]) -> None:
    ids = [seeded["zj-nb"], MISSING, seeded["zj-hz"], seeded["zj-nb"]]
    reply = await rpc.call(RPC_GET_UNITS, GetUnitsRequest(ids=ids), UnitsReply)
    assert [u.id for u in reply.units] == [seeded["zj-nb"], seeded["zj-hz"]]
    assert reply.units[1].short_name == "杭州市" and reply.units[1].depth == 1
    assert (await rpc.call(RPC_GET_UNITS, GetUnitsRequest(ids=[MISSING]), UnitsReply)).units == []


async def test_ancestors_and_not_found(rpc: RpcClient, seeded: dict[str, str]) -> None:
    reply = await rpc.call(RPC_ANCESTORS, AncestorsRequest(unit_id=seeded["zj-hz-xh"]), UnitsReply)
    assert [u.id for u in reply.units] == [seeded["zj"], seeded["zj-hz"]]
    with pytest.raises(RpcNotFound, match=MISSING):
        await rpc.call(RPC_ANCESTORS, AncestorsRequest(unit_id=MISSING), UnitsReply)
    with pytest.raises(RpcNotFound):
        await rpc.call(RPC_MEMBERS, ListMembersRequest(unit_id=MISSING), MembersReply)


async def test_members_contains_user_and_admin_scopes(
    client: httpx.AsyncClient, rpc: RpcClient, seeded: dict[str, str]
) -> None:
    top = await create_unit(client, seeded["zj-hz-bj"], "滨江区RPC测试局", "department", "county", "330108")
    sub = await create_unit(client, top["id"], "滨江区RPC测试局一科", "internal_institution", "county", "330108")
    made = [await add_member(client, top["id"], f"rpc-top-{n}") for n in range(2)]
    made += [await add_member(client, sub["id"], f"rpc-sub-{n}") for n in range(3)]

    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        req = ListMembersRequest(unit_id=top["id"], recursive=True, limit=2, cursor=cursor)
        page = await rpc.call(RPC_MEMBERS, req, MembersReply)
        seen += [m.id for m in page.items]
        pages += 1
        if (cursor := page.next_cursor) is None:
            break
    assert pages == 3 and sorted(seen) == sorted(m["id"] for m in made) and len(set(seen)) == 5
    direct = await rpc.call(RPC_MEMBERS, ListMembersRequest(unit_id=top["id"]), MembersReply)
    assert {m.user_id for m in direct.items} == {"rpc-top-0", "rpc-top-1"}

    async def contains(unit: str, user: str) -> ContainsUserReply:
        return await rpc.call(RPC_CONTAINS_USER, ContainsUserRequest(unit_id=unit, user_id=user), ContainsUserReply)

    assert await contains(seeded["zj"], "rpc-sub-1") == ContainsUserReply(contains=True, unit_ids=[sub["id"]])
    assert await contains(top["id"], "rpc-top-0") == ContainsUserReply(contains=True, unit_ids=[top["id"]])
    assert await contains(sub["id"], "rpc-top-0") == ContainsUserReply(contains=False, unit_ids=[])
    assert (await contains(seeded["zj-nb"], "rpc-sub-1")).contains is False

    async def scopes(principal: str) -> AdminScopesReply:
        return await rpc.call(RPC_ADMIN_SCOPES, AdminScopesRequest(principal=principal), AdminScopesReply)

    whole = await scopes(account("demo-admin"))  # the whole tree: every root, the seeded province among them
    assert whole.all and seeded["zj"] in whole.unit_ids
    assert await scopes(account("hz-admin")) == AdminScopesReply(all=False, unit_ids=[seeded["zj-hz"]])
    assert await scopes(account("nobody")) == AdminScopesReply(all=False, unit_ids=[])
    r = await client.post(
        "/api/v1/orgs/admin-grants", json={"principal": account("bj-admin"), "unit_id": top["id"]}, headers=HZ_ADMIN
    )
    assert r.status_code == 201, r.text
    assert await scopes(account("bj-admin")) == AdminScopesReply(all=False, unit_ids=[top["id"]])


async def test_malformed_requests_are_bad_requests(
    rpc: RpcClient, seeded: dict[str, str], event_recorder: EventRecorder
) -> None:
    with pytest.raises(RpcBadRequest, match="cursor"):
        await rpc.call(RPC_MEMBERS, ListMembersRequest(unit_id=seeded["zj"], cursor="garbage!"), MembersReply)
    # These break the request schema on purpose; the run's recorder (rightly) counts them as contract
    # breaches, so each is taken out of the recording once it has been seen.
    bad: list[tuple[Any, BaseModel, str]] = [
        (RPC_GET_UNITS, GetUnitsRequest.model_construct(ids=[]), "ids"),
        (
            RPC_MEMBERS,
            ListMembersRequest.model_construct(unit_id=seeded["zj"], recursive=True, limit=0, cursor=None),
            "limit",
        ),
    ]
    for spec, request, field in bad:
        with pytest.raises(RpcBadRequest, match=f"invalid request: {field}"):
            await rpc.call(spec, request, UnitsReply)
        sent = (spec.subject, request.model_dump_json().encode())

        async def recorded(sent: tuple[str, bytes] = sent) -> bool | None:
            return True if sent in event_recorder.messages else None

        await eventually(recorded, what=f"the recorder to see {sent}")
        event_recorder.messages.remove(sent)


async def test_discovery_lists_the_service_and_counts_requests(
    bus: Bus, rpc: RpcClient, seeded: dict[str, str]
) -> None:
    [ping] = await discover(bus, "PING", "org", wait=0.2)
    assert (ping["name"], ping["version"]) == (bus.stream_name("org"), CONTRACT.version)
    [info] = await discover(bus, "INFO", "org", wait=0.2)
    assert info["id"] == ping["id"]
    endpoints = {e["name"]: e for e in info["endpoints"]}
    assert set(endpoints) == {spec.name for spec in CONTRACT.rpcs}
    for spec in CONTRACT.rpcs:
        assert endpoints[spec.name]["subject"] == bus.subject(spec.subject)
        assert endpoints[spec.name]["metadata"]["request_schema"] == spec.request.__name__

    async def served() -> int:
        [stats] = await discover(bus, "STATS", "org", wait=0.2)
        return int({e["name"]: e for e in stats["endpoints"]}["units-get"]["num_requests"])

    before = await served()
    for _ in range(3):
        await rpc.call(RPC_GET_UNITS, GetUnitsRequest(ids=[seeded["zj"]]), UnitsReply)
    assert await served() == before + 3


class Tap:
    """Every org event appended to the stream after the tap opened (an ordered, ephemeral consumer)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.seen: list[tuple[Msg, dict[str, Any]]] = []

    async def __aenter__(self) -> Tap:
        self.sub = await self.bus.js.subscribe(
            self.bus.subject("org.>"),
            stream=self.bus.stream_name("ORG_EVENTS"),
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sub.unsubscribe()

    async def wait(self, type_: str, **match: Any) -> tuple[Msg, dict[str, Any]]:
        """The first event of `type_` whose data has the given top-level (or `unit.`/`membership.`) values."""

        def hit(ev: dict[str, Any]) -> bool:
            data = ev["data"]
            flat = {**data.get("unit", {}), **data.get("membership", {}), **data}
            return ev["type"] == type_ and all(flat.get(k) == v for k, v in match.items())

        async def probe() -> tuple[Msg, dict[str, Any]] | None:
            for msg, ev in self.seen:
                if hit(ev):
                    return msg, ev
            try:
                msg = await self.sub.next_msg(timeout=0.2)
            except TimeoutError:
                return None
            self.seen.append((msg, json.loads(msg.data)))
            return None

        return await eventually(probe, timeout=5.0, what=f"{type_} with {match}")


def check_envelope(bus: Bus, msg: Msg, ev: dict[str, Any], subject_id: str) -> None:
    assert msg.subject == bus.subject(ev["type"])
    assert msg.headers and msg.headers["Nats-Msg-Id"] == ev["id"]
    assert (ev["specversion"], ev["source"], ev["subject"]) == ("1.0", "/tongban/org", subject_id)
    assert ev["dataschema"] == f"https://tongban.dev/contracts/events/{ev['type']}.json"


async def test_unit_lifecycle_events(client: httpx.AsyncClient, bus: Bus, seeded: dict[str, str]) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with Tap(bus) as tap:
        parent = await create_unit(
            client,
            seeded["zj-hz-sc"],
            "上城区事件测试局",
            "department",
            "county",
            "330102",
            headers=ADMIN | {"traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
        )
        child = await create_unit(
            client, parent["id"], "上城区事件测试局一科", "internal_institution", "county", "330102"
        )
        pid = parent["id"]
        assert (await client.patch(f"{UNITS}/{pid}", json={"name": "上城区事件局"}, headers=ADMIN)).status_code == 200
        r = await client.post(f"{UNITS}/{pid}/move", json={"new_parent_id": seeded["zj-hz"]}, headers=ADMIN)
        assert r.status_code == 200, r.text
        r = await client.post(f"{UNITS}/{pid}/dissolve", json={"cascade": True, "reason": "合并"}, headers=ADMIN)
        assert r.status_code == 200, r.text

        msg, created = await tap.wait("org.unit.created.v1", id=pid)
        check_envelope(bus, msg, created, pid)
        assert (created["data"]["actor"], created["data"]["unit"]["name"]) == (
            account("demo-admin"),
            "上城区事件测试局",
        )
        assert created["traceparent"].startswith(f"00-{trace}-")
        msg, updated = await tap.wait("org.unit.updated.v1", id=pid)
        check_envelope(bus, msg, updated, pid)
        assert (updated["data"]["changed"], updated["data"]["unit"]["name"]) == (["name"], "上城区事件局")
        msg, moved = await tap.wait("org.unit.moved.v1", id=pid)
        check_envelope(bus, msg, moved, pid)
        assert (moved["data"]["from_parent_id"], moved["data"]["to_parent_id"]) == (seeded["zj-hz-sc"], seeded["zj-hz"])
        assert (moved["data"]["descendants_moved"], moved["data"]["unit"]["depth"]) == (1, 2)
        msg, dissolved = await tap.wait("org.unit.dissolved.v1", unit_id=pid)
        check_envelope(bus, msg, dissolved, pid)
        assert (dissolved["data"]["reason"], dissolved["data"]["cascade_root_id"]) == ("合并", None)
        _, cascaded = await tap.wait("org.unit.dissolved.v1", unit_id=child["id"])
        assert (cascaded["data"]["cascade_root_id"], cascaded["data"]["parent_id"]) == (pid, pid)

        ours = [ev["type"] for _, ev in tap.seen if ev["subject"] == pid]
        assert ours == ["org.unit.created.v1", "org.unit.updated.v1", "org.unit.moved.v1", "org.unit.dissolved.v1"]
        assert len({ev["id"] for _, ev in tap.seen}) == len(tap.seen)


async def test_membership_events(client: httpx.AsyncClient, bus: Bus, seeded: dict[str, str]) -> None:
    async with Tap(bus) as tap:
        unit = await create_unit(
            client, seeded["zj-hz-gs"], "拱墅区事件测试中心", "public_institution", "county", "330105"
        )
        first = await add_member(client, unit["id"], "ev.one", title="主任")
        second = await add_member(client, unit["id"], "ev.two")
        r = await client.patch(f"{MEMBERSHIPS}/{first['id']}", json={"is_leader": True}, headers=ADMIN)
        assert r.status_code == 200, r.text
        assert (await client.delete(f"{MEMBERSHIPS}/{first['id']}", headers=ADMIN)).status_code == 204
        r = await client.post(f"{UNITS}/{unit['id']}/dissolve", json={"cascade": True}, headers=ADMIN)
        assert r.json()["memberships_ended"] == 1

        msg, added = await tap.wait("org.membership.added.v1", id=first["id"])
        check_envelope(bus, msg, added, first["id"])
        member = added["data"]["membership"]
        assert (member["user_id"], member["unit_id"], member["title"]) == ("ev.one", unit["id"], "主任")
        assert member["unit"]["name"] == "拱墅区事件测试中心"
        _, changed = await tap.wait("org.membership.updated.v1", id=first["id"])
        assert (changed["data"]["changed"], changed["data"]["membership"]["is_leader"]) == (["is_leader"], True)
        msg, removed = await tap.wait("org.membership.removed.v1", membership_id=first["id"])
        check_envelope(bus, msg, removed, first["id"])
        assert (removed["data"]["reason"], removed["data"]["user_id"]) == ("removed", "ev.one")
        _, ended = await tap.wait("org.membership.removed.v1", membership_id=second["id"])
        assert (ended["data"]["reason"], ended["data"]["unit_id"]) == ("unit_dissolved", unit["id"])
