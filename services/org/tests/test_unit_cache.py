"""RPC unit reads come from a per-replica cache that the service's own unit events keep fresh."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tongban_kit.nats import Bus
from tongban_kit.rpc import RpcClient
from tongban_org.contract import RPC_GET_UNITS, GetUnitsRequest, UnitsReply

from .helpers import ADMIN, UNITS, create_unit, eventually


@pytest.fixture(scope="module")
def rpc(org_app: FastAPI) -> RpcClient:
    bus: Bus = org_app.state.runtime.bus
    return RpcClient(bus, timeout=3.0)


async def _get(rpc: RpcClient, *ids: str) -> dict[str, dict[str, object]]:
    reply = await rpc.call(RPC_GET_UNITS, GetUnitsRequest(ids=list(ids)), UnitsReply)
    return {u.id: u.model_dump() for u in reply.units}


async def test_updates_and_moves_reach_cached_units(
    client: httpx.AsyncClient, rpc: RpcClient, seeded: dict[str, str]
) -> None:
    parent = await create_unit(client, seeded["zj-hz"], "缓存测试中心", "public_institution", "city", "3301")
    child = await create_unit(client, parent["id"], "缓存测试科", "internal_institution", "city", "3301")
    first = await _get(rpc, parent["id"], child["id"])
    assert first[parent["id"]]["name"] == "缓存测试中心" and first[child["id"]]["depth"] == 3
    assert (await _get(rpc, parent["id"]))[parent["id"]]["name"] == "缓存测试中心"  # now served from the cache

    r = await client.patch(f"{UNITS}/{parent['id']}", json={"name": "缓存测试中心（新）"}, headers=ADMIN)
    assert r.status_code == 200

    async def renamed() -> bool | None:
        return (await _get(rpc, parent["id"]))[parent["id"]]["name"] == "缓存测试中心（新）" or None

    await eventually(renamed, timeout=5, what="the renamed unit over RPC")

    # a move changes the depth of every descendant: the cache must not keep the old one
    r = await client.post(f"{UNITS}/{parent['id']}/move", json={"new_parent_id": seeded["zj"]}, headers=ADMIN)
    assert r.status_code == 200, r.text

    async def moved() -> bool | None:
        got = await _get(rpc, parent["id"], child["id"])
        return (got[parent["id"]]["depth"] == 1 and got[child["id"]]["depth"] == 2) or None

    await eventually(moved, timeout=5, what="the moved subtree over RPC")


async def test_repeated_reads_are_served_from_the_cache(
    org_app: FastAPI, rpc: RpcClient, seeded: dict[str, str]
) -> None:
    cache = org_app.state.unit_cache
    await _get(rpc, seeded["zj-dsj"])
    hits = cache.hits
    await _get(rpc, seeded["zj-dsj"])
    assert cache.hits == hits + 1
