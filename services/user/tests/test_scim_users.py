"""SCIM Users over HTTP: create, read, replace, patch, delete, ETags, masking and the events they emit."""

from __future__ import annotations

from typing import Any

import httpx

from tongban_kit.testing.recorder import EventRecorder

from .helpers import DEMO
from .scim_fixtures import (
    ADMIN,
    ENTERPRISE_URN,
    MASKED_ADMIN,
    SCIM_JSON,
    TONGBAN_URN,
    USERS,
    assert_scim_error,
    create_user,
    events_of,
    patch_body,
    scim_id_number,
    serial,
    user_body,
)


async def test_create_returns_the_user_with_location_etag_and_scim_media_type(client: httpx.AsyncClient) -> None:
    body = user_body(
        name={"formatted": "张三"},
        externalId="ext-001",
        **{ENTERPRISE_URN: {"employeeNumber": "E1", "department": "信息处", "manager": {"value": "m-1"}}},
    )
    body["schemas"].append(ENTERPRISE_URN)
    r = await client.post(USERS, json=body, headers={**ADMIN, "Content-Type": SCIM_JSON})
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith(SCIM_JSON)
    u = r.json()
    assert r.headers["location"] == f"http://user.test{USERS}/{u['id']}" == u["meta"]["location"]
    assert r.headers["etag"] == u["meta"]["version"] == 'W/"1"'
    assert u["userName"] == body["userName"] and u["displayName"] == body["displayName"]
    assert u["name"] == {"formatted": "张三"} and u["externalId"] == "ext-001" and u["active"] is True
    assert u["emails"] == [{**body["emails"][0]}]
    assert u["phoneNumbers"] == [{**body["phoneNumbers"][0], "primary": True}]
    assert u[ENTERPRISE_URN]["manager"] == {"value": "m-1", "$ref": f"http://user.test{USERS}/m-1"}
    assert u[TONGBAN_URN] == {"kind": "staff"}
    assert u["meta"]["resourceType"] == "User" and u["meta"]["created"] and u["meta"]["lastModified"]
    got = await client.get(f"{USERS}/{u['id']}", headers=ADMIN)
    assert got.status_code == 200 and got.json() == u


async def test_same_events_as_rest(client: httpx.AsyncClient, event_recorder: EventRecorder) -> None:
    u = await create_user(client)
    created = (await events_of(event_recorder, "user.account.created.v1", u["id"]))[0]
    assert created["data"]["via"] == "scim" and created["data"]["actor"] == DEMO["demo-admin"]
    assert created["data"]["user"]["username"] == u["userName"] and created["data"]["user"]["masked"] is True
    r = await client.patch(
        f"{USERS}/{u['id']}", json=patch_body({"op": "replace", "path": "displayName", "value": "改名"}), headers=ADMIN
    )
    assert r.status_code == 200, r.text
    updated = (await events_of(event_recorder, "user.account.updated.v1", u["id"]))[0]
    assert updated["data"]["changed"] == ["name"] and updated["data"]["via"] == "scim"
    r = await client.patch(
        f"{USERS}/{u['id']}", json=patch_body({"op": "replace", "path": "active", "value": False}), headers=ADMIN
    )
    assert r.status_code == 200 and r.json()["active"] is False
    assert (await events_of(event_recorder, "user.account.disabled.v1", u["id"]))[0]["data"]["via"] == "scim"
    assert (await client.delete(f"{USERS}/{u['id']}", headers=ADMIN)).status_code == 204
    deleted = (await events_of(event_recorder, "user.account.deleted.v1", u["id"]))[0]
    assert deleted["data"]["via"] == "scim" and deleted["data"]["status"] == "deleted"
    assert_scim_error(await client.get(f"{USERS}/{u['id']}", headers=ADMIN), 404)
    assert (await client.get(f"/api/v1/users/{u['id']}", headers=ADMIN)).status_code == 404  # gone for REST too


async def test_unmasked_reads_are_audited(client: httpx.AsyncClient, event_recorder: EventRecorder) -> None:
    u = await create_user(client)
    assert (await client.get(f"{USERS}/{u['id']}", headers=ADMIN)).status_code == 200
    audits = await events_of(
        event_recorder,
        "user.pii.accessed.v1",
        match=lambda e: e["data"]["user_ids"] == [u["id"]] and e["data"]["action"] == "scim.users.get",
    )
    assert audits[0]["data"]["purpose"] == "SCIM provisioning" and audits[0]["data"]["actor"] == DEMO["demo-admin"]


async def test_rest_and_scim_show_the_same_account(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/users", json={"kind": "staff", "name": "王五", "username": f"rest{serial()}"}, headers=ADMIN
    )
    rest = r.json()
    u = (await client.get(f"{USERS}/{rest['id']}", headers=ADMIN)).json()
    assert (u["userName"], u["displayName"], u["meta"]["version"]) == (rest["username"], "王五", 'W/"1"')


async def test_contacts_are_masked_without_the_pii_scope_and_id_number_never_returned(
    client: httpx.AsyncClient,
) -> None:
    n = serial()
    body = user_body(**{TONGBAN_URN: {"kind": "citizen", "idNumber": scim_id_number(n)}})
    body["schemas"].append(TONGBAN_URN)
    u = await create_user(client, body)
    assert u[TONGBAN_URN]["kind"] == "citizen" and "idNumber" not in u[TONGBAN_URN]
    assert (
        u[TONGBAN_URN]["idNumberMasked"].startswith(scim_id_number(n)[:1]) and "*" in u[TONGBAN_URN]["idNumberMasked"]
    )
    masked = (await client.get(f"{USERS}/{u['id']}", headers=MASKED_ADMIN)).json()
    assert "*" in masked["emails"][0]["value"] and "*" in masked["phoneNumbers"][0]["value"]
    # sending the masked values back (read-modify-write) keeps the real ones
    masked.pop("meta")
    r = await client.put(f"{USERS}/{u['id']}", json=masked, headers=MASKED_ADMIN)
    assert r.status_code == 200, r.text
    again = (await client.get(f"{USERS}/{u['id']}", headers=ADMIN)).json()
    assert again["emails"] == u["emails"] and again["phoneNumbers"] == u["phoneNumbers"]
    assert again["meta"]["version"] == u["meta"]["version"]  # nothing changed
    attrs = (
        await client.get(f"{USERS}/{u['id']}?attributes=urn:tongban:scim:schemas:extension:2.0:User", headers=ADMIN)
    ).json()
    assert "idNumber" not in attrs[TONGBAN_URN]


async def test_etags(client: httpx.AsyncClient) -> None:
    u = await create_user(client)
    url, version = f"{USERS}/{u['id']}", u["meta"]["version"]
    r = await client.get(url, headers={**ADMIN, "If-None-Match": version})
    assert r.status_code == 304 and r.headers["etag"] == version and not r.content
    assert (await client.get(url, headers={**ADMIN, "If-None-Match": 'W/"99"'})).status_code == 200
    stale = {**ADMIN, "If-Match": 'W/"99"'}
    op = patch_body({"op": "replace", "path": "displayName", "value": "x"})
    assert_scim_error(await client.patch(url, json=op, headers=stale), 412)
    assert_scim_error(await client.put(url, json=user_body(), headers=stale), 412)
    assert_scim_error(await client.delete(url, headers=stale), 412)
    r = await client.patch(url, json=op, headers={**ADMIN, "If-Match": version})
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"' == r.json()["meta"]["version"]
    assert_scim_error(await client.patch(url, json=op, headers={**ADMIN, "If-Match": version}), 412)
    assert (await client.delete(url, headers={**ADMIN, "If-Match": "*"})).status_code == 204


async def test_patch_operations(client: httpx.AsyncClient) -> None:
    u = await create_user(client)
    url, n = f"{USERS}/{u['id']}", serial()

    async def patch(*ops: dict[str, Any]) -> dict[str, Any]:
        r = await client.patch(url, json=patch_body(*ops), headers=ADMIN)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    out = await patch({"op": "replace", "path": 'emails[type eq "work"].value', "value": f"new{n}@example.com"})
    assert out["emails"] == [{"value": f"new{n}@example.com", "type": "work", "primary": True}]
    out = await patch({"op": "replace", "path": 'phoneNumbers[type eq "mobile"].value', "value": "17799990000"})
    assert out["phoneNumbers"][0]["value"] == "17799990000"
    out = await patch({"op": "remove", "path": 'phoneNumbers[type eq "mobile"]'})
    assert "phoneNumbers" not in out
    out = await patch({"op": "add", "path": "phoneNumbers", "value": [{"value": "17799990001", "type": "mobile"}]})
    assert out["phoneNumbers"][0]["value"] == "17799990001"
    out = await patch(
        {"op": "replace", "value": {"displayName": "无路径", "name.formatted": "实名", "active": False}},
        {"op": "add", "path": f"{ENTERPRISE_URN}:department", "value": "办公室"},
    )
    assert (out["displayName"], out["name"]["formatted"], out["active"]) == ("无路径", "实名", False)
    assert out[ENTERPRISE_URN] == {"department": "办公室"}
    out = await patch({"op": "replace", "path": "active", "value": True}, {"op": "remove", "path": "name.formatted"})
    assert out["active"] is True and "name" not in out
    out = await patch({"op": "remove", "path": "emails"}, {"op": "remove", "path": ENTERPRISE_URN})
    assert "emails" not in out and ENTERPRISE_URN not in out
    out = await patch({"op": "add", "path": f"{TONGBAN_URN}:idNumber", "value": scim_id_number(n)})
    assert out[TONGBAN_URN]["idNumberMasked"] and "idNumber" not in out[TONGBAN_URN]
    out = await patch({"op": "replace", "path": "displayName", "value": "保留身份证号"})
    assert out[TONGBAN_URN]["idNumberMasked"]  # other changes keep the write-only number
    out = await patch({"op": "remove", "path": f"{TONGBAN_URN}:idNumber"})
    assert out[TONGBAN_URN] == {"kind": "staff"}


async def test_patch_errors(client: httpx.AsyncClient) -> None:
    u = await create_user(client)
    url = f"{USERS}/{u['id']}"
    cases = [
        ({"op": "replace", "path": "title", "value": "x"}, "invalidPath"),
        ({"op": "replace", "path": "id", "value": "x"}, "mutability"),
        ({"op": "remove", "path": "userName"}, "mutability"),
        ({"op": "replace", "path": f"{TONGBAN_URN}:kind", "value": "citizen"}, "mutability"),
        ({"op": "replace", "path": 'emails[type eq "home"].value', "value": "a@example.com"}, "invalidValue"),
        ({"op": "replace", "path": "userName", "value": "Not Valid!"}, "invalidValue"),
        ({"op": "jump", "path": "userName", "value": "x"}, "invalidValue"),
        ({"op": "remove"}, "noTarget"),
    ]
    for op, scim_type in cases:
        r = await client.patch(url, json=patch_body(op), headers=ADMIN)
        assert r.status_code == 400, (op, r.text)
        assert_scim_error(r, 400, scim_type)
    assert_scim_error(await client.patch(url, json={"Operations": "x"}, headers=ADMIN), 400)
    assert_scim_error(await client.patch(url, content=b"{", headers=ADMIN), 400, "invalidSyntax")
    after = (await client.get(url, headers=ADMIN)).json()
    assert after["meta"]["version"] == u["meta"]["version"]


async def test_put_replaces(client: httpx.AsyncClient) -> None:
    body = user_body(name={"formatted": "旧名"}, externalId="old")
    u = await create_user(client, body)
    n = serial()
    new = {
        "schemas": [u["schemas"][0]],
        "userName": f"Replaced{n}",
        "displayName": "替换",
        "emails": [{"value": f"put{n}@example.com"}],
        "id": "ignored",
    }
    r = await client.put(f"{USERS}/{u['id']}", json=new, headers=ADMIN)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == u["id"] and out["userName"] == f"replaced{n}"
    assert out["emails"] == [{"value": f"put{n}@example.com", "type": "work", "primary": True}]
    assert "phoneNumbers" not in out and "name" not in out and "externalId" not in out


async def test_create_errors(client: httpx.AsyncClient) -> None:
    u = await create_user(client)
    taken = user_body(userName=u["userName"])
    assert_scim_error(await client.post(USERS, json=taken, headers=ADMIN), 409, "uniqueness")
    assert_scim_error(await client.post(USERS, json=user_body(userName="Bad Name"), headers=ADMIN), 400, "invalidValue")
    assert_scim_error(await client.post(USERS, json={"displayName": "x"}, headers=ADMIN), 400, "invalidValue")
    citizen = user_body(**{TONGBAN_URN: {"kind": "citizen"}})
    body = assert_scim_error(await client.post(USERS, json=citizen, headers=ADMIN), 400, "invalidValue")
    assert "id_number" in body["detail"]
    assert_scim_error(await client.post(USERS, json=[1], headers=ADMIN), 400, "invalidSyntax")
    r = await client.post(USERS, content=b"a=b", headers={**ADMIN, "Content-Type": "application/x-www-form-urlencoded"})
    assert_scim_error(r, 415)
    assert_scim_error(await client.post(USERS, json=user_body()), 401)
    assert_scim_error(await client.get(f"{USERS}/00000000-0000-0000-0000-000000000000", headers=ADMIN), 404)
    assert_scim_error(await client.get(f"{USERS}/not-an-id", headers=ADMIN), 404)
    r = await client.post(USERS, json=user_body(active=False), headers=ADMIN)
    assert r.status_code == 201 and r.json()["active"] is False
    nul = user_body(displayName="a\u0000b")
    assert_scim_error(await client.post(USERS, json=nul, headers=ADMIN), 400, "invalidValue")
    two = user_body(emails=[{"value": "one@example.com"}, {"value": "two@example.com"}])
    assert_scim_error(await client.post(USERS, json=two, headers=ADMIN), 400, "invalidValue")
    home = user_body(emails=[{"value": "home@example.com", "type": "home"}])
    assert_scim_error(await client.post(USERS, json=home, headers=ADMIN), 400, "invalidValue")
