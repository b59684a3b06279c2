"""JWK Set loading and the fetching key source, against a real local HTTP server that counts fetches."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tongban_kit.jwks import JwksSource, load_jwk, load_jwks, max_age_of
from tongban_kit.testing.tokens import TestIssuer
from tongban_kit.tokens import InvalidToken, TokenVerifier

ISSUER = "http://127.0.0.1:8000"


@dataclass
class JwksServer:
    """Serves a JWK Set at /oauth2/jwks; tests change what it answers."""

    jwks: dict[str, Any]
    cache_control: str | None = "public, max-age=300"
    status: int = 200
    delay: float = 0.0
    fetches: int = 0
    url: str = ""
    body: bytes | None = None
    runner: web.AppRunner | None = field(default=None, repr=False)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.fetches += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
        if self.body is not None:
            return web.Response(body=self.body, status=self.status, headers=headers, content_type="application/json")
        return web.json_response(self.jwks, status=self.status, headers=headers)


@pytest.fixture
async def server() -> AsyncIterator[JwksServer]:
    srv = JwksServer(jwks={"keys": []})
    app = web.Application()
    app.router.add_get("/oauth2/jwks", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    srv.url, srv.runner = f"http://127.0.0.1:{port}/oauth2/jwks", runner
    yield srv
    await runner.cleanup()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_only_public_signing_keys_load() -> None:
    issuer = TestIssuer()
    es, rs = issuer.jwks["keys"]
    assert load_jwk(es).alg == "ES256" and load_jwk(rs).alg == "RS256"
    assert load_jwk({k: v for k, v in es.items() if k != "alg"}).alg == "ES256"  # the key type decides
    bad = [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "sym", "alg": "HS256"},
        {**es, "use": "enc"},
        {**es, "alg": "RS256"},
        {**rs, "alg": "ES256"},
        {**es, "alg": "ES384"},
        {**es, "crv": "P-384"},
        {**es, "d": "AAAA"},
        {**es, "key_ops": ["sign"]},
        {**es, "kid": ""},
        {**es, "x": "!!"},
        {**es, "y": es["x"]},  # not a point on the curve
        {**rs, "n": "AQAB"},  # far too short
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"},
    ]
    for jwk in bad:
        with pytest.raises(ValueError):
            load_jwk(jwk)
    keys = load_jwks({"keys": [*bad, es, rs, "junk"]})
    assert set(keys) == {es["kid"], rs["kid"]}
    with pytest.raises(ValueError):
        load_jwks({"keys": [es, es]})
    with pytest.raises(ValueError):
        load_jwks([es])


def test_a_key_verifies_only_its_own_algorithms_signatures() -> None:
    issuer = TestIssuer()
    es, rs = (load_jwk(jwk) for jwk in issuer.jwks["keys"])
    for key, token in ((es, issuer.mint("ES256")), (rs, issuer.mint("RS256"))):
        h64, p64, s64 = token.split(".")
        signing_input, signature = f"{h64}.{p64}".encode(), b64url_decode(s64)
        assert key.verifies(signing_input, signature)
        assert not key.verifies(signing_input + b" ", signature)
    rs_token = issuer.mint("RS256").split(".")
    assert not es.verifies(f"{rs_token[0]}.{rs_token[1]}".encode(), b64url_decode(rs_token[2]))


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_cache_control_parsing() -> None:
    assert max_age_of("public, max-age=600") == 600
    assert max_age_of('max-age="90", must-revalidate') == 90
    assert max_age_of("no-store") == 0 and max_age_of("no-cache, max-age=600") == 0
    assert max_age_of(None) is None and max_age_of("public") is None


async def test_fetches_once_and_honours_max_age_within_bounds(server: JwksServer) -> None:
    issuer = TestIssuer()
    server.jwks, server.cache_control = issuer.jwks, "public, max-age=120"
    clock = Clock()
    source = JwksSource(server.url, min_max_age=60, max_max_age=600, min_refetch_seconds=10, clock=clock)
    try:
        kid = issuer.kids["ES256"]
        assert source.get(kid) is None  # nothing fetched yet; the fast path never fetches
        assert (await source.key(kid)) is not None and server.fetches == 1
        clock.now += 119
        assert source.get(kid) is not None and (await source.key(kid)) is not None and server.fetches == 1
        clock.now += 2  # stale after max-age: the next look-up refetches
        assert source.get(kid) is None
        assert (await source.key(kid)) is not None and server.fetches == 2
        server.cache_control = "max-age=5"  # below the floor: cached for min_max_age
        clock.now += 200
        await source.key(kid)
        assert server.fetches == 3
        clock.now += 59
        await source.key(kid)
        assert server.fetches == 3
        server.cache_control = "max-age=999999"  # above the ceiling
        clock.now += 2
        await source.key(kid)
        clock.now += 599
        await source.key(kid)
        assert server.fetches == 4
        clock.now += 2
        await source.key(kid)
        assert server.fetches == 5
    finally:
        await source.close()


async def test_unknown_kid_refetches_at_most_once_per_floor(server: JwksServer) -> None:
    old, new = TestIssuer(ISSUER), TestIssuer(ISSUER)
    server.jwks = old.jwks
    clock = Clock()
    source = JwksSource(server.url, min_refetch_seconds=10, clock=clock)
    verifier = TokenVerifier(source, issuer=ISSUER, audience="tongban-api")
    try:
        assert (await verifier.verify(old.mint())).sub == "user-1"
        assert server.fetches == 1
        # random kids cannot make the source fetch in a loop
        for _ in range(20):
            with pytest.raises(InvalidToken) as info:
                await verifier.verify(old.unknown_kid())
            assert info.value.reason == "unknown_kid"
        assert server.fetches == 1  # the first fetch was just now: within the floor
        clock.now += 10
        server.jwks = {"keys": old.jwks["keys"] + new.jwks["keys"]}  # a key rotation published a new key
        assert (await verifier.verify(new.mint())).sub == "user-1"
        assert server.fetches == 2
        for _ in range(5):
            with pytest.raises(InvalidToken):
                await verifier.verify(new.unknown_kid())
        assert server.fetches == 2
        clock.now += 10.5
        with pytest.raises(InvalidToken):
            await verifier.verify(new.unknown_kid())
        assert server.fetches == 3
    finally:
        await source.close()


async def test_concurrent_misses_share_one_fetch(server: JwksServer) -> None:
    issuer = TestIssuer(ISSUER)
    server.jwks, server.delay = issuer.jwks, 0.2
    source = JwksSource(server.url)
    verifier = TokenVerifier(source, issuer=ISSUER, audience="tongban-api")
    try:
        tokens = [issuer.mint(alg) for alg in ("ES256", "RS256") for _ in range(10)]
        results = await asyncio.gather(*(verifier.verify(t) for t in tokens))
        assert len(results) == 20 and server.fetches == 1
    finally:
        await source.close()


async def test_failed_fetch_keeps_the_stale_keys(server: JwksServer) -> None:
    issuer = TestIssuer(ISSUER)
    server.jwks, server.cache_control = issuer.jwks, "max-age=60"
    clock = Clock()
    source = JwksSource(server.url, min_max_age=60, min_refetch_seconds=10, clock=clock)
    verifier = TokenVerifier(source, issuer=ISSUER, audience="tongban-api")
    try:
        await source.refresh()
        clock.now += 61
        server.status = 503
        assert (await verifier.verify(issuer.mint())).sub == "user-1"  # issuer down: stale keys still verify
        assert server.fetches == 2
        assert (await verifier.verify(issuer.mint())).sub == "user-1"
        assert server.fetches == 2  # failures are rate-limited too
        server.status, server.body = 200, b'{"keys": "nope"}'
        clock.now += 10
        assert (await verifier.verify(issuer.mint())).sub == "user-1"
        assert server.fetches == 3 and source.kids == frozenset(issuer.kids.values())
    finally:
        await source.close()


async def test_first_fetch_failure_means_unknown_kid(server: JwksServer) -> None:
    issuer = TestIssuer(ISSUER)
    server.status = 500
    source = JwksSource(server.url)
    verifier = TokenVerifier(source, issuer=ISSUER, audience="tongban-api")
    try:
        with pytest.raises(InvalidToken) as info:
            await verifier.verify(issuer.mint())
        assert info.value.reason == "unknown_kid" and server.fetches == 1
    finally:
        await source.close()


def test_static_source_needs_exactly_one_origin() -> None:
    with pytest.raises(ValueError):
        JwksSource()
    with pytest.raises(ValueError):
        JwksSource("http://x/jwks", jwks={"keys": []})
