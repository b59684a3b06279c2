"""Verification keys from a JWK Set (RFC 7517): fetched, cached by `max-age`, refetched on unknown kids."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey
from joserfc.jws import JWSRegistry

from tongban_kit.outbound import OutboundClient, OutboundError

log = logging.getLogger(__name__)

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
#: the signature algorithms verifiers accept, and the key type each needs
SUPPORTED_ALGS = {"ES256": "EC", "RS256": "RSA"}
#: members only a private JWK carries (RFC 7518 §6.2.2, §6.3.2)
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth"})
MIN_RSA_BITS = 2048
MAX_JWKS_BYTES = 512 * 1024
_ALGORITHMS = JWSRegistry(algorithms=sorted(SUPPORTED_ALGS))
_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-maxage|max-age)\s*=\s*\"?(\d+)\"?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key that verifies signatures of exactly one algorithm (`jwk` carries that `alg`)."""

    kid: str
    alg: str
    jwk: ECKey | RSAKey

    @property
    def key(self) -> PublicKey:
        """The key as a `cryptography` public key."""
        return self.jwk.public_key

    def verifies(self, signing_input: bytes, signature: bytes) -> bool:
        """Whether `signature` is this key's JWS signature (its own algorithm) of `signing_input`."""
        return _ALGORITHMS.get_alg(self.alg).verify(signing_input, signature, self.jwk)


def load_jwk(jwk: Mapping[str, Any]) -> VerificationKey:
    """Load one public signing JWK (EC P-256 for ES256, RSA ≥ 2048 bits for RS256); ValueError if unusable."""
    kid, kty, alg, use = jwk.get("kid"), jwk.get("kty"), jwk.get("alg"), jwk.get("use")
    if not isinstance(kid, str) or not kid:
        raise ValueError("the key has no kid")
    if use not in (None, "sig"):
        raise ValueError(f"key {kid} is not for signatures (use={use})")
    if PRIVATE_MEMBERS & jwk.keys():
        raise ValueError(f"key {kid} holds private members; a JWK Set must publish public keys only")
    if kty not in ("EC", "RSA"):
        raise ValueError(f"key {kid} has unsupported key type {kty!r}")  # `oct` keys are never loaded
    if alg is None:  # the key type decides: one algorithm per type is accepted
        alg = "ES256" if kty == "EC" else "RS256"
    if SUPPORTED_ALGS.get(alg) != kty:
        raise ValueError(f"key {kid} has algorithm {alg!r}, not one of {sorted(SUPPORTED_ALGS)} for {kty}")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise ValueError(f"key {kid} may not verify (key_ops={ops})")
    if kty == "EC" and jwk.get("crv") != "P-256":
        raise ValueError(f"key {kid} is not on curve P-256")
    # the imported key carries its `alg`, so joserfc refuses it for any other algorithm a header names
    members = {**jwk, "alg": alg}
    key: ECKey | RSAKey
    try:
        key = ECKey.import_key(members) if kty == "EC" else RSAKey.import_key(members)  # EC: checks the point
    except (JoseError, ValueError, TypeError) as exc:
        raise ValueError(f"key {kid} does not load: {str(exc) or type(exc).__name__}") from None
    if isinstance(key, RSAKey) and key.public_key.key_size < MIN_RSA_BITS:
        raise ValueError(f"key {kid} is shorter than {MIN_RSA_BITS} bits")
    return VerificationKey(kid, alg, key)


def load_jwks(document: Any) -> dict[str, VerificationKey]:
    """The usable keys of a JWK Set by kid; unusable keys are skipped (and logged), duplicate kids refused."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set: expected an object with a `keys` array")
    keys: dict[str, VerificationKey] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, Mapping):
            continue
        try:
            vk = load_jwk(jwk)
        except ValueError as exc:
            log.warning("ignoring JWK: %s", exc)
            continue
        if vk.kid in keys:
            raise ValueError(f"kid {vk.kid} appears twice in the JWK Set")
        keys[vk.kid] = vk
    return keys


def max_age_of(cache_control: str | None) -> float | None:
    """The freshness lifetime a `Cache-Control` header grants (0 for no-store/no-cache), or None."""
    if not cache_control:
        return None
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return 0.0
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else None


class JwksSource:
    """The signing keys of an issuer: from a JWKS URL (cached, refetched with a floor) or a static JWK Set."""

    def __init__(
        self,
        url: str | None = None,
        *,
        jwks: Mapping[str, Any] | None = None,
        min_refetch_seconds: float = 10.0,
        min_max_age: float = 60.0,
        max_max_age: float = 86_400.0,
        default_max_age: float = 300.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        client: OutboundClient | None = None,
    ) -> None:
        """`client`: fetch through this guarded client (for a URL an app supplied) instead of a plain session."""
        if (url is None) == (jwks is None):
            raise ValueError("give either a JWKS URL or a static JWK Set")
        self.url = url
        self.min_refetch_seconds = min_refetch_seconds
        self.min_max_age, self.max_max_age, self.default_max_age = min_max_age, max_max_age, default_max_age
        self.timeout = timeout
        self._clock = clock
        self._keys: dict[str, VerificationKey] = load_jwks(jwks) if jwks is not None else {}
        self._expires = float("inf") if jwks is not None else float("-inf")
        self._last_attempt: float | None = None
        self._inflight: asyncio.Future[bool] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._client = client
        #: completed fetch attempts (successful or not)
        self.fetches = 0

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> JwksSource:
        """A source holding a fixed JWK Set (tests, in-process verification)."""
        return cls(jwks=jwks)

    @property
    def kids(self) -> frozenset[str]:
        """The kids currently known."""
        return frozenset(self._keys)

    def get(self, kid: str, *, allow_stale: bool = False) -> VerificationKey | None:
        """The key for `kid` if known and the cache is fresh (or `allow_stale`); never fetches."""
        if not allow_stale and self._clock() >= self._expires:
            return None
        return self._keys.get(kid)

    def known(self, kid: str) -> bool:
        """True while `kid` is in the current key set (fresh or stale)."""
        return kid in self._keys

    async def key(self, kid: str) -> VerificationKey | None:
        """The key for `kid`, fetching the JWK Set when it is stale or lacks the kid (at most once per floor)."""
        vk = self.get(kid)
        if vk is not None or self.url is None:
            return vk if vk is not None else self.get(kid, allow_stale=True)
        await self.refresh()
        return self._keys.get(kid)

    async def refresh(self, *, force: bool = False) -> bool:
        """Fetch the JWK Set unless a fetch ran within `min_refetch_seconds`; concurrent callers share one fetch."""
        if self.url is None:
            return False
        if self._inflight is not None:
            return await asyncio.shield(self._inflight)
        now = self._clock()
        if not force and self._last_attempt is not None and now - self._last_attempt < self.min_refetch_seconds:
            return False
        self._last_attempt = now
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inflight = future
        ok = False
        try:
            ok = await self._fetch(self.url)
        finally:  # also when cancelled: the callers sharing this fetch see it as failed
            self._inflight = None
            self.fetches += 1
            future.set_result(ok)
        return ok

    async def _get(self, url: str) -> tuple[int, str | None, bytes]:
        """Status, Cache-Control and at most MAX_JWKS_BYTES + 1 bytes of the body."""
        if self._client is not None:
            got = await self._client.request("GET", url, headers={"Accept": "application/json"})
            return got.status, got.headers.get("Cache-Control"), got.body
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        async with self._session.get(url, headers={"Accept": "application/json"}) as resp:
            return resp.status, resp.headers.get("Cache-Control"), await resp.content.read(MAX_JWKS_BYTES + 1)

    async def _fetch(self, url: str) -> bool:
        try:
            status, cache_control, body = await self._get(url)
            if status != 200:
                log.warning("JWKS fetch from %s answered %s", url, status)
                return False
            if len(body) > MAX_JWKS_BYTES:
                log.warning("JWKS at %s is larger than %d bytes", url, MAX_JWKS_BYTES)
                return False
            max_age = max_age_of(cache_control)
            keys = load_jwks(orjson.loads(body))
        except (aiohttp.ClientError, OutboundError, TimeoutError, orjson.JSONDecodeError, ValueError) as exc:
            log.warning("JWKS fetch from %s failed: %s", url, exc)
            return False
        age = self.default_max_age if max_age is None else max_age
        self._keys = keys
        self._expires = self._clock() + min(max(age, self.min_max_age), self.max_max_age)
        return True

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
