"""Access tokens on the org API: RFC 6750 challenges, invalid tokens, scopes, revocation over NATS, no issuer."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tongban_kit.events import CloudEvent, publish_event
from tongban_kit.nats import connect
from tongban_kit.revocations import REVOKED_SUBJECT
from tongban_kit.testing.tokens import TestIssuer
from tongban_org.config import Settings
from tongban_org.main import create_app

from .helpers import ISSUER, UNITS, as_, assert_problem, bearer, eventually, token

READ = ("org:read",)


def challenge(r: httpx.Response) -> dict[str, str]:
    """The attributes of a Bearer `WWW-Authenticate` challenge."""
    value = r.headers["www-authenticate"]
    assert value.startswith("Bearer "), value
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


async def test_reads_without_a_token_get_a_challenge(anonymous: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    for url in (UNITS, f"{UNITS}/{seeded['zj']}", f"{UNITS}/{seeded['zj']}/subtree", "/api/v1/orgs/admin-grants"):
        r = await anonymous.get(url)
        assert_problem(r, 401, "authentication-required")
        assert challenge(r) == {"realm": "tongban"}  # no error attribute without credentials (RFC 6750 §3.1)
    assert (await anonymous.get("/healthz")).status_code == 200  # operations endpoints stay open


@pytest.mark.parametrize(
    ("forge", "words"),
    [
        (lambda: ISSUER.tampered(sub="x", scope="org:read"), "signature"),
        (lambda: ISSUER.expired(scope="org:read"), "expired"),
        (lambda: ISSUER.mint(scope="org:read", aud="another-api"), "not meant for"),
        (lambda: ISSUER.mint(scope="org:read", iss="https://elsewhere.example"), "issuer"),
        (lambda: ISSUER.unsigned(scope="org:read"), "algorithm"),
        (lambda: ISSUER.hs256_with_public_key(scope="org:read"), "algorithm"),
        (lambda: TestIssuer(ISSUER.issuer).mint(scope="org:read org:write admin"), "no key"),
    ],
)
async def test_invalid_tokens_are_401_invalid_token(
    anonymous: httpx.AsyncClient, seeded: dict[str, str], forge, words: str
) -> None:  # type: ignore[no-untyped-def]
    r = await anonymous.get(f"{UNITS}/{seeded['zj']}", headers=bearer(forge()))
    problem = assert_problem(r, 401, "invalid-token")
    attrs = challenge(r)
    assert attrs["error"] == "invalid_token" and words in attrs["error_description"] and words in problem["detail"]


async def test_reads_need_the_read_scope(anonymous: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    url = f"{UNITS}/{seeded['zj']}"
    r = await anonymous.get(url, headers=as_("demo-admin", ("openid", "user:read")))
    problem = assert_problem(r, 403, "insufficient-scope")
    assert challenge(r) == {
        "realm": "tongban",
        "error": "insufficient_scope",
        "error_description": "this request needs the scope(s): org:read",
        "scope": "org:read",
    }
    assert problem["required_scopes"] == ["org:read"]
    r = await anonymous.get(url, headers=as_("demo-citizen", READ))  # any person or client with org:read
    assert r.status_code == 200 and r.json()["id"] == seeded["zj"]


async def test_a_revoked_token_is_refused_once_the_event_arrives(
    anonymous: httpx.AsyncClient, seeded: dict[str, str], nats_url: str, nats_namespace: str
) -> None:
    jti = "revoke-" + secrets.token_hex(8)
    headers = bearer(token("revoked-user", READ, jti=jti))
    url = f"{UNITS}/{seeded['zj']}"
    assert (await anonymous.get(url, headers=headers)).status_code == 200  # verified and cached
    event = CloudEvent(
        source="/tongban/auth",
        type=REVOKED_SUBJECT,
        subject=jti,
        data={
            "jti": jti,
            "grant_id": None,
            "client_id": "demo-app",
            "sub": "revoked-user",
            "reason": "revoked",
            "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        },
    )
    bus = await connect(nats_url, name="org-revocation-test", namespace=nats_namespace)
    try:
        await publish_event(bus, event)
    finally:
        await bus.close()

    async def refused() -> httpx.Response | None:
        r = await anonymous.get(url, headers=headers)
        return r if r.status_code == 401 else None

    r = await eventually(refused, what="the revocation to reach the service")
    assert "revoked" in challenge(r)["error_description"]
    assert (await anonymous.get(url, headers=bearer(token("revoked-user", READ)))).status_code == 200  # a new token


async def test_without_an_issuer_protected_calls_answer_503(org_settings: Settings) -> None:
    app = create_app(org_settings.model_copy(update={"oidc_issuer": ""}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://org.test") as c:
        r = await c.get(UNITS, headers=as_("demo-admin"))
        problem = assert_problem(r, 503, "authentication-not-configured")
        assert "OIDC_ISSUER" in problem["detail"]
        assert_problem(await c.post(UNITS, json={}, headers=as_("demo-admin")), 503, "authentication-not-configured")
