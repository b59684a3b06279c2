"""Consents: the scopes a person approved for an app, remembered until they withdraw them."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth.models import Consent, Grant
from tongban_kit.outbox import utcnow


async def approved(s: AsyncSession, user_id: str, client_id: str) -> set[str]:
    """The scopes `user_id` approved for `client_id` (empty when none)."""
    row = await s.get(Consent, (user_id, client_id))
    return set(row.scopes) if row is not None else set()


def needs_consent(requested: list[str], already: set[str]) -> list[str]:
    """The requested scopes not yet approved (`openid` alone needs no approval: it only names the person)."""
    return [sc for sc in requested if sc not in already and sc != "openid"]


async def approve(s: AsyncSession, user_id: str, client_id: str, scopes: list[str]) -> None:
    """Remember approval of `scopes` (added to earlier ones); the caller commits."""
    now = utcnow()
    row = await s.get(Consent, (user_id, client_id))
    if row is None:
        s.add(Consent(user_id=user_id, client_id=client_id, scopes=sorted(set(scopes)), granted_at=now, updated_at=now))
        return
    row.scopes = sorted(set(row.scopes) | set(scopes))
    row.updated_at = now
    s.add(row)


async def of_user(s: AsyncSession, user_id: str) -> list[Consent]:
    """Every consent of a person, newest first."""
    stmt = select(Consent).where(Consent.user_id == user_id).order_by(col(Consent.updated_at).desc())
    return list((await s.exec(stmt)).all())


async def withdraw(s: AsyncSession, user_id: str, client_id: str) -> list[str]:
    """Forget the consent and revoke every live grant of the person to the app; returns the revoked grant ids.

    The caller commits; each revoked grant publishes `auth.token.revoked.v1`.
    """
    from tongban_auth import revocation

    row = await s.get(Consent, (user_id, client_id))
    if row is not None:
        await s.delete(row)
    stmt = select(Grant.id).where(
        Grant.user_id == user_id, Grant.client_id == client_id, col(Grant.revoked_at).is_(None)
    )
    ids = list((await s.exec(stmt)).all())
    if ids:
        await revocation.revoke_grants(s, ids, "consent_revoked")
    return ids
