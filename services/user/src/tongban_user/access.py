"""Who may see and change which accounts: whole-tree admins, delegated org admins (the token's `admin_units`), self."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from tongban_kit.problems import Problem
from tongban_kit.rpc import RpcClient, RpcError
from tongban_org.contract import (
    RPC_ADMIN_SCOPES,
    RPC_CONTAINS_USER,
    RPC_MEMBERS,
    AdminScopesReply,
    AdminScopesRequest,
    ContainsUserReply,
    ContainsUserRequest,
    ListMembersRequest,
    MembersReply,
)
from tongban_user.models import Kind, UserAccount

T = TypeVar("T")
PII_SCOPE = "user:pii"
#: the scope under which a token exercises its holder's administrative rights
ADMIN_SCOPE = "admin"
MAX_SUBTREE_MEMBERS = 20_000


@dataclass
class Caller:
    """The caller of a request: the token's subject (an account id, or a client id), its scopes and rights.

    `admin_units` are the roots of the org subtrees the caller administers, from the token's `admin_units`
    claim; None when the token has the admin scope but not the claim, and then the org service is asked once.
    """

    principal: str
    scopes: frozenset[str]
    bootstrap: bool
    self_id: str | None = None
    rpc: RpcClient | None = None
    rpc_timeout: float = 2.0
    admin_units: tuple[str, ...] | None = ()
    _roots: list[str] | None = field(default=None, repr=False)

    async def admin_roots(self) -> list[str]:
        """Org subtrees this caller administers (empty when none): the token's claim, else the org service."""
        if self._roots is None:
            if self.admin_units is not None:
                self._roots = list(self.admin_units)
            elif self.rpc is None:
                self._roots = []
            else:
                reply = await _org(
                    self.rpc.call(
                        RPC_ADMIN_SCOPES,
                        AdminScopesRequest(principal=self.principal),
                        AdminScopesReply,
                        timeout=self.rpc_timeout,
                    )
                )
                self._roots = ["*"] if reply.all else reply.unit_ids
        return self._roots

    async def administers_staff(self, user_id: str) -> bool:
        """True if the user is a member of a subtree this principal administers."""
        assert self.rpc is not None
        for root in await self.admin_roots():
            if root == "*":
                return True
            reply = await _org(
                self.rpc.call(
                    RPC_CONTAINS_USER,
                    ContainsUserRequest(unit_id=root, user_id=user_id),
                    ContainsUserReply,
                    timeout=self.rpc_timeout,
                )
            )
            if reply.contains:
                return True
        return False

    async def can_see(self, user: UserAccount) -> bool:
        """Whole-tree admins see everyone, org admins their subtrees' staff, everyone else only themselves."""
        if self.bootstrap or user.id == self.self_id:
            return True
        return user.kind == Kind.staff and await self.administers_staff(user.id)

    async def require_see(self, user: UserAccount) -> None:
        """404 for accounts the caller may not see (their existence is not revealed)."""
        if not await self.can_see(user):
            raise Problem(404, f"no user with id {user.id}", type="user-not-found")

    async def require_manage(self, user: UserAccount) -> None:
        """403 unless the caller may change this account (admins of it; people change their own contacts)."""
        await self.require_see(user)
        if self.bootstrap or user.id == self.self_id:
            return
        if not (user.kind == Kind.staff and await self.administers_staff(user.id)):
            raise Problem(403, "you may not change this account", type="forbidden")

    async def require_create(self, kind: Kind) -> None:
        """Whole-tree admins create any kind; org admins create staff."""
        if self.bootstrap:
            return
        if kind == Kind.staff and await self.admin_roots():
            return
        raise Problem(403, f"you may not create {kind.value} accounts", type="forbidden")

    async def visible_staff_ids(self, member_cap: int = MAX_SUBTREE_MEMBERS) -> set[str] | None:
        """User ids a delegated org admin may list (None: no restriction)."""
        if self.bootstrap:
            return None
        assert self.rpc is not None
        out: set[str] = set()
        for root in await self.admin_roots():
            if root == "*":
                return None
            out |= await subtree_member_ids(self.rpc, root, self.rpc_timeout, member_cap)
        return out

    def require_unmask(self, unmask: bool, purpose: str | None) -> bool:
        """Whether to unmask: needs the user:pii scope and a stated purpose."""
        if not unmask:
            return False
        if PII_SCOPE not in self.scopes:
            raise Problem(403, f"unmasking personal data needs the {PII_SCOPE} scope", type="insufficient-scope")
        if not purpose or not purpose.strip():
            raise Problem(400, "say why you need unmasked data: purpose=...", type="purpose-required")
        return True


async def subtree_member_ids(rpc: RpcClient, unit_id: str, timeout: float, cap: int) -> set[str]:
    """User ids of every member of a unit's subtree (paged over org RPC)."""
    out: set[str] = set()
    cursor: str | None = None
    while True:
        page = await _org(
            rpc.call(
                RPC_MEMBERS,
                ListMembersRequest(unit_id=unit_id, recursive=True, limit=500, cursor=cursor),
                MembersReply,
                timeout=timeout,
            )
        )
        out |= {m.user_id for m in page.items}
        cursor = page.next_cursor
        if not cursor:
            return out
        if len(out) > cap:
            raise Problem(422, f"the unit has more than {cap} members; narrow the search", type="too-many-members")


async def _org(call: Awaitable[T]) -> T:
    """Await an org RPC call, turning failures into problems."""
    try:
        return await call
    except RpcError as exc:
        if exc.code == 404:
            raise Problem(404, exc.description, type="unit-not-found") from exc
        raise Problem(
            503, f"the organisation service could not answer: {exc.description}", type="dependency-unavailable"
        ) from exc
