"""Signing JWTs with the active key: header `alg`, `kid` and `typ`; the key is cached briefly per algorithm."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from joserfc import jwt

from tongban_auth import keys
from tongban_auth.config import Settings
from tongban_kit.db import Database
from tongban_kit.secrets import SecretBox


class NoSigningKey(RuntimeError):
    """No active key for the algorithm (the service creates them at start-up)."""


@dataclass(frozen=True)
class LoadedKey:
    """An unsealed active key."""

    kid: str
    alg: str
    key: keys.PrivateKey
    loaded_at: float


def sign_with(key: LoadedKey, claims: dict[str, Any], typ: str) -> str:
    """A compact JWS of the claims, signed by `key`."""
    header = {"alg": key.alg, "kid": key.kid, "typ": typ}
    return jwt.encode(header, claims, key.key, algorithms=[key.alg])


class Signer:
    """Signs tokens with the active key of an algorithm; picks up a rotation within `cache_seconds`."""

    def __init__(self, db: Database, box: SecretBox, settings: Settings) -> None:
        """Bind to the service database and the key cipher."""
        self.db = db
        self.box = box
        self.default_alg = settings.default_alg
        self.cache_seconds = settings.signing_key_cache_seconds
        self._cache: dict[str, LoadedKey] = {}
        self._lock = asyncio.Lock()

    def forget(self) -> None:
        """Drop cached keys (after a rotation in this process)."""
        self._cache.clear()

    async def key(self, alg: str | None = None) -> LoadedKey:
        """The active key of `alg` (default: the first configured algorithm)."""
        alg = alg or self.default_alg
        cached = self._cache.get(alg)
        if cached is not None and time.monotonic() - cached.loaded_at < self.cache_seconds:
            return cached
        async with self._lock:
            async with self.db.read_session() as s:
                row = await keys.active_key(s, alg)
            if row is None:
                raise NoSigningKey(f"no active {alg} signing key")
            if cached is not None and cached.kid == row.kid:
                loaded = LoadedKey(cached.kid, alg, cached.key, time.monotonic())
            else:
                loaded = LoadedKey(row.kid, alg, keys.load_private(row, self.box), time.monotonic())
            self._cache[alg] = loaded
            return loaded

    async def sign(self, claims: dict[str, Any], typ: str, *, alg: str | None = None) -> str:
        """Sign `claims` as a JWT of type `typ` (e.g. `at+jwt`, `JWT`, `logout+jwt`) with the active key."""
        return sign_with(await self.key(alg), claims, typ)
