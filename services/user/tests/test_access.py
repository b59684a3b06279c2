"""Who sees and changes which accounts: the bootstrap admin, delegated org admins (as the org service says), oneself."""

from __future__ import annotations

import httpx

from tongban_user.seed import DEMO_ENTERPRISE

from .helpers import (
    ADMIN,
    CHECK,
    CITIZEN,
    DEMO,
    HZ_ADMIN,
    USERS,
    as_,
    assert_problem,
    citizen,
    create,
    for_account,
    get,
    search,
    staff,
)

#: the people dsj-admin administers: members of the 省大数据局 subtree, but not demo-admin, who administers the whole
#: tree (an administrative account is never administered from below)
DSJ_STAFF = {DEMO["demo-staff"], DEMO["dsj-leader"], DEMO["dsj-admin"]}


async def test_no_token_is_401_with_a_challenge(client: httpx.AsyncClient) -> None:
    for r in (
        await client.get(USERS),
        await client.get(f"{USERS}/me"),
        await client.get(f"{USERS}/{DEMO['demo-citizen']}"),
        await client.post(USERS, json=staff()),
    ):
        assert_problem(r, 401, "authentication-required")
        assert r.headers["www-authenticate"] == 'Bearer realm="tongban"'
    r = await client.get(USERS, headers={"Authorization": "Bearer not a token"})
    assert_problem(r, 401, "invalid-token")


async def test_a_citizen_sees_only_themselves(client: httpx.AsyncClient) -> None:
    me = DEMO["demo-citizen"]
    assert (await get(client, "me", CITIZEN))["id"] == me
    assert (await get(client, me, CITIZEN))["username"] == "demo-citizen"
    for other in ("demo-citizen2", "demo-staff", "hz-staff", "demo-enterprise"):
        assert_problem(await client.get(f"{USERS}/{DEMO[other]}", headers=CITIZEN), 404, "user-not-found")
    assert [u["id"] for u in (await search(client, CITIZEN))["items"]] == [me]
    assert (await search(client, CITIZEN, q="李"))["items"] == []
    # demo-citizen2's mobile: even with the right to search by it, a citizen finds only themselves
    pii = as_("demo-citizen", "user:pii", scopes=("openid", "user:read", "user:write"))
    assert (await search(client, pii, login="13900139000", purpose=CHECK))["items"] == []
    assert (await search(client, CITIZEN, kind="staff"))["items"] == []


async def test_someone_without_an_account_has_no_me(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"{USERS}/me", headers=as_("nobody")), 404, "user-not-found")
    assert (await search(client, as_("nobody")))["items"] == []
    assert_problem(await client.get(f"{USERS}/{DEMO['demo-staff']}", headers=as_("nobody")), 404)


async def test_a_citizen_changes_own_contacts_only(client: httpx.AsyncClient) -> None:
    mine = await create(client, citizen(username="self.service"))
    me = for_account(mine["id"])
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
    me = for_account(mine["id"])
    url = f"{USERS}/{mine['id']}"
    assert_problem(await client.post(f"{url}/disable", headers=me), 403, "forbidden")
    assert (await client.post(f"{url}/disable", json={"reason": "违规"}, headers=ADMIN)).status_code == 200
    assert_problem(await client.post(f"{url}/enable", headers=me), 403, "forbidden")
    assert (await get(client, mine["id"]))["status"] == "disabled"
    # closing one's own account (注销) is allowed
    assert (await client.delete(url, headers=me)).status_code == 204
    assert_problem(await client.get(url, headers=ADMIN), 404)


async def test_citizens_and_org_admins_create_only_what_they_may(
    client: httpx.AsyncClient, dsj_admin: dict[str, str], hz_admin: dict[str, str]
) -> None:
    for body in (citizen(), staff()):
        assert_problem(await client.post(USERS, json=body, headers=CITIZEN), 403, "forbidden")
    assert_problem(await client.post(USERS, json=citizen(), headers=dsj_admin), 403, "forbidden")
    legal = {"kind": "legal_person", "name": "越权公司", "credit_code": DEMO_ENTERPRISE[1]}
    assert_problem(await client.post(USERS, json=legal, headers=hz_admin), 403, "forbidden")
    made = await create(client, staff(), dsj_admin)
    assert made["kind"] == "staff"


async def test_dsj_admin_sees_the_staff_of_its_subtree_only(
    client: httpx.AsyncClient, dsj_admin: dict[str, str], org_units: dict[str, str]
) -> None:
    for name in ("demo-staff", "dsj-leader"):
        assert (await get(client, DEMO[name], dsj_admin))["username"] == name
    for name in ("demo-citizen", "scjg-staff", "hz-staff", "demo-enterprise", "demo-admin"):
        assert_problem(await client.get(f"{USERS}/{DEMO[name]}", headers=dsj_admin), 404, "user-not-found")
    listed = (await search(client, dsj_admin, limit=500))["items"]
    assert {u["id"] for u in listed} == DSJ_STAFF
    assert {u["id"] for u in (await search(client, dsj_admin, q="赵"))["items"]} == {DEMO["dsj-leader"]}
    assert (await search(client, dsj_admin, kind="citizen"))["items"] == []
    dsj_pii = as_("dsj-admin", "user:pii", admin_units=[org_units["zj-dsj"]])
    assert (await search(client, dsj_pii, login="13800138000", purpose=CHECK))["items"] == []


async def test_org_admins_manage_the_staff_they_see(client: httpx.AsyncClient, dsj_admin: dict[str, str]) -> None:
    url = f"{USERS}/{DEMO['dsj-leader']}"
    r = await client.patch(url, json={"enterprise": {"employee_number": "ZJ-0001"}}, headers=dsj_admin)
    assert r.status_code == 200 and r.json()["enterprise"]["employee_number"] == "ZJ-0001"
    assert (await client.post(f"{url}/disable", headers=dsj_admin)).json()["status"] == "disabled"
    assert (await client.post(f"{url}/enable", headers=dsj_admin)).json()["status"] == "active"
    r = await client.patch(f"{USERS}/{DEMO['scjg-staff']}", json={"name": "越权"}, headers=dsj_admin)
    assert_problem(r, 404)
    assert_problem(await client.delete(f"{USERS}/{DEMO['hz-staff']}", headers=dsj_admin), 404)


async def test_the_org_service_is_asked(client: httpx.AsyncClient) -> None:
    # hz-admin's token has the admin scope but no admin_units claim: the org service's grants decide, as always
    assert (await get(client, DEMO["hz-staff"], HZ_ADMIN))["name"] == "陈杭州"
    assert_problem(await client.get(f"{USERS}/{DEMO['demo-staff']}", headers=HZ_ADMIN), 404)
    assert {u["id"] for u in (await search(client, HZ_ADMIN))["items"]} == {DEMO["hz-staff"], DEMO["hz-admin"]}


async def test_a_new_member_becomes_visible_to_the_org_admin(
    client: httpx.AsyncClient, org_client: httpx.AsyncClient, org_units: dict[str, str], dsj_admin: dict[str, str]
) -> None:
    made = await create(client, staff(), dsj_admin)
    # creating a staff account does not place it in the tree: the org service holds memberships
    assert_problem(await client.get(f"{USERS}/{made['id']}", headers=dsj_admin), 404)
    r = await org_client.post(
        "/api/v1/orgs/memberships",
        json={"unit_id": org_units["zj-dsj-sjzyc"], "user_id": made["id"], "title": "数据工程师"},
        headers=dsj_admin,
    )
    assert r.status_code == 201, r.text
    assert (await get(client, made["id"], dsj_admin))["id"] == made["id"]
    listed = {u["id"] for u in (await search(client, dsj_admin, limit=500))["items"]}
    assert listed == DSJ_STAFF | {made["id"]}


async def test_an_org_admin_who_is_also_a_member_sees_staff_only(
    client: httpx.AsyncClient, org_client: httpx.AsyncClient, org_units: dict[str, str]
) -> None:
    # demo-staff is made administrator of its own unit, which (wrongly) also lists a citizen
    unit = org_units["zj-dsj-sjzyc"]
    r = await org_client.post(
        "/api/v1/orgs/admin-grants", json={"principal": DEMO["demo-staff"], "unit_id": unit}, headers=ADMIN
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


async def test_the_org_grants_decide_not_the_claim(client: httpx.AsyncClient, org_units: dict[str, str]) -> None:
    # hz-admin holds an org grant for 杭州市, but this token claims 省大数据局: the claim counts for nothing
    claimed = as_("hz-admin", admin_units=[org_units["zj-dsj"]])
    listed = {u["id"] for u in (await search(client, claimed, limit=500))["items"]}
    assert listed == {DEMO["hz-staff"], DEMO["hz-admin"]}
    assert_problem(await client.get(f"{USERS}/{DEMO['demo-staff']}", headers=claimed), 404)
    assert (await get(client, DEMO["hz-staff"], claimed))["username"] == "hz-staff"
    # an empty or a whole-tree claim changes nothing either
    for claim in ([], ["*"]):
        headers = as_("hz-admin", admin_units=claim)
        assert {u["id"] for u in (await search(client, headers, limit=500))["items"]} == listed
    # without the admin scope there are no rights at all, whatever the claim
    no_admin = as_("dsj-admin", scopes=("user:read", "user:write"), admin_units=[org_units["zj-dsj"]])
    assert_problem(await client.get(f"{USERS}/{DEMO['demo-staff']}", headers=no_admin), 404)
    assert_problem(await client.post(USERS, json=staff(), headers=no_admin), 403, "forbidden")
    assert [u["id"] for u in (await search(client, no_admin, limit=500))["items"]] == [DEMO["dsj-admin"]]


async def test_reads_and_writes_need_their_scopes(client: httpx.AsyncClient, dsj_admin: dict[str, str]) -> None:
    url = f"{USERS}/{DEMO['dsj-leader']}"
    write_only = as_("demo-admin", scopes=("user:write", "admin"))
    problem = assert_problem(await client.get(url, headers=write_only), 403, "insufficient-scope")
    assert problem["required_scopes"] == ["user:read"]
    read_only = as_("demo-admin", scopes=("user:read", "admin"))
    r = await client.patch(url, json={"name": "只读"}, headers=read_only)
    assert_problem(r, 403, "insufficient-scope")
    assert 'scope="user:write"' in r.headers["www-authenticate"]
    assert (await get(client, DEMO["dsj-leader"], read_only))["name"] == "赵局长"  # unchanged, and readable


async def test_client_tokens_act_only_within_their_grants(
    client: httpx.AsyncClient, org_client: httpx.AsyncClient, org_units: dict[str, str]
) -> None:
    # client credentials: sub is the client id; there is no person, so no "me" and no whole-tree rights
    bare = for_account("demo-app", admin_units=[org_units["zj-dsj"]])  # a claim without a grant: nothing
    assert (await search(client, bare, limit=500))["items"] == []
    assert_problem(await client.get(f"{USERS}/me", headers=bare), 404, "user-not-found")
    assert_problem(await client.post(USERS, json=staff(), headers=bare), 403, "forbidden")
    assert_problem(await client.get(f"{USERS}/{DEMO['demo-staff']}", headers=bare), 404)
    # the app is granted 省大数据局 in the org directory: the same token now reaches its staff
    r = await org_client.post(
        "/api/v1/orgs/admin-grants", json={"principal": "demo-app", "unit_id": org_units["zj-dsj"]}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    grant = r.json()
    try:
        listed = {u["id"] for u in (await search(client, bare, limit=500))["items"]}
        assert listed >= DSJ_STAFF - {DEMO["dsj-admin"]}
        assert DEMO["hz-staff"] not in listed and DEMO["demo-citizen"] not in listed
        r = await client.patch(
            f"{USERS}/{DEMO['demo-staff']}", json={"enterprise": {"employee_number": "ZJ-0002"}}, headers=bare
        )
        assert r.status_code == 200, r.text
        assert_problem(await client.get(f"{USERS}/{DEMO['hz-staff']}", headers=bare), 404)
    finally:
        r = await org_client.delete(f"/api/v1/orgs/admin-grants/{grant['id']}", headers=ADMIN)
    assert r.status_code == 204, r.text
    assert (await search(client, bare, limit=500))["items"] == []
