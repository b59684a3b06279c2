"""Who may do what, as a table: every API scope × kind of account × each service's key operations, through the
gateway with real tokens of the auth service (signed in through its pages), on the whole stack.

A token's scopes are what the app may do for the person ∩ what the person is entitled to; every service checks the
entitlement again on each request. The README's "Who may do what" describes the same table.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tongban_kit.demo import demo_user_id
from tongban_kit.testing.pg import PgServer

from .stack import Stack, running_stack

API_SCOPES = (
    "org:read",
    "org:write",
    "user:read",
    "user:write",
    "user:pii",
    "message:send",
    "message:read",
    "affairs:apply",
    "affairs:handle",
    "admin",
)
#: kind of account → demo login (None: the demo app's own token, client credentials)
KINDS = {
    "citizen": "demo-citizen",
    "staff": "demo-staff",  # member of 省大数据局's 数据资源处, may address 省大数据局 (a send grant)
    "subtree-admin": "hz-admin",  # administers 杭州市
    "whole-tree-admin": "demo-admin",  # administers the whole tree (bootstrap)
    "app": None,
}
PEOPLE = ("citizen", "staff", "subtree-admin", "whole-tree-admin")
#: scopes a person gets only with an entitlement, and who holds it
ENTITLED = {
    "admin": {"subtree-admin", "whole-tree-admin"},
    "org:write": {"subtree-admin", "whole-tree-admin"},
    "message:send": {"staff", "subtree-admin", "whole-tree-admin"},
    "affairs:handle": {"staff", "subtree-admin", "whole-tree-admin"},
}


def claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    out: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return out


@pytest.fixture(scope="module")
async def stack(pg_server: PgServer, nats_url: str, nats_namespace: str) -> AsyncIterator[Stack]:
    """The stack, and a token per kind of account asking for every API scope through demo-app."""
    async with running_stack(pg_server, nats_url, nats_namespace) as s:
        asked = " ".join(API_SCOPES)
        got = await asyncio.gather(
            *(s.person_token(login, f"openid {asked}") if login else s.app_token(asked) for login in KINDS.values())
        )
        s.tokens.update(zip(KINDS, got, strict=True))
        yield s


@pytest.mark.parametrize("scope", API_SCOPES)
@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_token_carries_a_scope_only_with_its_entitlement(stack: Stack, kind: str, scope: str) -> None:
    tokens = stack.tokens[kind]
    granted = tokens["scope"].split()
    assert granted == claims(tokens["access_token"])["scope"].split()  # the response says what was granted
    expected = kind == "app" or scope not in ENTITLED or kind in ENTITLED[scope]
    assert (scope in granted) == expected, granted


@dataclass(frozen=True)
class Op:
    """An operation of a service, and the kinds of account that may perform it."""

    method: str
    path: Callable[[Stack, str], str]
    allowed: frozenset[str]
    body: Callable[[Stack, str], Any] | None = None


def _unit(key: str) -> Callable[[Stack, str], str]:
    return lambda s, kind: s.units[key]


def _notice(key: str) -> Callable[[Stack, str], Any]:
    return lambda s, kind: {
        "template_code": "notice.general",
        "to": {"unit_id": s.units[key], "recursive": True},
        "personalisation": {"title": "通知", "content": kind},
    }


def _self(s: Stack, kind: str) -> str:
    login = KINDS[kind]
    return demo_user_id(login or "demo-citizen2")  # the app has no account: it aims at someone else's


ALL = frozenset(KINDS)
OPS: dict[str, Op] = {
    "org: read the tree": Op("GET", lambda s, k: "/api/v1/orgs/units?limit=1", ALL),
    "org: create a unit in 杭州市": Op(
        "POST",
        lambda s, k: "/api/v1/orgs/units",
        frozenset({"subtree-admin", "whole-tree-admin"}),
        lambda s, k: {
            "name": f"测试中心{secrets.token_hex(3)}",
            "type": "public_institution",
            "level": "city",
            "division_code": "330100",
            "parent_id": s.units["zj-hz"],
        },
    ),
    "org: create a unit in 省大数据局": Op(
        "POST",
        lambda s, k: "/api/v1/orgs/units",
        frozenset({"whole-tree-admin"}),
        lambda s, k: {
            "name": f"测试处{secrets.token_hex(3)}",
            "type": "internal_institution",
            "level": "province",
            "division_code": "330000",
            "parent_id": s.units["zj-dsj"],
        },
    ),
    "org: let someone send to 杭州市": Op(
        "POST",
        lambda s, k: "/api/v1/orgs/send-grants",
        frozenset({"subtree-admin", "whole-tree-admin"}),
        lambda s, k: {"principal": f"p-{k}-{secrets.token_hex(3)}", "unit_id": s.units["zj-hz"]},
    ),
    "user: read my account": Op("GET", lambda s, k: f"/api/v1/users/{_self(s, k)}", frozenset(PEOPLE)),
    "user: change my name": Op(
        "PATCH", lambda s, k: f"/api/v1/users/{_self(s, k)}", frozenset(PEOPLE), lambda s, k: {"name": f"{k}名"}
    ),
    "user: read another citizen": Op(
        "GET", lambda s, k: f"/api/v1/users/{demo_user_id('demo-citizen3')}", frozenset({"whole-tree-admin"})
    ),
    "message: send to 杭州市": Op(
        "POST",
        lambda s, k: "/api/v1/messages",
        frozenset({"subtree-admin", "whole-tree-admin", "app"}),
        _notice("zj-hz"),
    ),
    "message: send to 省大数据局": Op(
        "POST", lambda s, k: "/api/v1/messages", frozenset({"staff", "whole-tree-admin", "app"}), _notice("zj-dsj")
    ),
    "message: send to the province": Op(
        "POST", lambda s, k: "/api/v1/messages", frozenset({"whole-tree-admin", "app"}), _notice("zj")
    ),
    "message: read my inbox": Op("GET", lambda s, k: "/api/v1/messages/inbox", frozenset(PEOPLE)),
    "message: create a template": Op(
        "POST",
        lambda s, k: "/api/v1/messages/templates",
        frozenset({"whole-tree-admin"}),
        lambda s, k: {"code": f"t.{secrets.token_hex(4)}", "name": "n", "subject": "((a))", "body": "((a))"},
    ),
    "message: read the app's own message": Op(
        "GET", lambda s, k: f"/api/v1/messages/{s.units['app-message']}", frozenset({"app"})
    ),
    "auth: list the registered apps": Op("GET", lambda s, k: "/api/v1/auth/clients", frozenset({"whole-tree-admin"})),
}


@pytest.fixture(scope="module")
async def app_message(stack: Stack) -> str:
    """A message the demo app sent with its own token (no person): nobody else sees it."""
    headers = {"Authorization": f"Bearer {stack.tokens['app']['access_token']}"}
    body = {"template_code": "notice.general", "to": {"user_ids": [demo_user_id("demo-citizen")]}}
    body["personalisation"] = {"title": "t", "content": "c"}
    async with httpx.AsyncClient(base_url=stack.base) as http:
        r = await http.post("/api/v1/messages", json=body, headers=headers)
    assert r.status_code == 201, r.text
    stack.units["app-message"] = r.json()["id"]
    return str(r.json()["id"])


@pytest.fixture(scope="module")
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """One client for the table (kept-alive connections to the gateway)."""
    async with httpx.AsyncClient(base_url=stack.base, timeout=20) as client:
        yield client


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("name", list(OPS))
async def test_who_may_do_what(stack: Stack, http: httpx.AsyncClient, app_message: str, name: str, kind: str) -> None:
    op = OPS[name]
    headers = {"Authorization": f"Bearer {stack.tokens[kind]['access_token']}"}
    body = op.body(stack, kind) if op.body else None
    r = await http.request(op.method, op.path(stack, kind), json=body, headers=headers)
    if kind in op.allowed:
        assert r.status_code < 300, f"{kind} {name}: {r.status_code} {r.text}"
    else:
        assert r.status_code in (403, 404), f"{kind} {name}: {r.status_code} {r.text}"
        assert r.headers["content-type"] == "application/problem+json"


async def test_a_citizen_asking_for_admin_and_send_through_demo_app_gets_neither(
    stack: Stack, app_message: str
) -> None:
    tokens = await stack.person_token("demo-citizen", "openid admin message:send message:read")
    assert tokens["scope"].split() == ["openid", "message:read"]
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    template = {"code": "x.script", "name": "n", "subject": "s", "body": "<script>alert(1)</script>"}
    send = {"template_code": "notice.general", "to": {"unit_id": stack.units["zj"], "recursive": True}}
    async with httpx.AsyncClient(base_url=stack.base) as http:
        for method, path, body in (
            ("POST", "/api/v1/messages/templates", template),
            ("GET", f"/api/v1/messages/{app_message}", None),
            ("GET", f"/api/v1/messages/{app_message}/deliveries", None),
            ("POST", "/api/v1/messages", {**send, "personalisation": {"title": "t", "content": "c"}}),
            ("GET", "/api/v1/auth/clients", None),
        ):
            r = await http.request(method, path, json=body, headers=headers)
            assert r.status_code == 403, (path, r.text)


async def test_a_refreshed_token_does_not_regain_a_withdrawn_grant(stack: Stack) -> None:
    admin = {"Authorization": f"Bearer {stack.tokens['whole-tree-admin']['access_token']}"}
    person = demo_user_id("scjg-staff")
    async with httpx.AsyncClient(base_url=stack.base, timeout=20) as http:
        made = await http.post(
            "/api/v1/orgs/admin-grants", json={"principal": person, "unit_id": stack.units["zj-scjg"]}, headers=admin
        )
        assert made.status_code == 201, made.text
        tokens = await stack.person_token("scjg-staff", "openid offline_access org:read org:write admin")
        assert {"admin", "org:write"} <= set(tokens["scope"].split())
        assert claims(tokens["access_token"])["admin_units"] == [stack.units["zj-scjg"]]
        gone = await http.delete(f"/api/v1/orgs/admin-grants/{made.json()['id']}", headers=admin)
        assert gone.status_code == 204
        # the org service stops honouring the old token at once …
        unit = {"name": "市监测试", "type": "internal_institution", "level": "province", "division_code": "330000"}
        mine = {"Authorization": f"Bearer {tokens['access_token']}"}
        r = await http.post("/api/v1/orgs/units", json={**unit, "parent_id": stack.units["zj-scjg"]}, headers=mine)
        assert r.status_code == 403, r.text
        # … and a refresh gives a token without the withdrawn scopes
        r = await http.post(
            "/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=("demo-app", "demo-secret"),
        )
        assert r.status_code == 200, r.text
        assert r.json()["scope"].split() == ["openid", "offline_access", "org:read"]
        assert "admin_units" not in claims(r.json()["access_token"])
