"""Token and scope checks at the gateway: a real gateway process, keys from the stand-in upstream's JWKS,
revocations from real NATS JetStream events."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tongban_kit.events import CloudEvent, publish_event
from tongban_kit.nats import Bus
from tongban_kit.revocations import REVOKED_SUBJECT
from tongban_kit.testing.helpers import eventually

from .conftest import ISSUER, PREFIX, Gateway, ThreadServer
from .test_proxy import assert_problem, received

ROUTES = [
    {"prefix": PREFIX, "upstream": "org", "scopes": {"GET": ["org:read"], "*": ["org:write"]}},
    {"prefix": PREFIX + "/echo/any", "upstream": "org"},
    {"prefix": "/oauth2", "upstream": "org", "public": True},
]


@pytest.fixture(scope="module")
def guarded(start_gateway: Callable[..., Gateway], upstream: ThreadServer) -> Gateway:
    """A gateway whose org routes need tokens and scopes; /oauth2 is public."""
    return start_gateway({"org": [upstream.url]}, ROUTES)


@pytest.fixture
async def client(guarded: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=guarded.url, timeout=10) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def revoked_event(*, jti: str | None = None, grant_id: str | None = None) -> CloudEvent:
    return CloudEvent(
        source="/tongban/auth",
        type=REVOKED_SUBJECT,
        subject=jti or grant_id,
        data={
            "jti": jti,
            "grant_id": grant_id,
            "client_id": "demo-app",
            "sub": "user-1",
            "reason": "revoked",
            "expires_at": (datetime.now(UTC) + timedelta(minutes=10)).isoformat(),
        },
    )


async def test_no_token_is_401_with_a_bare_challenge(client: httpx.AsyncClient) -> None:
    resp = await client.get(PREFIX + "/echo")
    assert_problem(resp, 401, "authentication-required")
    assert resp.headers["www-authenticate"] == 'Bearer realm="tongban"'
    basic = await client.get(PREFIX + "/echo", headers={"Authorization": "Basic ZGVtbzpkZW1v"})
    assert_problem(basic, 401, "authentication-required")


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: ISSUER.tampered(scope="org:read"), id="forged"),
        pytest.param(lambda: ISSUER.expired(scope="org:read"), id="expired"),
        pytest.param(lambda: ISSUER.not_yet_valid(scope="org:read"), id="not-yet-valid"),
        pytest.param(lambda: ISSUER.mint(scope="org:read", aud="another-api"), id="wrong-audience"),
        pytest.param(lambda: ISSUER.mint(scope="org:read", iss="https://other.example"), id="wrong-issuer"),
        pytest.param(lambda: ISSUER.mint(scope="org:read", typ="JWT"), id="wrong-typ"),
        pytest.param(lambda: ISSUER.mint(scope="org:read", typ=None), id="no-typ"),
        pytest.param(lambda: ISSUER.unsigned(scope="org:read"), id="alg-none"),
        pytest.param(lambda: ISSUER.hs256_with_public_key(scope="org:read"), id="alg-confusion"),
        pytest.param(lambda: ISSUER.unknown_kid(scope="org:read"), id="unknown-kid"),
        pytest.param(lambda: secrets.token_urlsafe(32), id="opaque"),
    ],
)
async def test_bad_tokens_are_401_invalid_token(client: httpx.AsyncClient, make: Callable[[], str]) -> None:
    resp = await client.get(PREFIX + "/echo", headers=bearer(make()))
    assert_problem(resp, 401, "invalid-token")
    challenge = resp.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="tongban", error="invalid_token", error_description="')


async def test_good_tokens_pass_with_the_scope_the_method_needs(client: httpx.AsyncClient) -> None:
    for alg in ("ES256", "RS256"):
        resp = await client.get(PREFIX + "/echo", headers=bearer(ISSUER.mint(alg, scope="openid org:read")))
        assert resp.status_code == 200, resp.text
    reader = bearer(ISSUER.mint(scope="org:read"))
    resp = await client.post(PREFIX + "/echo", headers=reader, content=b"x")
    body = assert_problem(resp, 403, "insufficient-scope")
    assert body["required_scopes"] == ["org:write"]
    assert resp.headers["www-authenticate"] == (
        'Bearer realm="tongban", error="insufficient_scope", '
        'error_description="this request needs the scope(s): org:write", scope="org:write"'
    )
    writer = bearer(ISSUER.mint(scope="org:write"))
    assert (await client.post(PREFIX + "/echo", headers=writer, content=b"x")).status_code == 200
    assert_problem(await client.get(PREFIX + "/echo", headers=writer), 403, "insufficient-scope")
    assert (await client.head(PREFIX + "/echo", headers=reader)).status_code == 200  # HEAD as GET
    # a route without scopes takes any valid token, but still a token
    assert (await client.delete(PREFIX + "/echo/any", headers=bearer(ISSUER.mint()))).status_code == 200
    assert_problem(await client.delete(PREFIX + "/echo/any"), 401)


async def test_public_routes_need_no_token(client: httpx.AsyncClient) -> None:
    resp = await client.get("/oauth2/jwks")
    assert resp.status_code == 200 and resp.json() == ISSUER.jwks


async def test_token_in_query_or_twice_is_400(client: httpx.AsyncClient) -> None:
    token = ISSUER.mint(scope="org:read")
    resp = await client.get(PREFIX + "/echo", params={"access_token": token})
    assert_problem(resp, 400, "invalid-request")
    assert 'error="invalid_request"' in resp.headers["www-authenticate"]


async def test_identity_headers_from_clients_are_stripped_and_the_token_forwarded(
    client: httpx.AsyncClient,
) -> None:
    token = ISSUER.mint(scope="org:read")
    resp = await client.get(
        PREFIX + "/echo",
        headers={
            **bearer(token),
            "X-Tongban-User": "admin",
            "x-tongban-scopes": "admin",
            "X-Tongban-Client-Id": "root",
            "X-Request-Id": "req-forwarded-1",
        },
    )
    seen = received(resp)
    assert not [k for k in seen if k.startswith("x-tongban-")]
    assert seen["authorization"] == f"Bearer {token}"  # services verify it again
    assert seen["x-request-id"] == "req-forwarded-1" and seen["traceparent"].startswith("00-")


async def test_revoked_tokens_and_grants_are_refused(client: httpx.AsyncClient, auth_bus: Bus) -> None:
    token = ISSUER.mint(scope="org:read")
    grant_id = "grant-" + secrets.token_hex(4)
    grant_token = ISSUER.mint(scope="org:read", gid=grant_id)
    other = ISSUER.mint(scope="org:read")
    for t in (token, grant_token, other):  # verified and cached first
        assert (await client.get(PREFIX + "/echo", headers=bearer(t))).status_code == 200
    await publish_event(auth_bus, revoked_event(jti=_jti(token)))
    await publish_event(auth_bus, revoked_event(grant_id=grant_id))

    async def refused() -> bool | None:
        codes = [(await client.get(PREFIX + "/echo", headers=bearer(t))).status_code for t in (token, grant_token)]
        return True if codes == [401, 401] else None

    await eventually(refused, what="revocations applied at the gateway")
    resp = await client.get(PREFIX + "/echo", headers=bearer(token))
    assert "revoked" in assert_problem(resp, 401, "invalid-token")["detail"]
    assert (await client.get(PREFIX + "/echo", headers=bearer(other))).status_code == 200


async def test_an_exchanged_token_dies_with_its_subject_token(client: httpx.AsyncClient, auth_bus: Bus) -> None:
    subject = ISSUER.mint(scope="org:read")
    # as the auth service issues an RFC 8693 exchange: the actor, and the jti of the token it came from
    exchanged = ISSUER.mint(scope="org:read", act={"sub": "backend"}, subject_jtis=[_jti(subject)])
    assert (await client.get(PREFIX + "/echo", headers=bearer(exchanged))).status_code == 200
    await publish_event(auth_bus, revoked_event(jti=_jti(subject)))

    async def refused() -> bool | None:
        return True if (await client.get(PREFIX + "/echo", headers=bearer(exchanged))).status_code == 401 else None

    await eventually(refused, what="the exchanged token refused with its subject token")
    resp = await client.get(PREFIX + "/echo", headers=bearer(exchanged))
    assert "revoked" in assert_problem(resp, 401, "invalid-token")["detail"]


async def test_a_restarted_gateway_replays_the_revocations_in_force(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer, auth_bus: Bus
) -> None:
    token = ISSUER.mint(scope="org:read")
    await publish_event(auth_bus, revoked_event(jti=_jti(token)))
    fresh = start_gateway({"org": [upstream.url]}, ROUTES)  # started after the event: learns it by replay
    async with httpx.AsyncClient(base_url=fresh.url, timeout=10) as c:
        resp = await c.get(PREFIX + "/echo", headers=bearer(token))
        assert_problem(resp, 401, "invalid-token")
        assert (await c.get(PREFIX + "/echo", headers=bearer(ISSUER.mint(scope="org:read")))).status_code == 200


def _jti(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])
