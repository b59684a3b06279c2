"""Seed the Zhejiang demo directory (idempotent: units already present by key are skipped)."""

from __future__ import annotations

import logging

from sqlmodel import col, select

from tongban_kit.db import Database
from tongban_kit.demo import DEMO_STAFF, demo_user_id
from tongban_org import tree
from tongban_org.authz import Principal
from tongban_org.entitlements import create_send_grant
from tongban_org.memberships import add_membership, create_grant
from tongban_org.models import (
    AdminGrant,
    AdminGrantCreate,
    Level,
    Membership,
    MembershipCreate,
    SendGrant,
    SendGrantCreate,
    Unit,
    UnitCreate,
    UnitType,
)
from tongban_org.seed_data import SEED_UNITS

log = logging.getLogger(__name__)

#: demo delegated administrators: username → seed key of the subtree they administer (granted to the account id,
#: the `sub` of their access tokens; `demo-admin` administers the whole tree through `bootstrap_admins`)
DEMO_GRANTS = {"hz-admin": "zj-hz", "dsj-admin": "zj-dsj"}
#: demo sending rights: username → seed key of the subtree whose members they may address (administrators may
#: address the subtrees they administer without one)
DEMO_SEND_GRANTS = {"demo-staff": "zj-dsj"}


async def seed(db: Database) -> dict[str, str]:
    """Create missing seed units and demo grants; returns seed key → unit id."""
    system = Principal("seed", bootstrap=True)
    ids: dict[str, str] = {}
    created = 0
    async with db.session() as s:
        for su in SEED_UNITS:
            parent_id = ids.get(su.parent_key) if su.parent_key else None
            stmt = select(Unit).where(col(Unit.name) == su.name, col(Unit.division_code) == su.division_code)
            existing = (await s.exec(stmt)).first()
            if existing is not None:
                ids[su.key] = existing.id
                continue
            unit = await tree.create_unit(
                s,
                data=UnitCreate(
                    name=su.name,
                    short_name=su.short_name,
                    type=UnitType(su.type),
                    level=Level(su.level),
                    division_code=su.division_code,
                    credit_code=su.credit_code,
                    tags=list(su.tags),
                    sort_order=su.sort_order,
                    parent_id=parent_id,
                ),
                principal=system,
            )
            ids[su.key] = unit.id
            created += 1
        for username, key in DEMO_GRANTS.items():
            principal = demo_user_id(username)
            have = (await s.exec(select(AdminGrant).where(col(AdminGrant.principal) == principal))).first()
            if have is None:
                await create_grant(s, data=AdminGrantCreate(principal=principal, unit_id=ids[key]), principal=system)
        for username, key in DEMO_SEND_GRANTS.items():
            principal = demo_user_id(username)
            have_s = (await s.exec(select(SendGrant).where(col(SendGrant.principal) == principal))).first()
            if have_s is None:
                data = SendGrantCreate(principal=principal, unit_id=ids[key])
                await create_send_grant(s, data=data, principal=system)
        for username, (_name, key, title, leader) in DEMO_STAFF.items():
            uid = demo_user_id(username)
            have_m = (await s.exec(select(Membership).where(col(Membership.user_id) == uid))).first()
            if have_m is None:
                await add_membership(
                    s,
                    data=MembershipCreate(
                        user_id=uid, unit_id=ids[key], title=title, is_primary=True, is_leader=leader
                    ),
                    principal=system,
                )
    log.info("seeded organisation directory", extra={"units_created": created, "seed_units": len(SEED_UNITS)})
    return ids
