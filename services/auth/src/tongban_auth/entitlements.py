"""A scope is not a permission: a person's token carries a scope only if the person is entitled to it.

Scopes say what an app may do on a person's behalf; the organisation service says what the person may do (admin
grants, sending rights, memberships). A person's token gets requested ∩ the client's scopes ∩ their entitlements;
scopes they are not entitled to are dropped (RFC 6749 §3.3: the `scope` of the token response says what was
granted), never refused. When the org service does not answer, no entitlement-bearing scope is granted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tongban_org.contract import EntitlementsReply

#: scope → the entitlement it needs; every other scope is open to every person (services still check per record)
NEEDS: dict[str, str] = {
    "admin": "admin",
    "org:write": "admin",
    "message:send": "send",
    "affairs:handle": "staff",
}


@dataclass(frozen=True)
class Entitlements:
    """What a person may do, by the organisation directory; `units` are the roots of the subtrees administered."""

    admin: bool = False
    send: bool = False
    staff: bool = False
    admin_all: bool = False
    admin_units: tuple[str, ...] = ()

    @classmethod
    def of(cls, reply: EntitlementsReply) -> Entitlements:
        """From the org service's answer."""
        return cls(
            admin=reply.admin_all or bool(reply.admin_units),
            send=reply.send_all or bool(reply.send_units),
            staff=bool(reply.member_units),
            admin_all=reply.admin_all,
            admin_units=tuple(reply.admin_units),
        )

    def holds(self, entitlement: str) -> bool:
        """Whether the person holds an entitlement by name."""
        return bool(getattr(self, entitlement))


#: nobody: what a person gets while the org service is silent (fail closed)
NONE = Entitlements()


def narrow(scopes: Iterable[str], entitled: Entitlements | None) -> list[str]:
    """The scopes a person may have, in order: those needing no entitlement and those whose entitlement they hold."""
    ent = entitled or NONE
    return [sc for sc in scopes if sc not in NEEDS or ent.holds(NEEDS[sc])]
