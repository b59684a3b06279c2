"""Masked personal data cannot be found out by searching: SCIM filters, sorting, PATCH value paths, REST login."""

from __future__ import annotations

from typing import Any

import httpx

from tongban_kit.testing.recorder import EventRecorder

from .helpers import CHECK, DEMO, PII_ADMIN, as_, assert_problem
from .scim_fixtures import (
    ADMIN,
    MASKED_ADMIN,
    USER_URN,
    USERS,
    assert_scim_error,
    create_user,
    events_of,
    patch_body,
    serial,
    user_body,
)

REST = "/api/v1/users"
STAFF = DEMO["demo-staff"]


async def _contacts(client: httpx.AsyncClient, user_id: str) -> tuple[str, str]:
    """The real mobile and email of an account (an audited, unmasked read)."""
    r = await client.get(f"{REST}/{user_id}", params={"unmask": "true", "purpose": CHECK}, headers=PII_ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["mobile"], r.json()["email"]


def _same_refusal(a: httpx.Response, b: httpx.Response) -> dict[str, Any]:
    """Two answers that tell nothing apart: both the same 403 SCIM error, word for word."""
    body = assert_scim_error(a, 403)
    assert assert_scim_error(b, 403) == body
    return body


async def test_probing_a_mobile_through_a_scim_filter_is_refused_without_user_pii(
    client: httpx.AsyncClient, dsj_admin: dict[str, str]
) -> None:
    mobile, email = await _contacts(client, STAFF)
    wrong_mobile = "139" if not mobile.startswith("139") else "188"
    local = email.split("@")[0]
    # each pair: a filter that matches demo-staff and one that does not; the answer must not tell them apart
    probes = [
        (f'phoneNumbers[value sw "{mobile[:4]}"]', f'phoneNumbers[value sw "{wrong_mobile}"]'),
        (f'phoneNumbers.value co "{mobile[3:7]}"', 'phoneNumbers.value co "zzzz"'),
        (f'phoneNumbers eq "{mobile}"', 'phoneNumbers eq "13900000000"'),
        (f'phoneNumbers ne "{mobile}"', 'phoneNumbers ne "13900000000"'),
        (f'emails[value sw "{local[:2]}"]', 'emails[value sw "zz"]'),
        (f'emails[type eq "work" and value ew "{email[-6:]}"]', 'emails[type eq "work" and value ew "zzzzzz"]'),
        (f'emails.value gt "{email[:-1]}"', 'emails.value gt "zzzz"'),
        (f'emails.value lt "{email}z"', 'emails.value lt "a"'),
        (f'not (phoneNumbers[value sw "{wrong_mobile}"])', f'not (phoneNumbers[value sw "{mobile[:4]}"])'),
        (f'displayName eq "nobody" or emails co "{local}"', 'displayName eq "nobody" or emails co "zzzz"'),
        (f'{USER_URN}:emails.value eq "{email}"', f'{USER_URN}:emails.value eq "x{email}"'),
    ]
    for attacker in (MASKED_ADMIN, dsj_admin):
        for hit, miss in probes:
            for count in (None, 0):
                extra = {} if count is None else {"count": count}
                answers = [
                    await client.get(
                        USERS, params={"filter": f'userName eq "demo-staff" and {f}', **extra}, headers=attacker
                    )
                    for f in (hit, miss)
                ]
                body = _same_refusal(*answers)
                assert "user:pii" in body["detail"], body
                assert mobile not in body["detail"] and email not in body["detail"]
            r = await client.post(
                f"{USERS}/.search",
                json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": hit},
                headers=attacker,
            )
            assert_scim_error(r, 403)


async def test_the_refusal_names_the_attribute(client: httpx.AsyncClient) -> None:
    r = await client.get(
        USERS, params={"filter": 'userName eq "demo-staff" and phoneNumbers[value sw "139"]'}, headers=MASKED_ADMIN
    )
    assert "phoneNumbers[value]" in assert_scim_error(r, 403)["detail"]
    r = await client.get(USERS, params={"filter": 'emails.value co "a"'}, headers=MASKED_ADMIN)
    assert "emails.value" in assert_scim_error(r, 403)["detail"]


async def test_sorting_on_a_masked_attribute_is_refused_without_user_pii(client: httpx.AsyncClient) -> None:
    for sort_by in ("phoneNumbers.value", "phoneNumbers", "emails.value", "emails", f"{USER_URN}:emails.value"):
        r = await client.get(USERS, params={"sortBy": sort_by, "count": 5}, headers=MASKED_ADMIN)
        assert sort_by in assert_scim_error(r, 403)["detail"]
        r = await client.get(USERS, params={"sortBy": sort_by, "count": 5}, headers=ADMIN)
        assert r.status_code == 200, r.text


async def test_presence_and_other_attributes_stay_searchable_without_user_pii(client: httpx.AsyncClient) -> None:
    # the masked value shows whether there is one, so presence tests tell nothing more
    for flt in (
        'userName eq "demo-staff" and phoneNumbers pr',
        'userName eq "demo-staff" and emails[type eq "work"]',
        'userName eq "demo-staff" and emails.primary eq true',
        'userName eq "demo-staff" and not (emails eq null)',
    ):
        r = await client.get(USERS, params={"filter": flt}, headers=MASKED_ADMIN)
        assert r.status_code == 200, (flt, r.text)
        body = r.json()
        assert body["totalResults"] == 1 and body["Resources"][0]["id"] == STAFF
        assert "****" in body["Resources"][0]["phoneNumbers"][0]["value"]
    r = await client.get(
        USERS, params={"filter": 'userName eq "demo-staff"', "attributes": "phoneNumbers,emails"}, headers=MASKED_ADMIN
    )
    assert "****" in r.json()["Resources"][0]["phoneNumbers"][0]["value"]
    assert "***@" in r.json()["Resources"][0]["emails"][0]["value"]


async def test_with_user_pii_the_filter_works_and_every_match_is_audited(
    client: httpx.AsyncClient, event_recorder: EventRecorder
) -> None:
    mobile, _ = await _contacts(client, STAFF)
    flt = f'userName eq "demo-staff" and phoneNumbers[value sw "{mobile[:4]}"]'
    r = await client.get(USERS, params={"filter": flt, "count": 0}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["totalResults"] == 1, r.text
    audits = await events_of(
        event_recorder,
        "user.pii.accessed.v1",
        match=lambda e: (
            e["data"]["action"] == "scim.users.search" and e["data"]["request_id"] == r.headers["x-request-id"]
        ),
    )
    data = audits[0]["data"]
    assert data["user_ids"] == [STAFF] and data["fields"] == ["mobile"]
    assert data["actor"] == DEMO["demo-admin"] and data["purpose"] == "SCIM provisioning"

    # a sort on a masked value compares every account it lists: all of them are audited
    tag = f"ps{serial()}"
    made = [
        await create_user(client, user_body(userName=f"{tag}.{k}", emails=[{"value": f"{tag}{e}@example.com"}]))
        for k, e in (("a", "z"), ("b", "y"))
    ]
    r = await client.get(USERS, params={"filter": f'userName sw "{tag}."', "sortBy": "emails.value"}, headers=ADMIN)
    assert [u["id"] for u in r.json()["Resources"]] == [made[1]["id"], made[0]["id"]]
    audits = await events_of(
        event_recorder,
        "user.pii.accessed.v1",
        match=lambda e: (
            e["data"]["action"] == "scim.users.search" and e["data"]["request_id"] == r.headers["x-request-id"]
        ),
    )
    assert sorted(audits[0]["data"]["user_ids"]) == sorted(u["id"] for u in made)
    assert audits[0]["data"]["fields"] == ["email"]


async def test_a_patch_value_path_on_a_masked_value_needs_user_pii(client: httpx.AsyncClient) -> None:
    u = await create_user(client)
    mobile = u["phoneNumbers"][0]["value"]
    url = f"{USERS}/{u['id']}"
    # replacing through a value filter answers 200 on a match and 400 (two numbers) on a miss: an oracle
    for guess in (mobile[:5], "13"):
        op = {"op": "replace", "path": f'phoneNumbers[value sw "{guess}"].value', "value": "13300000000"}
        r = await client.patch(url, json=patch_body(op), headers=MASKED_ADMIN)
        assert "phoneNumbers[value]" in assert_scim_error(r, 403)["detail"]
        op = {"op": "remove", "path": f'emails[value sw "{guess}"]'}
        assert_scim_error(await client.patch(url, json=patch_body(op), headers=MASKED_ADMIN), 403)
    after = (await client.get(url, headers=ADMIN)).json()
    assert after["meta"]["version"] == u["meta"]["version"] and after["phoneNumbers"][0]["value"] == mobile
    # by type (not a masked value) it still works without the scope
    op = {"op": "replace", "path": 'emails[type eq "work"].value', "value": f"patched{serial()}@example.com"}
    assert (await client.patch(url, json=patch_body(op), headers=MASKED_ADMIN)).status_code == 200
    op = {"op": "remove", "path": f'phoneNumbers[value eq "{mobile}"]'}
    r = await client.patch(url, json=patch_body(op), headers=ADMIN)
    assert r.status_code == 200 and "phoneNumbers" not in r.json(), r.text


async def test_rest_login_search_by_mobile_or_email_needs_the_right_to_unmask(
    client: httpx.AsyncClient, dsj_admin: dict[str, str], org_units: dict[str, str], event_recorder: EventRecorder
) -> None:
    mobile, email = await _contacts(client, STAFF)
    for attacker in (as_("demo-admin"), dsj_admin):
        for hit, miss in ((mobile, "13900000001"), (email, "nobody@zj.gov.example")):
            answers = [
                await client.get(REST, params={"login": v, "purpose": CHECK}, headers=attacker) for v in (hit, miss)
            ]
            body = assert_problem(answers[0], 403, "insufficient-scope")
            other = assert_problem(answers[1], 403, "insufficient-scope")
            assert {**body, "request_id": ""} == {**other, "request_id": ""}
            assert "login" in body["detail"] and mobile not in str(body) and email not in str(body)
    # a username is not masked: no right needed
    r = await client.get(REST, params={"login": "demo-staff"}, headers=dsj_admin)
    assert [u["id"] for u in r.json()["items"]] == [STAFF]
    # the right without a purpose is not enough, as for unmasking
    dsj_pii = as_("dsj-admin", "user:pii", admin_units=[org_units["zj-dsj"]])
    assert_problem(await client.get(REST, params={"login": mobile}, headers=dsj_pii), 400, "purpose-required")
    why = f"核对 {serial()}"
    r = await client.get(REST, params={"login": mobile, "purpose": why}, headers=dsj_pii)
    assert [u["id"] for u in r.json()["items"]] == [STAFF] and r.json()["items"][0]["masked"] is True
    audits = await events_of(event_recorder, "user.pii.accessed.v1", match=lambda e: e["data"]["purpose"] == why)
    data = audits[0]["data"]
    assert data["user_ids"] == [STAFF] and data["fields"] == ["mobile"] and data["action"] == "users.search"
    assert data["actor"] == DEMO["dsj-admin"]
