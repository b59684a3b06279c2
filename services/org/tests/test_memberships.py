"""Memberships over HTTP: add, primary flag, a user's units, unit members (direct and recursive), paging."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from .helpers import ADMIN, MEMBERSHIPS, UNITS, add_member, all_pages, assert_problem, create_unit, get_json


async def _dept(client: httpx.AsyncClient, parent: str, name: str, division: str = "330106") -> str:
    unit_id: str = (await create_unit(client, parent, name, "department", "county", division))["id"]
    return unit_id


async def test_add_get_and_duplicate(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    unit = seeded["zj-hz-xh"]
    r = await client.post(
        MEMBERSHIPS,
        json={"unit_id": unit, "user_id": "zhang.san", "title": "科员", "is_leader": True},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    m = r.json()
    assert r.headers["location"] == f"{MEMBERSHIPS}/{m['id']}"
    assert (m["user_id"], m["unit_id"], m["title"], m["is_leader"], m["is_primary"]) == (
        "zhang.san",
        unit,
        "科员",
        True,
        False,
    )
    assert m["unit"] == {"id": unit, "name": "杭州市西湖区人民政府", "short_name": "西湖区"}
    got = await get_json(client, r.headers["location"])
    assert {k: got[k] for k in ("id", "user_id", "unit_id", "title")} == {
        k: m[k] for k in ("id", "user_id", "unit_id", "title")
    }
    problem = assert_problem(
        await client.post(MEMBERSHIPS, json={"unit_id": unit, "user_id": "zhang.san"}, headers=ADMIN),
        409,
        "already-member",
    )
    assert problem["membership_id"] == m["id"]


async def test_add_is_refused_for_dissolved_unknown_or_invalid(
    client: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    gone = await _dept(client, seeded["zj-hz-xh"], "西湖区临时专班")
    assert (await client.post(f"{UNITS}/{gone}/dissolve", headers=ADMIN)).status_code == 200
    r = await client.post(MEMBERSHIPS, json={"unit_id": gone, "user_id": "li.si"}, headers=ADMIN)
    assert_problem(r, 409, "unit-dissolved")
    r = await client.post(
        MEMBERSHIPS,
        json={"unit_id": "00000000-0000-7000-8000-000000000000", "user_id": "li.si"},
        headers=ADMIN,
    )
    assert_problem(r, 404, "unit-not-found")
    r = await client.post(MEMBERSHIPS, json={"unit_id": gone, "user_id": "李四"}, headers=ADMIN)
    problem = assert_problem(r, 422, "validation-error")
    assert [e["location"] for e in problem["errors"]] == ["body.user_id"]
    assert (await get_json(client, MEMBERSHIPS, user_id="li.si"))["items"] == []


async def test_primary_membership_demotes_the_others(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    x, y, z = seeded["zj-hz-sjj"], seeded["zj-hz-scjg"], seeded["zj-hz-bj"]
    mx = await add_member(client, x, "wang.wu", is_primary=True)
    my = await add_member(client, y, "wang.wu", is_primary=True)
    mz = await add_member(client, z, "wang.wu")
    other = await add_member(client, x, "zhao.liu", is_primary=True)  # another user's flag is untouched

    async def primaries() -> dict[str, bool]:
        items = (await get_json(client, MEMBERSHIPS, user_id="wang.wu"))["items"]
        return {m["unit_id"]: m["is_primary"] for m in items}

    assert await primaries() == {x: False, y: True, z: False}
    r = await client.patch(f"{MEMBERSHIPS}/{mz['id']}", json={"is_primary": True}, headers=ADMIN)
    assert (r.status_code, r.json()["is_primary"]) == (200, True)
    assert await primaries() == {x: False, y: False, z: True}
    assert (await get_json(client, f"{MEMBERSHIPS}/{other['id']}"))["is_primary"] is True
    assert {mx["id"], my["id"], mz["id"]} == {
        m["id"] for m in (await get_json(client, MEMBERSHIPS, user_id="wang.wu"))["items"]
    }


async def test_a_users_units(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    await add_member(client, seeded["zj-dsj"], "chen.qi", title="处长")
    await add_member(client, seeded["zj-hz-sjj"], "chen.qi", title="挂职副局长")
    items = (await get_json(client, MEMBERSHIPS, user_id="chen.qi"))["items"]
    assert {(m["unit"]["short_name"], m["title"]) for m in items} == {
        ("省大数据局", "处长"),
        ("市数据资源局", "挂职副局长"),
    }
    assert {m["user_id"] for m in items} == {"chen.qi"}
    both = await get_json(client, MEMBERSHIPS, user_id="chen.qi", unit_id=seeded["zj-dsj"])
    assert [m["title"] for m in both["items"]] == ["处长"]
    assert (await get_json(client, MEMBERSHIPS, user_id="nobody"))["items"] == []
    assert_problem(await client.get(MEMBERSHIPS), 400, "missing-filter")


async def test_unit_members_direct_and_recursive(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    p = await _dept(client, seeded["zj-hz-gs"], "拱墅区测试局", "330105")
    c = await _dept(client, p, "拱墅区测试局一科", "330105")
    g = await _dept(client, c, "拱墅区测试局一科一组", "330105")
    for unit, user in ((p, "u-p"), (c, "u-c"), (g, "u-g")):
        await add_member(client, unit, user)
    direct = (await get_json(client, f"{UNITS}/{p}/members"))["items"]
    assert [m["user_id"] for m in direct] == ["u-p"]
    deep = (await get_json(client, f"{UNITS}/{p}/members", recursive="true"))["items"]
    assert sorted(m["user_id"] for m in deep) == ["u-c", "u-g", "u-p"]
    assert {m["user_id"]: m["unit"]["id"] for m in deep} == {"u-p": p, "u-c": c, "u-g": g}
    child = (await get_json(client, f"{UNITS}/{c}/members", recursive="true"))["items"]
    assert sorted(m["user_id"] for m in child) == ["u-c", "u-g"]


async def test_250_members_page_by_100_without_duplicates(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    p = await _dept(client, seeded["zj-hz-yh"], "余杭区大平台", "330110")
    kids = [await _dept(client, p, f"余杭区大平台{n}部", "330110") for n in (1, 2)]
    targets = [p] * 50 + [kids[0]] * 100 + [kids[1]] * 100
    made: list[dict[str, Any]] = []
    for start in range(0, len(targets), 25):  # a few concurrent adds at a time
        made += await asyncio.gather(
            *(
                add_member(client, unit, f"staff-{n:03d}")
                for n, unit in enumerate(targets[start : start + 25], start=start)
            )
        )
    items, sizes = await all_pages(client, f"{UNITS}/{p}/members", limit=100, recursive="true")
    assert sizes == [100, 100, 50]
    ids = [m["id"] for m in items]
    assert len(ids) == len(set(ids)) == 250
    assert set(ids) == {m["id"] for m in made}
    assert ids == sorted(ids)
    direct, sizes = await all_pages(client, f"{UNITS}/{p}/members", limit=100)
    assert (len(direct), sizes) == (50, [50])
    assert {m["unit_id"] for m in direct} == {p}


async def test_patch_and_delete(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    m = await add_member(client, seeded["zj-hz-xs"], "sun.ba", title="科员")
    url = f"{MEMBERSHIPS}/{m['id']}"
    r = await client.patch(url, json={"title": "副科长", "is_leader": True, "sort_order": 3}, headers=ADMIN)
    assert r.status_code == 200, r.text
    after = await get_json(client, url)
    assert (after["title"], after["is_leader"], after["sort_order"], after["is_primary"]) == (
        "副科长",
        True,
        3,
        False,
    )
    r = await client.patch(url, json={"title": None}, headers=ADMIN)
    assert (r.status_code, r.json()["title"]) == (200, None)
    assert_problem(await client.patch(url, json={"is_leader": None}, headers=ADMIN), 422, "validation-error")
    assert_problem(await client.patch(url, json={"unit_id": seeded["zj"]}, headers=ADMIN), 422)
    assert (await get_json(client, url))["is_leader"] is True

    r = await client.delete(url, headers=ADMIN)
    assert r.status_code == 204 and r.content == b""
    assert_problem(await client.get(url), 404, "membership-not-found")
    assert_problem(await client.delete(url, headers=ADMIN), 404, "membership-not-found")
    assert_problem(await client.patch(url, json={"title": "x"}, headers=ADMIN), 404, "membership-not-found")
    assert (await get_json(client, MEMBERSHIPS, user_id="sun.ba"))["items"] == []
    await add_member(client, seeded["zj-hz-xs"], "sun.ba")  # re-joining after leaving is allowed
