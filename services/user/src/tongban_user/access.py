"""Who may see and change which accounts: whole-tree admins, delegated org admins (asked of the org service on
each request), self."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from tongban_kit.problems import Problem
from tongban_kit.rpc import RpcClient, RpcError
from tongban_org.contract import (
    RPC_ADMIN_SCOPES,
    RPC_ADMINISTERED,
    RPC_MEMBERS,
    AdministeredReply,
    AdministeredRequest,
    AdminScopesReply,
    AdminScopesRequest,
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

    With the admin scope (`admin`), the caller's rights are asked of the org service during the request, never
    taken from the token, so a withdrawn grant stops working at once. A delegated administrator administers a
    staff account only if every post and admin grant of that person lies in its subtrees (the org service
    decides), and never one of `protected`, the administrators of the whole tree.
    """

    principal: str
    scopes: frozenset[str]
    bootstrap: bool
    self_id: str | None = None
    rpc: RpcClient | None = None
    rpc_timeout: float = 2.0
    admin: bool = False
    protected: frozenset[str] = frozenset()
    _scopes: AdminScopesReply | None = field(default=None, repr=False)
    _checked: dict[str, bool] = field(default_factory=dict, repr=False)

    async def _ask(self, user_ids: Iterable[str] = ()) -> AdminScopesReply | None:
        """The org service's answer on this caller's rights (and on `user_ids`), once per request and people."""
        if not self.admin or self.rpc is None:
            return None
        wanted = [u for u in dict.fromkeys(user_ids) if u not in self._checked]
        if self._scopes is None or wanted:
            reply = await _org(
                self.rpc.call(
                    RPC_ADMIN_SCOPES,
                    AdminScopesRequest(principal=self.principal, user_ids=wanted),
                    AdminScopesReply,
                    timeout=self.rpc_timeout,
                )
            )
            self._scopes = reply
            administered = set(reply.administers)
            self._checked.update((u, u in administered) for u in wanted)
        return self._scopes

    async def admin_roots(self) -> list[str]:
        """Org subtrees this caller administers now (`["*"]`: the whole tree; empty when none)."""
        reply = await self._ask()
        if reply is None:
            return []
        return ["*"] if reply.all else reply.unit_ids

    async def administers_staff(self, user_id: str) -> bool:
        """True if this caller administers the person (never someone who administers the whole tree, from below)."""
        if self.bootstrap:
            return True
        reply = await self._ask([user_id])
        if reply is None:
            return False
        if reply.all:
            return True
        return user_id not in self.protected and self._checked.get(user_id, False)

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
        """User ids of the staff a caller administers (None: every staff account)."""
        if self.bootstrap:
            return None
        if not self.admin or self.rpc is None:
            return set()
        out: set[str] = set()
        after: str | None = None
        while True:
            page = await _org(
                self.rpc.call(
                    RPC_ADMINISTERED,
                    AdministeredRequest(principal=self.principal, limit=1000, after=after),
                    AdministeredReply,
                    timeout=self.rpc_timeout,
                )
            )
            if page.all:
                return None
            out.update(page.user_ids)
            if not page.more or not page.user_ids:
                return out - self.protected
            if len(out) > member_cap:
                raise Problem(
                    422, f"you administer more than {member_cap} people; narrow the search", type="too-many-members"
                )
            after = page.user_ids[-1]

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
