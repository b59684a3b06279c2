"""Who sees and changes which accounts: the bootstrap admin, delegated org admins (asked over org RPC), oneself."""

from __future__ import annotations

import httpx

from tongban_user.seed import DEMO_ENTERPRISE

from .helpers import (
    ADMIN,
    CITIZEN,
    DEMO,
    DSJ_ADMIN,
    HZ_ADMIN,
    USERS,
    as_,
    assert_problem,
    citizen,
    create,
    get,
    search,
    staff,
)

DSJ_STAFF = {DEMO["demo-staff"], DEMO["demo-admin"], DEMO["dsj-leader"]}  # members of the 省大数据局 subtree


async def test_no_principal_is_401_with_a_challenge(client: httpx.AsyncClient) -> None:
    for r in (
        await client.get(USERS),
        await client.get(f"{USERS}/me"),
        await client.get(f"{USERS}/{DEMO['demo-citizen']}"),
        await client.post(USERS, json=staff()),
    ):
        assert_problem(r, 401, "unauthenticated")
        assert r.headers["www-authenticate"] == 'Bearer realm="tongban"'
    assert_problem(await client.get(USERS, headers={"X-Tongban-Principal": "bad principal!"}), 422)


async def test_a_citizen_sees_only_themselves(client: httpx.AsyncClient) -> None:
    me = DEMO["demo-citizen"]
    assert (await get(client, "me", CITIZEN))["id"] == me
    assert (await get(client, me, CITIZEN))["username"] == "demo-citizen"
    assert (await get(client, me, as_(me)))["id"] == me  # by account id as well as by username
    assert (await get(client, me, as_("Demo-Citizen")))["id"] == me
    for other in ("demo-citizen2", "demo-staff", "hz-staff", "demo-enterprise"):
        assert_problem(await client.get(f"{USERS}/{DEMO[other]}", headers=CITIZEN), 404, "user-not-found")
    assert [u["id"] for u in (await search(client, CITIZEN))["items"]] == [me]
    assert (await search(client, CITIZEN, q="李"))["items"] == []
    assert (await search(client, CITIZEN, login="13900139000"))["items"] == []  # demo-citizen2's mobile
    assert (await search(client, CITIZEN, kind="staff"))["items"] == []


async def test_someone_without_an_account_has_no_me(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"{USERS}/me", headers=DSJ_ADMIN), 404, "user-not-found")
    assert (await search(client, as_("nobody")))["items"] == []
    assert_problem(await client.get(f"{USERS}/{DEMO['demo-staff']}", headers=as_("nobody")), 404)


async def test_a_citizen_changes_own_contacts_only(client: httpx.AsyncClient) -> None:
    mine = await create(client, citizen(username="self.service"))
    me = as_("self.service")
    url = f"{USERS}/{mine['id']}"
    r = await client.patch(url, json={"name": "自助改名", "mobile": "+86 155 5555 0001", "email": None}, headers=me)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "自助改名" and r.json()["mobile"] == "155****0001" and r.json()["email"] is None
    for change in ({"id_number": citizen()["id_number"]}, {"username": "someone.else"}, {"real_name": "别人"}):
        assert_problem(await client.patch(url, json=change, headers=me), 403, "forbidden")
    assert_problem(await client.patch(url, json={"kind": "staff"}, headers=me), 422)  # not changeable by anyone
    r = await client.patch(f"{USERS}/{DEMO['demo-citizen2']}", json={"name": "冒名"}, headers=me)
    assert_problem(r, 404)
    assert (await get(client, mine["id"]))["version"] == 2


async def test_people_do_not_lift_their_own_suspension(client: httpx.AsyncClient) -> None:
    mine = await create(client, citizen(username="self.status"))
    me = as_("self.status")
    url = f"{USERS}/{mine['id']}"
    assert_problem(await client.post(f"{url}/disable", headers=me), 403, "forbidden")
    assert (await client.post(f"{url}/disable", json={"reason": "违规"}, headers=ADMIN)).status_code == 200
    assert_problem(await client.post(f"{url}/enable", headers=me), 403, "forbidden")
    assert (await get(client, mine["id"]))["status"] == "disabled"
    # closing one's own account (注销) is allowed
    assert (await client.delete(url, headers=me)).status_code == 204
    assert_problem(await client.get(url, headers=ADMIN), 404)


async def test_citizens_and_org_admins_create_only_what_they_may(client: httpx.AsyncClient) -> None:
    for body in (citizen(), staff()):
        assert_problem(await client.post(USERS, json=body, headers=CITIZEN), 403, "forbidden")
    assert_problem(await client.post(USERS, json=citizen(), headers=DSJ_ADMIN), 403, "forbidden")
    legal = {"kind": "legal_person", "name": "越权公司", "credit_code": DEMO_ENTERPRISE[1]}
    assert_problem(await client.post(USERS, json=legal, headers=HZ_ADMIN), 403, "forbidden")
    made = await create(client, staff(), DSJ_ADMIN)
    assert made["kind"] == "staff"


async def test_dsj_admin_sees_the_staff_of_its_subtree_only(client: httpx.AsyncClient) -> None:
    for name in ("demo-staff", "dsj-leader", "demo-admin"):
        assert (await get(client, DEMO[name], DSJ_ADMIN))["username"] == name
    for name in ("demo-citizen", "scjg-staff", "hz-staff", "demo-enterprise"):
        assert_problem(await client.get(f"{USERS}/{DEMO[name]}", headers=DSJ_ADMIN), 404, "user-not-found")
    listed = (await search(client, DSJ_ADMIN, limit=500))["items"]
    assert {u["id"] for u in listed} == DSJ_STAFF
    assert {u["id"] for u in (await search(client, DSJ_ADMIN, q="赵"))["items"]} == {DEMO["dsj-leader"]}
    assert (await search(client, DSJ_ADMIN, kind="citizen"))["items"] == []
    assert (await search(client, DSJ_ADMIN, login="13800138000"))["items"] == []


async def test_org_admins_manage_the_staff_they_see(client: httpx.AsyncClient) -> None:
    url = f"{USERS}/{DEMO['dsj-leader']}"
    r = await client.patch(url, json={"enterprise": {"employee_number": "ZJ-0001"}}, headers=DSJ_ADMIN)
    assert r.status_code == 200 and r.json()["enterprise"]["employee_number"] == "ZJ-0001"
    assert (await client.post(f"{url}/disable", headers=DSJ_ADMIN)).json()["status"] == "disabled"
    assert (await client.post(f"{url}/enable", headers=DSJ_ADMIN)).json()["status"] == "active"
    r = await client.patch(f"{USERS}/{DEMO['scjg-staff']}", json={"name": "越权"}, headers=DSJ_ADMIN)
    assert_problem(r, 404)
    assert_problem(await client.delete(f"{USERS}/{DEMO['hz-staff']}", headers=DSJ_ADMIN), 404)


async def test_hz_admin_sees_hangzhou_staff(client: httpx.AsyncClient) -> None:
    assert (await get(client, DEMO["hz-staff"], HZ_ADMIN))["name"] == "陈杭州"
    assert_problem(await client.get(f"{USERS}/{DEMO['demo-staff']}", headers=HZ_ADMIN), 404)
    assert [u["id"] for u in (await search(client, HZ_ADMIN))["items"]] == [DEMO["hz-staff"]]


async def test_a_new_member_becomes_visible_to_the_org_admin(
    client: httpx.AsyncClient, org_client: httpx.AsyncClient, org_units: dict[str, str]
) -> None:
    made = await create(client, staff(), DSJ_ADMIN)
    # creating a staff account does not place it in the tree: the org service holds memberships
    assert_problem(await client.get(f"{USERS}/{made['id']}", headers=DSJ_ADMIN), 404)
    r = await org_client.post(
        "/api/v1/orgs/memberships",
        json={"unit_id": org_units["zj-dsj-sjzyc"], "user_id": made["id"], "title": "数据工程师"},
        headers=DSJ_ADMIN,
    )
    assert r.status_code == 201, r.text
    assert (await get(client, made["id"], DSJ_ADMIN))["id"] == made["id"]
    listed = {u["id"] for u in (await search(client, DSJ_ADMIN, limit=500))["items"]}
    assert listed == DSJ_STAFF | {made["id"]}


async def test_an_org_admin_who_is_also_a_member_sees_staff_only(
    client: httpx.AsyncClient, org_client: httpx.AsyncClient, org_units: dict[str, str]
) -> None:
    # demo-staff is made administrator of its own unit, which (wrongly) also lists a citizen
    unit = org_units["zj-dsj-sjzyc"]
    r = await org_client.post(
        "/api/v1/orgs/admin-grants", json={"principal": "demo-staff", "unit_id": unit}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    r = await org_client.post(
        "/api/v1/orgs/memberships", json={"unit_id": unit, "user_id": DEMO["demo-citizen3"]}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    me = as_("demo-staff")
    assert_problem(await client.get(f"{USERS}/{DEMO['demo-citizen3']}", headers=me), 404)
    listed = {u["id"] for u in (await search(client, me, limit=500))["items"]}
    assert DEMO["demo-citizen3"] not in listed and DEMO["demo-staff"] in listed
