"""Revoking grants and tokens (RFC 7009), and telling verifiers through auth.token.revoked.v1.

Every function here works in the caller's transaction; the caller commits. Revoking a grant revokes its refresh
tokens at once, and verifiers deny its access tokens (claim `gid`) until the longest access-token lifetime passed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth.contract import TOKEN_REVOKED, TokenRevoked
from tongban_auth.issuance import MAX_ACCESS_TOKEN_SECONDS, SOURCE
from tongban_auth.models import Grant, RefreshToken, RevokedToken
from tongban_kit.db import on_commit
from tongban_kit.outbox import emit, utcnow

#: called with (jtis, grant ids) after a transaction that revoked them commits in this process
_listeners: list[Callable[[set[str], set[str]], None]] = []


def on_revoked(listener: Callable[[set[str], set[str]], None]) -> Callable[[], None]:
    """Call `listener(jtis, grant_ids)` after each committed revocation in this process; returns an undo."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def _notify(s: AsyncSession, jtis: set[str], grant_ids: set[str]) -> None:
    def run() -> None:
        for listener in list(_listeners):
            listener(jtis, grant_ids)

    on_commit(s, run)


async def revoke_grants(s: AsyncSession, grant_ids: Iterable[str], reason: str) -> list[str]:
    """Revoke grants not yet revoked, with their refresh tokens; one auth.token.revoked.v1 each; returns their ids."""
    ids = sorted(set(grant_ids))
    if not ids:
        return []
    now = utcnow()
    rows = (
        await s.exec(
            update(Grant)
            .where(col(Grant.id).in_(ids), col(Grant.revoked_at).is_(None))
            .values(revoked_at=now, revoke_reason=reason[:40])
            .returning(col(Grant.id), col(Grant.client_id), col(Grant.user_id))
        )
    ).all()
    revoked = [r[0] for r in rows]
    if not revoked:
        return []
    await s.exec(
        update(RefreshToken)
        .where(col(RefreshToken.grant_id).in_(revoked), col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    until = now + timedelta(seconds=MAX_ACCESS_TOKEN_SECONDS)
    for grant_id, client_id, user_id in rows:
        data = TokenRevoked(grant_id=grant_id, client_id=client_id, sub=user_id, reason=reason, expires_at=until)
        emit(s, TOKEN_REVOKED, data, source=SOURCE, subject=user_id)
    _notify(s, set(), set(revoked))
    return revoked


async def revoke_session_grants(s: AsyncSession, sid: str, reason: str, *, include_offline: bool = False) -> list[str]:
    """Revoke the grants made in a single sign-on session (logout); `offline_access` grants survive unless
    `include_offline` (e.g. signing out everywhere). Returns the ids revoked."""
    rows = (
        await s.exec(select(Grant.id, Grant.scopes).where(Grant.session_id == sid, col(Grant.revoked_at).is_(None)))
    ).all()
    ids = [gid for gid, scopes in rows if include_offline or "offline_access" not in (scopes or [])]
    return await revoke_grants(s, ids, reason)


async def revoke_access_token(
    s: AsyncSession,
    *,
    jti: str,
    client_id: str,
    expires_at: datetime,
    grant_id: str | None = None,
    sub: str | None = None,
    reason: str = "revoked",
) -> bool:
    """Deny one access token until it expires; False when it was revoked already (no second event)."""
    values = {
        "jti": jti,
        "client_id": client_id,
        "grant_id": grant_id,
        "revoked_at": utcnow(),
        "expires_at": expires_at,
    }
    dialect = (await s.connection()).dialect.name
    table = RevokedToken.__table__  # type: ignore[attr-defined]
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(table).values(values).on_conflict_do_nothing()
    res = await s.exec(stmt)
    if not res.rowcount:
        return False
    data = TokenRevoked(jti=jti, grant_id=None, client_id=client_id, sub=sub, reason=reason, expires_at=expires_at)
    emit(s, TOKEN_REVOKED, data, source=SOURCE, subject=sub or client_id)
    _notify(s, {jti}, set())
    return True


async def revoke_refresh_token(s: AsyncSession, digest: str, client_id: str) -> bool:
    """Revoke the grant of a refresh token the client holds; False when unknown, another client's, or done already."""
    row = await s.get(RefreshToken, digest)
    if row is None or row.client_id != client_id:
        return False
    return bool(await revoke_grants(s, [row.grant_id], "revoked"))


async def purge_expired(s: AsyncSession) -> int:
    """Delete revoked-token rows past their expiry (nothing they cover is valid any more)."""
    res = await s.exec(delete(RevokedToken).where(col(RevokedToken.expires_at) < utcnow()))
    return int(res.rowcount or 0)
