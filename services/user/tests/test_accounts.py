"""Accounts over REST: creation per kind, validation and normalisation, conflicts, merge-patch, lifecycle, purge."""

from __future__ import annotations

import httpx
import pytest

from tongban_kit.db import Database
from tongban_user.accounts import purge_deleted
from tongban_user.models import UserAccount

from .helpers import (
    ADMIN,
    CHECK,
    DEMO,
    PII_ADMIN,
    USERS,
    assert_problem,
    citizen,
    create,
    credit_code,
    get,
    search,
    serial,
    staff,
)

WORKED_EXAMPLE = "11010519491231002X"  # GB 11643-1999 worked example: born 1949-12-31, female
UNMASK = {"unmask": "true", "purpose": "account tests"}


async def test_create_citizen_masks_and_derives_gender_and_birth(client: httpx.AsyncClient) -> None:
    body = {
        "kind": "citizen",
        "name": "  钱七 ",
        "real_name": "钱七",
        "username": "Qian.Qi",
        "id_number": "11010519491231002x",
        "mobile": "+86 150 0013 8000",
        "email": "Qian.Qi@Example.COM",
    }
    r = await client.post(USERS, json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    made = r.json()
    assert r.headers["location"] == f"{USERS}/{made['id']}"
    assert made["kind"] == "citizen" and made["name"] == "钱七" and made["username"] == "qian.qi"
    assert made["id_number"] == "110105********002X"
    assert made["mobile"] == "150****8000" and made["email"] == "Q***@example.com"
    assert made["gender"] == "female" and made["birth_date"] is None
    assert made["masked"] is True and made["status"] == "active" and made["version"] == 1

    full = await get(client, made["id"], PII_ADMIN, **UNMASK)
    assert full["id_number"] == WORKED_EXAMPLE and full["birth_date"] == "1949-12-31"
    assert full["mobile"] == "15000138000" and full["email"] == "Qian.Qi@example.com"
    assert full["masked"] is False


async def test_create_staff_and_legal_person(client: httpx.AsyncClient) -> None:
    made = await create(client, staff(enterprise={"employee_number": "E-001", "department": "数据资源处"}))
    assert made["kind"] == "staff" and made["id_number"] is None and made["gender"] is None
    assert made["enterprise"] == {
        "employee_number": "E-001",
        "organization": None,
        "division": None,
        "department": "数据资源处",
        "cost_center": None,
        "manager_id": None,
    }

    rep = await create(client, citizen())
    op = await create(client, citizen())
    code = credit_code()
    lp = await create(
        client,
        {
            "kind": "legal_person",
            "name": "示范贸易有限公司",
            "credit_code": code,
            "representative_id": rep["id"],
            "operator_ids": [op["id"], op["id"]],
        },
    )
    assert lp["credit_code"] == code and lp["representative_id"] == rep["id"] and lp["operator_ids"] == [op["id"]]
    assert (await get(client, lp["id"]))["operator_ids"] == [op["id"]]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"kind": "citizen", "name": "无证市民"}, "id_number"),
        ({"kind": "legal_person", "name": "无码企业"}, "credit_code"),
        ({"kind": "staff", "name": "有代表的工作人员", "representative_id": DEMO["demo-citizen"]}, "legal-person"),
    ],
)
async def test_required_fields_per_kind(client: httpx.AsyncClient, body: dict[str, str], needle: str) -> None:
    problem = assert_problem(await client.post(USERS, json=body, headers=ADMIN), 422, "validation-error")
    assert needle in problem["detail"]


async def test_representative_and_operators_must_be_active_citizens(client: httpx.AsyncClient) -> None:
    base = {"kind": "legal_person", "name": "代表测试公司", "credit_code": credit_code()}
    r = await client.post(USERS, json=base | {"representative_id": DEMO["demo-staff"]}, headers=ADMIN)
    assert DEMO["demo-staff"] in assert_problem(r, 422)["detail"]
    r = await client.post(USERS, json=base | {"operator_ids": [DEMO["demo-enterprise"]]}, headers=ADMIN)
    assert DEMO["demo-enterprise"] in assert_problem(r, 422)["detail"]

    gone = await create(client, citizen())
    r = await client.post(f"{USERS}/{gone['id']}/disable", headers=ADMIN)
    assert r.status_code == 200 and r.json()["status"] == "disabled"
    r = await client.post(USERS, json=base | {"representative_id": gone["id"]}, headers=ADMIN)
    assert gone["id"] in assert_problem(r, 422)["detail"]


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("id_number", "110105194912310021", "check character should be X"),
        ("id_number", "11010519491331002X", "birth date"),
        ("id_number", "1101051949123100", "18 characters"),
        ("mobile", "+1 650 555 0100", "+86"),
        ("mobile", "12800138000", "11 digits"),
        ("email", "no-at-sign.example.com", "@"),
        ("email", "a@localhost", "dot"),
    ],
)
async def test_invalid_personal_data_is_a_422_naming_the_field(
    client: httpx.AsyncClient, field: str, value: str, needle: str
) -> None:
    body = citizen() | {field: value}
    problem = assert_problem(await client.post(USERS, json=body, headers=ADMIN), 422, "validation-error")
    assert problem["detail"].startswith(f"{field}: ") and needle in problem["detail"]
    assert problem["errors"][0]["location"] == f"body.{field}"


async def test_conflicts_name_the_field(client: httpx.AsyncClient) -> None:
    first = citizen(username=f"taken{serial()}")
    await create(client, first)

    async def conflict(body: dict[str, str]) -> str:
        body = body | {"name": "撞车"}
        problem = assert_problem(await client.post(USERS, json=body, headers=ADMIN), 409, "conflict")
        return str(problem["field"])

    assert await conflict(citizen(id_number=first["id_number"])) == "id_number"
    assert await conflict(citizen(mobile=first["mobile"])) == "mobile"
    assert await conflict(citizen(mobile="+86 138-0013-8000")) == "mobile"  # demo-citizen's, in another form
    assert await conflict(citizen(email=first["email"])) == "email"
    assert await conflict(staff(username=first["username"].upper())) == "username"
    code = credit_code()
    await create(client, {"kind": "legal_person", "name": "甲公司", "credit_code": code})
    assert await conflict({"kind": "legal_person", "credit_code": code}) == "credit_code"

    # one person may hold a citizen and a staff account with the same identity number
    twin = await create(client, staff(id_number=first["id_number"]))
    found = (await search(client, PII_ADMIN, purpose=CHECK, login=first["mobile"]))["items"]
    assert twin["id_number"] == found[0]["id_number"]
    assert await conflict(staff(id_number=first["id_number"])) == "id_number"


async def test_merge_patch_semantics_and_version(client: httpx.AsyncClient) -> None:
    made = await create(client, citizen(real_name="孙八"))
    url = f"{USERS}/{made['id']}"

    r = await client.patch(url, json={"name": "孙八八"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    one = r.json()
    assert one["name"] == "孙八八" and one["version"] == 2
    assert (one["mobile"], one["email"], one["real_name"]) == (made["mobile"], made["email"], "孙八")

    r = await client.patch(url, json={"email": None, "real_name": None}, headers=ADMIN)
    two = r.json()
    assert r.status_code == 200 and two["email"] is None and two["real_name"] is None and two["version"] == 3
    assert two["mobile"] == made["mobile"]

    r = await client.patch(url, json={"name": "孙八八"}, headers=ADMIN)  # no change: same version
    assert r.status_code == 200 and r.json()["version"] == 3

    assert_problem(await client.patch(url, json={"name": None}, headers=ADMIN), 422, "validation-error")
    assert_problem(await client.patch(url, json={"kind": "staff"}, headers=ADMIN), 422)
    r = await client.patch(url, json={"mobile": "+86 138 0013 8000"}, headers=ADMIN)
    assert assert_problem(r, 409, "conflict")["field"] == "mobile"
    r = await client.patch(url, json={"id_number": None}, headers=ADMIN)  # citizens are real-name accounts
    assert "id_number" in assert_problem(r, 422)["detail"]

    n = serial()
    r = await client.patch(url, json={"mobile": f"152 {n:08d}"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["version"] == 4
    full = await get(client, made["id"], PII_ADMIN, **UNMASK)
    assert full["mobile"] == f"152{n:08d}" and full["email"] is None and full["version"] == 4


async def test_disable_enable_delete(client: httpx.AsyncClient) -> None:
    made = await create(client, staff())
    url = f"{USERS}/{made['id']}"

    r = await client.post(f"{url}/disable", json={"reason": "离职"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "disabled" and r.json()["status_reason"] == "离职" and r.json()["version"] == 2
    assert (await client.post(f"{url}/disable", headers=ADMIN)).json()["version"] == 2  # already disabled
    r = await client.post(f"{url}/enable", headers=ADMIN)
    assert r.status_code == 200 and r.json()["status"] == "active" and r.json()["version"] == 3
    assert (await client.post(f"{url}/enable", headers=ADMIN)).json()["version"] == 3  # already active

    r = await client.delete(url, params={"reason": "本人申请注销"}, headers=ADMIN)
    assert r.status_code == 204 and r.content == b""
    # a deleted account is kept (for audit) until purged, but answers like an unknown one ...
    assert_problem(await client.get(url, headers=ADMIN), 404, "user-not-found")
    assert_problem(await client.post(f"{url}/enable", headers=ADMIN), 404)
    assert_problem(await client.patch(url, json={"name": "复活"}, headers=ADMIN), 404)
    # ... except to an administrator who asks for deleted accounts
    assert (await search(client, status="deleted", login=made["username"]))["items"] == []  # names released
    deleted = (await search(client, status="deleted", kind="staff", limit=500))["items"]
    gone = next(u for u in deleted if u["id"] == made["id"])
    assert gone["status"] == "deleted" and gone["username"] is None and gone["mobile"] is None
    assert gone["status_reason"] == "本人申请注销" and gone["version"] == 4
    assert made["id"] not in {u["id"] for u in (await search(client, kind="staff", limit=500))["items"]}


async def test_deleted_login_names_are_free_again_and_purge_removes_the_account(
    client: httpx.AsyncClient, user_db: Database
) -> None:
    body = citizen(username=f"reuse{serial()}")
    old = await create(client, body)
    assert (await client.delete(f"{USERS}/{old['id']}", headers=ADMIN)).status_code == 204

    new = await create(client, body | {"name": "新账号"})
    assert new["id"] != old["id"]
    assert [u["id"] for u in (await search(client, login=old["username"]))["items"]] == [new["id"]]

    async with user_db.session() as s:
        purged = await purge_deleted(s, retention_days=0)
    assert purged >= 1
    async with user_db.session() as s:
        assert await s.get(UserAccount, old["id"]) is None
        assert await s.get(UserAccount, new["id"]) is not None
    assert old["id"] not in {u["id"] for u in (await search(client, status="deleted", limit=500))["items"]}
    async with user_db.session() as s:
        assert await purge_deleted(s, retention_days=0) == 0
