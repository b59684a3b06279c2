"""A provisioning round trip with the scim2-client library, and a walk over every writable attribute of /Schemas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from scim2_client.engines.asgi import ASGISCIMClient
from scim2_models import Error, ListResponse, NotFoundException, PatchOp, PreconditionFailedException, SearchRequest

from tongban_user.identity import mask_id_number

from .scim_fixtures import (
    ADMIN,
    ENTERPRISE_URN,
    SCIM,
    TONGBAN_URN,
    USER_URN,
    USERS,
    patch_body,
    scim_client,
    scim_id_number,
    scim_mobile,
    serial,
)

__all__ = ["scim_client"]  # the fixture, imported for the tests below


async def test_round_trip_with_scim2_client(scim_client: ASGISCIMClient) -> None:
    await scim_client.discover()
    user_model = scim_client.get_resource_model("User")
    assert user_model is not None
    assert {str(m.__schema__) for m in scim_client.provider.models} >= {USER_URN, ENTERPRISE_URN, TONGBAN_URN}
    n = serial()
    payload = {
        "userName": f"client.{n}",
        "displayName": "客户端",
        "emails": [{"value": f"client{n}@example.com", "type": "work", "primary": True}],
        ENTERPRISE_URN: {"department": "信息中心"},
    }
    created = await scim_client.create(user_model.model_validate(payload))
    assert created.id and created.meta.version == 'W/"1"'
    assert created[ENTERPRISE_URN].department == "信息中心"

    found = await scim_client.query(user_model, query_parameters=SearchRequest(filter=f'userName eq "client.{n}"'))
    assert isinstance(found, ListResponse) and found.total_results == 1 and found.resources[0].id == created.id

    patch = PatchOp[user_model].model_validate(  # type: ignore[valid-type]
        {"Operations": [{"op": "replace", "path": "displayName", "value": "已修改"}]}
    )
    patched = await scim_client.modify(user_model, created.id, patch)
    assert patched.display_name == "已修改" and patched.meta.version == 'W/"2"'

    stale = created.model_copy(deep=True)
    stale.display_name = "过期的副本"
    with pytest.raises(PreconditionFailedException):
        await scim_client.replace(stale)  # If-Match: W/"1" no longer holds
    fresh = await scim_client.query(patched)  # If-None-Match: W/"2" → 304 → the same object
    assert fresh is patched
    patched.display_name = "整体替换"
    replaced = await scim_client.replace(patched)
    assert replaced.display_name == "整体替换" and replaced.meta.version == 'W/"3"'

    await scim_client.delete(user_model, created.id)
    with pytest.raises(NotFoundException):
        await scim_client.query(user_model, created.id)
    error = await scim_client.query(user_model, created.id, raise_scim_errors=False)
    assert isinstance(error, Error) and error.status == 404


#: a POST value and a different PATCH value for every writable attribute (urn, attribute, sub-attribute)
Sample = Callable[[int], tuple[Any, Any]]
SAMPLES: dict[tuple[str, str, str | None], Sample] = {
    (USER_URN, "userName", None): lambda n: (f"walk.{n}", f"walk.{n}.b"),
    (USER_URN, "displayName", None): lambda n: (f"遍历{n}", f"遍历{n}乙"),
    (USER_URN, "name", "formatted"): lambda n: ("张三", "李四"),
    (USER_URN, "active", None): lambda n: (False, True),
    (USER_URN, "emails", "value"): lambda n: (f"walk{n}@example.com", f"walk{n}b@example.com"),
    (USER_URN, "emails", "type"): lambda n: ("work", "work"),
    (USER_URN, "emails", "primary"): lambda n: (True, True),
    (USER_URN, "phoneNumbers", "value"): lambda n: (scim_mobile(n), scim_mobile(n + 50_000_000)),
    (USER_URN, "phoneNumbers", "type"): lambda n: ("mobile", "mobile"),
    (USER_URN, "phoneNumbers", "primary"): lambda n: (True, True),
    (ENTERPRISE_URN, "employeeNumber", None): lambda n: (f"E{n}", f"E{n}b"),
    (ENTERPRISE_URN, "costCenter", None): lambda n: ("CC1", "CC2"),
    (ENTERPRISE_URN, "organization", None): lambda n: ("省政府", "市政府"),
    (ENTERPRISE_URN, "division", None): lambda n: ("一处", "二处"),
    (ENTERPRISE_URN, "department", None): lambda n: ("办公室", "信息科"),
    (ENTERPRISE_URN, "manager", "value"): lambda n: ("manager-1", "manager-2"),
    (TONGBAN_URN, "kind", None): lambda n: ("citizen", "citizen"),  # immutable: the same value is accepted
    (TONGBAN_URN, "idNumber", None): lambda n: (scim_id_number(n), scim_id_number(n + 1)),
}


def _writable(schemas: list[dict[str, Any]]) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    out = {}
    for schema in schemas:
        for attr in schema["attributes"]:
            subs = attr.get("subAttributes")
            for sub in subs or [None]:
                leaf = sub or attr
                if leaf["mutability"] != "readOnly" and attr["mutability"] != "readOnly":
                    out[(schema["id"], attr["name"], sub["name"] if sub else None)] = {**leaf, "parent": attr}
    return out


def _document(values: dict[tuple[str, str, str | None], Any], writable: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    """A User document holding the values (multi-valued complex attributes as one entry)."""
    doc: dict[str, Any] = {"schemas": [USER_URN, ENTERPRISE_URN, TONGBAN_URN]}
    for (urn, attr, sub), value in values.items():
        target = doc if urn == USER_URN else doc.setdefault(urn, {})
        if sub is None:
            target[attr] = value
        elif writable[(urn, attr, sub)]["parent"]["multiValued"]:
            target.setdefault(attr, [{}])[0][sub] = value
        else:
            target.setdefault(attr, {})[sub] = value
    return doc


def _read(user: dict[str, Any], urn: str, attr: str, sub: str | None) -> Any:
    value = (user if urn == USER_URN else user.get(urn, {})).get(attr)
    if sub is None or value is None:
        return value
    return (value[0] if isinstance(value, list) else value).get(sub)


def _check(user: dict[str, Any], values: dict[Any, Any], writable: dict[Any, dict[str, Any]]) -> None:
    for key, value in values.items():
        if writable[key]["returned"] == "never":  # write-only: visible only as its masked form
            assert _read(user, *key) is None and user[TONGBAN_URN]["idNumberMasked"] == mask_id_number(value)
        else:
            assert _read(user, *key) == value, key


async def test_every_writable_attribute_is_stored_returned_and_patchable(client: httpx.AsyncClient) -> None:
    schemas = (await client.get(f"{SCIM}/Schemas", headers=ADMIN)).json()["Resources"]
    user_schemas = [s for s in schemas if s["id"] in (USER_URN, ENTERPRISE_URN, TONGBAN_URN)]
    writable = _writable(user_schemas)
    assert set(writable) == set(SAMPLES), "every writable attribute needs a sample (and must really be stored)"
    n = serial()
    first = {key: sample(n)[0] for key, sample in SAMPLES.items()}
    second = {key: sample(n)[1] for key, sample in SAMPLES.items()}

    r = await client.post(USERS, json=_document(first, writable), headers=ADMIN)
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    _check(r.json(), first, writable)
    _check((await client.get(f"{USERS}/{user_id}", headers=ADMIN)).json(), first, writable)

    doc = _document(second, writable)
    ops = [
        {"op": "replace", "path": attr if urn == USER_URN else f"{urn}:{attr}", "value": value}
        for urn, block in [(USER_URN, doc), (ENTERPRISE_URN, doc[ENTERPRISE_URN]), (TONGBAN_URN, doc[TONGBAN_URN])]
        for attr, value in block.items()
        if attr not in ("schemas", ENTERPRISE_URN, TONGBAN_URN)
    ]
    r = await client.patch(f"{USERS}/{user_id}", json=patch_body(*ops), headers=ADMIN)
    assert r.status_code == 200, r.text
    _check(r.json(), second, writable)
    _check((await client.get(f"{USERS}/{user_id}", headers=ADMIN)).json(), second, writable)
