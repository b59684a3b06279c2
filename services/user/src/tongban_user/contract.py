"""What the user service declares on the bus: its stream, events, RPC endpoints and consumers."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from tongban_kit.app import ServiceContract
from tongban_kit.events import EventSpec
from tongban_kit.nats import StreamSpec
from tongban_kit.rpc import RpcSpec

# the public models other services read: exported here, the one module of this service they may import
from tongban_user.models import Kind as Kind
from tongban_user.models import Status as Status
from tongban_user.models import UserPublic as UserPublic

VERSION = "0.1.0"


class AccountCreated(BaseModel):
    """Payload of user.account.created.v1 (personal data masked)."""

    user: UserPublic
    actor: str | None = None
    via: str = Field(description="rest, scim or import")


class AccountUpdated(BaseModel):
    """Payload of user.account.updated.v1 (personal data masked)."""

    user: UserPublic
    changed: list[str]
    actor: str | None = None
    via: str


class AccountStatusChanged(BaseModel):
    """Payload of user.account.disabled.v1, user.account.enabled.v1 and user.account.deleted.v1."""

    user_id: str
    kind: Kind
    status: Status
    reason: str | None = None
    actor: str | None = None
    via: str


class PiiAccessed(BaseModel):
    """Payload of user.pii.accessed.v1: who read whose unmasked data, which fields, and why."""

    actor: str
    user_ids: list[str]
    fields: list[str]
    purpose: str
    action: str = Field(description="the operation that returned the data")
    request_id: str | None = None


ACCOUNT_CREATED = EventSpec("user.account.created.v1", AccountCreated, "An account was created.")
ACCOUNT_UPDATED = EventSpec("user.account.updated.v1", AccountUpdated, "An account's attributes changed.")
ACCOUNT_DISABLED = EventSpec("user.account.disabled.v1", AccountStatusChanged, "An account was disabled.")
ACCOUNT_ENABLED = EventSpec("user.account.enabled.v1", AccountStatusChanged, "A disabled account was enabled.")
ACCOUNT_DELETED = EventSpec(
    "user.account.deleted.v1", AccountStatusChanged, "An account was deleted (purged after the retention period)."
)
PII_ACCESSED = EventSpec("user.pii.accessed.v1", PiiAccessed, "Unmasked personal data was read (audit).")


# --- RPC messages ---


class GetUsersRequest(BaseModel):
    """Ids of the accounts wanted (at most 500)."""

    ids: list[str] = Field(min_length=1, max_length=500)


class UsersReply(BaseModel):
    """Accounts found (masked), in the order asked; unknown ids are left out."""

    users: list[UserPublic]


class LookupRequest(BaseModel):
    """Find one account by exactly one key: a login name (mobile, email, username), identity number or credit code."""

    login: str | None = Field(None, min_length=1, max_length=254)
    id_number: str | None = Field(None, min_length=15, max_length=22)
    credit_code: str | None = Field(None, min_length=18, max_length=18)
    kind: Kind | None = Field(
        None, description="restrict to one kind (an identity number may have a citizen and a staff account)"
    )

    @model_validator(mode="after")
    def _one_key(self) -> LookupRequest:
        if sum(v is not None for v in (self.login, self.id_number, self.credit_code)) != 1:
            raise ValueError("give exactly one of login, id_number, credit_code")
        return self


class LookupReply(BaseModel):
    """The account found (masked)."""

    user: UserPublic


class ContactsRequest(BaseModel):
    """Accounts whose contacts are wanted (at most 1000)."""

    ids: list[str] = Field(min_length=1, max_length=1000)


class Contact(BaseModel):
    """Where to reach a person (unmasked: for delivering messages)."""

    id: str
    name: str
    mobile: str | None = None
    email: str | None = None
    status: Status


class ContactsReply(BaseModel):
    """Contacts found; unknown ids are left out."""

    contacts: list[Contact]


RPC_GET_USERS = RpcSpec("users-get", "user.rpc.users.get", GetUsersRequest, UsersReply, "Get accounts by id.")
RPC_LOOKUP = RpcSpec(
    "users-lookup",
    "user.rpc.users.lookup",
    LookupRequest,
    LookupReply,
    "Find an account by login name, identity number or credit code (for sign-in).",
)
RPC_CONTACTS = RpcSpec(
    "contacts-list",
    "user.rpc.contacts.list",
    ContactsRequest,
    ContactsReply,
    "Contacts of a set of accounts (for the message service).",
)

CONTRACT = ServiceContract(
    name="user",
    version=VERSION,
    description="User directory (用户体系): citizens, staff and legal persons, masked by default, SCIM 2.0.",
    streams=(StreamSpec("USER_EVENTS", ("user.*.*.v1",), "Events of the user service"),),
    events=(ACCOUNT_CREATED, ACCOUNT_UPDATED, ACCOUNT_DISABLED, ACCOUNT_ENABLED, ACCOUNT_DELETED, PII_ACCESSED),
    rpcs=(RPC_GET_USERS, RPC_LOOKUP, RPC_CONTACTS),
)
