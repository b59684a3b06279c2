"""Delegated administration (分级授权): seed grants, writes inside and outside a granted subtree, grants API."""

from __future__ import annotations

import httpx
import pytest

from .helpers import (
    ADMIN,
    CLIENT,
    DSJ_ADMIN,
    GRANTS,
    HZ_ADMIN,
    MEMBERSHIPS,
    UNITS,
    account,
    add_member,
    as_,
    assert_problem,
    bearer,
    create_unit,
    get_json,
    token,
    unit_body,
)

OUTSIDE = "outside-granted-subtree"


async def test_seed_grants_are_listed(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    grants = await get_json(client, GRANTS)
    assert {(g["principal"], g["unit_id"]) for g in grants} == {
        (account("hz-admin"), seeded["zj-hz"]),
        (account("dsj-admin"), seeded["zj-dsj"]),
    }
    assert [g["unit_id"] for g in await get_json(client, GRANTS, principal=account("hz-admin"))] == [seeded["zj-hz"]]
    by_unit = await get_json(client, GRANTS, unit_id=seeded["zj-dsj"])
    assert [g["principal"] for g in by_unit] == [account("dsj-admin")]


async def test_hz_admin_writes_inside_hangzhou(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    unit = await create_unit(
        client, seeded["zj-hz-xh"], "西湖区授权测试局", "department", "county", "330106", headers=HZ_ADMIN
    )
    r = await client.patch(f"{UNITS}/{unit['id']}", json={"short_name": "授权局"}, headers=HZ_ADMIN)
    assert (r.status_code, r.json()["short_name"]) == (200, "授权局")
    r = await client.patch(f"{UNITS}/{seeded['zj-hz']}", json={"sort_order": 101}, headers=HZ_ADMIN)
    assert r.status_code == 200, r.text  # the grant's root itself is administered too
    m = await add_member(client, unit["id"], "hz.staff", headers=HZ_ADMIN)
    r = await client.patch(f"{MEMBERSHIPS}/{m['id']}", json={"title": "科长"}, headers=HZ_ADMIN)
    assert r.status_code == 200, r.text
    r = await client.post(f"{UNITS}/{unit['id']}/move", json={"new_parent_id": seeded["zj-hz"]}, headers=HZ_ADMIN)
    assert r.status_code == 200, r.text  # moving within the granted subtree
    history = await get_json(client, f"{UNITS}/{unit['id']}/history")
    assert {h["actor"] for h in history} == {account("hz-admin")}


@pytest.mark.parametrize("outside", ["zj-nb", "zj-nb-hs", "zj-dsj", "zj"])
async def test_hz_admin_is_refused_outside_hangzhou(
    client: httpx.AsyncClient, seeded: dict[str, str], outside: str
) -> None:
    target = seeded[outside]
    checks = [
        await client.post(
            UNITS, json=unit_body(target, "越权单位", "department", "province", "330000"), headers=HZ_ADMIN
        ),
        await client.patch(f"{UNITS}/{target}", json={"short_name": "越权"}, headers=HZ_ADMIN),
        await client.post(MEMBERSHIPS, json={"unit_id": target, "user_id": "intruder"}, headers=HZ_ADMIN),
        await client.post(f"{UNITS}/{target}/dissolve", json={"cascade": True}, headers=HZ_ADMIN),
        await client.post(GRANTS, json={"principal": account("friend"), "unit_id": target}, headers=HZ_ADMIN),
    ]
    for r in checks:
        problem = assert_problem(r, 403)
        assert problem["type"].endswith(OUTSIDE)
        assert account("hz-admin") in problem["detail"]
    unit = await get_json(client, f"{UNITS}/{target}")
    assert unit["status"] == "active" and unit["short_name"] != "越权"
    assert (await get_json(client, MEMBERSHIPS, user_id="intruder"))["items"] == []


async def test_dsj_admin_is_confined_to_its_department(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    office = f"{UNITS}/{seeded['zj-dsj-bgs']}"
    r = await client.patch(office, json={"short_name": "局办"}, headers=DSJ_ADMIN)
    assert r.status_code == 200, r.text
    await create_unit(
        client,
        seeded["zj-dsj"],
        "浙江省大数据发展管理局数据应用处",
        "internal_institution",
        "province",
        "330000",
        headers=DSJ_ADMIN,
    )
    for key in ("zj-scjg", "zj-hz-sjj", "zj"):  # a sibling department, a city department, the root
        r = await client.patch(f"{UNITS}/{seeded[key]}", json={"short_name": "x"}, headers=DSJ_ADMIN)
        assert_problem(r, 403, OUTSIDE)


async def test_moves_across_the_grant_boundary_are_refused(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    unit = await create_unit(
        client,
        seeded["zj-hz"],
        "杭州市迁移测试中心",
        "public_institution",
        "city",
        "330100",
        headers=HZ_ADMIN,
    )
    for new_parent in ("zj", "zj-nb", "zj-dsj"):  # out of the subtree
        r = await client.post(
            f"{UNITS}/{unit['id']}/move", json={"new_parent_id": seeded[new_parent]}, headers=HZ_ADMIN
        )
        assert_problem(r, 403, OUTSIDE)
    ningbo_unit = await create_unit(
        client, seeded["zj-nb"], "宁波市迁移测试中心", "public_institution", "city", "330200"
    )
    r = await client.post(
        f"{UNITS}/{ningbo_unit['id']}/move", json={"new_parent_id": seeded["zj-hz"]}, headers=HZ_ADMIN
    )
    assert_problem(r, 403, OUTSIDE)  # into the subtree, from outside
    assert (await get_json(client, f"{UNITS}/{unit['id']}"))["parent_id"] == seeded["zj-hz"]


async def test_only_whole_tree_administrators_create_roots(client: httpx.AsyncClient) -> None:
    root = unit_body(None, "上海市人民政府", "government", "province", "310000")
    for headers in (HZ_ADMIN, DSJ_ADMIN, as_("nobody")):
        problem = assert_problem(await client.post(UNITS, json=root, headers=headers), 403, OUTSIDE)
        assert "whole tree" in problem["detail"]
    r = await client.post(UNITS, json=root, headers=ADMIN)
    assert (r.status_code, r.json()["depth"], r.json()["parent_id"]) == (201, 0, None)


async def test_delegation_to_a_sub_unit(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    xh, sc = seeded["zj-hz-xh"], seeded["zj-hz-sc"]
    xh_admin = as_("xh-admin")
    street = unit_body(xh, "西湖区北山街道办事处", "government", "township", "330106001")
    assert_problem(await client.post(UNITS, json=street, headers=xh_admin), 403, OUTSIDE)

    xh_id = account("xh-admin")
    r = await client.post(GRANTS, json={"principal": xh_id, "unit_id": xh}, headers=HZ_ADMIN)
    assert r.status_code == 201, r.text
    grant = r.json()
    assert (grant["principal"], grant["unit_id"], grant["created_by"]) == (xh_id, xh, account("hz-admin"))
    assert_problem(
        await client.post(GRANTS, json={"principal": xh_id, "unit_id": xh}, headers=HZ_ADMIN),
        409,
        "conflict",
    )

    r = await client.post(UNITS, json=street, headers=xh_admin)
    assert r.status_code == 201, r.text
    await add_member(client, r.json()["id"], "street.head", headers=xh_admin, is_leader=True)
    sibling = unit_body(sc, "上城区越权街道", "government", "township", "330102001")
    assert_problem(await client.post(UNITS, json=sibling, headers=xh_admin), 403, OUTSIDE)
    assert_problem(
        await client.patch(f"{UNITS}/{seeded['zj-hz']}", json={"short_name": "x"}, headers=xh_admin),
        403,
        OUTSIDE,
    )
    # a delegate can delegate further down, never up or sideways
    assert_problem(
        await client.post(
            GRANTS, json={"principal": account("xh-admin2"), "unit_id": seeded["zj-hz"]}, headers=xh_admin
        ),
        403,
        OUTSIDE,
    )
    assert_problem(
        await client.post(
            GRANTS, json={"principal": account("hz-admin"), "unit_id": seeded["zj-nb"]}, headers=HZ_ADMIN
        ),
        403,
        OUTSIDE,
    )
    assert_problem(await client.delete(f"{GRANTS}/{grant['id']}", headers=DSJ_ADMIN), 403, OUTSIDE)

    r = await client.delete(f"{GRANTS}/{grant['id']}", headers=HZ_ADMIN)
    assert r.status_code == 204, r.text
    assert await get_json(client, GRANTS, principal=xh_id) == []
    assert_problem(
        await client.post(
            UNITS,
            json=street | {"name": "西湖区西溪街道办事处", "division_code": "330106002"},
            headers=xh_admin,
        ),
        403,
        OUTSIDE,
    )
    assert_problem(await client.delete(f"{GRANTS}/{grant['id']}", headers=HZ_ADMIN), 404, "grant-not-found")
    r = await client.post(GRANTS, json={"principal": "not allowed!", "unit_id": xh}, headers=HZ_ADMIN)
    assert_problem(r, 422, "validation-error")


async def test_writes_need_a_token_with_write_and_admin_scopes(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    hz = seeded["zj-hz"]

    async def writes(c: httpx.AsyncClient, headers: dict[str, str] | None = None) -> list[httpx.Response]:
        return [
            await c.post(UNITS, json=unit_body(hz, "匿名单位", "department", "city", "330100"), headers=headers),
            await c.patch(f"{UNITS}/{hz}", json={"short_name": "匿名"}, headers=headers),
            await c.post(f"{UNITS}/{hz}/move", json={"new_parent_id": seeded["zj"]}, headers=headers),
            await c.post(f"{UNITS}/{hz}/dissolve", json={"cascade": True}, headers=headers),
            await c.post(MEMBERSHIPS, json={"unit_id": hz, "user_id": "anon"}, headers=headers),
            await c.post(GRANTS, json={"principal": "anon", "unit_id": hz}, headers=headers),
            await c.post(
                f"{UNITS}/import",
                json={"units": [unit_body(hz, "匿名", "department", "city", "3301")]},
                headers=headers,
            ),
        ]

    for r in await writes(anonymous):
        assert_problem(r, 401, "authentication-required")
        assert r.headers["www-authenticate"] == 'Bearer realm="tongban"'
    for r in await writes(client):  # the default token: a client's own, read-only
        problem = assert_problem(r, 403, "insufficient-scope")
        assert problem["required_scopes"] == ["admin", "org:write"]
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    for r in await writes(client, as_("hz-admin", ("org:read", "org:write"))):  # rights are used only with `admin`
        assert_problem(r, 403, "insufficient-scope")
    for r in await writes(client, bearer(token(CLIENT))):  # a client's own token names no person
        assert_problem(r, 403, "person-required")
    assert (await get_json(client, f"{UNITS}/{hz}"))["status"] == "active"
