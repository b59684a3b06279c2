"""Access-token verification: every rejection reason, the verified-token cache and revocations."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from tongban_kit.jwks import VerificationKey
from tongban_kit.testing.tokens import TestIssuer, b64url, sign_jws
from tongban_kit.tokens import InvalidToken, JwksSource, RevocationList, TokenVerifier, VerifiedToken, _Jws

ISSUER = "http://127.0.0.1:8000"
AUDIENCE = "tongban-api"


@pytest.fixture(scope="module")
def issuer() -> TestIssuer:
    return TestIssuer(ISSUER, AUDIENCE)


def make_verifier(issuer: TestIssuer, **kw: Any) -> TokenVerifier:
    return TokenVerifier(JwksSource.from_jwks(issuer.jwks), issuer=ISSUER, audience=AUDIENCE, **kw)


async def reason_of(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        await verifier.verify(token)
    assert info.value.description
    return info.value.reason


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
async def test_valid_token_yields_its_claims(issuer: TestIssuer, alg: str) -> None:
    token = issuer.mint(
        alg,
        sub="u-42",
        client_id="app-1",
        scope="openid org:read  user:read",
        aud=["other-api", AUDIENCE],
        gid="grant-1",
        sid="sess-1",
        act={"sub": "gateway-app"},
        admin_units=["unit-a", "unit-b"],
        acr="urn:tongban:acr:mfa",
        amr=["pwd", "otp"],
        auth_time=int(time.time()) - 60,
    )
    vt = await make_verifier(issuer).verify(token)
    assert isinstance(vt, VerifiedToken)
    assert (vt.sub, vt.client_id, vt.grant_id, vt.sid) == ("u-42", "app-1", "grant-1", "sess-1")
    assert vt.scopes == frozenset({"openid", "org:read", "user:read"})
    assert vt.has_scopes("org:read", "user:read") and not vt.has_scopes("org:write")
    assert vt.act == {"sub": "gateway-app"}
    assert vt.admin_units == ("unit-a", "unit-b") and vt.amr == ("pwd", "otp")
    assert vt.acr == "urn:tongban:acr:mfa" and vt.raw == token and vt.claims["auth_time"] > 0
    assert vt.exp == float(vt.claims["exp"])


async def test_typ_may_carry_the_media_type_prefix(issuer: TestIssuer) -> None:
    verifier = make_verifier(issuer)
    assert (await verifier.verify(issuer.mint(typ="application/AT+JWT"))).sub == "user-1"
    assert await reason_of(verifier, issuer.mint(typ="JWT")) == "wrong_type"
    assert await reason_of(verifier, issuer.mint(typ=None)) == "wrong_type"


async def test_algorithm_confusion_and_none_are_refused(issuer: TestIssuer) -> None:
    verifier = make_verifier(issuer)
    assert await reason_of(verifier, issuer.unsigned()) == "alg_not_allowed"
    assert await reason_of(verifier, issuer.hs256_with_public_key("RS256")) == "alg_not_allowed"
    assert await reason_of(verifier, issuer.hs256_with_public_key("ES256")) == "alg_not_allowed"
    # the HS256 token would verify if the verifier trusted the header: it is a real HMAC over the PEM
    head = orjson.loads(b64url_decode(issuer.hs256_with_public_key().split(".")[0]))
    assert head["alg"] == "HS256" and head["kid"] == issuer.kids["RS256"]
    # an RS256 header naming the ES256 key: the key decides the algorithm
    forged = sign_jws(
        {"alg": "RS256", "kid": issuer.kids["ES256"], "typ": "at+jwt"}, issuer.claims(), issuer.keys["RS256"]
    )
    assert await reason_of(verifier, forged) == "alg_not_allowed"
    # an algorithm the verifier was not configured for
    es_only = make_verifier(issuer, algorithms=("ES256",))
    assert await reason_of(es_only, issuer.mint("RS256")) == "alg_not_allowed"


def test_joserfc_ties_each_key_to_its_algorithm_behind_the_header_policy(issuer: TestIssuer) -> None:
    """Were the header checks ever loosened, joserfc still refuses a key for any algorithm but its own."""
    verifier = make_verifier(issuer)

    def reason(token: str, key: VerificationKey | None) -> str:
        assert key is not None
        h64, p64, s64 = token.split(".")
        header = orjson.loads(b64url_decode(h64))
        jws = _Jws(header, key.kid, header["alg"], f"{h64}.{p64}".encode(), b64url_decode(s64), b64url_decode(p64))
        with pytest.raises(InvalidToken) as info:
            verifier._check_signature(jws, key)
        return info.value.reason

    es, rs = (verifier.source.get(issuer.kids[alg]) for alg in ("ES256", "RS256"))
    assert reason(issuer.mint("RS256"), es) == "alg_not_allowed"  # a real RS256 signature, offered to the EC key
    assert reason(issuer.hs256_with_public_key("RS256"), rs) == "alg_not_allowed"
    assert reason(issuer.unsigned(), es) == "alg_not_allowed"
    assert reason(issuer.tampered(), es) == "bad_signature"


def b64url_decode(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


async def test_signature_and_key_failures(issuer: TestIssuer) -> None:
    verifier = make_verifier(issuer)
    assert await reason_of(verifier, issuer.tampered()) == "bad_signature"
    assert await reason_of(verifier, issuer.unknown_kid()) == "unknown_kid"
    no_kid = sign_jws({"alg": "ES256", "typ": "at+jwt"}, issuer.claims(), issuer.keys["ES256"])
    assert await reason_of(verifier, no_kid) == "unknown_kid"
    # the right kid, signed by another key
    other = TestIssuer(ISSUER, AUDIENCE)
    impostor = sign_jws(
        {"alg": "ES256", "kid": issuer.kids["ES256"], "typ": "at+jwt"}, issuer.claims(), other.keys["ES256"]
    )
    assert await reason_of(verifier, impostor) == "bad_signature"
    # the signature of one token on another's header and payload
    a, b = issuer.mint().split("."), issuer.mint("RS256").split(".")
    assert await reason_of(verifier, f"{a[0]}.{a[1]}.{b[2]}") == "bad_signature"
    assert await reason_of(verifier, f"{a[0]}.{a[1]}.{a[2][:-4]}") == "bad_signature"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "eyJhbGciOiJFUzI1NiJ9..sig",
        "not base64!.e30.e30",
        b64url(b"[1,2]") + ".e30.e30",
        b64url(b"not json") + ".e30.e30",
        "x" * 9000,
    ],
)
async def test_malformed_tokens(issuer: TestIssuer, token: str) -> None:
    assert await reason_of(make_verifier(issuer), token) == "malformed"


async def test_critical_header_and_bad_claim_types_are_malformed(issuer: TestIssuer) -> None:
    verifier = make_verifier(issuer)
    crit = sign_jws(
        {"alg": "ES256", "kid": issuer.kids["ES256"], "typ": "at+jwt", "crit": ["exp"]},
        issuer.claims(),
        issuer.keys["ES256"],
    )
    assert await reason_of(verifier, crit) == "malformed"
    cases: list[dict[str, Any]] = [
        *({"jti": None}, {"sub": None}, {"client_id": ""}, {"exp": None}, {"iat": None}, {"exp": "soon"}),
        *({"scope": ["a"]}, {"act": "app"}, {"admin_units": "u1"}, {"gid": 7}, {"amr": [1]}, {"exp": True}),
    ]
    for claims in cases:
        assert await reason_of(verifier, issuer.mint(**claims)) == "malformed", claims
    payload_not_object = sign_jws(
        {"alg": "ES256", "kid": issuer.kids["ES256"], "typ": "at+jwt"}, b"[]", issuer.keys["ES256"]
    )
    assert await reason_of(verifier, payload_not_object) == "malformed"


async def test_time_issuer_and_audience_checks(issuer: TestIssuer) -> None:
    verifier = make_verifier(issuer, leeway=30)
    now = int(time.time())
    assert await reason_of(verifier, issuer.expired()) == "expired"
    assert await reason_of(verifier, issuer.mint(exp=now - 31)) == "expired"
    assert (await verifier.verify(issuer.mint(exp=now - 20))).sub  # within the leeway
    assert await reason_of(verifier, issuer.not_yet_valid()) == "not_yet_valid"
    assert await reason_of(verifier, issuer.mint(iat=now + 120)) == "not_yet_valid"
    assert (await verifier.verify(issuer.mint(nbf=now + 20))).sub  # within the leeway
    assert await reason_of(verifier, issuer.mint(iss=ISSUER + "/")) == "wrong_issuer"
    assert await reason_of(verifier, issuer.mint(iss=None)) == "wrong_issuer"
    assert await reason_of(verifier, issuer.mint(aud="other-api")) == "wrong_audience"
    assert await reason_of(verifier, issuer.mint(aud=["other-api"])) == "wrong_audience"
    assert await reason_of(verifier, issuer.mint(aud=None)) == "wrong_audience"


async def test_cache_hit_is_still_checked_for_expiry_and_revocation(issuer: TestIssuer) -> None:
    clock = [time.time()]
    revocations = RevocationList(clock=lambda: clock[0])
    verifier = make_verifier(issuer, revocations=revocations, clock=lambda: clock[0])
    token = issuer.mint(gid="grant-7", exp=int(clock[0]) + 60)
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first  # served from the cache
    assert verifier.verify_sync(token) is first
    revocations.add(jti=first.jti, expires_at=first.exp)
    assert await reason_of(verifier, token) == "revoked"
    clock[0] += 200  # past exp + leeway; the revocation entry has lapsed too
    assert await reason_of(verifier, token) == "expired"


async def test_revoked_grant_covers_cached_and_new_tokens(issuer: TestIssuer) -> None:
    revocations = RevocationList()
    verifier = make_verifier(issuer, revocations=revocations)
    cached = issuer.mint(gid="grant-9")
    await verifier.verify(cached)
    revocations.add(grant_id="grant-9", expires_at=datetime.now(UTC) + timedelta(minutes=10))
    assert await reason_of(verifier, cached) == "revoked"
    assert await reason_of(verifier, issuer.mint(gid="grant-9")) == "revoked"
    assert (await verifier.verify(issuer.mint(gid="grant-10"))).grant_id == "grant-10"
    new_jti = issuer.mint(jti="revoked-before-first-use")
    revocations.add(jti="revoked-before-first-use", expires_at=time.time() + 600)
    assert await reason_of(verifier, new_jti) == "revoked"


async def test_cache_is_bounded_and_only_holds_verified_tokens(issuer: TestIssuer) -> None:
    verifier = make_verifier(issuer, cache_size=3)
    tokens = [issuer.mint(sub=f"u{i}") for i in range(5)]
    for t in tokens:
        await verifier.verify(t)
    assert len(verifier._cache) == 3
    with pytest.raises(InvalidToken):
        await verifier.verify(issuer.tampered())
    assert len(verifier._cache) == 3
    # the oldest entries went first; an evicted token still verifies (afresh)
    assert (await verifier.verify(tokens[0])).sub == "u0"


async def test_cached_token_of_a_withdrawn_key_is_verified_again(issuer: TestIssuer) -> None:
    source = JwksSource.from_jwks(issuer.jwks)
    verifier = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE)
    token = issuer.mint("RS256")
    await verifier.verify(token)
    source._keys.pop(issuer.kids["RS256"])  # as a JWKS refresh without the key would leave it
    assert await reason_of(verifier, token) == "unknown_kid"


def test_revocation_list_expires_entries() -> None:
    clock = [1000.0]
    rl = RevocationList(grace_seconds=10, clock=lambda: clock[0])
    rl.add(jti="a", expires_at=1100.0)
    rl.add(grant_id="g", expires_at=1050.0)
    rl.add(jti="old", expires_at=900.0)  # already over: not kept
    assert len(rl) == 2
    assert rl.is_revoked("a", None) and rl.is_revoked("x", "g") and not rl.is_revoked("x", "h")
    assert not rl.is_revoked(None, None) and not rl.is_revoked("old")
    clock[0] = 1061.0
    assert rl.is_revoked("a") and not rl.is_revoked(None, "g")
    assert rl.prune() == 1 and len(rl) == 1
    rl.add(jti="a", expires_at=1000.0)  # an earlier expiry never shortens an entry
    assert rl.is_revoked("a")


def test_interoperates_with_joserfc(issuer: TestIssuer) -> None:
    jwt = pytest.importorskip("joserfc.jwt")
    jwk = pytest.importorskip("joserfc.jwk")
    key = jwk.ECKey.generate_key("P-256", private=True)
    public = dict(key.as_dict(private=False))
    public.update(kid=key.thumbprint(), alg="ES256", use="sig")
    token = jwt.encode(
        {"alg": "ES256", "kid": key.thumbprint(), "typ": "at+jwt"},
        issuer.claims(sub="interop"),
        key,
        algorithms=["ES256"],
    )
    verifier = TokenVerifier(JwksSource.from_jwks({"keys": [public]}), issuer=ISSUER, audience=AUDIENCE)
    assert verifier.verify_sync(token).sub == "interop"
    # and the issuer's own tokens verify with joserfc
    ks = jwk.KeySet.import_key_set(issuer.jwks)
    decoded = jwt.decode(issuer.mint("RS256", sub="back"), ks, algorithms=["RS256"])
    assert decoded.claims["sub"] == "back" and decoded.header["typ"] == "at+jwt"


def test_signed_input_is_exactly_what_was_signed(issuer: TestIssuer) -> None:
    token = issuer.mint()
    head, payload, sig = token.split(".")
    # re-encoding the same payload with different whitespace changes the signed bytes
    reencoded = b64url(orjson.dumps(orjson.loads(b64url_decode(payload)), option=orjson.OPT_INDENT_2))
    with pytest.raises(InvalidToken) as info:
        make_verifier(issuer).verify_sync(f"{head}.{reencoded}.{sig}")
    assert info.value.reason == "bad_signature"
