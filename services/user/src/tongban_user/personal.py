"""Searching by personal data: a filter or sort on a masked value needs the right to unmask it, and is audited."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.context import request_id_var
from tongban_kit.outbox import emit
from tongban_kit.problems import Problem
from tongban_user.access import PII_SCOPE, Caller
from tongban_user.contract import PII_ACCESSED, PiiAccessed

SOURCE = "/tongban/user"
#: accounts named by one audit event (a search matching more is audited in several)
AUDIT_CHUNK = 1000


def search_refused(attributes: Iterable[str]) -> Problem:
    """403 naming the masked attributes a caller without the user:pii scope filtered or sorted on."""
    names = ", ".join(sorted(set(attributes)))
    return Problem(
        403,
        f"searching or sorting by {names} needs the {PII_SCOPE} scope, as unmasking does: masked personal data "
        "cannot be searched without it",
        type="insufficient-scope",
        attributes=sorted(set(attributes)),
    )


def require_search_right(caller: Caller, attributes: Iterable[str], purpose: str | None) -> str:
    """The purpose of a search on masked attributes; 403 without user:pii, 400 without a purpose."""
    if PII_SCOPE not in caller.scopes:
        raise search_refused(attributes)
    if not purpose or not purpose.strip():
        raise Problem(400, "say why you search by personal data: purpose=...", type="purpose-required")
    return purpose.strip()


def audit_search(
    s: AsyncSession, *, caller: Caller, user_ids: Sequence[str], fields: Iterable[str], purpose: str, action: str
) -> None:
    """Record (in the caller's transaction) that a search compared these accounts' personal data."""
    wanted = sorted(set(fields))
    for start in range(0, len(user_ids), AUDIT_CHUNK):
        emit(
            s,
            PII_ACCESSED,
            PiiAccessed(
                actor=caller.principal,
                user_ids=list(user_ids[start : start + AUDIT_CHUNK]),
                fields=wanted,
                purpose=purpose,
                action=action,
                request_id=request_id_var.get(),
            ),
            source=SOURCE,
        )
