"""SCIM Users queries: filters (in SQL), offset pagination, sorting, attributes, POST /.search."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tongban_kit.demo import demo_user_id

from .helpers import as_
from .scim_fixtures import (
    ADMIN,
    ENTERPRISE_URN,
    MASKED_ADMIN,
    TONGBAN_URN,
    USERS,
    assert_scim_error,
    create_user,
    scim_id_number,
    serial,
    user_body,
)

LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


@pytest.fixture(scope="module")
async def people(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """Five accounts sharing a unique userName prefix, with distinct attributes."""
    tag = f"q{serial()}"
    specs: dict[str, dict[str, Any]] = {
        "a": {"displayName": "Alpha Zhang", "externalId": "EXT-A", "name": {"formatted": "张甲"}},
        "b": {"displayName": "Beta Li", "externalId": "ext-b", ENTERPRISE_URN: {"department": "Finance"}},
        "c": {"displayName": "Gamma Wang", "active": False, ENTERPRISE_URN: {"department": "IT Ops"}},
        "d": {"displayName": "Delta Zhao", "emails": []},
        "e": {"displayName": "Epsilon Qian", TONGBAN_URN: {"kind": "citizen", "idNumber": scim_id_number(serial())}},
    }
    out = {}
    for key, extra in specs.items():
        out[key] = await create_user(client, user_body(userName=f"{tag}.{key}", **extra))
    out["tag"] = {"value": tag}
    return out


async def _ids(client: httpx.AsyncClient, flt: str, **params: Any) -> list[str]:
    r = await client.get(USERS, params={"filter": flt, **params}, headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["schemas"] == [LIST_URN] and body["totalResults"] >= len(body.get("Resources", []))
    return [u["id"] for u in body.get("Resources", [])]


def _of(people: dict[str, dict[str, Any]], *keys: str) -> list[str]:
    return [people[k]["id"] for k in keys]


async def test_filters(client: httpx.AsyncClient, people: dict[str, dict[str, Any]]) -> None:
    tag = people["tag"]["value"]
    mine = f'userName sw "{tag}."'
    cases = {
        f'userName eq "{tag.upper()}.A"': "a",
        f'{mine} and displayName co "TA"': "bd",
        f'{mine} and (displayName sw "alpha" or displayName ew "WANG")': "ac",
        'externalId eq "EXT-A"': "a",
        'externalId eq "ext-a"': "",  # externalId is case-exact
        f"{mine} and name.formatted pr": "a",
        f"{mine} and not (emails pr)": "d",
        f'{mine} and emails[type eq "work" and value co "@example.com"]': "abce",
        f'emails.value eq "{people["b"]["emails"][0]["value"].upper()}"': "b",
        f'phoneNumbers.value eq "{people["c"]["phoneNumbers"][0]["value"]}"': "c",
        f"{mine} and active eq false": "c",
        f"{mine} and active ne false": "abde",
        f'{mine} and {ENTERPRISE_URN}:department sw "it"': "c",
        f'{mine} and {TONGBAN_URN}:kind eq "citizen"': "e",
        f'{mine} and meta.created ge "{people["c"]["meta"]["created"]}"': "cde",
        f'{mine} and meta.lastModified lt "2000-01-01T00:00:00Z"': "",
        f'id eq "{people["d"]["id"]}"': "d",
    }
    for flt, keys in cases.items():
        assert sorted(await _ids(client, flt)) == sorted(_of(people, *keys)), flt


@pytest.mark.parametrize(
    "flt",
    [
        'userName eq "x" and',
        "userName",
        'title eq "x"',
        'active eq "yes"',
        'meta.created gt "yesterday"',
        'urn:example:other:userName eq "x"',
        "userName eq 5",
    ],
)
async def test_invalid_filters(client: httpx.AsyncClient, flt: str) -> None:
    assert_scim_error(await client.get(USERS, params={"filter": flt}, headers=ADMIN), 400, "invalidFilter")


async def test_offset_pagination_and_sorting(client: httpx.AsyncClient, people: dict[str, dict[str, Any]]) -> None:
    flt = f'userName sw "{people["tag"]["value"]}."'
    by_name = _of(people, "a", "b", "d", "e", "c")  # Alpha, Beta, Delta, Epsilon, Gamma
    assert await _ids(client, flt, sortBy="displayName") == by_name
    assert await _ids(client, flt, sortBy="displayName", sortOrder="descending") == by_name[::-1]
    pages = []
    for start in (1, 3, 5):
        r = await client.get(
            USERS, params={"filter": flt, "sortBy": "displayName", "startIndex": start, "count": 2}, headers=ADMIN
        )
        body = r.json()
        assert (body["totalResults"], body["startIndex"], body["itemsPerPage"]) == (5, start, 2 if start < 5 else 1)
        pages += [u["id"] for u in body["Resources"]]
    assert pages == by_name
    r = await client.get(USERS, params={"filter": flt, "count": 0}, headers=ADMIN)
    assert r.json()["totalResults"] == 5 and not r.json().get("Resources")
    r = await client.get(
        USERS, params={"filter": flt, "startIndex": -4, "count": 1, "sortBy": "userName"}, headers=ADMIN
    )
    assert r.json()["startIndex"] == 1 and [u["id"] for u in r.json()["Resources"]] == _of(people, "a")
    assert_scim_error(await client.get(USERS, params={"sortBy": "emails.type"}, headers=ADMIN), 400, "invalidValue")
    everyone = (await client.get(USERS, params={"count": 1000}, headers=ADMIN)).json()
    assert everyone["itemsPerPage"] <= 200 and everyone["totalResults"] >= 5  # the seed's accounts too


async def test_a_negative_count_is_a_400_and_a_start_below_one_is_one(
    client: httpx.AsyncClient, people: dict[str, dict[str, Any]], org_units: dict[str, str]
) -> None:
    flt = f'userName sw "{people["tag"]["value"]}."'
    for count in ("-1", "-2147483649"):
        r = await client.get(USERS, params={"filter": flt, "count": count}, headers=ADMIN)
        assert "count" in assert_scim_error(r, 400, "invalidValue")["detail"]
    search = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": flt, "count": -1}
    assert_scim_error(await client.post(f"{USERS}/.search", json=search, headers=ADMIN), 400, "invalidValue")
    r = await client.get("/scim/v2/Groups", params={"filter": f'id eq "{org_units["zj"]}"', "count": -1}, headers=ADMIN)
    assert_scim_error(r, 400, "invalidValue")
    for bad in ({"count": "ten"}, {"count": "1.5"}, {"startIndex": "first"}):
        assert_scim_error(await client.get(USERS, params={"filter": flt, **bad}, headers=ADMIN), 400, "invalidValue")
    # RFC 7644 §3.4.2.4: a startIndex below 1 is read as 1
    for start in ("0", "-1", "-99999999999999999999"):
        r = await client.get(USERS, params={"filter": flt, "startIndex": start, "sortBy": "userName"}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["startIndex"] == 1 and r.json()["totalResults"] == 5, r.text
    body = (await client.post(f"{USERS}/.search", json={**search, "count": 2, "startIndex": 0}, headers=ADMIN)).json()
    assert (body["startIndex"], body["itemsPerPage"], body["totalResults"]) == (1, 2, 5)


async def test_attributes_and_masking(client: httpx.AsyncClient, people: dict[str, dict[str, Any]]) -> None:
    flt = f'userName eq "{people["tag"]["value"]}.b"'
    r = await client.get(USERS, params={"filter": flt, "attributes": "userName,emails.value"}, headers=ADMIN)
    (user,) = r.json()["Resources"]
    assert set(user) == {"schemas", "id", "userName", "emails"} and set(user["emails"][0]) == {"value"}
    r = await client.get(
        USERS, params={"filter": flt, "excludedAttributes": f"emails,meta,{ENTERPRISE_URN}"}, headers=ADMIN
    )
    (user,) = r.json()["Resources"]
    assert "emails" not in user and "meta" not in user and ENTERPRISE_URN not in user and "phoneNumbers" in user
    masked = (await client.get(USERS, params={"filter": flt}, headers=MASKED_ADMIN)).json()["Resources"][0]
    assert masked["emails"][0]["value"] != people["b"]["emails"][0]["value"] and "*" in masked["emails"][0]["value"]
    r = await client.get(USERS, params={"attributes": "userName", "excludedAttributes": "emails"}, headers=ADMIN)
    assert_scim_error(r, 400)


async def test_post_search(client: httpx.AsyncClient, people: dict[str, dict[str, Any]]) -> None:
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": f'userName sw "{people["tag"]["value"]}." and displayName sw "b"',
        "attributes": ["displayName"],
        "startIndex": 1,
        "count": 10,
    }
    r = await client.post(f"{USERS}/.search", json=body, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["Resources"] == [
        {"schemas": [people["b"]["schemas"][0]], "id": people["b"]["id"], "displayName": "Beta Li"}
    ]
    bad = {**body, "filter": "displayName eq"}
    assert_scim_error(await client.post(f"{USERS}/.search", json=bad, headers=ADMIN), 400, "invalidFilter")
    assert_scim_error(await client.get(f"{USERS}/.search", headers=ADMIN), 405)


async def test_callers_list_only_the_accounts_they_may_see(
    client: httpx.AsyncClient, people: dict[str, dict[str, Any]]
) -> None:
    hz_admin = as_("hz-admin")  # org seed grant: the 杭州市 subtree (no admin_units claim: asks the org service)
    body = (await client.get(USERS, headers=hz_admin)).json()
    hangzhou = sorted([demo_user_id("hz-staff"), demo_user_id("hz-admin")])
    assert sorted(u["id"] for u in body["Resources"]) == hangzhou and body["totalResults"] == 2
    assert_scim_error(await client.get(f"{USERS}/{people['a']['id']}", headers=hz_admin), 404)
    citizen = as_("demo-citizen", scopes=("user:read",))
    body = (await client.get(USERS, headers=citizen)).json()
    assert [u["id"] for u in body["Resources"]] == [demo_user_id("demo-citizen")]
