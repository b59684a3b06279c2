"""Search (name prefix, login names, filters, org units, cursor paging) and all-or-nothing bulk import."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import orjson
import pytest

from tongban_kit.pagination import CursorCodec

from .helpers import (
    ADMIN,
    CHECK,
    DEMO,
    DSJ_ADMIN,
    PII_ADMIN,
    USERS,
    all_pages,
    assert_problem,
    citizen,
    create,
    credit_code,
    id_number,
    mobile,
    search,
    serial,
    staff,
)

IMPORT = f"{USERS}/import"


async def import_json(client: httpx.AsyncClient, rows: list[dict[str, Any]]) -> httpx.Response:
    return await client.post(IMPORT, json={"users": rows}, headers=ADMIN)


@pytest.fixture(scope="module")
async def paged(client: httpx.AsyncClient) -> list[str]:
    """120 staff accounts named 分页测试-000 … 分页测试-119, imported in a shuffled order."""
    order = [(n * 37) % 120 for n in range(120)]
    r = await import_json(client, [{"kind": "staff", "name": f"分页测试-{n:03d}"} for n in order])
    assert r.status_code == 201, r.text
    by_name = dict(zip((f"分页测试-{n:03d}" for n in order), r.json()["ids"], strict=True))
    return [by_name[name] for name in sorted(by_name)]


async def test_name_prefix_search_pages_in_name_order(client: httpx.AsyncClient, paged: list[str]) -> None:
    items, sizes = await all_pages(client, limit=50, q="分页测试")
    assert sizes == [50, 50, 20]
    assert [u["id"] for u in items] == paged  # ordered by name, no duplicates, none missing
    assert [u["name"] for u in items] == sorted(u["name"] for u in items)
    assert [u["id"] for u in (await search(client, q="分页测试-11"))["items"]] == paged[110:120]
    assert (await search(client, q="分页测试_"))["items"] == []  # LIKE wildcards are taken literally
    assert (await search(client, q="%"))["items"] == []


async def test_a_forged_or_altered_cursor_is_a_400(client: httpx.AsyncClient, paged: list[str]) -> None:
    first = await search(client, q="分页测试", limit=10)
    body, _, tag = first["next_cursor"].partition(".")
    skip_ahead = {"n": "分页测试-100", "id": ""}
    forged = [
        base64.urlsafe_b64encode(orjson.dumps(skip_ahead)).decode().rstrip("="),  # unsigned, as cursors used to be
        CursorCodec("not the user service's secret at all", "user").encode(skip_ahead),
        base64.urlsafe_b64encode(orjson.dumps(skip_ahead)).decode().rstrip("=") + "." + tag,  # a genuine tag moved
        body,
        first["next_cursor"] + "A",
        first["next_cursor"].upper(),
    ]
    for cursor in forged:
        r = await client.get(USERS, params={"q": "分页测试", "limit": 10, "cursor": cursor}, headers=ADMIN)
        assert_problem(r, 400, "invalid-cursor")
    nxt = await search(client, q="分页测试", limit=10, cursor=first["next_cursor"])
    assert [u["id"] for u in nxt["items"]] == paged[10:20]


async def test_unfiltered_paging_visits_everyone_once(client: httpx.AsyncClient, paged: list[str]) -> None:
    items, sizes = await all_pages(client, limit=50)
    ids = [u["id"] for u in items]
    assert len(ids) == len(set(ids)) and set(paged) <= set(ids) and DEMO["demo-citizen"] in ids
    assert all(size == 50 for size in sizes[:-1])
    assert_problem(await client.get(USERS, params={"cursor": "not-a-cursor!"}, headers=ADMIN), 400, "invalid-cursor")
    assert_problem(await client.get(USERS, params={"limit": 501}, headers=ADMIN), 422)


async def test_login_search_accepts_every_form(client: httpx.AsyncClient) -> None:
    n = serial()
    m = f"150{n:08d}"
    made = await create(client, citizen(mobile=m, email=f"Case.Test{n}@Example.com", username=f"lg{n}"))
    for login in (
        m,
        f"+86 {m[:3]} {m[3:7]} {m[7:]}",
        f"0086-{m[:3]}-{m[3:7]}-{m[7:]}",
        f"  {m} ",
        f"Case.Test{n}@EXAMPLE.COM",
        f"lg{n}",
        f"LG{n}",
    ):
        found = (await search(client, PII_ADMIN, purpose=CHECK, login=login))["items"]
        assert [u["id"] for u in found] == [made["id"]], login
    assert (await search(client, PII_ADMIN, purpose=CHECK, login=f"nobody{n}@example.com"))["items"] == []
    found = (await search(client, PII_ADMIN, purpose=CHECK, login="13800138000"))["items"]
    assert found[0]["id"] == DEMO["demo-citizen"]


async def test_kind_and_status_filters(client: httpx.AsyncClient) -> None:
    legal = (await search(client, kind="legal_person", limit=500))["items"]
    assert DEMO["demo-enterprise"] in {u["id"] for u in legal} and {u["kind"] for u in legal} == {"legal_person"}
    off = await create(client, staff())
    assert (await client.post(f"{USERS}/{off['id']}/disable", headers=ADMIN)).status_code == 200
    disabled = (await search(client, status="disabled", limit=500))["items"]
    assert off["id"] in {u["id"] for u in disabled} and {u["status"] for u in disabled} == {"disabled"}
    active = (await search(client, status="active", kind="staff", limit=500))["items"]
    assert off["id"] not in {u["id"] for u in active}
    assert_problem(await client.get(USERS, params={"kind": "robot"}, headers=ADMIN), 422)


async def test_org_unit_filter_asks_the_org_service(client: httpx.AsyncClient, org_units: dict[str, str]) -> None:
    direct = await search(client, org_unit_id=org_units["zj-dsj"])
    assert {u["id"] for u in direct["items"]} == {DEMO["demo-admin"], DEMO["dsj-leader"], DEMO["dsj-admin"]}
    subtree = await search(client, org_unit_id=org_units["zj-dsj"], recursive="true")
    dsj = {DEMO["demo-admin"], DEMO["dsj-leader"], DEMO["dsj-admin"], DEMO["demo-staff"]}
    assert {u["id"] for u in subtree["items"]} == dsj
    hz = await search(client, org_unit_id=org_units["zj-hz"], recursive="true", q="陈")
    assert [u["id"] for u in hz["items"]] == [DEMO["hz-staff"]]
    # an org admin filtering outside its subtree finds nobody
    assert (await search(client, DSJ_ADMIN, org_unit_id=org_units["zj-hz"], recursive="true"))["items"] == []
    r = await client.get(USERS, params={"org_unit_id": "00000000-0000-7000-8000-000000000000"}, headers=ADMIN)
    assert_problem(r, 404, "unit-not-found")


async def test_import_two_thousand_json_rows(client: httpx.AsyncClient) -> None:
    rows = [citizen() if n % 2 else staff() for n in range(2000)]
    r = await import_json(client, rows)
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["created"] == 2000 and len(set(report["ids"])) == 2000
    found = (await search(client, PII_ADMIN, purpose=CHECK, login=rows[1001]["mobile"]))["items"]
    assert [u["id"] for u in found] == [report["ids"][1001]]
    assert found[0]["name"] == rows[1001]["name"] and found[0]["id_number"].endswith(rows[1001]["id_number"][-4:])
    r = await client.post(USERS, json=citizen(id_number=rows[1]["id_number"]), headers=ADMIN)
    assert assert_problem(r, 409)["field"] == "id_number"


async def test_import_csv_with_bom(client: httpx.AsyncClient) -> None:
    a, b = serial(), serial()
    csv = (
        "\ufeffkind,name,username,id_number,mobile,email,credit_code\r\n"
        f"citizen,导入甲,csv{a},{id_number(a)},+86 151 {a:08d},csv{a}@example.com,\r\n"
        f"legal_person,导入乙公司,,,,,{credit_code(b)}\r\n"
    )
    r = await client.post(IMPORT, content=csv.encode(), headers=ADMIN | {"content-type": "text/csv; charset=utf-8"})
    assert r.status_code == 201, r.text
    assert r.json()["created"] == 2
    one = (await search(client, PII_ADMIN, purpose=CHECK, login=f"151{a:08d}"))["items"][0]
    assert one["username"] == f"csv{a}" and one["kind"] == "citizen" and one["gender"] in ("male", "female")
    assert (await search(client, q="导入乙公司"))["items"][0]["credit_code"] == credit_code(b)

    r = await client.post(IMPORT, content=b"name,age\nx,1\n", headers=ADMIN | {"content-type": "text/csv"})
    assert "age" in assert_problem(r, 400, "invalid-import")["detail"]


async def test_a_bad_batch_is_rejected_whole_with_every_bad_row(client: httpx.AsyncClient) -> None:
    taken = citizen()
    await create(client, taken)
    shared = mobile()
    good = citizen()
    rows = [
        good,  # 1: fine on its own
        citizen(id_number="110105194912310021"),  # 2: bad check character
        citizen(mobile=shared),  # 3
        citizen(mobile=f"+86 {shared}"),  # 4: repeats row 3
        citizen(mobile=taken["mobile"]),  # 5: already taken
        {"kind": "citizen", "name": "无证市民"},  # 6: citizen without an identity number
        staff(),  # 7: fine
        {
            "kind": "legal_person",
            "name": "无代表公司",
            "credit_code": credit_code(),
            "representative_id": DEMO["demo-staff"],
        },  # 8
    ]
    r = await import_json(client, rows)
    problem = assert_problem(r, 422, "import-rejected")
    assert problem["created"] == 0
    errors = {(e["row"], e["field"]) for e in problem["errors"]}
    assert {row for row, _ in errors} == {2, 4, 5, 6, 8}, problem["errors"]
    assert {(4, "mobile"), (5, "mobile"), (6, "id_number"), (8, "representative_id")} <= errors
    assert next(e for e in problem["errors"] if e["row"] == 4)["message"] == "repeats row 3"
    assert "check character" in next(e for e in problem["errors"] if e["row"] == 2)["message"]
    for login in (good["mobile"], shared, rows[6]["username"]):  # nothing was written
        assert (await search(client, PII_ADMIN, purpose=CHECK, login=login))["items"] == []


async def test_import_refusals(client: httpx.AsyncClient) -> None:
    r = await client.post(IMPORT, content=b"kind;name", headers=ADMIN | {"content-type": "text/plain"})
    assert_problem(r, 415, "unsupported-media-type")
    assert_problem(await import_json(client, []), 422, "invalid-import")
    r = await client.post(IMPORT, content=json.dumps([staff()]), headers=ADMIN | {"content-type": "application/json"})
    assert_problem(r, 422, "validation-error")
    r = await client.post(IMPORT, content=b"{not json", headers=ADMIN | {"content-type": "application/json"})
    assert_problem(r, 400, "invalid-import")
    r = await client.post(IMPORT, json={"users": [citizen()]}, headers=DSJ_ADMIN)
    assert_problem(r, 403, "forbidden")
    r = await client.post(IMPORT, json={"users": [staff()]}, headers=DSJ_ADMIN)
    assert r.status_code == 201 and r.json()["created"] == 1
