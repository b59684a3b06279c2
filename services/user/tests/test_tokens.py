"""Access tokens on the user API: invalid tokens, personal data by scope, revocation over NATS, no issuer."""

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
from tongban_user.config import Settings
from tongban_user.main import create_app

from .helpers import ADMIN, CITIZEN, DEMO, ISSUER, USERS, as_, assert_problem, bearer, eventually, get, token

READ = ("user:read",)


def challenge(r: httpx.Response) -> dict[str, str]:
    """The attributes of a Bearer `WWW-Authenticate` challenge."""
    value = r.headers["www-authenticate"]
    assert value.startswith("Bearer "), value
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


@pytest.mark.parametrize(
    ("forge", "words"),
    [
        (lambda: ISSUER.tampered(sub=DEMO["demo-admin"], scope="user:read"), "signature"),
        (lambda: ISSUER.expired(sub=DEMO["demo-citizen"], scope="user:read"), "expired"),
        (lambda: ISSUER.mint(sub=DEMO["demo-citizen"], scope="user:read", aud="another-api"), "not meant for"),
        (lambda: TestIssuer(ISSUER.issuer).mint(sub=DEMO["demo-admin"], scope="user:read admin"), "no key"),
    ],
)
async def test_invalid_tokens_are_401_invalid_token(client: httpx.AsyncClient, forge, words: str) -> None:  # type: ignore[no-untyped-def]
    r = await client.get(f"{USERS}/me", headers=bearer(forge()))
    problem = assert_problem(r, 401, "invalid-token")
    attrs = challenge(r)
    assert attrs["error"] == "invalid_token" and words in attrs["error_description"] and words in problem["detail"]


async def test_me_is_the_token_subject_and_personal_data_needs_user_pii(client: httpx.AsyncClient) -> None:
    me = await get(client, "me", CITIZEN)
    assert me["id"] == DEMO["demo-citizen"] and me["mobile"] == "138****8000"  # masked without user:pii
    r = await client.get(f"{USERS}/me", params={"unmask": "true", "purpose": "核对本人信息"}, headers=CITIZEN)
    assert_problem(r, 403, "insufficient-scope")
    pii = as_("demo-citizen", "user:pii", scopes=READ)
    r = await client.get(f"{USERS}/me", params={"unmask": "true", "purpose": "核对本人信息"}, headers=pii)
    assert r.status_code == 200 and r.json()["mobile"] == "13800138000"


async def test_a_revoked_token_is_refused_once_the_event_arrives(
    client: httpx.AsyncClient, nats_url: str, nats_namespace: str
) -> None:
    jti = "revoke-" + secrets.token_hex(8)
    headers = bearer(token(DEMO["demo-citizen"], READ, jti=jti))
    assert (await client.get(f"{USERS}/me", headers=headers)).status_code == 200  # verified and cached
    event = CloudEvent(
        source="/tongban/auth",
        type=REVOKED_SUBJECT,
        subject=jti,
        data={
            "jti": jti,
            "grant_id": None,
            "client_id": "demo-app",
            "sub": DEMO["demo-citizen"],
            "reason": "logout",
            "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        },
    )
    bus = await connect(nats_url, name="user-revocation-test", namespace=nats_namespace)
    try:
        await publish_event(bus, event)
    finally:
        await bus.close()

    async def refused() -> httpx.Response | None:
        r = await client.get(f"{USERS}/me", headers=headers)
        return r if r.status_code == 401 else None

    r = await eventually(refused, what="the revocation to reach the service")
    assert "revoked" in challenge(r)["error_description"]
    assert (await client.get(f"{USERS}/me", headers=CITIZEN)).status_code == 200  # other tokens still work


async def test_without_an_issuer_protected_calls_answer_503(user_settings: Settings) -> None:
    app = create_app(user_settings.model_copy(update={"oidc_issuer": ""}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://user.test") as c:
        problem = assert_problem(await c.get(USERS, headers=ADMIN), 503, "authentication-not-configured")
        assert "OIDC_ISSUER" in problem["detail"]
        r = await c.get("/scim/v2/Users", headers=ADMIN)
        assert r.status_code == 503 and r.headers["content-type"].startswith("application/scim+json")
