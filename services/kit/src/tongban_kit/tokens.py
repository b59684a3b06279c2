"""Verification of JWT access tokens (RFC 9068, RFC 8725 best practice) with joserfc, behind a verified-token cache.

joserfc imports the keys (`jwks.py`) and does the JOSE work: the header's registered members, the algorithm
allow-list, whether the key may verify that algorithm (key type, curve, the key's own `alg` and `use`) and the
signature itself. Ours: splitting the compact serialization, the header policy applied before a key is looked up
(`typ` at+jwt, no `crit`, a `kid`, an allowed `alg`), the claim checks (RFC 9068 §4, each rejection with a stable
reason), the revocation check and the verified-token cache in front of it all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from joserfc.errors import (
    InvalidKeyCurveError,
    InvalidKeyTypeError,
    JoseError,
    KeyParameterError,
    UnsupportedAlgorithmError,
)
from joserfc.jws import JWSRegistry

from tongban_kit.jwks import JwksSource, VerificationKey
from tongban_kit.revocations import RevocationFeed, RevocationList

__all__ = [
    "InvalidToken",
    "JwksSource",
    "RevocationFeed",
    "RevocationList",
    "TokenVerifier",
    "VerificationKey",
    "VerifiedToken",
]

MAX_TOKEN_BYTES = 8 * 1024
#: claim of an exchanged token (RFC 8693): the `jti`s of the tokens it came from, so it dies with any of them
SUBJECT_JTIS = "subject_jtis"
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")  # an empty signature fails later
#: joserfc's refusals of a key for the algorithm a header names
_KEY_MISMATCH = (UnsupportedAlgorithmError, KeyParameterError, InvalidKeyTypeError, InvalidKeyCurveError)


class InvalidToken(Exception):
    """A token that must not be accepted; `reason` is a stable code, `description` says why in words."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(f"{reason}: {description}")
        self.reason = reason
        self.description = description


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """The claims of a verified access token (treat `claims` as read-only: verified tokens are cached)."""

    claims: dict[str, Any]
    sub: str
    client_id: str
    scopes: frozenset[str]
    jti: str
    exp: float
    grant_id: str | None = None
    sid: str | None = None
    act: dict[str, Any] | None = None
    admin_units: tuple[str, ...] = ()
    acr: str | None = None
    amr: tuple[str, ...] = ()
    #: `jti`s of the tokens this one was exchanged from (RFC 8693), oldest first: revoking any revokes this one
    subject_jtis: tuple[str, ...] = ()
    raw: str = field(default="", repr=False)

    def has_scopes(self, *needed: str) -> bool:
        """True when the token grants every scope in `needed`."""
        return self.scopes.issuperset(needed)


@dataclass(frozen=True, slots=True)
class _Jws:
    header: dict[str, Any]
    kid: str
    alg: str
    signing_input: bytes
    signature: bytes
    payload: bytes


def _b64(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed", "a token segment is not base64url") from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidToken("malformed", f"the token {what} is not a JSON object")
    return value


def _time_claim(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidToken("malformed", f"claim {name} must be a NumericDate")
    return float(value)


def _required_str(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidToken("malformed", f"claim {name} is required")
    return value


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidToken("malformed", f"claim {name} must be an array of strings")
    return tuple(value)


def _optional_str(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidToken("malformed", f"claim {name} must be a string")
    return value


def _media_type(typ: str) -> str:
    typ = typ.lower()
    return typ[len("application/") :] if typ.startswith("application/") else typ


class TokenVerifier:
    """Verifies compact JWS access tokens against an issuer's keys; caches verified tokens by digest."""

    def __init__(
        self,
        source: JwksSource,
        *,
        issuer: str,
        audience: str,
        typ: str = "at+jwt",
        algorithms: Iterable[str] = ("ES256", "RS256"),
        leeway: float = 30.0,
        revocations: RevocationList | None = None,
        cache_size: int = 10_000,
        max_token_bytes: int = MAX_TOKEN_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.issuer, self.audience = issuer, audience
        self.typ = _media_type(typ)
        self.algorithms = frozenset(algorithms)
        unknown = self.algorithms - {"ES256", "RS256"}
        if unknown or not self.algorithms:
            raise ValueError(f"algorithms must be a non-empty subset of ES256, RS256 (not {sorted(unknown)})")
        self.leeway = leeway
        self.revocations = revocations
        self.cache_size = cache_size
        self.max_token_bytes = max_token_bytes
        self._clock = clock
        self._cache: dict[bytes, tuple[VerifiedToken, str]] = {}
        # header members joserfc does not know pass, as RFC 7515 §4 allows; `crit` is refused in `_parse`
        self._jws = JWSRegistry(algorithms=sorted(self.algorithms), strict_check_header=False)

    async def verify(self, token: str) -> VerifiedToken:
        """Verify a token, fetching the issuer's keys when its kid is unknown; raises InvalidToken."""
        digest = self._digest(token)
        hit = self._cached(digest)
        if hit is not None:
            return hit
        jws = self._parse(token)
        key = self.source.get(jws.kid) or await self.source.key(jws.kid)
        return self._finish(token, digest, jws, key)

    def verify_sync(self, token: str) -> VerifiedToken:
        """Verify with the keys at hand (stale ones included), never fetching; raises InvalidToken."""
        digest = self._digest(token)
        hit = self._cached(digest)
        if hit is not None:
            return hit
        jws = self._parse(token)
        key = self.source.get(jws.kid, allow_stale=True)
        return self._finish(token, digest, jws, key)

    def clear_cache(self) -> None:
        """Forget every verified token (e.g. after a key was withdrawn)."""
        self._cache.clear()

    def _digest(self, token: str) -> bytes:
        if len(token) > self.max_token_bytes:
            raise InvalidToken("malformed", f"the token is longer than {self.max_token_bytes} bytes")
        return hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=20).digest()

    def _cached(self, digest: bytes) -> VerifiedToken | None:
        entry = self._cache.get(digest)
        if entry is None:
            return None
        vt, kid = entry
        if self._clock() >= vt.exp + self.leeway:
            del self._cache[digest]
            raise InvalidToken("expired", "the token has expired")
        if not self.source.known(kid):  # the signing key was withdrawn: verify afresh
            del self._cache[digest]
            return None
        if self._revoked(vt):
            raise InvalidToken("revoked", "the token has been revoked")
        return vt

    def _revoked(self, vt: VerifiedToken) -> bool:
        """Whether the token, its grant or a token it was exchanged from is on the revocation list."""
        return self.revocations is not None and self.revocations.is_revoked(
            vt.jti, vt.grant_id, subject_jtis=vt.subject_jtis
        )

    def _parse(self, token: str) -> _Jws:
        if not _COMPACT_JWS.fullmatch(token):
            raise InvalidToken("malformed", "the token is not a compact JWS (three base64url segments)")
        h64, p64, s64 = token.split(".")
        header = _json_object(_b64(h64), "header")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidToken("alg_not_allowed", f"algorithm {alg!r} is not accepted")
        typ = header.get("typ")
        if not isinstance(typ, str) or _media_type(typ) != self.typ:
            raise InvalidToken("wrong_type", f"the token type must be {self.typ}")
        if "crit" in header:
            raise InvalidToken("malformed", "the token names critical header parameters this verifier does not know")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("unknown_kid", "the token names no key (kid)")
        signing_input = token[: len(h64) + 1 + len(p64)].encode("ascii")
        return _Jws(header, kid, alg, signing_input, _b64(s64), _b64(p64))

    def _finish(self, token: str, digest: bytes, jws: _Jws, key: VerificationKey | None) -> VerifiedToken:
        if key is None:
            raise InvalidToken("unknown_kid", f"no key {jws.kid!r} is published by the issuer")
        if key.alg != jws.alg:  # the key decides the algorithm (joserfc checks it again)
            raise InvalidToken("alg_not_allowed", f"key {jws.kid!r} signs with {key.alg}, not {jws.alg}")
        self._check_signature(jws, key)
        vt = self._claims(token, _json_object(jws.payload, "payload"))
        if self._revoked(vt):
            raise InvalidToken("revoked", "the token has been revoked")
        if len(self._cache) >= self.cache_size:
            del self._cache[next(iter(self._cache))]  # oldest first
        self._cache[digest] = (vt, jws.kid)
        return vt

    def _check_signature(self, jws: _Jws, key: VerificationKey) -> None:
        """joserfc's header and key checks, then the signature (`validate_compact`'s steps on our parsed header)."""
        try:
            self._jws.check_header(jws.header)
            algorithm = self._jws.get_alg(jws.alg)
            algorithm.check_key(key.jwk)
            valid = algorithm.verify(jws.signing_input, jws.signature, key.jwk)
        except _KEY_MISMATCH as exc:
            raise InvalidToken(
                "alg_not_allowed", f"key {jws.kid!r} cannot verify {jws.alg}: {exc.description}"
            ) from None
        except JoseError as exc:
            raise InvalidToken("malformed", f"the token header is not valid: {exc.description}") from None
        if not valid:
            raise InvalidToken("bad_signature", "the token signature does not verify")

    def _claims(self, token: str, claims: dict[str, Any]) -> VerifiedToken:
        now = self._clock()
        if claims.get("iss") != self.issuer:
            raise InvalidToken("wrong_issuer", "the token was not issued by the expected issuer")
        aud = claims.get("aud")
        if not (aud == self.audience or (isinstance(aud, list) and self.audience in aud)):
            raise InvalidToken("wrong_audience", f"the token is not meant for {self.audience}")
        exp, iat = _time_claim(claims, "exp"), _time_claim(claims, "iat")
        nbf = _time_claim(claims, "nbf") if "nbf" in claims else None
        if now >= exp + self.leeway:
            raise InvalidToken("expired", "the token has expired")
        if (nbf is not None and nbf > now + self.leeway) or iat > now + self.leeway:
            raise InvalidToken("not_yet_valid", "the token is not valid yet")
        sub, client_id, jti = (
            _required_str(claims, "sub"),
            _required_str(claims, "client_id"),
            _required_str(claims, "jti"),
        )
        scope = claims.get("scope", "")
        act = claims.get("act")
        if not isinstance(scope, str) or (act is not None and not isinstance(act, dict)):
            raise InvalidToken("malformed", "claim scope must be a string and act an object")
        return VerifiedToken(
            claims=claims,
            sub=sub,
            client_id=client_id,
            scopes=frozenset(scope.split()),
            jti=jti,
            exp=exp,
            grant_id=_optional_str(claims, "gid"),
            sid=_optional_str(claims, "sid"),
            act=act,
            admin_units=_strings(claims.get("admin_units"), "admin_units"),
            acr=_optional_str(claims, "acr"),
            amr=_strings(claims.get("amr"), "amr"),
            subject_jtis=_strings(claims.get(SUBJECT_JTIS), SUBJECT_JTIS),
            raw=token,
        )
