"""Units over HTTP: create, get, merge-patch, search and filters, cursor paging, validation, placement."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tongban_org.seed_data import SEED_BY_KEY, SEED_UNITS, SeedUnit

from .helpers import ADMIN, UNITS, all_pages, assert_problem, create_unit, credit_code, get_json, unit_body

HZ_CODE = "330100000000"


def _ids(items: list[dict[str, Any]]) -> set[str]:
    return {u["id"] for u in items}


def _seed_ids(seeded: dict[str, str], keep: Callable[[SeedUnit], bool]) -> set[str]:
    """Ids of the seed units for which `keep(seed_unit)` is true."""
    return {seeded[su.key] for su in SEED_UNITS if keep(su)}


async def test_create_sets_location_and_get_returns_the_unit(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    code = credit_code()
    body = unit_body(
        seeded["zj-hz"],
        "杭州市测试服务中心",
        "public_institution",
        "city",
        "3301",
        short_name="测试中心",
        credit_code=code.lower(),
        tags=[" 数据 ", "数据", "政务服务"],
    )
    r = await client.post(UNITS, json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    unit = r.json()
    assert r.headers["location"] == f"{UNITS}/{unit['id']}"
    assert unit["division_code"] == HZ_CODE  # "3301" is padded to 12 digits
    assert unit["credit_code"] == code  # lower case is normalised
    assert unit["tags"] == ["数据", "政务服务"]  # trimmed and de-duplicated
    assert (unit["parent_id"], unit["depth"], unit["status"]) == (seeded["zj-hz"], 2, "active")
    assert await get_json(client, r.headers["location"]) == unit


async def test_merge_patch_keeps_absent_fields_and_clears_nulls(
    client: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    code = credit_code()
    unit = await create_unit(
        client,
        seeded["zj-hz"],
        "杭州市测试局",
        "department",
        "city",
        "3301",
        short_name="测试局",
        credit_code=code,
        tags=["数据"],
    )
    url = f"{UNITS}/{unit['id']}"
    r = await client.patch(url, json={"name": "杭州市测试管理局"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["name"] == "杭州市测试管理局"
    assert (after["short_name"], after["credit_code"], after["tags"]) == ("测试局", code, ["数据"])
    assert after["updated_at"] > unit["updated_at"]

    r = await client.patch(url, json={"short_name": None, "credit_code": None}, headers=ADMIN)
    assert r.status_code == 200, r.text
    cleared = await get_json(client, url)
    assert cleared["short_name"] is None and cleared["credit_code"] is None
    assert cleared["name"] == "杭州市测试管理局"
    # the freed credit code can be taken by another unit
    await create_unit(client, seeded["zj-hz"], "杭州市另一测试局", "department", "city", "3301", credit_code=code)

    for required in ("name", "type", "level", "division_code", "tags", "sort_order"):
        body = assert_problem(await client.patch(url, json={required: None}, headers=ADMIN), 422)
        assert required in body["detail"]
    assert_problem(await client.patch(url, json={"colour": "red"}, headers=ADMIN), 422, "validation-error")
    r = await client.patch(url, json={"tags": ["  数据 ", "数据", "", "条线"]}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == ["数据", "条线"]  # a patch cleans tags like a creation does
    assert_problem(await client.patch(url, json={"tags": [f"t{i}" for i in range(21)]}, headers=ADMIN), 422)
    assert (await get_json(client, url))["tags"] == ["数据", "条线"]
    r = await client.patch(url, json={"tags": [" 新条线 "]}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert [u["id"] for u in (await get_json(client, UNITS, tag="新条线"))["items"]] == [unit["id"]]


async def test_search_by_name_short_name_and_exact_credit_code(
    client: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    page = await get_json(client, UNITS, q="数据资源", limit=500)
    assert _ids(page["items"]) == {seeded["zj-hz-sjj"], seeded["zj-dsj-sjzyc"]}
    page = await get_json(client, UNITS, q="省市场监管局", limit=500)  # only the short name has this
    assert _ids(page["items"]) == {seeded["zj-scjg"]}
    code = SEED_BY_KEY["zj-gat"].credit_code
    assert code
    for params in ({"q": code}, {"q": code.lower()}, {"credit_code": code}):
        page = await get_json(client, UNITS, **params)
        assert [u["id"] for u in page["items"]] == [seeded["zj-gat"]], params
    assert (await get_json(client, UNITS, q=code[:10]))["items"] == []  # a code matches exactly, not by prefix
    for wildcard in ("%", "_", "\\"):  # LIKE wildcards match literally
        assert (await get_json(client, UNITS, q=wildcard))["items"] == []


async def test_division_code_filters_a_region(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    items, _ = await all_pages(client, UNITS, limit=500, division_code="330100")
    hangzhou = _seed_ids(seeded, lambda su: su.division_code.startswith("3301"))
    assert len(hangzhou) == 9  # the city government, 2 departments and 6 districts
    assert hangzhou <= _ids(items)
    assert all(u["division_code"].startswith("3301") for u in items)
    assert seeded["zj-nb"] not in _ids(items) and seeded["zj"] not in _ids(items)
    page = await get_json(client, UNITS, division_code="330106", limit=500)
    assert _ids(page["items"]) == {seeded["zj-hz-xh"]}
    for bad in ("33010", "3301x", "990000"):
        body = assert_problem(await client.get(UNITS, params={"division_code": bad}), 400, "invalid-parameter")
        assert "division_code" in body["detail"]


@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({"type": "department", "level": "city"}, lambda su: su.type == "department" and su.level == "city"),
        (
            {"type": "government", "level": "county"},
            lambda su: su.type == "government" and su.level == "county",
        ),
        ({"type": "internal_institution"}, lambda su: su.type == "internal_institution"),
        ({"tag": "数据"}, lambda su: "数据" in su.tags),
        ({"tag": "公积金"}, lambda su: "公积金" in su.tags),
        ({"status": "active", "level": "province"}, lambda su: su.level == "province"),
    ],
)
async def test_type_level_status_and_tag_filters(
    client: httpx.AsyncClient,
    seeded: dict[str, str],
    params: dict[str, Any],
    keep: Callable[[SeedUnit], bool],
) -> None:
    items, _ = await all_pages(client, UNITS, limit=500, **params)
    expected = _seed_ids(seeded, keep)
    assert expected, "the seed has matching units"
    assert _ids(items) & set(seeded.values()) == expected
    for u in items:
        for field in ("type", "level", "status"):
            if field in params:
                assert u[field] == params[field]
        if "tag" in params:
            assert params["tag"] in u["tags"]


async def test_status_filter_finds_dissolved_units(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    unit = await create_unit(client, seeded["zj-hz-bj"], "滨江区临时工作组", "department", "county", "330108")
    assert unit["id"] not in _ids((await get_json(client, UNITS, status="dissolved", limit=500))["items"])
    r = await client.post(f"{UNITS}/{unit['id']}/dissolve", json={"reason": "任务完成"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    dissolved = (await get_json(client, UNITS, status="dissolved", limit=500))["items"]
    assert unit["id"] in _ids(dissolved)
    assert all(u["status"] == "dissolved" and u["dissolved_at"] for u in dissolved)
    assert_problem(await client.get(UNITS, params={"status": "closed"}), 422, "validation-error")


async def test_cursor_pagination_has_no_duplicates_or_gaps(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    parent = await create_unit(
        client, seeded["zj-hz-sc"], "上城区分页测试中心", "public_institution", "county", "330102"
    )
    made = [
        (await create_unit(client, parent["id"], f"分页测试科{i:02d}", "internal_institution", "county", "330102"))[
            "id"
        ]
        for i in range(23)
    ]
    items, sizes = await all_pages(client, UNITS, limit=5, parent_id=parent["id"])
    assert sizes == [5, 5, 5, 5, 3]
    assert [u["id"] for u in items] == made  # creation (id) order, each once
    everything, sizes = await all_pages(client, UNITS, limit=7)
    assert len(sizes) > 5
    ids = [u["id"] for u in everything]
    assert len(ids) == len(set(ids))
    assert ids == [u["id"] for u in (await get_json(client, UNITS, limit=500))["items"]]


@pytest.mark.parametrize(
    "cursor",
    ["garbage!", "not-a-cursor", base64.urlsafe_b64encode(b"[1, 2]").decode(), "__8"],
)
async def test_garbage_cursor_is_a_400_problem(client: httpx.AsyncClient, cursor: str) -> None:
    body = assert_problem(await client.get(UNITS, params={"cursor": cursor}), 400, "invalid-cursor")
    assert "next_cursor" in body["detail"]


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("credit_code", "91110000600037341X", "position 18 check character should be 'L'"),
        ("credit_code", "91110000600037341", "18 characters"),
        ("credit_code", "91110000600O37341L", "never used"),
        ("division_code", "3301011", "2, 4, 6, 9 or 12 digits"),
        ("division_code", "990000", "unknown province-level prefix"),
        ("division_code", "33010a", "digits only"),
    ],
)
async def test_invalid_codes_are_422_with_a_helpful_message(
    client: httpx.AsyncClient, seeded: dict[str, str], field: str, value: str, needle: str
) -> None:
    body = unit_body(seeded["zj-hz"], "杭州市校验测试局", "department", "city", "330100") | {field: value}
    problem = assert_problem(await client.post(UNITS, json=body, headers=ADMIN), 422, "validation-error")
    [error] = problem["errors"]
    assert error["location"] == f"body.{field}"
    assert needle in error["message"]


async def test_duplicate_credit_code_is_a_409(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    taken = SEED_BY_KEY["zj-hz-sjj"].credit_code
    body = unit_body(seeded["zj-hz"], "杭州市重复代码局", "department", "city", "330100", credit_code=taken)
    problem = assert_problem(await client.post(UNITS, json=body, headers=ADMIN), 409, "credit-code-taken")
    assert taken in problem["detail"]
    other = await create_unit(client, seeded["zj-hz"], "杭州市代码测试局", "department", "city", "330100")
    r = await client.patch(f"{UNITS}/{other['id']}", json={"credit_code": taken}, headers=ADMIN)
    assert_problem(r, 409, "credit-code-taken")
    assert (await get_json(client, f"{UNITS}/{other['id']}"))["credit_code"] is None


@pytest.mark.parametrize(
    ("parent_key", "type_", "level", "division", "needle"),
    [
        (
            "zj-hz",
            "department",
            "province",
            "330000",
            "a province-level unit cannot sit under a city-level unit",
        ),
        ("zj-hz", "department", "city", "330200", "lies outside the parent's region 330100000000"),
        ("zj", "government", "city", "330106", "is a county-level code but the unit is at city level"),
        ("zj-hz", "department", "city", "330106", "is finer than the unit's city level"),
        ("zj-hz-xh", "government", "township", "330212001", "outside the parent's region"),
    ],
)
async def test_placement_rules(
    client: httpx.AsyncClient,
    seeded: dict[str, str],
    parent_key: str,
    type_: str,
    level: str,
    division: str,
    needle: str,
) -> None:
    body = unit_body(seeded[parent_key], "放置规则测试单位", type_, level, division)
    problem = assert_problem(await client.post(UNITS, json=body, headers=ADMIN), 422, "inconsistent-placement")
    assert needle in problem["detail"]
    assert any(needle in e["message"] for e in problem["errors"])


async def test_patch_rechecks_placement_against_children(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    url = f"{UNITS}/{seeded['zj-hz']}"
    problem = assert_problem(await client.patch(url, json={"division_code": "330200"}, headers=ADMIN), 422)
    assert "would lie outside the new region" in problem["detail"]
    problem = assert_problem(await client.patch(url, json={"level": "county"}, headers=ADMIN), 422)
    assert "is a city-level code but the unit is at county level" in problem["detail"]
    assert (await get_json(client, url))["division_code"] == HZ_CODE


async def test_unknown_unit_is_a_404_problem(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    missing = "00000000-0000-7000-8000-000000000000"
    for r in (
        await client.get(f"{UNITS}/{missing}"),
        await client.get(f"{UNITS}/{missing}/children"),
        await client.patch(f"{UNITS}/{missing}", json={"name": "x"}, headers=ADMIN),
        await client.post(UNITS, json=unit_body(missing, "孤儿单位", "department", "city", "3301"), headers=ADMIN),
    ):
        problem = assert_problem(r, 404, "unit-not-found")
        assert missing in problem["detail"]
