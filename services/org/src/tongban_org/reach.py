"""Whom an administrator administers (分级授权): people whose every post and every grant lie in its subtrees.

A delegated administrator's reach is not "whoever is a member somewhere below me": a person who also holds a
post elsewhere, or who administers or may send to units beyond the administrator's subtrees, or who administers
the whole tree, is administered only by someone whose subtrees cover all of that. Otherwise adding a person to
one's own unit would make one their administrator.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import and_, exists, false, literal, or_, true
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_org.models import AdminGrant, Membership, SendGrant, Unit
from tongban_org.tree import subtree_end


async def root_paths(s: AsyncSession, unit_ids: Iterable[str]) -> list[str]:
    """Paths of the units at the roots of the granted subtrees (unknown ids are left out)."""
    ids = list(dict.fromkeys(unit_ids))
    if not ids:
        return []
    return list((await s.exec(select(Unit.path).where(col(Unit.id).in_(ids)))).all())


def covered(path: Any, roots: Collection[str]) -> Any:
    """SQL condition: the unit path `path` lies in one of the subtrees at `roots` (false when there are none)."""
    if not roots:
        return false()
    return or_(*(and_(path >= r, path < subtree_end(r)) for r in roots))


def _beyond(table: Any, column: str, who: Any, roots: Collection[str]) -> Any:
    """SQL condition: `who` has a row of `table` (keyed by `column`) on a unit outside the subtrees at `roots`."""
    row: Any = aliased(table)
    unit = aliased(Unit)
    return exists().where(getattr(row, column) == who, row.unit_id == col(unit.id), ~covered(unit.path, roots))


def reached(who: Any, roots: Collection[str], protected: Collection[str], *, posts: bool = True) -> Any:
    """SQL condition on the user id `who`: every admin grant and send grant (and with `posts` every membership)
    of the person lies within `roots`, and the person is not one of `protected` (the administrators of the whole
    tree)."""
    # a sending right beyond the subtrees counts like an admin grant there: its holder is no newcomer to take in
    outside = [_beyond(AdminGrant, "principal", who, roots), _beyond(SendGrant, "principal", who, roots)]
    if posts:
        outside.append(_beyond(Membership, "user_id", who, roots))
    not_protected = who.not_in(list(protected)) if protected else true()
    return and_(not_protected, *(~o for o in outside))


async def may_take_in(
    s: AsyncSession, *, roots: Collection[str], protected: Collection[str], user_id: str, posts: bool = True
) -> bool:
    """Whether a person may be placed within `roots`: one administered there already, or one with no post and
    no grant anywhere (someone new to the directory). Without `posts`, only their admin and send grants count."""
    stmt = select(literal(1)).where(reached(literal(user_id), roots, protected, posts=posts))
    return (await s.exec(stmt)).first() is not None


async def administered(
    s: AsyncSession,
    *,
    roots: Collection[str],
    protected: Collection[str],
    user_ids: Collection[str] | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> list[str]:
    """Ids of the people administered within `roots` (at least one post there; no post, admin grant or send
    grant beyond), in id order; among `user_ids` when given, after `after` and at most `limit` of them when given."""
    if not roots:
        return []
    unit = aliased(Unit)
    stmt = (
        select(Membership.user_id)
        .join(unit, col(unit.id) == col(Membership.unit_id))
        .where(covered(unit.path, roots), reached(col(Membership.user_id), roots, protected))
        .distinct()
        .order_by(col(Membership.user_id))
    )
    if user_ids is not None:
        stmt = stmt.where(col(Membership.user_id).in_(list(user_ids)))
    if after is not None:
        stmt = stmt.where(col(Membership.user_id) > after)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list((await s.exec(stmt)).all())
