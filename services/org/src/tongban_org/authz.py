"""Delegated administration (分级授权): who may write where in the tree."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.problems import Problem
from tongban_org.models import AdminGrant

#: the scope under which a token exercises its holder's administrative rights
ADMIN_SCOPE = "admin"


def path_ids(path: str) -> list[str]:
    """Unit ids along a materialised path, root first (the unit itself last)."""
    return [p for p in path.split("/") if p]


@dataclass
class Principal:
    """An administrator: an account id (a token's `sub`) and whether it administers the whole tree.

    `protected` are the administrators of the whole tree (`bootstrap_admins`): no delegated administrator
    reaches them.
    """

    id: str
    bootstrap: bool = False
    protected: frozenset[str] = frozenset()
    _granted: set[str] | None = field(default=None, repr=False)
    _paths: list[str] | None = field(default=None, repr=False)

    async def granted_roots(self, s: AsyncSession) -> set[str]:
        """Roots of the subtrees granted to this principal."""
        if self._granted is None:
            rows = await s.exec(select(AdminGrant.unit_id).where(col(AdminGrant.principal) == self.id))
            self._granted = set(rows.all())
        return self._granted

    async def granted_paths(self, s: AsyncSession) -> list[str]:
        """Paths of the roots of the subtrees granted to this principal."""
        if self._paths is None:
            from tongban_org.reach import root_paths

            self._paths = await root_paths(s, await self.granted_roots(s))
        return self._paths

    async def administers(self, s: AsyncSession, path: str) -> bool:
        """True if the unit at `path` lies in a subtree this principal administers."""
        if self.bootstrap:
            return True
        roots = await self.granted_roots(s)
        return any(uid in roots for uid in path_ids(path))

    async def require(self, s: AsyncSession, path: str, what: str) -> None:
        """Refuse with 403 unless the unit at `path` is inside a granted subtree."""
        if not await self.administers(s, path):
            raise Problem(
                403,
                f"{self.id} does not administer the subtree needed to {what}",
                type="outside-granted-subtree",
            )

    def require_bootstrap(self, what: str) -> None:
        """Refuse unless this principal administers the whole tree."""
        if not self.bootstrap:
            raise Problem(403, f"only administrators of the whole tree may {what}", type="outside-granted-subtree")

    async def require_reach(self, s: AsyncSession, user_id: str, what: str, *, posts: bool = True) -> None:
        """Refuse with 403 unless this principal administers the person (or the person is new to the directory):
        every admin grant and send grant (with `posts`, every post too) of theirs lies in this principal's
        subtrees, and they are not an administrator of the whole tree."""
        from tongban_org.reach import may_take_in

        if self.bootstrap:
            return
        roots = await self.granted_paths(s)
        if not await may_take_in(s, roots=roots, protected=self.protected, user_id=user_id, posts=posts):
            beyond = "posts, administrative or sending rights" if posts else "administrative or sending rights"
            raise Problem(
                403,
                f"{self.id} does not administer {user_id}, who holds {beyond} beyond the subtrees "
                f"{self.id} administers, so may not {what}",
                type="person-not-administered",
            )
