"""Single sign-on sessions: the browser holds a random cookie, the table holds its digest.

A session lasts `session_idle_seconds` without activity and at most `session_max_seconds`. Ending a session
(logout, sign-out everywhere, an administrator) revokes the grants made in it that do not have offline access,
and publishes `auth.session.ended.v1`; the back-channel logout consumer tells the clients.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth.config import Settings
from tongban_auth.contract import LOGIN_SUCCEEDED, SESSION_ENDED, LoginSucceeded, SessionEnded
from tongban_auth.models import Grant, LoginSession
from tongban_kit.outbox import emit, utcnow

SOURCE = "/tongban/auth"
#: how often `last_seen_at` is written at most (sessions are read on every authorization request)
TOUCH_SECONDS = 60


def digest(value: str) -> str:
    """Hex SHA-256 of a cookie value."""
    return hashlib.sha256(value.encode()).hexdigest()


def cookie_name(settings: Settings) -> str:
    """The SSO cookie's name: `__Host-` prefixed when cookies are Secure (RFC 6265bis)."""
    return f"__Host-{settings.session_cookie}" if settings.cookie_secure else settings.session_cookie


def is_live(row: LoginSession, settings: Settings, now: datetime | None = None) -> bool:
    """Whether a session is neither ended nor past its idle or absolute limit."""
    now = now or utcnow()
    if row.ended_at is not None or row.expires_at <= now:
        return False
    return now - row.last_seen_at < timedelta(seconds=settings.session_idle_seconds)


async def find(s: AsyncSession, cookie: str | None, settings: Settings) -> LoginSession | None:
    """The live session a cookie names, or None."""
    if not cookie or len(cookie) > 200:
        return None
    row = (await s.exec(select(LoginSession).where(LoginSession.cookie_digest == digest(cookie)))).first()
    if row is None or not is_live(row, settings):
        return None
    return row


async def touch(s: AsyncSession, row: LoginSession) -> None:
    """Record activity (at most once a minute); the caller commits."""
    now = utcnow()
    if now - row.last_seen_at >= timedelta(seconds=TOUCH_SECONDS):
        row.last_seen_at = now
        s.add(row)


async def start(
    s: AsyncSession,
    settings: Settings,
    *,
    user_id: str,
    amr: list[str],
    acr: str,
    ip: str | None,
    user_agent: str | None,
    client_id: str | None,
    replace: LoginSession | None = None,
) -> tuple[LoginSession, str]:
    """Start a session after a successful sign-in; returns the row and the cookie value (set it on the response).

    A session of another person in the same browser (`replace`) ends first; the caller commits.
    """
    if replace is not None:
        await end(s, replace, "logout")
    now = utcnow()
    cookie = secrets.token_urlsafe(32)
    row = LoginSession(
        sid=secrets.token_urlsafe(24),
        cookie_digest=digest(cookie),
        user_id=user_id,
        auth_time=now,
        amr=list(dict.fromkeys(amr)),
        acr=acr,
        ip=ip,
        user_agent=(user_agent or "")[:300] or None,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=settings.session_max_seconds),
    )
    s.add(row)
    emit(
        s,
        LOGIN_SUCCEEDED,
        LoginSucceeded(user_id=user_id, sid=row.sid, amr=row.amr, acr=acr, client_id=client_id, ip=ip),
        source=SOURCE,
        subject=user_id,
    )
    return row, cookie


def rotate_cookie(row: LoginSession) -> str:
    """Give a session a new cookie value (the old one stops naming it); returns the value to set."""
    cookie = secrets.token_urlsafe(32)
    row.cookie_digest = digest(cookie)
    return cookie


def renew(s: AsyncSession, row: LoginSession, *, amr: list[str], acr: str, client_id: str | None) -> str:
    """The same person signed in again in this browser (`prompt=login`, `max_age`): a fresh `auth_time`.

    Returns the session's new cookie value: every sign-in changes the cookie (no session fixation).
    """
    now = utcnow()
    row.amr, row.acr, row.auth_time, row.last_seen_at = list(dict.fromkeys(amr)), acr, now, now
    cookie = rotate_cookie(row)
    s.add(row)
    emit(
        s,
        LOGIN_SUCCEEDED,
        LoginSucceeded(user_id=row.user_id, sid=row.sid, amr=row.amr, acr=acr, client_id=client_id, ip=row.ip),
        source=SOURCE,
        subject=row.user_id,
    )
    return cookie


def step_up(s: AsyncSession, row: LoginSession, *, amr: list[str], acr: str, client_id: str | None) -> str:
    """Add factors to a live session after a successful second factor (the caller commits).

    Returns the session's new cookie value: a cookie that named the weaker session does not gain the factor.
    """
    now = utcnow()
    row.amr = list(dict.fromkeys([*row.amr, *amr]))
    row.acr = acr
    row.auth_time = now
    row.last_seen_at = now
    cookie = rotate_cookie(row)
    s.add(row)
    emit(
        s,
        LOGIN_SUCCEEDED,
        LoginSucceeded(user_id=row.user_id, sid=row.sid, amr=row.amr, acr=acr, client_id=client_id, ip=row.ip),
        source=SOURCE,
        subject=row.user_id,
    )
    return cookie


async def end(s: AsyncSession, row: LoginSession, reason: str) -> list[str]:
    """End a session and revoke its grants without offline access; returns the revoked grant ids.

    Publishes `auth.session.ended.v1` (with the grant ids) and, through `revocation.revoke_grants`, one
    `auth.token.revoked.v1` per grant. The caller commits.
    """
    from tongban_auth import revocation

    if row.ended_at is not None:
        return []
    now = utcnow()
    row.ended_at, row.end_reason = now, reason
    s.add(row)
    grants = (await s.exec(select(Grant).where(Grant.session_id == row.sid, col(Grant.revoked_at).is_(None)))).all()
    ended = [g.id for g in grants if "offline_access" not in g.scopes]
    if ended:
        await revocation.revoke_grants(s, ended, "logout")
    emit(
        s,
        SESSION_ENDED,
        SessionEnded(sid=row.sid, user_id=row.user_id, reason=reason, grant_ids=[g.id for g in grants]),
        source=SOURCE,
        subject=row.user_id,
    )
    return ended


async def of_user(s: AsyncSession, user_id: str, settings: Settings) -> list[LoginSession]:
    """The live sessions of a person, newest first."""
    rows = (
        await s.exec(
            select(LoginSession)
            .where(LoginSession.user_id == user_id, col(LoginSession.ended_at).is_(None))
            .order_by(col(LoginSession.created_at).desc())
        )
    ).all()
    now = utcnow()
    return [r for r in rows if is_live(r, settings, now)]


async def end_all(s: AsyncSession, user_id: str, settings: Settings, reason: str = "signout_everywhere") -> int:
    """End every live session of a person (sign out everywhere); the caller commits."""
    rows = await of_user(s, user_id, settings)
    for row in rows:
        await end(s, row, reason)
    return len(rows)
