"""Whom a delegated administrator administers: people whose every post, admin grant and send grant lie in its
subtrees (and never an administrator of the whole tree); only such people, or people new to the directory, may be
added."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tongban_kit.rpc import RpcClient
from tongban_org.contract import (
    RPC_ADMIN_SCOPES,
    RPC_ADMINISTERED,
    AdministeredReply,
    AdministeredRequest,
    AdminScopesReply,
    AdminScopesRequest,
)

from .helpers import (
    ADMIN,
    GRANTS,
    HZ_ADMIN,
    MEMBERSHIPS,
    account,
    add_member,
    assert_problem,
    bearer,
    create_unit,
    token,
)

NOT_ADMINISTERED = "person-not-administered"
SEND_GRANTS = "/api/v1/orgs/send-grants"


@pytest.fixture(scope="module")
def rpc(org_app: FastAPI) -> RpcClient:
    """An RPC client on the service's own bus."""
    return RpcClient(org_app.state.runtime.bus)


async def _post(client: httpx.AsyncClient, unit_id: str, user_id: str, headers: dict[str, str]) -> httpx.Response:
    return await client.post(MEMBERSHIPS, json={"unit_id": unit_id, "user_id": user_id}, headers=headers)


async def _scopes(rpc: RpcClient, principal: str, *user_ids: str) -> AdminScopesReply:
    return await rpc.call(
        RPC_ADMIN_SCOPES, AdminScopesRequest(principal=principal, user_ids=list(user_ids)), AdminScopesReply
    )


async def test_only_people_administered_already_or_new_are_added(
    client: httpx.AsyncClient, seeded: dict[str, str], rpc: RpcClient
) -> None:
    xihu, dsj = seeded["zj-hz-xh"], seeded["zj-dsj"]
    # the attack of the probe: hz-admin adds demo-admin (the whole tree; a post in 省大数据局) to 西湖区
    r = await _post(client, xihu, account("demo-admin"), HZ_ADMIN)
    problem = assert_problem(r, 403, NOT_ADMINISTERED)
    assert account("hz-admin") in problem["detail"] and account("demo-admin") in problem["detail"]
    # someone with a post outside 杭州市, or administrative rights outside it
    await add_member(client, dsj, "reach-dsj-clerk")
    assert_problem(await _post(client, xihu, "reach-dsj-clerk", HZ_ADMIN), 403, NOT_ADMINISTERED)
    assert_problem(await _post(client, xihu, account("dsj-admin"), HZ_ADMIN), 403, NOT_ADMINISTERED)
    r = await client.post(GRANTS, json={"principal": "reach-nb-admin", "unit_id": seeded["zj-nb"]}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert_problem(await _post(client, xihu, "reach-nb-admin", HZ_ADMIN), 403, NOT_ADMINISTERED)
    # someone new, then someone hz-admin administers already (a second post in 杭州市)
    await add_member(client, xihu, "reach-newcomer", headers=HZ_ADMIN)
    await add_member(client, seeded["zj-hz-sjj"], "reach-newcomer", headers=HZ_ADMIN)
    listed = (await client.get(MEMBERSHIPS, params={"user_id": account("demo-admin")})).json()["items"]
    assert [m["unit_id"] for m in listed] == [dsj]

    reply = await _scopes(rpc, account("hz-admin"), "reach-newcomer", "reach-dsj-clerk", "reach-nb-admin", "nobody")
    assert reply.administers == ["reach-newcomer"] and reply.unit_ids == [seeded["zj-hz"]]
    whole = await _scopes(rpc, account("demo-admin"), "reach-dsj-clerk", "nobody")
    assert whole.all and whole.administers == ["reach-dsj-clerk", "nobody"]
    # dsj-admin administers its clerk, but not demo-admin, who also has a post in 省大数据局
    reply = await _scopes(rpc, account("dsj-admin"), "reach-dsj-clerk", account("demo-admin"), account("dsj-admin"))
    assert sorted(reply.administers) == sorted(["reach-dsj-clerk", account("dsj-admin")])


async def test_administrative_accounts_are_changed_only_from_above(
    client: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    xihu = seeded["zj-hz-xh"]
    hz_post = await add_member(client, xihu, "reach-boss", headers=HZ_ADMIN)
    r = await client.post(GRANTS, json={"principal": "reach-boss", "unit_id": seeded["zj-nb"]}, headers=ADMIN)
    assert r.status_code == 201, r.text
    r = await client.patch(f"{MEMBERSHIPS}/{hz_post['id']}", json={"title": "改"}, headers=HZ_ADMIN)
    assert_problem(r, 403, NOT_ADMINISTERED)
    r = await client.patch(f"{MEMBERSHIPS}/{hz_post['id']}", json={"title": "改"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    # nor may hz-admin delegate to people it does not administer
    r = await client.post(GRANTS, json={"principal": "reach-boss", "unit_id": xihu}, headers=HZ_ADMIN)
    assert_problem(r, 403, NOT_ADMINISTERED)
    r = await client.post(GRANTS, json={"principal": account("demo-admin"), "unit_id": xihu}, headers=HZ_ADMIN)
    assert_problem(r, 403, NOT_ADMINISTERED)
    # a subtree admin below hz-admin is administered by hz-admin (its grant lies within 杭州市)
    await add_member(client, xihu, "reach-xh-admin", headers=HZ_ADMIN)
    r = await client.post(GRANTS, json={"principal": "reach-xh-admin", "unit_id": xihu}, headers=HZ_ADMIN)
    assert r.status_code == 201, r.text
    await add_member(client, seeded["zj-hz-sjj"], "reach-xh-admin", headers=HZ_ADMIN)
    # but it cannot add its own administrator, whose grant lies above its subtree
    assert_problem(
        await _post(client, xihu, account("hz-admin"), bearer(token("reach-xh-admin"))), 403, NOT_ADMINISTERED
    )


async def test_a_primary_post_needs_an_admin_of_every_post(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    await add_member(client, seeded["zj-dsj"], "reach-seconded", is_primary=True)
    hz_post = await add_member(client, seeded["zj-hz-sjj"], "reach-seconded")  # by the whole tree's admin
    r = await client.patch(f"{MEMBERSHIPS}/{hz_post['id']}", json={"is_primary": True}, headers=HZ_ADMIN)
    assert_problem(r, 403, NOT_ADMINISTERED)
    r = await client.patch(
        f"{MEMBERSHIPS}/{hz_post['id']}", json={"title": "借调", "is_leader": True}, headers=HZ_ADMIN
    )
    assert r.status_code == 200, r.text
    assert (await client.delete(f"{MEMBERSHIPS}/{hz_post['id']}", headers=HZ_ADMIN)).status_code == 204


async def test_administered_lists_the_reach_page_by_page(
    client: httpx.AsyncClient, seeded: dict[str, str], rpc: RpcClient
) -> None:
    top = await create_unit(client, seeded["zj-hz-bj"], "滨江区授权范围测试局", "department", "county", "330108")
    people = [f"reach-list-{n}" for n in range(5)]
    for p in people:
        await add_member(client, top["id"], p)
    await add_member(client, seeded["zj-nb"], people[2])  # also in 宁波市: out of reach
    r = await client.post(GRANTS, json={"principal": "reach-bj-admin", "unit_id": top["id"]}, headers=ADMIN)
    assert r.status_code == 201, r.text
    seen: list[str] = []
    after: str | None = None
    while True:
        req = AdministeredRequest(principal="reach-bj-admin", limit=2, after=after)
        page = await rpc.call(RPC_ADMINISTERED, req, AdministeredReply)
        assert not page.all and len(page.user_ids) <= 2
        seen += page.user_ids
        if not page.more:
            break
        after = page.user_ids[-1]
    assert seen == sorted(set(people) - {people[2]})
    whole = await rpc.call(RPC_ADMINISTERED, AdministeredRequest(principal=account("demo-admin")), AdministeredReply)
    assert whole.all and whole.user_ids == []
    nobody = await rpc.call(RPC_ADMINISTERED, AdministeredRequest(principal="reach-nobody"), AdministeredReply)
    assert nobody == AdministeredReply(all=False, user_ids=[], more=False)


async def test_a_send_grant_beyond_the_subtrees_puts_a_person_out_of_reach(
    client: httpx.AsyncClient, seeded: dict[str, str], rpc: RpcClient
) -> None:
    xihu = seeded["zj-hz-xh"]

    async def send_grant(principal: str, unit_id: str, headers: dict[str, str]) -> None:
        r = await client.post(SEND_GRANTS, json={"principal": principal, "unit_id": unit_id}, headers=headers)
        assert r.status_code == 201, r.text

    # the attack: a staff account that may send to the whole province, with no post, is no newcomer to take in
    await send_grant("reach-province-sender", seeded["zj"], ADMIN)
    r = await _post(client, xihu, "reach-province-sender", HZ_ADMIN)
    problem = assert_problem(r, 403, NOT_ADMINISTERED)
    assert "reach-province-sender" in problem["detail"] and "sending" in problem["detail"]
    # nor may hz-admin delegate to them; the seed's sender to 省大数据局 is refused alike
    r = await client.post(GRANTS, json={"principal": "reach-province-sender", "unit_id": xihu}, headers=HZ_ADMIN)
    assert_problem(r, 403, NOT_ADMINISTERED)
    assert_problem(await _post(client, xihu, account("demo-staff"), HZ_ADMIN), 403, NOT_ADMINISTERED)
    # a sending right within 杭州市 leaves its holder hz-admin's to take in
    await send_grant("reach-xh-sender", xihu, HZ_ADMIN)
    await add_member(client, xihu, "reach-xh-sender", headers=HZ_ADMIN)

    # placed in 西湖区 from above, the province-wide sender is neither listed nor changed by hz-admin
    m = await add_member(client, xihu, "reach-province-sender")
    reply = await _scopes(rpc, account("hz-admin"), "reach-province-sender", "reach-xh-sender")
    assert reply.administers == ["reach-xh-sender"]
    listed: list[str] = []
    after: str | None = None
    while True:
        req = AdministeredRequest(principal=account("hz-admin"), limit=500, after=after)
        page = await rpc.call(RPC_ADMINISTERED, req, AdministeredReply)
        listed += page.user_ids
        if not page.more:
            break
        after = page.user_ids[-1]
    assert "reach-xh-sender" in listed and "reach-province-sender" not in listed
    r = await client.patch(f"{MEMBERSHIPS}/{m['id']}", json={"title": "改"}, headers=HZ_ADMIN)
    assert_problem(r, 403, NOT_ADMINISTERED)
    whole = await _scopes(rpc, account("demo-admin"), "reach-province-sender")
    assert whole.administers == ["reach-province-sender"]
