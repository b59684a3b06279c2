"""Whether a token this service issued is still good: signature and claims, the revocation table, the grant.

Used by introspection, revocation, userinfo and token exchange. Revocation look-ups are cached for
`STATE_CACHE_SECONDS`; revocations made by this process clear the cache at commit, so only a revocation made by
another replica can take up to that long to be seen here.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import exists, null
from sqlmodel import col, select

from tongban_auth import keys
from tongban_auth.config import Settings
from tongban_auth.issuance import token_digest
from tongban_auth.models import Grant, RefreshToken, RevokedToken
from tongban_kit.db import Database
from tongban_kit.jwks import JwksSource
from tongban_kit.outbox import utcnow
from tongban_kit.tokens import InvalidToken, TokenVerifier, VerifiedToken

STATE_CACHE_SECONDS = 2.0
#: at most one reload of the published keys per this many seconds when a token names an unknown kid
KEY_RELOAD_SECONDS = 5.0


class TokenChecker:
    """Verifies this service's access tokens against its own published keys and revocation state."""

    def __init__(
        self, db: Database, settings: Settings, *, cache_seconds: float = STATE_CACHE_SECONDS, size: int = 50_000
    ) -> None:
        """Bind to the service database and settings."""
        self.db, self.settings, self.cache_seconds, self.size = db, settings, cache_seconds, size
        self._verifier: TokenVerifier | None = None
        self._loaded_at = float("-inf")
        self._jtis: dict[str, tuple[bool, float]] = {}
        self._grants: dict[str, tuple[bool, float]] = {}

    def forget(self, jtis: set[str], grant_ids: set[str]) -> None:
        """Drop cached state of tokens and grants that were just revoked."""
        for jti in jtis:
            self._jtis.pop(jti, None)
        for gid in grant_ids:
            self._grants.pop(gid, None)

    async def _load_keys(self) -> TokenVerifier:
        async with self.db.read_session() as s:
            doc = await keys.jwks(s)
        self._loaded_at = time.monotonic()
        self._verifier = TokenVerifier(
            JwksSource.from_jwks(doc),
            issuer=self.settings.issuer,
            audience=self.settings.api_audience,
            algorithms=self.settings.signing_algs,
            leeway=0.0,
        )
        return self._verifier

    async def verify(self, token: str) -> VerifiedToken:
        """Signature, type, issuer, audience and expiry of an access token; raises InvalidToken."""
        verifier = self._verifier or await self._load_keys()
        try:
            return await verifier.verify(token)
        except InvalidToken as exc:
            if exc.reason != "unknown_kid" or time.monotonic() - self._loaded_at < KEY_RELOAD_SECONDS:
                raise
        return await (await self._load_keys()).verify(token)  # a key published since the last load

    async def revoked(self, vt: VerifiedToken) -> bool:
        """Whether the token's jti, a token it came from (RFC 8693 subject tokens) or its grant was revoked."""
        now = time.monotonic()
        chain = [vt.jti, *vt.subject_jtis]
        jti_hits = [self._jtis.get(j) for j in chain]
        gid = vt.grant_id
        grant_hit = self._grants.get(gid) if gid else (False, float("inf"))
        if all(h is not None and h[1] > now for h in jti_hits) and grant_hit is not None and grant_hit[1] > now:
            return any(h[0] for h in jti_hits if h is not None) or grant_hit[0]
        jti_q = exists().where(col(RevokedToken.jti).in_(chain))
        grant_q: Any = select(Grant.revoked_at).where(Grant.id == gid).scalar_subquery() if gid else null()
        stmt = select(jti_q, grant_q)  # one round trip for both
        async with self.db.read_session() as s:
            row = (await s.exec(stmt)).one()
        jti_revoked = bool(row[0])
        grant_revoked = bool(gid) and row[1] is not None
        # a revoked chain is remembered on this token; an unrevoked one on every member (forget() drops the one
        # revoked next, so the miss sends this token back to the database)
        for j in [vt.jti] if jti_revoked else chain:
            self._remember(self._jtis, j, jti_revoked, now)
        if gid:
            self._remember(self._grants, gid, grant_revoked, now)
        return jti_revoked or grant_revoked

    def _remember(self, table: dict[str, tuple[bool, float]], key: str, value: bool, now: float) -> None:
        if len(table) >= self.size:
            table.pop(next(iter(table)))
        table[key] = (value, now + self.cache_seconds)

    async def active(self, token: str) -> VerifiedToken | None:
        """The verified token when valid and not revoked, else None."""
        try:
            vt = await self.verify(token)
        except InvalidToken:
            return None
        return None if await self.revoked(vt) else vt

    async def refresh_state(self, token: str) -> tuple[RefreshToken, Grant] | None:
        """A refresh token that is current (not rotated, revoked or expired) with its live grant, else None."""
        if not 0 < len(token) <= 200:
            return None
        async with self.db.read_session() as s:
            row = await s.get(RefreshToken, token_digest(token))
            grant = await s.get(Grant, row.grant_id) if row is not None else None
        now = utcnow()
        if row is None or grant is None or row.rotated_at or row.revoked_at or row.expires_at <= now:
            return None
        if grant.revoked_at or grant.expires_at <= now:
            return None
        return row, grant


def introspection_of(vt: VerifiedToken) -> dict[str, Any]:
    """The RFC 7662 answer for an active access token."""
    claims = vt.claims
    out: dict[str, Any] = {"active": True, "token_type": "Bearer"}
    for name in ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti", "act", "sid", "auth_time", "acr"):
        if name in claims:
            out[name] = claims[name]
    return out


def refresh_introspection(row: RefreshToken, grant: Grant, issuer: str) -> dict[str, Any]:
    """The RFC 7662 answer for an active refresh token."""
    return {
        "active": True,
        "token_type": "refresh_token",
        "scope": " ".join(row.scopes),
        "client_id": row.client_id,
        "sub": grant.user_id,
        "aud": row.client_id,
        "iss": issuer,
        "exp": int(row.expires_at.timestamp()),
        "iat": int(row.created_at.timestamp()),
    }
