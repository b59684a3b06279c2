"""The tree over HTTP: children, subtree, ancestors, move, dissolve and unit history."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI

from tongban_kit.pagination import CursorCodec

from .helpers import (
    ADMIN,
    MEMBERSHIPS,
    UNITS,
    account,
    add_member,
    all_pages,
    assert_problem,
    create_unit,
    get_json,
    new_county_code,
)

Tree = dict[str, dict[str, Any]]


async def build(client: httpx.AsyncClient, seeded: dict[str, str]) -> Tree:
    """A county T under 杭州市 with townships A (villages A1, A2) and B (village B1), and a department D.

    Created so that id (creation) order differs from sort order: A, B, D, then the villages.
    """
    c = new_county_code()
    t = await create_unit(client, seeded["zj-hz"], f"测试县{c}", "government", "county", c)
    a = await create_unit(client, t["id"], "甲镇", "government", "township", c + "001", sort_order=2)
    b = await create_unit(client, t["id"], "乙镇", "government", "township", c + "002", sort_order=1)
    d = await create_unit(client, t["id"], "县数据局", "department", "county", c, sort_order=3)
    a1 = await create_unit(client, a["id"], "甲一村", "community", "village", c + "001001")
    a2 = await create_unit(client, a["id"], "甲二村", "community", "village", c + "001002")
    b1 = await create_unit(client, b["id"], "乙一村", "community", "village", c + "002001")
    return {"T": t, "A": a, "B": b, "D": d, "A1": a1, "A2": a2, "B1": b1}


def names(items: list[dict[str, Any]], tree: Tree) -> list[str]:
    by_id = {u["id"]: k for k, u in tree.items()}
    return [by_id.get(u["id"], u["name"]) for u in items]


async def test_children_come_in_sort_order(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    tree = await build(client, seeded)
    url = f"{UNITS}/{tree['T']['id']}/children"
    assert names((await get_json(client, url))["items"], tree) == ["B", "A", "D"]
    items, sizes = await all_pages(client, url, limit=2)
    assert (names(items, tree), sizes) == (["B", "A", "D"], [2, 1])
    # equal sort orders fall back to creation order
    same = [
        (
            await create_unit(
                client,
                tree["B"]["id"],
                f"乙{n}村",
                "community",
                "village",
                tree["B"]["division_code"][:9] + f"{n:03d}",
                sort_order=1,
            )
        )["id"]
        for n in (7, 8, 9)
    ]
    items, _ = await all_pages(client, f"{UNITS}/{tree['B']['id']}/children", limit=1)
    assert [u["id"] for u in items] == [tree["B1"]["id"], *same]  # B1 has sort order 0


async def test_subtree_is_depth_first_depth_limited_and_paged(
    client: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    tree = await build(client, seeded)
    url = f"{UNITS}/{tree['T']['id']}/subtree"
    full = (await get_json(client, url))["items"]
    assert names(full, tree) == ["A", "A1", "A2", "B", "B1", "D"]
    seen = {tree["T"]["id"]: tree["T"]["depth"]}
    for u in full:  # every unit comes after its parent, one level deeper
        assert seen[u["parent_id"]] == u["depth"] - 1
        seen[u["id"]] = u["depth"]
    assert names((await get_json(client, url, depth=1))["items"], tree) == ["A", "B", "D"]
    assert names((await get_json(client, url, depth=2))["items"], tree) == names(full, tree)
    items, sizes = await all_pages(client, url, limit=4)
    assert (items, sizes) == (full, [4, 2])
    items, sizes = await all_pages(client, url, limit=1, depth=1)
    assert (names(items, tree), sizes) == (["A", "B", "D"], [1, 1, 1])
    count = f"{url}/count"
    assert (await get_json(client, count))["count"] == 6
    assert (await get_json(client, count, depth=1))["count"] == 3
    assert (await get_json(client, f"{UNITS}/{tree['A1']['id']}/subtree/count"))["count"] == 0
    assert_problem(await client.get(url, params={"depth": 0}), 422)


async def test_ancestors_are_root_first(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    tree = await build(client, seeded)
    chain = await get_json(client, f"{UNITS}/{tree['A1']['id']}/ancestors")
    assert [u["id"] for u in chain] == [seeded["zj"], seeded["zj-hz"], tree["T"]["id"], tree["A"]["id"]]
    assert [u["depth"] for u in chain] == [0, 1, 2, 3]
    assert await get_json(client, f"{UNITS}/{seeded['zj']}/ancestors") == []


async def test_move_takes_the_descendants_along(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    tree = await build(client, seeded)
    a, hz = tree["A"]["id"], seeded["zj-hz"]
    r = await client.post(f"{UNITS}/{a}/move", json={"new_parent_id": hz}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["descendants_moved"] == 2
    assert (r.json()["unit"]["parent_id"], r.json()["unit"]["depth"]) == (hz, 2)
    a1 = await get_json(client, f"{UNITS}/{tree['A1']['id']}")
    assert (a1["parent_id"], a1["depth"]) == (a, 3)
    chain = await get_json(client, f"{UNITS}/{tree['A1']['id']}/ancestors")
    assert [u["id"] for u in chain] == [seeded["zj"], hz, a]
    hz_subtree, _ = await all_pages(client, f"{UNITS}/{hz}/subtree", limit=500)
    assert {a, tree["A1"]["id"], tree["A2"]["id"]} <= {u["id"] for u in hz_subtree}
    t_sub = (await get_json(client, f"{UNITS}/{tree['T']['id']}/subtree"))["items"]
    assert names(t_sub, tree) == ["B", "B1", "D"]
    # and back again; moving to the current parent changes nothing
    r = await client.post(f"{UNITS}/{a}/move", json={"new_parent_id": tree["T"]["id"]}, headers=ADMIN)
    assert r.json()["descendants_moved"] == 2
    r = await client.post(f"{UNITS}/{a}/move", json={"new_parent_id": tree["T"]["id"]}, headers=ADMIN)
    assert (r.status_code, r.json()["descendants_moved"]) == (200, 0)
    assert (await get_json(client, f"{UNITS}/{tree['A2']['id']}"))["depth"] == 4


async def test_move_refuses_cycles_regions_and_dissolved_units(
    client: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    tree = await build(client, seeded)

    async def move(key: str, to: str) -> httpx.Response:
        return await client.post(f"{UNITS}/{tree[key]['id']}/move", json={"new_parent_id": to}, headers=ADMIN)

    for target in ("A1", "A", "T"):
        assert_problem(await move("T", tree[target]["id"]), 409, "cycle")
    problem = assert_problem(await move("A1", tree["B"]["id"]), 422, "inconsistent-placement")
    assert "outside the parent's region" in problem["detail"]
    problem = assert_problem(await move("D", seeded["zj-nb"]), 422, "inconsistent-placement")
    assert_problem(await move("A", "00000000-0000-7000-8000-000000000000"), 404, "unit-not-found")
    r = await client.post(f"{UNITS}/{tree['D']['id']}/dissolve", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert_problem(await move("D", seeded["zj-hz"]), 409, "unit-dissolved")
    problem = assert_problem(await move("B1", tree["D"]["id"]), 422, "inconsistent-placement")
    assert "the parent unit is dissolved" in problem["detail"]
    assert (await get_json(client, f"{UNITS}/{tree['A1']['id']}"))["parent_id"] == tree["A"]["id"]


async def test_dissolve_is_refused_while_children_or_members_remain(
    client: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    tree = await build(client, seeded)
    problem = assert_problem(
        await client.post(f"{UNITS}/{tree['T']['id']}/dissolve", headers=ADMIN), 409, "unit-not-empty"
    )
    assert (problem["active_descendants"], problem["members"]) == (6, 0)
    await add_member(client, tree["A2"]["id"], "user-a2")
    r = await client.post(f"{UNITS}/{tree['A2']['id']}/dissolve", json={"cascade": False}, headers=ADMIN)
    problem = assert_problem(r, 409, "unit-not-empty")
    assert (problem["active_descendants"], problem["members"]) == (0, 1)
    assert (await get_json(client, f"{UNITS}/{tree['A2']['id']}"))["status"] == "active"


async def test_cascade_dissolves_the_active_subtree_and_ends_memberships(
    client: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    tree = await build(client, seeded)
    r = await client.post(f"{UNITS}/{tree['D']['id']}/dissolve", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert (r.json()["dissolved_unit_ids"], r.json()["memberships_ended"]) == ([tree["D"]["id"]], 0)
    m1 = await add_member(client, tree["A1"]["id"], "user-1")
    m2 = await add_member(client, tree["B"]["id"], "user-2")
    r = await client.post(
        f"{UNITS}/{tree['T']['id']}/dissolve", json={"cascade": True, "reason": "撤并"}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out["dissolved_unit_ids"]) == {tree[k]["id"] for k in ("T", "A", "B", "A1", "A2", "B1")}
    assert out["memberships_ended"] == 2
    assert out["unit"]["status"] == "dissolved" and out["unit"]["dissolved_at"]
    for key in tree:
        assert (await get_json(client, f"{UNITS}/{tree[key]['id']}"))["status"] == "dissolved"
    for m in (m1, m2):
        assert_problem(await client.get(f"{MEMBERSHIPS}/{m['id']}"), 404, "membership-not-found")
    assert (await get_json(client, f"{UNITS}/{tree['T']['id']}/members", recursive="true"))["items"] == []
    active = await get_json(client, f"{UNITS}/{tree['T']['id']}/subtree/count", status="active")
    assert active["count"] == 0

    t = f"{UNITS}/{tree['T']['id']}"
    assert_problem(await client.patch(t, json={"name": "复活县"}, headers=ADMIN), 409, "unit-dissolved")
    assert_problem(
        await client.post(f"{t}/move", json={"new_parent_id": seeded["zj-hz"]}, headers=ADMIN),
        409,
        "unit-dissolved",
    )
    assert_problem(await client.post(f"{t}/dissolve", json={"cascade": True}, headers=ADMIN), 409, "unit-dissolved")
    body = {
        "parent_id": tree["A"]["id"],
        "name": "丙村",
        "type": "community",
        "level": "village",
        "division_code": tree["A"]["division_code"][:9] + "009",
    }
    problem = assert_problem(await client.post(UNITS, json=body, headers=ADMIN), 422, "inconsistent-placement")
    assert "the parent unit is dissolved" in problem["detail"]


async def test_history_records_what_happened(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    tree = await build(client, seeded)
    d, t = tree["D"]["id"], tree["T"]["id"]
    assert (
        await client.patch(f"{UNITS}/{d}", json={"name": "县数据资源局", "sort_order": 9}, headers=ADMIN)
    ).status_code == 200
    assert (await client.patch(f"{UNITS}/{d}", json={"name": "县数据资源局"}, headers=ADMIN)).status_code == 200
    assert (
        await client.post(f"{UNITS}/{d}/move", json={"new_parent_id": seeded["zj-hz"]}, headers=ADMIN)
    ).status_code == 200
    assert (await client.post(f"{UNITS}/{d}/dissolve", json={"reason": "机构改革"}, headers=ADMIN)).status_code == 200
    history = await get_json(client, f"{UNITS}/{d}/history")
    assert [h["action"] for h in history] == [
        "created",
        "updated",
        "moved",
        "dissolved",
    ]  # the no-op is not kept
    assert {h["actor"] for h in history} == {account("demo-admin")}
    assert all(h["unit_id"] == d for h in history)
    created, updated, moved, dissolved = (h["details"] for h in history)
    assert created["parent_id"] == t
    assert updated["changed"] == {"name": "县数据资源局", "sort_order": 9}
    assert (moved["from_parent_id"], moved["to_parent_id"], moved["descendants_moved"]) == (
        t,
        seeded["zj-hz"],
        0,
    )
    assert (dissolved["reason"], dissolved["cascade_root_id"]) == ("机构改革", None)
    assert [h["at"] for h in history] == sorted(h["at"] for h in history)

    r = await client.post(f"{UNITS}/{t}/dissolve", json={"cascade": True}, headers=ADMIN)
    assert r.status_code == 200, r.text
    last = (await get_json(client, f"{UNITS}/{tree['B1']['id']}/history"))[-1]
    assert (last["action"], last["details"]["cascade_root_id"]) == ("dissolved", t)
    assert_problem(await client.get(f"{UNITS}/00000000-0000-7000-8000-000000000000/history"), 404)


async def test_a_forged_children_cursor_is_a_400(
    client: httpx.AsyncClient, seeded: dict[str, str], org_app: FastAPI
) -> None:
    url = f"{UNITS}/{seeded['zj']}/children"
    # signed with the service's own key but of the wrong shape: still refused (the key is checked, not trusted)
    own = org_app.state.runtime.cursor_codec()
    forged: list[dict[str, Any]] = [{"s": "first", "id": "x"}, {"s": [1], "id": "x"}, {"s": 2**40, "id": "x"}]
    other = CursorCodec("another service's secret, not org's", "org")
    first = (await get_json(client, url, limit=2))["next_cursor"]
    body, _, tag = first.partition(".")
    altered = own.encode({"s": 0, "id": ""}).split(".")[0] + "." + tag
    cursors = [*(own.encode(key) for key in forged), other.encode({"s": 0, "id": ""}), altered, body, "garbage!"]
    for cursor in cursors:
        assert_problem(await client.get(url, params={"cursor": cursor}), 400, "invalid-cursor")
    items, sizes = await all_pages(client, url, limit=10)
    assert len(items) == len({u["id"] for u in items}) == 14 + 11 and sizes == [10, 10, 5]


async def test_concurrent_moves_cannot_make_a_cycle(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    for i in range(5):
        a = await create_unit(client, seeded["zj-hz"], f"并发甲{i}", "department", "city", "330100")
        b = await create_unit(client, seeded["zj-hz"], f"并发乙{i}", "department", "city", "330100")
        r1, r2 = await asyncio.gather(
            client.post(f"{UNITS}/{a['id']}/move", json={"new_parent_id": b["id"]}, headers=ADMIN),
            client.post(f"{UNITS}/{b['id']}/move", json={"new_parent_id": a["id"]}, headers=ADMIN),
        )
        assert sorted([r1.status_code, r2.status_code]) == [200, 409], (r1.text, r2.text)
        loser = r2 if r1.status_code == 200 else r1
        assert_problem(loser, 409, "cycle")
        for unit in (a, b):  # both still hang under 杭州市, one directly, one through the other
            chain = [u["id"] for u in await get_json(client, f"{UNITS}/{unit['id']}/ancestors")]
            assert chain[:2] == [seeded["zj"], seeded["zj-hz"]]


async def test_a_unit_created_while_its_parent_moves_follows_it(
    client: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    for i in range(5):
        p = await create_unit(client, seeded["zj-hz-xh"], f"并发丙{i}", "department", "county", "330106")
        moved, made = await asyncio.gather(
            client.post(f"{UNITS}/{p['id']}/move", json={"new_parent_id": seeded["zj-hz"]}, headers=ADMIN),
            client.post(
                UNITS,
                json={
                    "parent_id": p["id"],
                    "name": f"并发丁{i}",
                    "type": "internal_institution",
                    "level": "county",
                    "division_code": "330106",
                },
                headers=ADMIN,
            ),
        )
        assert (moved.status_code, made.status_code) == (200, 201), (moved.text, made.text)
        chain = [u["id"] for u in await get_json(client, f"{UNITS}/{made.json()['id']}/ancestors")]
        assert chain == [seeded["zj"], seeded["zj-hz"], p["id"]]
        assert (await get_json(client, f"{UNITS}/{made.json()['id']}"))["depth"] == 3
