"""Entitlements the directory grants (admin, sending rights, membership) over RPC, and send grants over REST."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tongban_kit.rpc import RpcClient
from tongban_kit.testing.recorder import EventRecorder
from tongban_org.contract import (
    RPC_ADDRESS_CHECK,
    RPC_ENTITLEMENTS,
    AddressCheckReply,
    AddressCheckRequest,
    EntitlementsReply,
    EntitlementsRequest,
)

from .helpers import ADMIN, DSJ_ADMIN, HZ_ADMIN, account, as_, assert_problem, eventually

SEND_GRANTS = "/api/v1/orgs/send-grants"


@pytest.fixture(scope="module")
def rpc(org_app: FastAPI) -> RpcClient:
    return RpcClient(org_app.state.runtime.bus, timeout=3.0)


async def entitlements(rpc: RpcClient, username: str) -> EntitlementsReply:
    return await rpc.call(RPC_ENTITLEMENTS, EntitlementsRequest(principal=account(username)), EntitlementsReply)


async def test_entitlements_of_each_kind_of_account(rpc: RpcClient, seeded: dict[str, str]) -> None:
    whole = await entitlements(rpc, "demo-admin")
    assert whole.admin_all and whole.send_all and seeded["zj"] in whole.admin_units
    hz = await entitlements(rpc, "hz-admin")
    assert (hz.admin_all, hz.admin_units, hz.send_units) == (False, [seeded["zj-hz"]], [seeded["zj-hz"]])
    assert hz.member_units == [seeded["zj-hz"]]
    staff = await entitlements(rpc, "demo-staff")  # the seed's send grant: 省大数据局
    assert (staff.admin_units, staff.send_units) == ([], [seeded["zj-dsj"]])
    assert staff.member_units == [seeded["zj-dsj-sjzyc"]]
    citizen = await entitlements(rpc, "demo-citizen")
    assert citizen == EntitlementsReply(admin_all=False, admin_units=[], send_all=False, send_units=[], member_units=[])


async def test_address_check(rpc: RpcClient, seeded: dict[str, str]) -> None:
    async def check(roots: list[str], unit: str | None, users: list[str]) -> AddressCheckReply:
        req = AddressCheckRequest(roots=roots, unit_id=unit, user_ids=users)
        return await rpc.call(RPC_ADDRESS_CHECK, req, AddressCheckReply)

    dsj = [seeded["zj-dsj"]]
    staff, citizen = account("demo-staff"), account("demo-citizen")
    assert await check(dsj, seeded["zj-dsj-sjzyc"], [staff, citizen]) == AddressCheckReply(
        unit_inside=True, users_outside=[citizen]
    )
    assert (await check(dsj, seeded["zj"], [])).unit_inside is False
    assert (await check(dsj, "no-such-unit", [])).unit_inside is False
    assert (await check([], None, [staff])).users_outside == [staff]
    assert await check(["*"], seeded["zj"], [citizen]) == AddressCheckReply(unit_inside=True, users_outside=[])


async def test_send_grants_are_managed_by_administrators_of_the_subtree(
    client: httpx.AsyncClient, rpc: RpcClient, seeded: dict[str, str], event_recorder: EventRecorder
) -> None:
    person = account("sw-staff")
    body = {"principal": person, "unit_id": seeded["zj-hz-xh"]}
    assert_problem(await client.post(SEND_GRANTS, json=body, headers=DSJ_ADMIN), 403)  # not their subtree
    citizen = as_("demo-citizen")  # the scopes alone do not make an administrator
    assert_problem(await client.post(SEND_GRANTS, json=body, headers=citizen), 403)
    made = await client.post(SEND_GRANTS, json=body, headers=HZ_ADMIN)
    assert made.status_code == 201, made.text
    grant = made.json()
    assert grant["created_by"] == account("hz-admin")
    assert_problem(await client.post(SEND_GRANTS, json=body, headers=ADMIN), 409)
    assert (await entitlements(rpc, "sw-staff")).send_units == [seeded["zj-hz-xh"]]
    listed = (await client.get(SEND_GRANTS, params={"principal": person})).json()
    assert [g["id"] for g in listed] == [grant["id"]]
    assert_problem(await client.get(SEND_GRANTS, params={"principal": "a\x00b"}), 422)
    assert_problem(await client.delete(f"{SEND_GRANTS}/{grant['id']}", headers=DSJ_ADMIN), 403)
    assert (await client.delete(f"{SEND_GRANTS}/{grant['id']}", headers=ADMIN)).status_code == 204
    assert (await entitlements(rpc, "sw-staff")).send_units == []

    async def events() -> bool | None:
        seen = {e["type"] for e in event_recorder.events() if e.get("subject") == grant["id"]}
        return True if {"org.send_grant.added.v1", "org.send_grant.removed.v1"} <= seen else None

    await eventually(events, what="the send grant events")
