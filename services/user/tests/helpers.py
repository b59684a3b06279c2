"""Helpers shared by the user API tests: principals, fresh personal data, account bodies, problem checks, polling."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any, TypeVar

import httpx

from tongban_kit.codes import make_credit_code
from tongban_kit.demo import demo_user_id
from tongban_kit.testing.helpers import assert_problem, eventually  # noqa: F401
from tongban_user.identity import make_id_number

USERS = "/api/v1/users"
PRINCIPAL = "X-Tongban-Principal"
SCOPES = "X-Tongban-Scopes"


def as_(principal: str, *scopes: str) -> dict[str, str]:
    """Headers of a request made by `principal` (with optional scopes)."""
    return {PRINCIPAL: principal} | ({SCOPES: " ".join(scopes)} if scopes else {})


ADMIN = as_("demo-admin")  # bootstrap administrator: every account
PII_ADMIN = as_("demo-admin", "user:pii")  # may unmask personal data (with a purpose)
DSJ_ADMIN = as_("dsj-admin")  # org seed grant: the 省大数据局 subtree
HZ_ADMIN = as_("hz-admin")  # org seed grant: the 杭州市 subtree
CITIZEN = as_("demo-citizen")  # a demo citizen, signed in as themselves

#: fixed ids of the demo accounts the user seed creates (the org seed refers to the staff ones)
DEMO = {
    name: demo_user_id(name)
    for name in (
        "demo-citizen",
        "demo-citizen2",
        "demo-citizen3",
        "demo-staff",
        "demo-admin",
        "dsj-leader",
        "scjg-staff",
        "hz-staff",
        "demo-enterprise",
    )
}

_serial = itertools.count(1)
T = TypeVar("T")


def serial() -> int:
    """A number unique within the test run."""
    return next(_serial)


def id_number(n: int | None = None, *, address: str = "330106") -> str:
    """A valid resident identity number, distinct for each `n`."""
    n = serial() if n is None else n
    return make_id_number(address, date(1960, 1, 1) + timedelta(days=n % 20000), f"{n % 1000:03d}")


def mobile(n: int | None = None) -> str:
    """A valid mobile number (15x prefix, never one of the demo accounts'), distinct for each `n`."""
    n = serial() if n is None else n
    return f"15{n % 10}{n:08d}"[:11]


def credit_code(n: int | None = None) -> str:
    """A valid unified social credit code, distinct for each `n`."""
    n = serial() if n is None else n
    return make_credit_code("9", "1", "330106", f"QA{n:06d}")


def citizen(**extra: Any) -> dict[str, Any]:
    """A body creating a citizen with fresh personal data."""
    n = serial()
    return {
        "kind": "citizen",
        "name": f"市民{n}",
        "id_number": id_number(n),
        "mobile": mobile(n),
        "email": f"citizen{n}@example.com",
        **extra,
    }


def staff(**extra: Any) -> dict[str, Any]:
    """A body creating a staff account with fresh login names."""
    n = serial()
    return {"kind": "staff", "name": f"工作人员{n}", "username": f"staff{n}", "mobile": mobile(n), **extra}


async def create(client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str] = ADMIN) -> dict[str, Any]:
    """Create an account; fails the test unless the service answers 201."""
    r = await client.post(USERS, json=body, headers=headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def get(client: httpx.AsyncClient, user_id: str, headers: dict[str, str] = ADMIN, **params: Any) -> Any:
    """GET one account that must answer 200."""
    r = await client.get(f"{USERS}/{user_id}", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def search(client: httpx.AsyncClient, headers: dict[str, str] = ADMIN, **params: Any) -> dict[str, Any]:
    """One page of a search that must answer 200."""
    r = await client.get(USERS, headers=headers, params=params)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def all_pages(
    client: httpx.AsyncClient, headers: dict[str, str] = ADMIN, *, limit: int, **params: Any
) -> tuple[list[dict[str, Any]], list[int]]:
    """Follow `next_cursor` to the end; returns every item and the size of each page."""
    items: list[dict[str, Any]] = []
    sizes: list[int] = []
    cursor: str | None = None
    for _ in range(100):
        page = await search(client, headers, limit=limit, **params, **({"cursor": cursor} if cursor else {}))
        items += page["items"]
        sizes.append(len(page["items"]))
        cursor = page["next_cursor"]
        if cursor is None:
            return items, sizes
    raise AssertionError("more than 100 pages")
