"""Delegated administrators reach only the people whose every post and grant lie in their subtrees, as the org
service says at the time of each request: adding someone to one's unit, or a token minted before a grant was
withdrawn, gives no reach."""

from __future__ import annotations

import httpx

from .helpers import ADMIN, DEMO, PII_ADMIN, USERS, as_, assert_problem, create, for_account, get, search, staff

MEMBERSHIPS = "/api/v1/orgs/memberships"
GRANTS = "/api/v1/orgs/admin-grants"
SEND_GRANTS = "/api/v1/orgs/send-grants"
PURPOSE = {"unmask": "true", "purpose": "核对联系方式"}


async def _join(org: httpx.AsyncClient, unit_id: str, user_id: str, headers: dict[str, str]) -> dict[str, str]:
    r = await org.post(MEMBERSHIPS, json={"unit_id": unit_id, "user_id": user_id}, headers=headers)
    assert r.status_code == 201, r.text
    out: dict[str, str] = r.json()
    return out


async def test_a_subtree_admin_does_not_take_over_the_whole_tree_admin(
    client: httpx.AsyncClient, org_client: httpx.AsyncClient, org_units: dict[str, str], hz_admin: dict[str, str]
) -> None:
    hz_pii = as_("hz-admin", "user:pii")
    victim, xihu = DEMO["demo-admin"], org_units["zj-hz-xh"]
    before = await get(client, victim)
    # the attack: hz-admin (杭州市) adds demo-admin (the whole tree, 省大数据局) to 西湖区
    r = await org_client.post(MEMBERSHIPS, json={"unit_id": xihu, "user_id": victim}, headers=hz_admin)
    problem = assert_problem(r, 403, "person-not-administered")
    assert r.headers["content-type"] == "application/problem+json"
    assert DEMO["hz-admin"] in problem["detail"]
    # even with such a membership made by other means, hz-admin neither reads nor changes demo-admin
    m = await _join(org_client, xihu, victim, ADMIN)
    try:
        assert_problem(await client.get(f"{USERS}/{victim}", params=PURPOSE, headers=hz_pii), 404, "user-not-found")
        for change in ({"mobile": "13311112222"}, {"email": "taken@example.com"}):
            assert_problem(await client.patch(f"{USERS}/{victim}", json=change, headers=hz_pii), 404)
        assert_problem(await client.post(f"{USERS}/{victim}/disable", headers=hz_pii), 404)
        assert victim not in {u["id"] for u in (await search(client, hz_pii, limit=500))["items"]}
        scim = await client.get("/scim/v2/Users", headers=hz_pii, params={"filter": 'userName eq "demo-admin"'})
        assert scim.status_code == 200 and scim.json()["totalResults"] == 0
        # nor the membership: an administrative account is changed only from above
        r = await org_client.patch(f"{MEMBERSHIPS}/{m['id']}", json={"title": "被改"}, headers=hz_admin)
        assert_problem(r, 403, "person-not-administered")
        after = await get(client, victim)
        assert (after["mobile"], after["email"], after["version"]) == (
            before["mobile"],
            before["email"],
            before["version"],
        )
    finally:
        r = await org_client.delete(f"{MEMBERSHIPS}/{m['id']}", headers=hz_admin)  # removing from one's unit is fine
    assert r.status_code == 204, r.text


async def test_staff_with_posts_elsewhere_need_an_admin_of_every_post(
    client: httpx.AsyncClient,
    org_client: httpx.AsyncClient,
    org_units: dict[str, str],
    hz_admin: dict[str, str],
    dsj_admin: dict[str, str],
) -> None:
    person = await create(client, staff())
    url = f"{USERS}/{person['id']}"
    dsj_post = await _join(org_client, org_units["zj-dsj-bgs"], person["id"], dsj_admin)
    assert (await get(client, person["id"], dsj_admin))["id"] == person["id"]
    # hz-admin may not add dsj-admin's staff to 杭州市 …
    r = await org_client.post(
        MEMBERSHIPS, json={"unit_id": org_units["zj-hz-sjj"], "user_id": person["id"]}, headers=hz_admin
    )
    assert_problem(r, 403, "person-not-administered")
    # … and once an admin of both places them there (a secondment), neither delegated admin alone manages them
    hz_post = await _join(org_client, org_units["zj-hz-sjj"], person["id"], ADMIN)
    for admin in (hz_admin, dsj_admin):
        assert_problem(await client.patch(url, json={"mobile": "13322223333"}, headers=admin), 404)
        assert person["id"] not in {u["id"] for u in (await search(client, admin, limit=500))["items"]}
    # making the 杭州市 post primary would demote the 省大数据局 one: refused too; a title is hz-admin's to give
    r = await org_client.patch(f"{MEMBERSHIPS}/{hz_post['id']}", json={"is_primary": True}, headers=hz_admin)
    assert_problem(r, 403, "person-not-administered")
    r = await org_client.patch(f"{MEMBERSHIPS}/{hz_post['id']}", json={"title": "借调"}, headers=hz_admin)
    assert r.status_code == 200, r.text
    r = await client.patch(url, json={"mobile": "13322223333"}, headers=ADMIN)  # the whole tree's admin may
    assert r.status_code == 200, r.text
    # when 省大数据局 lets them go, hz-admin administers them
    assert (await org_client.delete(f"{MEMBERSHIPS}/{dsj_post['id']}", headers=dsj_admin)).status_code == 204
    r = await client.patch(url, json={"email": "seconded@example.com"}, headers=hz_admin)
    assert r.status_code == 200, r.text
    assert_problem(await client.get(url, headers=dsj_admin), 404)


async def test_an_admin_with_rights_beyond_the_subtree_is_not_administered_from_it(
    client: httpx.AsyncClient, org_client: httpx.AsyncClient, org_units: dict[str, str], hz_admin: dict[str, str]
) -> None:
    person = await create(client, staff())
    await _join(org_client, org_units["zj-hz-sjj"], person["id"], hz_admin)  # new to the directory: fine
    url = f"{USERS}/{person['id']}"
    assert (await get(client, person["id"], hz_admin))["id"] == person["id"]
    # the person is made administrator of 宁波市 (from above): hz-admin no longer administers them
    r = await org_client.post(GRANTS, json={"principal": person["id"], "unit_id": org_units["zj-nb"]}, headers=ADMIN)
    assert r.status_code == 201, r.text
    grant = r.json()
    assert_problem(await client.get(url, headers=hz_admin), 404)
    assert_problem(await client.patch(url, json={"mobile": "13344445555"}, headers=hz_admin), 404)
    # and hz-admin cannot place them in a further 杭州市 unit either
    r = await org_client.post(
        MEMBERSHIPS, json={"unit_id": org_units["zj-hz-xh"], "user_id": person["id"]}, headers=hz_admin
    )
    assert_problem(r, 403, "person-not-administered")
    # nor delegate to someone hz-admin does not administer
    r = await org_client.post(
        GRANTS, json={"principal": DEMO["dsj-leader"], "unit_id": org_units["zj-hz-xh"]}, headers=hz_admin
    )
    assert_problem(r, 403, "person-not-administered")
    assert (await org_client.delete(f"{GRANTS}/{grant['id']}", headers=ADMIN)).status_code == 204
    assert (await get(client, person["id"], hz_admin))["id"] == person["id"]


async def test_a_sender_beyond_the_subtree_is_not_administered_from_it(
    client: httpx.AsyncClient, org_client: httpx.AsyncClient, org_units: dict[str, str], hz_admin: dict[str, str]
) -> None:
    hz_pii = as_("hz-admin", "user:pii")
    person = await create(client, staff())
    url, xihu = f"{USERS}/{person['id']}", org_units["zj-hz-xh"]
    # a staff account with no post that may send to the whole province
    r = await org_client.post(SEND_GRANTS, json={"principal": person["id"], "unit_id": org_units["zj"]}, headers=ADMIN)
    assert r.status_code == 201, r.text
    before = await get(client, person["id"])
    # the attack: hz-admin takes them in as "new to the directory", then administers them
    r = await org_client.post(MEMBERSHIPS, json={"unit_id": xihu, "user_id": person["id"]}, headers=hz_admin)
    assert_problem(r, 403, "person-not-administered")
    # placed in 西湖区 from above, they still lie beyond hz-admin's reach
    await _join(org_client, xihu, person["id"], ADMIN)
    assert_problem(await client.get(url, params=PURPOSE, headers=hz_pii), 404, "user-not-found")
    for change in ({"mobile": "13377778888"}, {"email": "sender@example.com"}):
        assert_problem(await client.patch(url, json=change, headers=hz_pii), 404)
    assert person["id"] not in {u["id"] for u in (await search(client, hz_pii, limit=500))["items"]}
    after = await get(client, person["id"])
    assert (after["mobile"], after["email"], after["version"]) == (before["mobile"], before["email"], before["version"])
    assert (await get(client, person["id"], PII_ADMIN, **PURPOSE))["masked"] is False


async def test_a_withdrawn_grant_stops_an_existing_token_at_once(
    client: httpx.AsyncClient, org_client: httpx.AsyncClient, org_units: dict[str, str]
) -> None:
    xihu = org_units["zj-hz-xh"]
    admin = await create(client, staff())
    clerk = await create(client, staff())
    for person in (admin, clerk):
        await _join(org_client, xihu, person["id"], ADMIN)
    r = await org_client.post(GRANTS, json={"principal": admin["id"], "unit_id": xihu}, headers=ADMIN)
    assert r.status_code == 201, r.text
    # the token as the auth service issued it while the grant stood, claim and all; valid for another hour
    token = for_account(admin["id"], "user:pii", admin_units=[xihu])
    url = f"{USERS}/{clerk['id']}"
    assert (await get(client, clerk["id"], token, **PURPOSE))["masked"] is False
    assert (await client.patch(url, json={"mobile": "13355556666"}, headers=token)).status_code == 200
    assert clerk["id"] in {u["id"] for u in (await search(client, token, limit=500))["items"]}
    assert (await client.post(USERS, json=staff(), headers=token)).status_code == 201

    assert (await org_client.delete(f"{GRANTS}/{r.json()['id']}", headers=ADMIN)).status_code == 204
    assert_problem(await client.get(url, params=PURPOSE, headers=token), 404, "user-not-found")
    assert_problem(await client.patch(url, json={"mobile": "13366667777"}, headers=token), 404)
    assert_problem(await client.post(f"{url}/disable", headers=token), 404)
    assert_problem(await client.post(USERS, json=staff(), headers=token), 403, "forbidden")
    assert [u["id"] for u in (await search(client, token, limit=500))["items"]] == [admin["id"]]
    assert (await get(client, clerk["id"]))["mobile"] == "133****6666"
