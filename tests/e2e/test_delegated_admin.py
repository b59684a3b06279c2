"""Delegated administration (分级授权) through the gateway of the embedded default (`make run`), with tokens the auth
service issues: a subtree administrator who adds the whole tree's administrator to a unit gains nothing, and a
withdrawn grant stops an existing token at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tongban_kit.demo import DEMO_PASSWORD, demo_user_id
from tongban_kit.natsserver import free_port
from tongban_kit.testing.browser import sign_in

from .devstack import start_dev_stack, stop_dev_stack

DEMO_REDIRECT_URI = "http://127.0.0.1:8765/callback"
SCOPE = "openid org:read org:write user:read user:write user:pii admin"
USERS = "/api/v1/users"
MEMBERSHIPS = "/api/v1/orgs/memberships"
GRANTS = "/api/v1/orgs/admin-grants"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The embedded default running; yields the gateway's URL."""
    data = tmp_path_factory.mktemp("stack") / "data"
    port = free_port()
    proc, _ = start_dev_stack(data, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_dev_stack(proc)


async def _bearer(base: str, login: str) -> dict[str, str]:
    async with httpx.AsyncClient(timeout=20) as http:
        tokens = await sign_in(
            http,
            base,
            client_id="demo-app",
            client_secret="demo-secret",
            redirect_uri=DEMO_REDIRECT_URI,
            scope=SCOPE,
            login=login,
            password=DEMO_PASSWORD,
        )
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _problem(r: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert r.status_code in statuses, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == r.status_code
    return body


async def _attack(base: str) -> None:
    admin, hz = await _bearer(base, "demo-admin"), await _bearer(base, "hz-admin")
    victim, hz_staff = demo_user_id("demo-admin"), demo_user_id("hz-staff")
    async with httpx.AsyncClient(base_url=base, timeout=20) as c:
        r = await c.get("/api/v1/orgs/units", params={"division_code": "330106", "level": "county"}, headers=hz)
        xihu = next(u["id"] for u in r.json()["items"] if u["name"].endswith("西湖区人民政府"))
        # hz-admin (杭州市) adds demo-admin (the whole tree) to 西湖区: refused
        r = await c.post(MEMBERSHIPS, json={"unit_id": xihu, "user_id": victim}, headers=hz)
        assert _problem(r, 403)["type"].endswith("person-not-administered")
        # demo-admin joins 西湖区 itself; hz-admin still neither reads nor changes demo-admin
        r = await c.post(MEMBERSHIPS, json={"unit_id": xihu, "user_id": victim}, headers=admin)
        assert r.status_code == 201, r.text
        _problem(await c.get(f"{USERS}/{victim}", headers=hz), 404)
        r = await c.get(f"{USERS}/{victim}", params={"unmask": "true", "purpose": "核对"}, headers=hz)
        _problem(r, 403, 404)  # 403 where the app was not granted user:pii for hz-admin
        for change in ({"mobile": "13311112222"}, {"email": "hijack@example.com"}):
            _problem(await c.patch(f"{USERS}/{victim}", json=change, headers=hz), 404)
        # withdrawing hz-admin's grant stops the token it holds at once
        assert (await c.get(f"{USERS}/{hz_staff}", headers=hz)).status_code == 200
        r = await c.get(GRANTS, params={"principal": demo_user_id("hz-admin")}, headers=admin)
        for grant in r.json():
            assert (await c.delete(f"{GRANTS}/{grant['id']}", headers=admin)).status_code == 204
        _problem(await c.get(f"{USERS}/{hz_staff}", headers=hz), 404)
        _problem(await c.patch(f"{USERS}/{hz_staff}", json={"mobile": "13311113333"}, headers=hz), 404)
        r = await c.post(MEMBERSHIPS, json={"unit_id": xihu, "user_id": "someone-new"}, headers=hz)
        assert _problem(r, 403)["type"].endswith("outside-granted-subtree")


def test_a_subtree_admin_gains_nothing_by_adding_members_and_loses_all_with_the_grant(stack: str) -> None:
    asyncio.run(_attack(stack))
