"""The client registry API: validation, secrets shown once and stored hashed, rotation, status, access, events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import ECKey

from tongban_auth import clients
from tongban_auth.contract import (
    RPC_CLIENT_ALLOWANCES,
    RPC_WEB_ORIGINS,
    AllowancesReply,
    AllowancesRequest,
    WebOriginsReply,
    WebOriginsRequest,
)
from tongban_auth.models import Client
from tongban_auth.schemas import ClientCreate
from tongban_auth.seed import DEMO_APP_SECRET, DEMO_REDIRECT_URI
from tongban_kit.db import Database
from tongban_kit.demo import demo_user_id
from tongban_kit.problems import Problem
from tongban_kit.rpc import RpcClient
from tongban_kit.testing.recorder import EventRecorder

from .conftest import mint_access_token
from .helpers import ADMIN, CLIENTS, assert_problem, event_about


def app_body(**extra: Any) -> dict[str, Any]:
    """A valid confidential web application."""
    return {
        "name": "社保查询",
        "redirect_uris": ["https://app.example.gov.cn/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": ["openid", "profile", "offline_access", "user:read"],
        **extra,
    }


async def _stored(db: Database, client_id: str) -> Client:
    async with db.session() as s:
        row = await s.get(Client, client_id)
        assert row is not None
        return row


async def test_register_shows_the_secret_once_and_stores_a_hash(
    client: httpx.AsyncClient, auth_db: Database, event_recorder: EventRecorder
) -> None:
    r = await client.post(CLIENTS, json=app_body(owner_unit_id="unit-1"), headers=ADMIN)
    assert r.status_code == 201, r.text
    made = r.json()
    secret, cid = made["client_secret"], made["client_id"]
    assert len(secret) >= 43 and made["has_secret"] is True
    assert made["token_endpoint_auth_method"] == "client_secret_basic" and made["require_pkce"] is True
    got = (await client.get(f"{CLIENTS}/{cid}", headers=ADMIN)).json()
    assert "client_secret" not in got and got["name"] == "社保查询" and got["status"] == "active"

    row = await _stored(auth_db, cid)
    # a random 256-bit secret needs no slow hash: a SHA-256 digest, compared in constant time
    assert row.secret_hash and row.secret_hash.startswith("sha256:") and len(row.secret_hash) == 7 + 64
    assert secret not in row.secret_hash
    assert await clients.verify_secret(row, secret)
    assert not await clients.verify_secret(row, secret + "x")

    event = await event_about(event_recorder, "auth.client.registered.v1", cid)
    assert event["data"]["client"]["client_id"] == cid and event["data"]["actor"] == demo_user_id("demo-admin")
    assert secret not in str(event) and "secret_hash" not in str(event)


async def test_public_clients_get_no_secret_and_must_use_pkce(client: httpx.AsyncClient) -> None:
    r = await client.post(CLIENTS, json=app_body(client_type="public", name="单页应用"), headers=ADMIN)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["client_secret"] is None and made["has_secret"] is False
    assert made["token_endpoint_auth_method"] == "none" and made["require_pkce"] is True
    bad = await client.post(CLIENTS, json=app_body(client_type="public", require_pkce=False), headers=ADMIN)
    assert_problem(bad, 422, "validation-error")
    r = await client.post(f"{CLIENTS}/{made['client_id']}/rotate-secret", headers=ADMIN)
    assert_problem(r, 409, "no-secret")


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"redirect_uris": ["/relative/callback"]}, "redirect_uris"),
        ({"redirect_uris": ["https://app.example.gov.cn/cb#frag"]}, "redirect_uris"),
        ({"redirect_uris": ["ftp://app.example.gov.cn/cb"]}, "redirect_uris"),
        ({"redirect_uris": []}, "body"),
        ({"scopes": ["openid", "everything"]}, "scopes"),
        ({"grant_types": ["refresh_token"]}, "body"),
        ({"grant_types": ["password"]}, "grant_types"),
        ({"access_token_lifetime": 3600}, "access_token_lifetime"),
        ({"client_type": "public", "grant_types": ["client_credentials"], "scopes": ["user:read"]}, "body"),
        ({"token_endpoint_auth_method": "none"}, "body"),
        ({"token_endpoint_auth_method": "private_key_jwt"}, "body"),
        ({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, "jwks"),
        ({"unknown": 1}, "unknown"),
    ],
)
async def test_invalid_registrations_are_422_problems(
    client: httpx.AsyncClient, change: dict[str, Any], where: str
) -> None:
    body = assert_problem(await client.post(CLIENTS, json=app_body(**change), headers=ADMIN), 422, "validation-error")
    assert any(where in e["location"] for e in body["errors"]), body


async def test_http_redirects_only_for_loopback_where_allowed(client: httpx.AsyncClient) -> None:
    # the test environment does not allow plain-http loopback redirects (development does)
    r = await client.post(CLIENTS, json=app_body(redirect_uris=[DEMO_REDIRECT_URI]), headers=ADMIN)
    body = assert_problem(r, 422, "validation-error")
    assert body["errors"][0]["location"] == "body.redirect_uris.0"
    fields = ClientCreate.model_validate(app_body(redirect_uris=["http://localhost:3000/cb", "http://[::1]/cb"]))
    clients.check_loopback(fields, loopback_allowed=True)
    remote = ClientCreate.model_validate(app_body(redirect_uris=["http://app.example.gov.cn/cb"]))
    with pytest.raises(Problem) as refused:
        clients.check_loopback(remote, loopback_allowed=True)
    assert refused.value.status == 422


async def test_private_key_jwt_clients_register_public_keys(client: httpx.AsyncClient) -> None:
    jwk = ECKey.generate_key("P-256", private=True).as_dict(private=False)
    r = await client.post(
        CLIENTS,
        json=app_body(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [jwk]}),
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    assert r.json()["client_secret"] is None and r.json()["jwks"]["keys"][0]["x"] == jwk["x"]
    private = ECKey.generate_key("P-256", private=True).as_dict(private=True)
    r = await client.post(
        CLIENTS, json=app_body(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [private]}), headers=ADMIN
    )
    assert_problem(r, 422, "validation-error")


async def test_chosen_ids_are_unique(client: httpx.AsyncClient) -> None:
    r = await client.post(CLIENTS, json=app_body(client_id="portal-web"), headers=ADMIN)
    assert r.status_code == 201 and r.json()["client_id"] == "portal-web"
    assert_problem(await client.post(CLIENTS, json=app_body(client_id="portal-web"), headers=ADMIN), 409, "conflict")
    assert_problem(await client.post(CLIENTS, json=app_body(client_id="demo-app"), headers=ADMIN), 409)


async def test_patch_merges_and_validates_the_whole(client: httpx.AsyncClient, event_recorder: EventRecorder) -> None:
    cid = (await client.post(CLIENTS, json=app_body(), headers=ADMIN)).json()["client_id"]
    uris = ["https://app.example.gov.cn/callback", "https://app.example.gov.cn/cb2"]
    r = await client.patch(f"{CLIENTS}/{cid}", json={"redirect_uris": uris, "owner_unit_id": "u2"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["redirect_uris"] == uris and got["owner_unit_id"] == "u2" and got["version"] == 2
    assert got["scopes"] == app_body()["scopes"], "fields not given stay"
    event = await event_about(event_recorder, "auth.client.updated.v1", cid)
    assert event["data"]["changed"] == ["owner_unit_id", "redirect_uris"]

    r = await client.patch(f"{CLIENTS}/{cid}", json={"owner_unit_id": None}, headers=ADMIN)
    assert r.json()["owner_unit_id"] is None and r.json()["version"] == 3
    for bad in (
        {"redirect_uris": []},
        {"name": None},
        {"redirect_uris": ["https://x.cn/#f"]},
        {"client_type": "public"},
    ):
        assert_problem(await client.patch(f"{CLIENTS}/{cid}", json=bad, headers=ADMIN), 422, "validation-error")
    r = await client.patch(f"{CLIENTS}/{cid}", json={"redirect_uris": ["http://127.0.0.1:9/cb"]}, headers=ADMIN)
    assert_problem(r, 422, "validation-error")
    assert (await client.get(f"{CLIENTS}/{cid}", headers=ADMIN)).json()["version"] == 3
    assert_problem(await client.patch(f"{CLIENTS}/no-such-client", json={}, headers=ADMIN), 404)


async def test_rotate_secret_replaces_the_old_one(
    client: httpx.AsyncClient, auth_db: Database, event_recorder: EventRecorder
) -> None:
    made = (await client.post(CLIENTS, json=app_body(), headers=ADMIN)).json()
    cid, old = made["client_id"], made["client_secret"]
    r = await client.post(f"{CLIENTS}/{cid}/rotate-secret", headers=ADMIN)
    assert r.status_code == 200, r.text
    new = r.json()["client_secret"]
    assert new != old and r.json()["client_id"] == cid
    row = await _stored(auth_db, cid)
    assert await clients.verify_secret(row, new) and not await clients.verify_secret(row, old)
    event = await event_about(event_recorder, "auth.client.secret_rotated.v1", cid)
    assert new not in str(event) and old not in str(event)


async def test_disable_and_enable(client: httpx.AsyncClient, event_recorder: EventRecorder) -> None:
    cid = (await client.post(CLIENTS, json=app_body(), headers=ADMIN)).json()["client_id"]
    r = await client.post(f"{CLIENTS}/{cid}/disable", headers=ADMIN)
    assert r.status_code == 200 and r.json()["status"] == "disabled"
    assert (await client.post(f"{CLIENTS}/{cid}/disable", headers=ADMIN)).json()["version"] == r.json()["version"]
    listed = (await client.get(CLIENTS, params={"status": "disabled", "limit": 500}, headers=ADMIN)).json()
    assert cid in {c["client_id"] for c in listed["items"]}
    assert (await event_about(event_recorder, "auth.client.disabled.v1", cid))["data"]["status"] == "disabled"
    r = await client.post(f"{CLIENTS}/{cid}/enable", headers=ADMIN)
    assert r.json()["status"] == "active"
    assert (await event_about(event_recorder, "auth.client.enabled.v1", cid))["data"]["status"] == "active"


async def test_list_pages_with_a_cursor(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await client.post(CLIENTS, json=app_body(client_id=f"paged-{i}", owner_unit_id="paging-unit"), headers=ADMIN)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "owner_unit_id": "paging-unit"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(CLIENTS, params=params, headers=ADMIN)).json()
        seen += [c["client_id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["paged-0", "paged-1", "paged-2"]
    assert_problem(await client.get(CLIENTS, params={"cursor": "!!"}, headers=ADMIN), 400, "invalid-cursor")


async def test_only_administrators_manage_clients(client: httpx.AsyncClient, auth_app: FastAPI) -> None:
    r = await client.post(CLIENTS, json=app_body())
    body = assert_problem(r, 401, "authentication-required")
    assert body["request_id"] and r.headers["www-authenticate"] == 'Bearer realm="tongban"'
    forged = {"Authorization": "Bearer " + ADMIN["Authorization"].split()[1][:-4] + "AAAA"}
    r = await client.get(CLIENTS, headers=forged)
    assert_problem(r, 401, "invalid-token")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    # a person's token without the admin scope, and a non-administrator with it
    no_scope = await mint_access_token(auth_app, demo_user_id("demo-admin"), "openid user:read")
    r = await client.get(CLIENTS, headers={"Authorization": f"Bearer {no_scope}"})
    assert_problem(r, 403, "insufficient-scope")
    assert 'scope="admin"' in r.headers["www-authenticate"]
    citizen = {"Authorization": f"Bearer {await mint_access_token(auth_app, demo_user_id('demo-citizen'), 'admin')}"}
    assert_problem(await client.get(CLIENTS, headers=citizen), 403, "forbidden")
    assert_problem(await client.post(CLIENTS, json=app_body(), headers=citizen), 403)
    assert_problem(await client.post(f"{CLIENTS}/demo-app/rotate-secret", headers=citizen), 403)


async def test_demo_clients_are_seeded(client: httpx.AsyncClient, auth_db: Database) -> None:
    app = (await client.get(f"{CLIENTS}/demo-app", headers=ADMIN)).json()
    assert app["client_type"] == "confidential" and DEMO_REDIRECT_URI in app["redirect_uris"]
    assert {"client_credentials", "authorization_code", "refresh_token"} == set(app["grant_types"])
    assert {"org:read", "user:pii", "message:send", "admin"} <= set(app["scopes"])
    assert await clients.verify_secret(await _stored(auth_db, "demo-app"), DEMO_APP_SECRET)
    spa = (await client.get(f"{CLIENTS}/demo-spa", headers=ADMIN)).json()
    assert spa["client_type"] == "public" and spa["require_pkce"] and not spa["has_secret"]
    assert spa["redirect_uris"] == [DEMO_REDIRECT_URI]


def test_web_origin_of_redirect_uris() -> None:
    assert clients.web_origin("https://App.Example.gov.cn/cb?x=1") == "https://app.example.gov.cn"
    assert clients.web_origin("https://app.example.gov.cn:443/cb") == "https://app.example.gov.cn"
    assert clients.web_origin("http://127.0.0.1:5173/callback") == "http://127.0.0.1:5173"
    assert clients.web_origin("http://[::1]:8080/cb") == "http://[::1]:8080"
    assert clients.web_origin("cn.gov.zj.app:/oauth2redirect") is None  # a native app's private scheme
    assert clients.web_origin("https://bad:port/x") is None


async def test_the_registry_answers_the_web_origins_of_active_clients_over_rpc(
    client: httpx.AsyncClient, auth_app: FastAPI
) -> None:
    body = app_body(redirect_uris=["https://spa.example.gov.cn:8443/cb", "https://spa.example.gov.cn:8443/silent"])
    made = (await client.post(CLIENTS, json=body, headers=ADMIN)).json()
    rpc = RpcClient(auth_app.state.runtime.bus)
    reply = await rpc.call(RPC_WEB_ORIGINS, WebOriginsRequest(), WebOriginsReply)
    assert "https://spa.example.gov.cn:8443" in reply.origins
    assert reply.origins == sorted(set(reply.origins))
    r = await client.post(f"{CLIENTS}/{made['client_id']}/disable", headers=ADMIN)
    assert r.status_code == 200, r.text
    reply = await rpc.call(RPC_WEB_ORIGINS, WebOriginsRequest(), WebOriginsReply)
    assert "https://spa.example.gov.cn:8443" not in reply.origins


async def test_the_registration_says_what_the_apps_own_token_may_send(client: httpx.AsyncClient, auth_app: Any) -> None:
    r = await client.post(CLIENTS, json=app_body(), headers=ADMIN)
    made = r.json()
    assert (made["message_units"], made["message_templates"], made["message_to_accounts"]) == ([], [], False)
    change = {"message_units": ["unit-1"], "message_templates": ["notice.general"], "message_to_accounts": True}
    patched = await client.patch(f"{CLIENTS}/{made['client_id']}", json=change, headers=ADMIN)
    assert patched.status_code == 200 and patched.json()["message_units"] == ["unit-1"], patched.text
    for bad in ({"message_units": ["a b"]}, {"message_templates": ["Not A Code"]}, {"message_units": ["u", "u"]}):
        assert_problem(await client.patch(f"{CLIENTS}/{made['client_id']}", json=bad, headers=ADMIN), 422)
    rpc = RpcClient(auth_app.state.runtime.bus, timeout=3.0)
    got = await rpc.call(RPC_CLIENT_ALLOWANCES, AllowancesRequest(client_id=made["client_id"]), AllowancesReply)
    assert got.found and got.active and got.message_templates == ["notice.general"] and got.message_to_accounts
    missing = await rpc.call(RPC_CLIENT_ALLOWANCES, AllowancesRequest(client_id="no-such-app"), AllowancesReply)
    assert not missing.found and missing.message_units == []
