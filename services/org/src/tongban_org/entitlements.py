"""Entitlements the organisation directory grants: administration, sending rights (send grants), membership."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.outbox import emit
from tongban_kit.problems import Problem
from tongban_org.authz import Principal, path_ids
from tongban_org.contract import (
    SEND_GRANT_ADDED,
    SEND_GRANT_REMOVED,
    AddressCheckReply,
    EntitlementsReply,
    SendGrantChanged,
)
from tongban_org.models import (
    AdminGrant,
    Membership,
    SendGrant,
    SendGrantCreate,
    SendGrantPublic,
    Unit,
    UnitStatus,
)
from tongban_org.tree import SOURCE, _commit, get_unit, in_subtree

#: a root that stands for the whole tree
ALL = "*"


async def entitlements(s: AsyncSession, *, principal: str, bootstrap_admins: Iterable[str]) -> EntitlementsReply:
    """What `principal` may do: subtrees it administers, subtrees it may address, units it belongs to."""
    members = select(Membership.unit_id).join(Unit, col(Unit.id) == col(Membership.unit_id))
    member_units = sorted(
        (await s.exec(members.where(col(Membership.user_id) == principal, col(Unit.status) == UnitStatus.active))).all()
    )
    if principal in set(bootstrap_admins):
        roots = sorted((await s.exec(select(Unit.id).where(col(Unit.parent_id).is_(None)))).all())
        return EntitlementsReply(
            admin_all=True, admin_units=roots, send_all=True, send_units=roots, member_units=member_units
        )
    admin = set((await s.exec(select(AdminGrant.unit_id).where(col(AdminGrant.principal) == principal))).all())
    send = set((await s.exec(select(SendGrant.unit_id).where(col(SendGrant.principal) == principal))).all())
    return EntitlementsReply(
        admin_all=False,
        admin_units=sorted(admin),
        send_all=False,
        send_units=sorted(admin | send),
        member_units=member_units,
    )


async def address_check(
    s: AsyncSession, *, roots: list[str], unit_id: str | None, user_ids: list[str]
) -> AddressCheckReply:
    """Whether `unit_id` lies in one of the subtrees at `roots` and which `user_ids` are members of none."""
    if ALL in roots:
        return AddressCheckReply(unit_inside=None if unit_id is None else True, users_outside=[])
    paths = list((await s.exec(select(Unit.path).where(col(Unit.id).in_(roots)))).all()) if roots else []
    inside: bool | None = None
    if unit_id is not None:
        unit = await s.get(Unit, unit_id)
        inside = unit is not None and any(r in path_ids(unit.path) for r in roots)
    outside = list(dict.fromkeys(user_ids))
    if outside and paths:
        stmt = (
            select(Membership.user_id)
            .join(Unit, col(Unit.id) == col(Membership.unit_id))
            .where(col(Membership.user_id).in_(outside), or_(*(in_subtree(p) for p in paths)))
        )
        covered = set((await s.exec(stmt)).all())
        outside = [u for u in outside if u not in covered]
    return AddressCheckReply(unit_inside=inside, users_outside=outside)


def send_grant_public(g: SendGrant) -> SendGrantPublic:
    """The API view of a send grant."""
    return SendGrantPublic.model_validate(g, from_attributes=True)


async def list_send_grants(s: AsyncSession, *, principal: str | None, unit_id: str | None) -> list[SendGrantPublic]:
    """Send grants, optionally of one principal or one unit (at most 1000)."""
    stmt = select(SendGrant)
    if principal:
        stmt = stmt.where(col(SendGrant.principal) == principal)
    if unit_id:
        stmt = stmt.where(col(SendGrant.unit_id) == unit_id)
    rows = (await s.exec(stmt.order_by(col(SendGrant.id)).limit(1000))).all()
    return [send_grant_public(g) for g in rows]


async def create_send_grant(s: AsyncSession, *, data: SendGrantCreate, principal: Principal) -> SendGrantPublic:
    """Let a principal address a subtree the caller administers (409 when it may already)."""
    unit = await get_unit(s, unit_id=data.unit_id)
    await principal.require(s, unit.path, "grant sending rights to this subtree")
    if unit.status != UnitStatus.active:
        raise Problem(409, "a dissolved unit cannot be addressed", type="unit-dissolved")
    have = await s.exec(
        select(SendGrant.id).where(col(SendGrant.principal) == data.principal, col(SendGrant.unit_id) == unit.id)
    )
    if have.first() is not None:
        raise Problem(409, f"{data.principal} may already address this subtree", type="conflict")
    grant = SendGrant(principal=data.principal, unit_id=unit.id, created_by=principal.id)
    s.add(grant)
    await s.flush()
    out = send_grant_public(grant)
    emit(s, SEND_GRANT_ADDED, SendGrantChanged(grant=out, actor=principal.id), source=SOURCE, subject=grant.id)
    await _commit(s)
    return out


async def delete_send_grant(s: AsyncSession, *, grant_id: str, principal: Principal) -> None:
    """Withdraw a sending right (the caller must administer its subtree); it stops working at once."""
    grant = await s.get(SendGrant, grant_id)
    if grant is None:
        raise Problem(404, f"no send grant with id {grant_id}", type="grant-not-found")
    unit = await get_unit(s, unit_id=grant.unit_id)
    await principal.require(s, unit.path, "withdraw sending rights to this subtree")
    out = send_grant_public(grant)
    await s.delete(grant)
    emit(s, SEND_GRANT_REMOVED, SendGrantChanged(grant=out, actor=principal.id), source=SOURCE, subject=grant_id)
    await _commit(s)
