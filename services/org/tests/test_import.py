"""Bulk import (JSON and CSV): all-or-nothing, per-row errors, refs between rows."""

from __future__ import annotations

from typing import Any

import httpx

from tongban_org.seed_data import SEED_BY_KEY

from .helpers import ADMIN, HZ_ADMIN, UNITS, account, assert_problem, credit_code, get_json, new_county_code

IMPORT = f"{UNITS}/import"
CSV = {"content-type": "text/csv; charset=utf-8"}


def row(ref: str | None, name: str, type_: str, level: str, division: str, **extra: Any) -> dict[str, Any]:
    out = {"name": name, "type": type_, "level": level, "division_code": division, **extra}
    return out | ({"ref": ref} if ref else {})


def rejected(r: httpx.Response) -> dict[str, Any]:
    """The report of a refused import: a 422 problem listing every row error."""
    report = assert_problem(r, 422)
    assert report["errors"], report
    assert all(e["row"] >= 1 and e["message"] for e in report["errors"])
    return report


async def count(client: httpx.AsyncClient, unit_id: str) -> int:
    n: int = (await get_json(client, f"{UNITS}/{unit_id}/subtree/count"))["count"]
    return n


async def test_json_import_of_a_1000_unit_tree(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    hz = seeded["zj-hz"]
    before = await count(client, hz)
    c = new_county_code()
    rows = [row("county", "导入测试县", "government", "county", c, parent_id=hz, tags=["政务服务"])]
    for t in range(1, 10):
        rows.append(
            row(f"t{t}", f"导入测试{t}镇", "government", "township", f"{c}{t:03d}", parent_ref="county", sort_order=t)
        )
        rows += [
            row(f"t{t}v{v}", f"导入测试{t}镇{v}村", "community", "village", f"{c}{t:03d}{v:03d}", parent_ref=f"t{t}")
            for v in range(1, 111)
        ]
    assert len(rows) == 1000
    r = await client.post(IMPORT, json={"units": rows}, headers=ADMIN)
    assert r.status_code == 201, r.text[:2000]
    report = r.json()
    assert (report["created"], report["errors"]) == (1000, [])
    assert set(report["ids"]) == {x["ref"] for x in rows} and len(set(report["ids"].values())) == 1000
    ids = report["ids"]
    assert await count(client, hz) == before + 1000
    assert await count(client, ids["county"]) == 999
    assert (await get_json(client, f"{UNITS}/{ids['county']}/subtree/count", depth=1))["count"] == 9
    assert await count(client, ids["t4"]) == 110
    village = await get_json(client, f"{UNITS}/{ids['t9v110']}")
    assert (village["name"], village["division_code"], village["depth"]) == ("导入测试9镇110村", f"{c}009110", 4)
    chain = await get_json(client, f"{UNITS}/{ids['t9v110']}/ancestors")
    assert [u["id"] for u in chain] == [seeded["zj"], hz, ids["county"], ids["t9"]]
    children = (await get_json(client, f"{UNITS}/{ids['county']}/children"))["items"]
    assert [u["id"] for u in children] == [ids[f"t{t}"] for t in range(1, 10)]
    history = await get_json(client, f"{UNITS}/{ids['t1v1']}/history")
    assert [(h["action"], h["actor"], h["details"].get("import")) for h in history] == [
        ("created", account("demo-admin"), True)
    ]


async def test_bad_rows_are_all_reported_and_nothing_is_written(
    client: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    hz = seeded["zj-hz"]
    before = await count(client, hz)
    c = new_county_code()
    repeated = credit_code(c)
    rows = [
        row("r", "坏批次县", "government", "county", c, parent_id=hz),  # 1 ok
        row(None, "坏代码镇", "government", "township", "33019x001", parent_ref="r"),  # 2 bad division
        row("t", "坏批次镇", "government", "township", f"{c}001", parent_ref="r"),  # 3 ok
        row(
            None, "坏信用代码局", "department", "county", c, parent_ref="r", credit_code="91110000600037341X"
        ),  # 4 bad credit code
        row(None, "无父村", "community", "village", f"{c}001001", parent_ref="nope"),  # 5 unknown parent_ref
        row(None, "一号中心", "public_institution", "county", c, parent_ref="r", credit_code=repeated),  # 6 ok
        row(
            None, "二号中心", "public_institution", "county", c, parent_ref="r", credit_code=repeated
        ),  # 7 repeats row 6
        row(None, "越界村", "community", "village", "330212001001", parent_ref="t"),  # 8 outside the parent
        row(None, "好村", "community", "village", f"{c}001002", parent_ref="t"),  # 9 ok
        row(
            None,
            "已占代码局",
            "department",
            "county",
            c,
            parent_ref="r",
            credit_code=SEED_BY_KEY["zj-hz-sjj"].credit_code,
        ),  # 10 taken by a seed unit
    ]
    r = await client.post(IMPORT, json={"units": rows}, headers=ADMIN)
    report = rejected(r)
    assert report["created"] == 0 and not report.get("ids")
    errors = {e["row"]: e for e in report["errors"]}
    assert [e["row"] for e in report["errors"]] == [2, 4, 5, 7, 8, 10]  # one error per bad row
    assert errors[2]["field"] == "division_code" and "digits only" in errors[2]["message"]
    assert errors[4]["field"] == "credit_code" and "check character" in errors[4]["message"]
    assert errors[5]["field"] == "parent_ref" and "'nope'" in errors[5]["message"]
    assert errors[7]["field"] == "credit_code" and "repeats row 6" in errors[7]["message"]
    assert "outside the parent's region" in errors[8]["message"]
    assert errors[10]["field"] == "credit_code" and "already belongs" in errors[10]["message"]
    assert await count(client, hz) == before
    assert (await get_json(client, UNITS, credit_code=repeated))["items"] == []
    assert (await get_json(client, UNITS, q="坏批次"))["items"] == []


async def test_csv_import_with_bom_and_tags(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    xh = seeded["zj-hz-xh"]
    code = credit_code("330106")
    text = (
        "\ufeffref,parent_ref,parent_id,name,short_name,type,level,division_code,credit_code,tags,sort_order\n"
        f"j,,{xh},西湖区测试街道办事处,测试街道,government,township,330106009,,政务服务|基层治理 | ,5\n"
        f",j,,西湖区测试社区,,community,village,330106009001,,,\n"
        f",,{xh},西湖区测试中心,,public_institution,county,330106,{code},数据,\n"
    )
    r = await client.post(IMPORT, content=text.encode(), headers=ADMIN | CSV)
    assert r.status_code == 201, r.text
    report = r.json()
    assert (report["created"], set(report["ids"])) == (3, {"j"})
    street = await get_json(client, f"{UNITS}/{report['ids']['j']}")
    assert (street["short_name"], street["tags"], street["sort_order"]) == ("测试街道", ["政务服务", "基层治理"], 5)
    community = (await get_json(client, f"{UNITS}/{street['id']}/children"))["items"]
    assert [(u["name"], u["short_name"], u["tags"], u["credit_code"]) for u in community] == [
        ("西湖区测试社区", None, [], None)
    ]
    [centre] = (await get_json(client, UNITS, credit_code=code))["items"]
    assert (centre["name"], centre["parent_id"], centre["tags"]) == ("西湖区测试中心", xh, ["数据"])


async def test_csv_row_numbers_count_data_lines(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    xh = seeded["zj-hz-xh"]
    text = (
        "parent_id,name,type,level,division_code\n"
        f"{xh},好街道,government,township,330106011\n"
        f"{xh},坏街道,government,town,330106012\n"
        f"{xh},远街道,government,township,330206013\n"
    )
    r = await client.post(IMPORT, content=text.encode(), headers=ADMIN | CSV)
    assert [(e["row"], e["field"]) for e in rejected(r)["errors"]] == [(2, "level"), (3, None)]
    assert (await get_json(client, UNITS, q="好街道"))["items"] == []


async def test_a_delegate_imports_only_inside_its_subtree(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    rows = [
        row(None, "宁波越权中心", "public_institution", "city", "330200", parent_id=seeded["zj-nb"]),
        row(None, "越权省", "government", "province", "310000"),
        row(None, "杭州授权中心", "public_institution", "city", "330100", parent_id=seeded["zj-hz"]),
    ]
    r = await client.post(IMPORT, json={"units": rows}, headers=HZ_ADMIN)
    errors = rejected(r)["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [(1, "parent_id"), (2, "parent_id")]
    assert "does not administer" in errors[0]["message"] and "roots" in errors[1]["message"]
    r = await client.post(IMPORT, json={"units": rows[2:]}, headers=HZ_ADMIN)
    assert (r.status_code, r.json()["created"]) == (201, 1)


async def test_malformed_imports_are_refused(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    hz = seeded["zj-hz"]
    before = await count(client, hz)
    r = await client.post(IMPORT, content=f"name,parent_id,colour\nx,{hz},red\n".encode(), headers=ADMIN | CSV)
    assert "colour" in assert_problem(r, 400, "invalid-import")["detail"]
    r = await client.post(IMPORT, content=b"parent_id,type\nx,department\n", headers=ADMIN | CSV)
    assert_problem(r, 400, "invalid-import")  # no name column
    r = await client.post(IMPORT, content=b"", headers=ADMIN | CSV)
    assert_problem(r, 400, "invalid-import")
    r = await client.post(IMPORT, content=b"name,parent_id\n", headers=ADMIN | CSV)
    assert_problem(r, 422, "invalid-import")  # a header without rows
    r = await client.post(IMPORT, content=b"<units/>", headers=ADMIN | {"content-type": "application/xml"})
    assert_problem(r, 415, "unsupported-media-type")
    for body in (b'{"units": []}', b"{}", b'{"units": "x"}', b"[1, 2", b'{"units": [1]}'):
        r = await client.post(IMPORT, content=body, headers=ADMIN | {"content-type": "application/json"})
        assert_problem(r, 422, "validation-error")
    r = await client.post(IMPORT, content="name\n测试".encode("gb18030"), headers=ADMIN | CSV)
    assert_problem(r, 400, "invalid-import")  # not UTF-8
    assert await count(client, hz) == before
