"""SCIM discovery (ServiceProviderConfig, ResourceTypes, Schemas), read-only Groups over org RPC, error answers."""

from __future__ import annotations

import httpx
import pytest

from .helpers import as_
from .scim_fixtures import (
    ADMIN,
    ENTERPRISE_URN,
    SCIM,
    SCIM_JSON,
    TONGBAN_URN,
    USER_URN,
    assert_scim_error,
    create_user,
)

GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"


async def test_service_provider_config_tells_the_truth(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{SCIM}/ServiceProviderConfig", headers=ADMIN)
    assert r.status_code == 200 and r.headers["content-type"].startswith(SCIM_JSON)
    spc = r.json()
    assert spc["patch"] == {"supported": True} and spc["etag"] == {"supported": True}
    assert spc["bulk"]["supported"] is False and spc["changePassword"] == {"supported": False}
    assert spc["filter"] == {"supported": True, "maxResults": 200} and spc["sort"] == {"supported": True}
    assert spc["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    scheme = spc["authenticationSchemes"][0]
    assert "user:write" in scheme["description"] and scheme["specUri"] == "https://www.rfc-editor.org/rfc/rfc6750"
    assert spc["meta"] == {
        "resourceType": "ServiceProviderConfig",
        "location": f"http://user.test{SCIM}/ServiceProviderConfig",
    }


async def test_resource_types(client: httpx.AsyncClient) -> None:
    body = (await client.get(f"{SCIM}/ResourceTypes", headers=ADMIN)).json()
    assert body["totalResults"] == 2
    by_name = {rt["name"]: rt for rt in body["Resources"]}
    assert by_name["User"]["endpoint"] == "/Users" and by_name["User"]["schema"] == USER_URN
    assert [e["schema"] for e in by_name["User"]["schemaExtensions"]] == [ENTERPRISE_URN, TONGBAN_URN]
    assert by_name["Group"]["schema"] == GROUP_URN
    one = (await client.get(f"{SCIM}/ResourceTypes/User", headers=ADMIN)).json()
    assert one == by_name["User"]
    assert_scim_error(await client.get(f"{SCIM}/ResourceTypes/Pet", headers=ADMIN), 404)
    assert_scim_error(
        await client.get(f"{SCIM}/ResourceTypes", params={"filter": 'name eq "User"'}, headers=ADMIN), 403
    )


async def test_schemas_publish_only_what_is_stored(client: httpx.AsyncClient) -> None:
    body = (await client.get(f"{SCIM}/Schemas", headers=ADMIN)).json()
    schemas = {s["id"]: s for s in body["Resources"]}
    assert set(schemas) == {USER_URN, ENTERPRISE_URN, TONGBAN_URN, GROUP_URN}
    user = {a["name"]: a for a in schemas[USER_URN]["attributes"]}
    assert set(user) == {"userName", "name", "displayName", "active", "emails", "phoneNumbers"}
    assert [s["name"] for s in user["name"]["subAttributes"]] == ["formatted"]
    assert user["userName"]["required"] is True and user["userName"]["uniqueness"] == "server"
    tongban = {a["name"]: a for a in schemas[TONGBAN_URN]["attributes"]}
    assert tongban["kind"]["mutability"] == "immutable"
    assert (tongban["idNumber"]["mutability"], tongban["idNumber"]["returned"]) == ("writeOnly", "never")
    manager = {a["name"]: a for a in schemas[ENTERPRISE_URN]["attributes"]}["manager"]
    assert {s["name"]: s["mutability"] for s in manager["subAttributes"]} == {"value": "readWrite", "$ref": "readOnly"}

    def mutabilities(attrs: list[dict[str, object]]) -> set[object]:
        out: set[object] = set()
        for a in attrs:
            out.add(a["mutability"])
            out |= mutabilities(a.get("subAttributes", []))  # type: ignore[arg-type]
        return out

    assert mutabilities(schemas[GROUP_URN]["attributes"]) == {"readOnly"}
    one = await client.get(f"{SCIM}/Schemas/{USER_URN}", headers=ADMIN)
    assert one.json() == schemas[USER_URN] and one.json()["meta"]["resourceType"] == "Schema"
    assert_scim_error(await client.get(f"{SCIM}/Schemas/urn:example:nothing", headers=ADMIN), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/ServiceProviderConfig"),
        ("PUT", "/ServiceProviderConfig"),
        ("POST", "/ResourceTypes"),
        ("DELETE", "/ResourceTypes/User"),
        ("PATCH", "/Schemas"),
        ("PUT", f"/Schemas/{USER_URN}"),
        ("POST", "/Groups"),
        ("PUT", "/Groups/01a218ea-b4ce-7201-a15d-c731bacfe51c"),
        ("PATCH", "/Groups/01a218ea-b4ce-7201-a15d-c731bacfe51c"),
        ("DELETE", "/Groups/01a218ea-b4ce-7201-a15d-c731bacfe51c"),
        ("PUT", "/Users"),
    ],
)
async def test_writes_to_read_only_endpoints_are_405(client: httpx.AsyncClient, method: str, path: str) -> None:
    r = await client.request(method, SCIM + path, json={}, headers=ADMIN)
    body = assert_scim_error(r, 405)
    assert "GET" in r.headers["allow"]
    if path.startswith("/Groups"):
        assert "organisation service" in body["detail"]


async def test_other_errors_are_scim_errors(client: httpx.AsyncClient) -> None:
    assert_scim_error(await client.get(f"{SCIM}/Nothing", headers=ADMIN), 404)
    assert_scim_error(await client.get(SCIM, headers=ADMIN), 404)
    assert_scim_error(await client.get(f"{SCIM}/Users/a%0Ab", headers=ADMIN), 404)
    assert_scim_error(await client.post(f"{SCIM}/Bulk", json={}, headers=ADMIN), 501)
    r = await client.get(f"{SCIM}/Users")
    assert "Authorization: Bearer" in assert_scim_error(r, 401)["detail"]
    assert r.headers["www-authenticate"] == 'Bearer realm="tongban"'
    r = await client.get(f"{SCIM}/Schemas", headers={"Authorization": "Bearer not-a-jwt"})
    assert "not valid" in assert_scim_error(r, 401)["detail"]
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    r = await client.post(f"{SCIM}/Users", json={}, headers=as_("demo-admin", scopes=("user:read",)))
    assert "user:write" in assert_scim_error(r, 403)["detail"]
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


async def test_groups_are_org_units_with_their_direct_members(
    client: httpx.AsyncClient, org_client: httpx.AsyncClient, org_units: dict[str, str]
) -> None:
    unit_id = org_units["zj-dsj"]
    unit = (await org_client.get(f"/api/v1/orgs/units/{unit_id}", headers=ADMIN)).json()
    users = [await create_user(client) for _ in range(2)]
    for u in users:
        r = await org_client.post(
            "/api/v1/orgs/memberships", json={"unit_id": unit_id, "user_id": u["id"]}, headers=ADMIN
        )
        assert r.status_code == 201, r.text
    r = await client.get(f"{SCIM}/Groups/{unit_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    group = r.json()
    assert group["schemas"] == [GROUP_URN] and group["displayName"] == unit["name"]
    assert group["meta"]["location"] == f"http://user.test{SCIM}/Groups/{unit_id}"
    members = {m["value"]: m for m in group["members"]}
    for u in users:
        assert members[u["id"]] == {"value": u["id"], "$ref": f"http://user.test{SCIM}/Users/{u['id']}", "type": "User"}
    lean = (await client.get(f"{SCIM}/Groups/{unit_id}?excludedAttributes=members", headers=ADMIN)).json()
    assert "members" not in lean and lean["displayName"] == unit["name"]
    other = org_units["zj-hz"]
    r = await client.get(f"{SCIM}/Groups", params={"filter": f'id eq "{unit_id}" or id eq "{other}"'}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert sorted(g["id"] for g in r.json()["Resources"]) == sorted([unit_id, other])
    assert_scim_error(await client.get(f"{SCIM}/Groups/00000000-0000-0000-0000-000000000000", headers=ADMIN), 404)
    r = await client.get(f"{SCIM}/Groups", params={"filter": 'displayName eq "x"'}, headers=ADMIN)
    assert_scim_error(r, 400, "invalidFilter")
    assert_scim_error(await client.get(f"{SCIM}/Groups", headers=ADMIN), 400, "tooMany")
