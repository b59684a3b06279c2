"""RPC handlers for other services (NATS Services API)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlmodel import col, select

from tongban_kit.app import Runtime
from tongban_org import entitlements as ent
from tongban_org import memberships as ms
from tongban_org import reach, tree
from tongban_org.cache import UnitCache
from tongban_org.config import Settings
from tongban_org.contract import (
    AddressCheckReply,
    AddressCheckRequest,
    AdministeredReply,
    AdministeredRequest,
    AdminScopesReply,
    AdminScopesRequest,
    AncestorsRequest,
    ContainsUserReply,
    ContainsUserRequest,
    EntitlementsReply,
    EntitlementsRequest,
    GetUnitsRequest,
    ListMembersRequest,
    MembersReply,
    UnitsReply,
)
from tongban_org.models import AdminGrant, Unit


def handlers(rt: Runtime, cache: UnitCache) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    """Handlers by endpoint name, bound to the runtime's database and the unit cache."""
    db = rt.db
    settings = rt.settings
    assert isinstance(settings, Settings)

    async def get_units(req: GetUnitsRequest) -> UnitsReply:
        found = await cache.get_many(list(dict.fromkeys(req.ids)))
        return UnitsReply(units=[found[i] for i in dict.fromkeys(req.ids) if i in found])

    async def ancestors(req: AncestorsRequest) -> UnitsReply:
        async with db.read_session() as s:
            unit = await tree.get_unit(s, unit_id=req.unit_id)
            return UnitsReply(units=await tree.ancestors(s, unit=unit))

    async def members(req: ListMembersRequest) -> MembersReply:
        async with db.read_session() as s:
            unit = await tree.get_unit(s, unit_id=req.unit_id)
            page = await ms.list_members(s, unit=unit, recursive=req.recursive, limit=req.limit, cursor=req.cursor)
        return MembersReply(items=page.items, next_cursor=page.next_cursor)

    async def contains_user(req: ContainsUserRequest) -> ContainsUserReply:
        async with db.read_session() as s:
            unit = await tree.get_unit(s, unit_id=req.unit_id)
            ids = await ms.user_in_subtree(s, unit=unit, user_id=req.user_id)
        return ContainsUserReply(contains=bool(ids), unit_ids=ids)

    protected = frozenset(settings.bootstrap_admins)

    async def admin_scopes(req: AdminScopesRequest) -> AdminScopesReply:
        async with db.read_session() as s:
            if req.principal in protected:  # the whole tree: every root
                roots = (await s.exec(select(Unit.id).where(col(Unit.parent_id).is_(None)))).all()
                asked = list(dict.fromkeys(req.user_ids))
                return AdminScopesReply(all=True, unit_ids=sorted(roots), administers=asked)
            rows = (await s.exec(select(AdminGrant.unit_id).where(col(AdminGrant.principal) == req.principal))).all()
            administers: list[str] = []
            if req.user_ids and rows:
                paths = await reach.root_paths(s, rows)
                administers = await reach.administered(s, roots=paths, protected=protected, user_ids=req.user_ids)
        return AdminScopesReply(all=False, unit_ids=sorted(set(rows)), administers=administers)

    async def administered(req: AdministeredRequest) -> AdministeredReply:
        if req.principal in protected:
            return AdministeredReply(all=True, user_ids=[], more=False)
        async with db.read_session() as s:
            rows = (await s.exec(select(AdminGrant.unit_id).where(col(AdminGrant.principal) == req.principal))).all()
            paths = await reach.root_paths(s, rows)
            ids = await reach.administered(s, roots=paths, protected=protected, after=req.after, limit=req.limit + 1)
        return AdministeredReply(all=False, user_ids=ids[: req.limit], more=len(ids) > req.limit)

    async def entitlements(req: EntitlementsRequest) -> EntitlementsReply:
        async with db.read_session() as s:
            return await ent.entitlements(s, principal=req.principal, bootstrap_admins=settings.bootstrap_admins)

    async def address_check(req: AddressCheckRequest) -> AddressCheckReply:
        async with db.read_session() as s:
            return await ent.address_check(s, roots=req.roots, unit_id=req.unit_id, user_ids=req.user_ids)

    return {
        "units-get": get_units,
        "entitlements": entitlements,
        "address-check": address_check,
        "units-ancestors": ancestors,
        "members-list": members,
        "subtree-contains-user": contains_user,
        "admin-scopes": admin_scopes,
        "admin-administered": administered,
    }
