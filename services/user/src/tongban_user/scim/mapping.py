"""Accounts as SCIM Users and back: the representation, and the account fields a SCIM body asks for."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from scim2_models import Context, InvalidValueException, MutabilityException, Resource

from tongban_user import identity
from tongban_user.models import USERNAME_PATTERN, Enterprise, Kind, Status, UserAccount, UserCreate, UserPublic
from tongban_user.scim.errors import from_validation
from tongban_user.scim.schemas import ENTERPRISE_URN, TONGBAN_URN, USER_URN, ScimUser

#: stands for a stored identity number in the state a PATCH is applied to (the number itself is never read)
KEEP = "\x00kept"
ENTERPRISE_FIELDS = {
    "employeeNumber": "employee_number",
    "costCenter": "cost_center",
    "organization": "organization",
    "division": "division",
    "department": "department",
}
_USERNAME = re.compile(USERNAME_PATTERN)


def etag(version: int) -> str:
    """The weak entity tag of an account version."""
    return f'W/"{version}"'


def user_payload(pub: UserPublic, base: str, *, id_masked: str | None, id_number: str | None = None) -> dict[str, Any]:
    """The SCIM User (as JSON) of an account view; `id_number` is only for the internal PATCH state."""
    body: dict[str, Any] = {
        "schemas": [USER_URN, TONGBAN_URN],
        "id": pub.id,
        "userName": pub.username or pub.id,
        "displayName": pub.name,
        "active": pub.status == Status.active,
        "meta": {
            "resourceType": "User",
            "created": pub.created_at.isoformat(),
            "lastModified": pub.updated_at.isoformat(),
            "location": f"{base}/Users/{pub.id}",
            "version": etag(pub.version),
        },
        TONGBAN_URN: {"kind": pub.kind.value, "idNumberMasked": id_masked, "idNumber": id_number},
    }
    if pub.external_id is not None:
        body["externalId"] = pub.external_id
    if pub.real_name:
        body["name"] = {"formatted": pub.real_name}
    if pub.email:
        body["emails"] = [{"value": pub.email, "type": "work", "primary": True}]
    if pub.mobile:
        body["phoneNumbers"] = [{"value": pub.mobile, "type": "mobile", "primary": True}]
    ent = pub.enterprise.model_dump(exclude_none=True) if pub.enterprise else {}
    if ent:
        block: dict[str, Any] = {scim: ent[name] for scim, name in ENTERPRISE_FIELDS.items() if name in ent}
        if "manager_id" in ent:
            block["manager"] = {"value": ent["manager_id"], "$ref": f"{base}/Users/{ent['manager_id']}"}
        body[ENTERPRISE_URN] = block
        body["schemas"].insert(1, ENTERPRISE_URN)
    return body


def current_resource(u: UserAccount, pub: UserPublic, base: str) -> Resource[Any]:
    """The state a PATCH applies to: unmasked contacts, the identity number as a placeholder."""
    payload = user_payload(pub, base, id_masked=u.id_number_masked, id_number=KEEP if u.id_number_hash else None)
    return ScimUser.model_validate(payload, scim_ctx=None)


@dataclass
class Desired:
    """The account fields a SCIM User asks for (None: absent or cleared)."""

    username: str | None = None
    name: str | None = None
    real_name: str | None = None
    email: str | None = None
    mobile: str | None = None
    external_id: str | None = None
    enterprise: dict[str, Any] = field(default_factory=dict)
    kind: Kind | None = None
    id_number: str | None = KEEP
    active: bool | None = None


def _one(entries: Any, wanted_type: str, attr: str) -> str | None:
    """The one value of a multi-valued contact; 400 invalidValue for other types, several values or primary false."""
    values = {e.get("value") for e in entries or [] if e.get("value")}
    if len(values) > 1:
        raise InvalidValueException(detail=f"{attr}: one value is stored, {len(values)} were given")
    for entry in entries or []:
        if entry.get("type") not in (None, wanted_type):
            raise InvalidValueException(detail=f"{attr}: only type '{wanted_type}' is stored, not '{entry['type']}'")
        if entry.get("primary") is False:
            raise InvalidValueException(detail=f"{attr}: the one stored value is the primary one (primary false given)")
    return values.pop() if values else None


def desired(resource: Resource[Any], account: UserAccount | None = None, *, patched: bool = False) -> Desired:
    """Account fields of a validated User (when `patched`, a missing idNumber was removed); 400 if unstorable."""
    doc = resource.model_dump(scim_ctx=Context.DEFAULT)
    out = Desired()
    user_name = doc.get("userName")
    if account is not None and account.username is None and user_name == account.id:
        user_name = None  # the id shown in place of a missing login name
    if user_name is not None:
        out.username = user_name.strip().lower()
        if not _USERNAME.fullmatch(out.username):
            raise InvalidValueException(
                detail=f"userName {user_name!r} is not a login name: 3-64 lowercase letters, digits, '.', '_' or "
                "'-', starting with a letter"
            )
    out.name = doc.get("displayName")
    out.real_name = (doc.get("name") or {}).get("formatted")
    out.email = _one(doc.get("emails"), "work", "emails")
    out.mobile = _one(doc.get("phoneNumbers"), "mobile", "phoneNumbers")
    out.external_id = doc.get("externalId")
    out.active = doc.get("active")
    ent = doc.get(ENTERPRISE_URN) or {}
    values = {name: ent[scim] for scim, name in ENTERPRISE_FIELDS.items() if ent.get(scim) is not None}
    if (ent.get("manager") or {}).get("value"):
        values["manager_id"] = ent["manager"]["value"]
    try:
        out.enterprise = Enterprise.model_validate(values).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise from_validation(list(exc.errors())) from exc
    tb = doc.get(TONGBAN_URN) or {}
    if tb.get("kind") is not None:
        try:
            out.kind = Kind(tb["kind"])
        except ValueError as exc:
            raise InvalidValueException(detail=f"kind must be one of {', '.join(k.value for k in Kind)}") from exc
    out.id_number = tb.get("idNumber") if patched else tb.get("idNumber", KEEP)
    return out


def _display(d: Desired) -> str | None:
    return d.name or d.real_name or d.username


def create_body(d: Desired) -> UserCreate:
    """The REST creation body of a SCIM User (staff unless the Tongban extension says otherwise)."""
    enterprise = Enterprise.model_validate(d.enterprise) if d.enterprise else None
    try:
        return UserCreate(
            kind=d.kind or Kind.staff,
            name=(_display(d) or "").strip(),
            real_name=d.real_name,
            username=d.username,
            id_number=None if d.id_number == KEEP else d.id_number,
            mobile=d.mobile,
            email=d.email,
            external_id=d.external_id,
            enterprise=enterprise,
        )
    except ValidationError as exc:
        raise from_validation(list(exc.errors())) from exc


def changes(u: UserAccount, before: Desired, after: Desired) -> tuple[dict[str, Any], Status | None]:
    """Account changes (for accounts.update_user) and the status wanted, from the current and the wanted state."""
    if after.kind is not None and after.kind != u.kind:
        raise MutabilityException(detail=f"kind is immutable (the account is {u.kind.value})")
    wanted: dict[str, Any] = {
        "username": after.username,
        "name": _display(after) or u.name,
        "real_name": after.real_name,
        "email": after.email,
        "mobile": after.mobile,
        "external_id": after.external_id,
        "enterprise": after.enterprise,
    }
    if u.email and after.email == identity.mask_email(u.email):
        wanted["email"] = u.email  # a masked value sent back unchanged
    if u.mobile and after.mobile == identity.mask_mobile(u.mobile):
        wanted["mobile"] = u.mobile
    current = {**vars(before), "name": u.name, "username": u.username}
    out = {k: v for k, v in wanted.items() if v != current[k]}
    if after.id_number != KEEP:
        out["id_number"] = after.id_number
    status = None
    if after.active is not None and after.active != (u.status == Status.active):
        status = Status.active if after.active else Status.disabled
    return out, status
