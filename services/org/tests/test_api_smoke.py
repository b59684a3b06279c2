"""End-to-end smoke of the org API on PostgreSQL with NATS."""

from __future__ import annotations

import httpx

from tongban_org.rpc import handlers  # noqa: F401  (import check)

from .helpers import ADMIN


async def test_seeded_tree_is_browsable(client: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    r = await client.get(f"/api/v1/orgs/units/{seeded['zj']}/children", params={"limit": 100})
    assert r.status_code == 200, r.text
    names = {u["short_name"] for u in r.json()["items"]}
    assert {"杭州市", "丽水市", "省大数据局"} <= names
    r = await client.get(f"/api/v1/orgs/units/{seeded['zj-hz']}/ancestors")
    assert [u["id"] for u in r.json()] == [seeded["zj"]]


async def test_create_requires_a_token_and_checks_region(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    body = {
        "name": "测试街道",
        "type": "government",
        "level": "township",
        "division_code": "330206001",
        "parent_id": seeded["zj-hz"],
    }
    r = await anonymous.post("/api/v1/orgs/units", json=body)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    r = await client.post("/api/v1/orgs/units", json=body, headers=ADMIN)
    assert r.status_code == 422
    assert "outside the parent's region" in r.json()["detail"]
