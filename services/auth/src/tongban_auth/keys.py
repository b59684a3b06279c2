"""Signing keys: generation, sealing at rest, the next → active → retired rotation and the published JWKS."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth.config import Settings
from tongban_auth.contract import KEY_ROTATED, KeyRotated
from tongban_auth.models import KeyState, SigningKey
from tongban_kit.db import Database
from tongban_kit.outbox import emit, utcnow
from tongban_kit.secrets import SecretBox

log = logging.getLogger(__name__)

SOURCE = "/tongban/auth"
KEY_INFO = b"tongban-auth/signing-key/aes-256-gcm/v1"
PrivateKey = ECKey | RSAKey
STATE_ORDER = {KeyState.active: 0, KeyState.next: 1, KeyState.retired: 2}


class RotationTooEarly(RuntimeError):
    """The next key has not been published long enough for verifiers' caches to know it."""


def make_box(settings: Settings) -> SecretBox:
    """The cipher sealing private keys, from settings."""
    return SecretBox(settings.key_encryption_key, KEY_INFO, settings.old_key_encryption_keys)


def generate(alg: str, rsa_bits: int = 3072) -> PrivateKey:
    """A new private key for a signing algorithm."""
    if alg == "ES256":
        return ECKey.generate_key("P-256", private=True)
    if alg == "RS256":
        return RSAKey.generate_key(rsa_bits, private=True)
    raise ValueError(f"unsupported signing algorithm {alg}")


def public_jwk(key: PrivateKey, alg: str) -> dict[str, Any]:
    """The published JWK of a key: public members, RFC 7638 thumbprint as `kid`, `alg` and `use`."""
    jwk: dict[str, Any] = dict(key.as_dict(private=False))
    jwk.update(kid=key.thumbprint(), alg=alg, use="sig")
    return jwk


def new_row(key: PrivateKey, alg: str, state: KeyState, box: SecretBox) -> SigningKey:
    """A table row for a key; the private part (PKCS#8 PEM) is sealed and bound to the kid."""
    kid = key.thumbprint()
    pem = key.as_pem(private=True)
    now = utcnow()
    return SigningKey(
        kid=kid,
        alg=alg,
        state=state,
        public_jwk=public_jwk(key, alg),
        private_key_enc=box.seal(pem, kid.encode()),
        created_at=now,
        activated_at=now if state == KeyState.active else None,
    )


def load_private(row: SigningKey, box: SecretBox) -> PrivateKey:
    """Unseal a row's private key; it must match the published kid."""
    pem = box.open(row.private_key_enc, row.kid.encode())
    key: PrivateKey = ECKey.import_key(pem) if row.alg == "ES256" else RSAKey.import_key(pem)
    if key.thumbprint() != row.kid:
        raise ValueError(f"signing key {row.kid} does not match its private part")
    return key


async def _live(s: AsyncSession, alg: str, *, lock: bool = False) -> dict[KeyState, SigningKey]:
    stmt = select(SigningKey).where(SigningKey.alg == alg, col(SigningKey.state) != KeyState.retired)
    if lock:
        stmt = stmt.with_for_update()
    return {KeyState(r.state): r for r in (await s.exec(stmt)).all()}


async def ensure_keys(db: Database, settings: Settings, box: SecretBox) -> None:
    """Give every configured algorithm an active and a next key (start-up; safe with several replicas)."""
    for alg in settings.signing_algs:
        async with db.session() as s:
            live = await _live(s, alg)
            missing = [st for st in (KeyState.active, KeyState.next) if st not in live]
            if not missing:
                continue
            for state in missing:
                s.add(new_row(generate(alg, settings.rsa_key_bits), alg, state, box))
            try:
                await s.commit()
                log.info("created signing keys", extra={"alg": alg, "states": [m.value for m in missing]})
            except IntegrityError:  # another replica created them first
                await s.rollback()


async def rotate(
    db: Database,
    settings: Settings,
    box: SecretBox,
    alg: str,
    *,
    min_next_age: timedelta | None = None,
    actor: str | None = None,
) -> KeyRotated:
    """Make the next key active, retire the active one with overlap, publish a fresh next key; purge expired keys."""
    if alg not in settings.signing_algs:
        raise ValueError(f"{alg} is not one of the configured signing algorithms {settings.signing_algs}")
    min_age = timedelta(seconds=settings.jwks_max_age_seconds) if min_next_age is None else min_next_age
    fresh_next = new_row(generate(alg, settings.rsa_key_bits), alg, KeyState.next, box)
    async with db.session() as s:
        live = await _live(s, alg, lock=True)
        now = utcnow()
        nxt = live.get(KeyState.next)
        if nxt is not None and now - nxt.created_at < min_age:
            raise RotationTooEarly(
                f"the next {alg} key {nxt.kid} was published {int((now - nxt.created_at).total_seconds())} s ago; "
                f"verifiers may cache the JWKS for {int(min_age.total_seconds())} s"
            )
        old = live.get(KeyState.active)
        retire_after: datetime | None = None
        if old is not None:
            retire_after = now + timedelta(seconds=settings.max_token_lifetime_seconds + settings.jwks_max_age_seconds)
            old.state, old.retired_at, old.retire_after = KeyState.retired, now, retire_after
            s.add(old)
            await s.flush()
        if nxt is None:  # no pre-published key: the new one signs at once
            nxt = new_row(generate(alg, settings.rsa_key_bits), alg, KeyState.active, box)
        nxt.state, nxt.activated_at = KeyState.active, now
        s.add(nxt)
        await s.flush()
        s.add(fresh_next)
        await purge_expired(s, now)
        data = KeyRotated(
            alg=alg,
            active_kid=nxt.kid,
            next_kid=fresh_next.kid,
            retired_kid=old.kid if old else None,
            retire_after=retire_after,
            actor=actor,
        )
        emit(s, KEY_ROTATED, data, source=SOURCE, subject=nxt.kid)
        await s.commit()
    log.info("rotated signing key", extra={"alg": alg, "kid": data.active_kid, "retired": data.retired_kid})
    return data


async def purge_expired(s: AsyncSession, now: datetime | None = None) -> int:
    """Delete retired keys past their `retire_after` (in the caller's transaction)."""
    res = await s.exec(
        delete(SigningKey).where(
            col(SigningKey.state) == KeyState.retired, col(SigningKey.retire_after) < (now or utcnow())
        )
    )
    return int(res.rowcount or 0)


async def published(s: AsyncSession, now: datetime | None = None) -> list[SigningKey]:
    """Keys verifiers must know: active, next and retired keys still within their overlap."""
    now = now or utcnow()
    rows = (await s.exec(select(SigningKey))).all()
    keep = [r for r in rows if r.state != KeyState.retired or (r.retire_after is not None and r.retire_after > now)]
    return sorted(keep, key=lambda r: (STATE_ORDER[KeyState(r.state)], r.alg, r.created_at))


async def jwks(s: AsyncSession) -> dict[str, Any]:
    """The JWK Set document."""
    return {"keys": [dict(r.public_jwk) for r in await published(s)]}


async def active_key(s: AsyncSession, alg: str) -> SigningKey | None:
    """The key that signs with `alg` now."""
    stmt = select(SigningKey).where(SigningKey.alg == alg, SigningKey.state == KeyState.active)
    return (await s.exec(stmt)).first()
