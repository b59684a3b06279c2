"""What the org service declares on the bus: its stream, events and RPC endpoints."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tongban_kit.app import ServiceContract
from tongban_kit.events import EventSpec
from tongban_kit.nats import StreamSpec
from tongban_kit.rpc import RpcSpec
from tongban_org.models import MembershipPublic, SendGrantPublic
from tongban_org.models import UnitPublic as UnitPublic
from tongban_org.models import UnitStatus as UnitStatus  # read by consumers of UnitPublic

VERSION = "0.1.0"


class UnitCreated(BaseModel):
    """Payload of org.unit.created.v1."""

    unit: UnitPublic
    actor: str | None = None


class UnitUpdated(BaseModel):
    """Payload of org.unit.updated.v1."""

    unit: UnitPublic
    changed: list[str] = Field(description="names of the fields that changed")
    actor: str | None = None


class UnitMoved(BaseModel):
    """Payload of org.unit.moved.v1."""

    unit: UnitPublic
    from_parent_id: str | None
    to_parent_id: str
    descendants_moved: int
    actor: str | None = None


class UnitDissolved(BaseModel):
    """Payload of org.unit.dissolved.v1 (one event per dissolved unit)."""

    unit_id: str
    name: str
    parent_id: str | None
    reason: str | None = None
    cascade_root_id: str | None = Field(None, description="the unit whose cascading dissolution included this one")
    actor: str | None = None


class MembershipAdded(BaseModel):
    """Payload of org.membership.added.v1."""

    membership: MembershipPublic
    actor: str | None = None


class MembershipUpdated(BaseModel):
    """Payload of org.membership.updated.v1."""

    membership: MembershipPublic
    changed: list[str]
    actor: str | None = None


class MembershipRemoved(BaseModel):
    """Payload of org.membership.removed.v1."""

    membership_id: str
    user_id: str
    unit_id: str
    reason: str = Field(description="'removed' or 'unit_dissolved'")
    actor: str | None = None


UNIT_CREATED = EventSpec("org.unit.created.v1", UnitCreated, "A unit was created.")
UNIT_UPDATED = EventSpec("org.unit.updated.v1", UnitUpdated, "A unit's attributes changed.")
UNIT_MOVED = EventSpec("org.unit.moved.v1", UnitMoved, "A unit and its subtree moved under a new parent.")
UNIT_DISSOLVED = EventSpec("org.unit.dissolved.v1", UnitDissolved, "A unit was dissolved.")
MEMBERSHIP_ADDED = EventSpec("org.membership.added.v1", MembershipAdded, "A user joined a unit.")
MEMBERSHIP_UPDATED = EventSpec(
    "org.membership.updated.v1", MembershipUpdated, "A membership's title, primary or leader flag changed."
)
MEMBERSHIP_REMOVED = EventSpec("org.membership.removed.v1", MembershipRemoved, "A user left a unit.")


class SendGrantChanged(BaseModel):
    """Payload of org.send_grant.added.v1 and org.send_grant.removed.v1."""

    grant: SendGrantPublic
    actor: str | None = None


SEND_GRANT_ADDED = EventSpec(
    "org.send_grant.added.v1", SendGrantChanged, "A principal may now send messages to the members of a subtree."
)
SEND_GRANT_REMOVED = EventSpec(
    "org.send_grant.removed.v1", SendGrantChanged, "A sending right to a subtree was withdrawn."
)


# --- RPC messages ---


class GetUnitsRequest(BaseModel):
    """Ids of the units wanted (at most 500)."""

    ids: list[str] = Field(min_length=1, max_length=500)


class UnitsReply(BaseModel):
    """Units found, in the order asked; unknown ids are left out."""

    units: list[UnitPublic]


class AncestorsRequest(BaseModel):
    """The unit whose ancestors are wanted."""

    unit_id: str = Field(min_length=1, max_length=36)


class ListMembersRequest(BaseModel):
    """A page of a unit's members, optionally of its whole subtree."""

    unit_id: str = Field(min_length=1, max_length=36)
    recursive: bool = False
    limit: int = Field(100, ge=1, le=500)
    cursor: str | None = None


class MembersReply(BaseModel):
    """A page of memberships."""

    items: list[MembershipPublic]
    next_cursor: str | None = None


class ContainsUserRequest(BaseModel):
    """Is the user a member of this unit or any unit below it?"""

    unit_id: str = Field(min_length=1, max_length=36)
    user_id: str = Field(min_length=1, max_length=64)


class ContainsUserReply(BaseModel):
    """Answer, with the active units of the subtree the user belongs to."""

    contains: bool
    unit_ids: list[str]


class AdminScopesRequest(BaseModel):
    """Which subtrees does a principal (an account id) administer, and which of these people?"""

    principal: str = Field(min_length=1, max_length=100)
    user_ids: list[str] = Field(
        default_factory=list,
        max_length=500,
        description="people to check: the reply's `administers` names those the principal administers",
    )


class AdminScopesReply(BaseModel):
    """Roots of the subtrees the principal administers; `all` for administrators of the whole tree (whose
    `unit_ids` are then the roots of the tree)."""

    all: bool
    unit_ids: list[str]
    administers: list[str] = Field(
        default_factory=list,
        description="those of the asked `user_ids` the principal administers: everyone for administrators of "
        "the whole tree; else people with a post in its subtrees whose every post and admin grant lie there "
        "and who do not administer the whole tree",
    )


class AdministeredRequest(BaseModel):
    """A page of the people a principal administers (ids in order)."""

    principal: str = Field(min_length=1, max_length=100)
    limit: int = Field(500, ge=1, le=1000)
    after: str | None = Field(None, max_length=64, description="the last user id of the previous page")


class AdministeredReply(BaseModel):
    """People the principal administers (see `AdminScopesReply.administers`); `all` for administrators of the
    whole tree, who administer everyone (and then no ids are listed)."""

    all: bool
    user_ids: list[str]
    more: bool = Field(description="whether a further page follows (ask again with `after`)")


class EntitlementsRequest(BaseModel):
    """What may a principal (an account id) do, by the grants of the organisation directory?"""

    principal: str = Field(min_length=1, max_length=100)


class EntitlementsReply(BaseModel):
    """A principal's entitlements: administration (分级授权), sending rights, memberships (staff)."""

    admin_all: bool = Field(description="administers the whole tree")
    admin_units: list[str] = Field(description="roots of the subtrees administered (every root for admin_all)")
    send_all: bool = Field(description="may send messages to everyone in the tree")
    send_units: list[str] = Field(
        description="roots of the subtrees whose members the principal may address: those it administers and "
        "those of its send grants"
    )
    member_units: list[str] = Field(description="active units the principal is a member of (staff)")


class AddressCheckRequest(BaseModel):
    """Do a unit and some people lie inside the subtrees at `roots` (`*`: the whole tree)?"""

    roots: list[str] = Field(max_length=1000)
    unit_id: str | None = Field(None, min_length=1, max_length=36)
    user_ids: list[str] = Field(default_factory=list, max_length=1000)


class AddressCheckReply(BaseModel):
    """Whether the unit lies in one of the subtrees (None: no unit asked) and which people are members of none."""

    unit_inside: bool | None = None
    users_outside: list[str]


RPC_GET_UNITS = RpcSpec("units-get", "org.rpc.units.get", GetUnitsRequest, UnitsReply, "Get units by id.")
RPC_ANCESTORS = RpcSpec(
    "units-ancestors",
    "org.rpc.units.ancestors",
    AncestorsRequest,
    UnitsReply,
    "Ancestors of a unit, root first.",
)
RPC_MEMBERS = RpcSpec(
    "members-list",
    "org.rpc.members.list",
    ListMembersRequest,
    MembersReply,
    "Members of a unit, directly or of its whole subtree, paginated.",
)
RPC_CONTAINS_USER = RpcSpec(
    "subtree-contains-user",
    "org.rpc.subtree.contains_user",
    ContainsUserRequest,
    ContainsUserReply,
    "Whether a user belongs to a unit's subtree.",
)
RPC_ADMIN_SCOPES = RpcSpec(
    "admin-scopes",
    "org.rpc.admin.scopes",
    AdminScopesRequest,
    AdminScopesReply,
    "Subtrees a principal administers (分级授权), and which of some people it administers.",
)
RPC_ADMINISTERED = RpcSpec(
    "admin-administered",
    "org.rpc.admin.administered",
    AdministeredRequest,
    AdministeredReply,
    "People a principal administers (分级授权), paginated.",
)

RPC_ENTITLEMENTS = RpcSpec(
    "entitlements",
    "org.rpc.entitlements",
    EntitlementsRequest,
    EntitlementsReply,
    "What a principal is entitled to: administered subtrees, subtrees it may address, its units.",
)
RPC_ADDRESS_CHECK = RpcSpec(
    "address-check",
    "org.rpc.address.check",
    AddressCheckRequest,
    AddressCheckReply,
    "Whether a unit and people lie inside given subtrees (what a sender may address).",
)

CONTRACT = ServiceContract(
    name="org",
    version=VERSION,
    description="Organisation directory (组织体系): units, tree, memberships and delegated administration.",
    streams=(StreamSpec("ORG_EVENTS", ("org.*.*.v1",), "Events of the organisation service"),),
    events=(
        UNIT_CREATED,
        UNIT_UPDATED,
        UNIT_MOVED,
        UNIT_DISSOLVED,
        MEMBERSHIP_ADDED,
        MEMBERSHIP_UPDATED,
        MEMBERSHIP_REMOVED,
        SEND_GRANT_ADDED,
        SEND_GRANT_REMOVED,
    ),
    rpcs=(
        RPC_GET_UNITS,
        RPC_ANCESTORS,
        RPC_MEMBERS,
        RPC_CONTAINS_USER,
        RPC_ADMIN_SCOPES,
        RPC_ADMINISTERED,
        RPC_ENTITLEMENTS,
        RPC_ADDRESS_CHECK,
    ),
)
