"""Helpers shared by the user API tests: access tokens, fresh personal data, account bodies, problem checks, polling."""

from __future__ import annotations

import itertools
import time
from datetime import date, timedelta
from typing import Any, TypeVar

import httpx

from tongban_kit.bearer import BearerAuth
from tongban_kit.codes import make_credit_code
from tongban_kit.demo import demo_user_id
from tongban_kit.testing.helpers import assert_problem, eventually  # noqa: F401
from tongban_kit.testing.tokens import TestIssuer
from tongban_kit.tokens import JwksSource, RevocationList, TokenVerifier
from tongban_user.identity import make_id_number

USERS = "/api/v1/users"
#: the token issuer of the test run (stands in for the auth service)
ISSUER = TestIssuer()
CLIENT = "demo-app"
#: the scopes of the tokens tests send unless they name others (user:pii only where a test asks for it)
SCOPES = ("user:read", "user:write", "org:read", "org:write", "admin")


def issuer_bearer() -> BearerAuth:
    """Bearer authentication trusting ISSUER's keys, with its own revocation list (fed over NATS)."""
    verifier = TokenVerifier(
        JwksSource.from_jwks(ISSUER.jwks), issuer=ISSUER.issuer, audience=ISSUER.audience, revocations=RevocationList()
    )
    return BearerAuth(verifier)


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


def token(sub: str, scopes: tuple[str, ...] = SCOPES, **claims: Any) -> str:
    """An access token for `sub` through the demo app, valid for an hour (tests of a module share it)."""
    return ISSUER.mint(sub=sub, client_id=CLIENT, scope=" ".join(scopes), exp=int(time.time()) + 3600, **claims)


def for_account(account_id: str, *extra: str, scopes: tuple[str, ...] = SCOPES, **claims: Any) -> dict[str, str]:
    """Headers of a request made by the person with this account id (with `extra` scopes on top)."""
    return bearer(token(account_id, scopes + extra, **claims))


def as_(username: str, *extra: str, scopes: tuple[str, ...] = SCOPES, **claims: Any) -> dict[str, str]:
    """Headers of a request made by a demo user (account id from the username), with `extra` scopes on top."""
    return for_account(demo_user_id(username), *extra, scopes=scopes, **claims)


ADMIN = as_("demo-admin")  # bootstrap administrator: every account
PII_ADMIN = as_("demo-admin", "user:pii")  # may unmask personal data (with a purpose)
#: a purpose for finding accounts by mobile or email (which needs user:pii, as unmasking does)
CHECK = "核对账号"
# delegated administrators whose tokens carry the admin scope but no admin_units claim: the user service asks the
# org service on each request either way; the claim-carrying tokens are the fixtures `dsj_admin` and `hz_admin`
DSJ_ADMIN = as_("dsj-admin")  # org seed grant: the 省大数据局 subtree
HZ_ADMIN = as_("hz-admin")  # org seed grant: the 杭州市 subtree
CITIZEN = as_("demo-citizen", scopes=("openid", "user:read", "user:write"))  # a demo citizen, as themselves

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
        "hz-admin",
        "dsj-admin",
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
