"""Helpers shared by the org API tests: access tokens, unit bodies, problem checks, paging, polling."""

from __future__ import annotations

import itertools
import time
from typing import Any, TypeVar

import httpx

from tongban_kit.bearer import BearerAuth
from tongban_kit.codes import make_credit_code
from tongban_kit.demo import demo_user_id
from tongban_kit.testing.helpers import assert_problem, eventually  # noqa: F401
from tongban_kit.testing.tokens import TestIssuer
from tongban_kit.tokens import JwksSource, RevocationList, TokenVerifier

UNITS = "/api/v1/orgs/units"
MEMBERSHIPS = "/api/v1/orgs/memberships"
GRANTS = "/api/v1/orgs/admin-grants"
#: the token issuer of the test run (stands in for the auth service)
ISSUER = TestIssuer()
#: the scopes of an administrator's token
WRITER_SCOPES = ("org:read", "org:write", "admin")
CLIENT = "demo-app"


def issuer_bearer() -> BearerAuth:
    """Bearer authentication trusting ISSUER's keys, with its own revocation list (fed over NATS)."""
    verifier = TokenVerifier(
        JwksSource.from_jwks(ISSUER.jwks), issuer=ISSUER.issuer, audience=ISSUER.audience, revocations=RevocationList()
    )
    return BearerAuth(verifier)


def account(username: str) -> str:
    """The account id (token `sub`) of a user, as the auth service would name them."""
    return demo_user_id(username)


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


def token(sub: str, scopes: tuple[str, ...] = WRITER_SCOPES, **claims: Any) -> str:
    """An access token for `sub`, valid for an hour (tests of a module share it)."""
    return ISSUER.mint(sub=sub, client_id=CLIENT, scope=" ".join(scopes), exp=int(time.time()) + 3600, **claims)


def as_(username: str, scopes: tuple[str, ...] = WRITER_SCOPES, **claims: Any) -> dict[str, str]:
    """Headers of a request made by the user `username` through the demo app."""
    return bearer(token(account(username), scopes, **claims))


ADMIN = as_("demo-admin")  # a bootstrap administrator of the whole tree
HZ_ADMIN = as_("hz-admin")  # seed grant: the 杭州市 subtree
DSJ_ADMIN = as_("dsj-admin")  # seed grant: the 省大数据局 subtree
#: a client's own token (client credentials) that may read: what the test client sends unless told otherwise
READER = bearer(token(CLIENT, ("org:read",)))

_serial = itertools.count(1)
_county = itertools.count(81)

T = TypeVar("T")


def credit_code(division6: str = "330100", kind: str = "1") -> str:
    """A fresh valid credit code (unique within the test run)."""
    return make_credit_code("1", kind, division6, f"QA{next(_serial):06d}")


def new_county_code() -> str:
    """A fresh county-level code inside 杭州市 (3301xx), so test trees do not share regions."""
    n = next(_county)
    assert n < 100, "ran out of test county codes"
    return f"3301{n:02d}"


def unit_body(
    parent_id: str | None, name: str, type_: str, level: str, division_code: str, **extra: Any
) -> dict[str, Any]:
    """The JSON body of a unit creation."""
    return {
        "parent_id": parent_id,
        "name": name,
        "type": type_,
        "level": level,
        "division_code": division_code,
        **extra,
    }


async def create_unit(
    client: httpx.AsyncClient,
    parent_id: str | None,
    name: str,
    type_: str,
    level: str,
    division_code: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Create a unit and return it; fails the test unless the service answers 201."""
    body = unit_body(parent_id, name, type_, level, division_code, **extra)
    r = await client.post(UNITS, json=body, headers=headers or ADMIN)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def add_member(
    client: httpx.AsyncClient,
    unit_id: str,
    user_id: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Add a membership and return it; fails the test unless the service answers 201."""
    r = await client.post(MEMBERSHIPS, json={"unit_id": unit_id, "user_id": user_id, **extra}, headers=headers or ADMIN)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def get_json(client: httpx.AsyncClient, url: str, **params: Any) -> Any:
    """GET that must answer 200; returns the body."""
    r = await client.get(url, params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def all_pages(
    client: httpx.AsyncClient, url: str, *, limit: int, max_pages: int = 100, **params: Any
) -> tuple[list[dict[str, Any]], list[int]]:
    """Follow `next_cursor` to the end; returns every item and the size of each page."""
    items: list[dict[str, Any]] = []
    sizes: list[int] = []
    cursor: str | None = None
    for _ in range(max_pages):
        q = {**params, "limit": limit} | ({"cursor": cursor} if cursor else {})
        page = await get_json(client, url, **q)
        items += page["items"]
        sizes.append(len(page["items"]))
        cursor = page["next_cursor"]
        if cursor is None:
            return items, sizes
    raise AssertionError(f"more than {max_pages} pages at {url}")
