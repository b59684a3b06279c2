"""What /scim/v2 publishes: scim2-models' schemas restricted to what an account stores, and the models built on them."""

from __future__ import annotations

from typing import Any

from scim2_models import (
    Attribute,
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    EnterpriseUser,
    ETag,
    Extension,
    Filter,
    Group,
    Mutability,
    Pagination,
    Patch,
    Resource,
    ResourceType,
    Returned,
    Schema,
    ScimPolicy,
    ServiceProviderConfig,
    Sort,
    User,
)

USER_URN = str(User.__schema__)
ENTERPRISE_URN = str(EnterpriseUser.__schema__)
TONGBAN_URN = "urn:tongban:scim:schemas:extension:2.0:User"
GROUP_URN = str(Group.__schema__)
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
MAX_RESULTS = 200
DEFAULT_COUNT = 100

#: resource bodies: attributes this service does not store are ignored; PATCH value filters may create the entry
POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
)
#: PATCH: a path or value naming an attribute this service does not store is refused
PATCH_POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.forbid,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
)


def _restrict(source: Schema, keep: dict[str, set[str] | None], description: str) -> Schema:
    """A copy of a scim2-models schema with only the listed attributes (and sub-attributes)."""
    attributes = []
    for attr in source.attributes or []:
        if attr.name not in keep:
            continue
        copy = attr.model_copy(deep=True)
        subs = keep[attr.name]
        if subs is not None:
            copy.sub_attributes = [s for s in copy.sub_attributes or [] if s.name in subs]
        attributes.append(copy)
    return Schema(id=str(source.id), name=source.name, description=description, attributes=attributes)


def _tune(schema: Schema, path: str, **changes: Any) -> None:
    """Change characteristics of one attribute (`name` or `name.sub`) of a schema."""
    attr = schema.get_attribute(path.split(".")[0])
    assert attr is not None, path
    if "." in path:
        attr = attr.get_attribute(path.split(".")[1])
        assert attr is not None, path
    for key, value in changes.items():
        setattr(attr, key, value)


def _user_schema() -> Schema:
    schema = _restrict(
        User.to_schema(),
        {
            "userName": None,
            "name": {"formatted"},
            "displayName": None,
            "active": None,
            "emails": {"value", "type", "primary"},
            "phoneNumbers": {"value", "type", "primary"},
        },
        "User account (citizens, staff, legal persons)",
    )
    _tune(
        schema,
        "userName",
        description="Login name: 3-64 lowercase letters, digits, '.', '_' or '-', starting with a letter "
        "(stored lowercased). An account without a login name shows its id here.",
    )
    _tune(schema, "displayName", description="Display name; defaults to name.formatted, else userName.")
    _tune(schema, "name.formatted", description="Real name (实名).")
    _tune(schema, "active", description="false disables the account, true enables it again.")
    _tune(schema, "emails", description="One address is stored: send at most one value.")
    _tune(schema, "emails.type", canonical_values=["work"], description="Always 'work'.")
    _tune(schema, "emails.primary", description="Always true: the one stored address is the primary one.")
    _tune(schema, "phoneNumbers", description="One mainland mobile number is stored: send at most one value.")
    _tune(schema, "phoneNumbers.type", canonical_values=["mobile"], description="Always 'mobile'.")
    _tune(schema, "phoneNumbers.primary", description="Always true: the one stored number is the primary one.")
    return schema


def _enterprise_schema() -> Schema:
    schema = _restrict(
        EnterpriseUser.to_schema(),
        {
            "employeeNumber": None,
            "costCenter": None,
            "organization": None,
            "division": None,
            "department": None,
            "manager": {"value", "$ref"},
        },
        "Enterprise attributes of staff",
    )
    _tune(schema, "manager.value", description="The id of the manager's account.")
    _tune(schema, "manager.$ref", mutability=Mutability.read_only, required=False)
    return schema


def _tongban_schema() -> Schema:
    return Schema(
        id=TONGBAN_URN,
        name="TongbanUser",
        description="Tongban account attributes",
        attributes=[
            Attribute(
                name="kind",
                type=Attribute.Type.string,
                mutability=Mutability.immutable,
                canonical_values=["citizen", "staff", "legal_person"],
                case_exact=True,
                description="Kind of account, fixed at creation; staff when not given. Citizens need idNumber; "
                "legal persons need a credit code, which only /api/v1/users takes.",
            ),
            Attribute(
                name="idNumber",
                type=Attribute.Type.string,
                mutability=Mutability.write_only,
                returned=Returned.never,
                description="Resident identity number (stored encrypted, never returned; see idNumberMasked).",
            ),
            Attribute(
                name="idNumberMasked",
                type=Attribute.Type.string,
                mutability=Mutability.read_only,
                description="The identity number, masked.",
            ),
        ],
    )


def _group_schema() -> Schema:
    schema = _restrict(Group.to_schema(), {"displayName": None, "members": {"value", "$ref", "type"}}, "Org unit")
    for path in ("displayName", "members", "members.value", "members.$ref", "members.type"):
        _tune(schema, path, mutability=Mutability.read_only)
    _tune(schema, "displayName", description="Name of the org unit.")
    _tune(schema, "members", description="Direct members of the unit (managed by the organisation service).")
    return schema


USER_SCHEMA = _user_schema()
ENTERPRISE_SCHEMA = _enterprise_schema()
TONGBAN_SCHEMA = _tongban_schema()
GROUP_SCHEMA = _group_schema()
SCHEMAS: dict[str, Schema] = {str(s.id): s for s in (USER_SCHEMA, ENTERPRISE_SCHEMA, TONGBAN_SCHEMA, GROUP_SCHEMA)}

UserModel: type[Resource[Any]] = Resource.from_schema(USER_SCHEMA)
EnterpriseModel: type[Extension] = Extension.from_schema(ENTERPRISE_SCHEMA)
TongbanModel: type[Extension] = Extension.from_schema(TONGBAN_SCHEMA)
#: a User with both extensions: what /Users reads, patches and returns
ScimUser: type[Resource[Any]] = UserModel.__class_getitem__(EnterpriseModel | TongbanModel)
ScimGroup: type[Resource[Any]] = Resource.from_schema(GROUP_SCHEMA)

RESOURCE_TYPES: dict[str, ResourceType] = {
    "User": ResourceType.model_validate(
        {
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "Accounts of the user service (the same as /api/v1/users)",
            "schema": USER_URN,
            "schemaExtensions": [
                {"schema": ENTERPRISE_URN, "required": False},
                {"schema": TONGBAN_URN, "required": False},
            ],
        }
    ),
    "Group": ResourceType.model_validate(
        {
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Org units (read-only: the organisation service manages units and memberships)",
            "schema": GROUP_URN,
        }
    ),
}

SERVICE_PROVIDER_CONFIG = ServiceProviderConfig(
    patch=Patch(supported=True),
    bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
    filter=Filter(supported=True, max_results=MAX_RESULTS),
    change_password=ChangePassword(supported=False),
    sort=Sort(supported=True),
    etag=ETag(supported=True),
    authentication_schemes=[
        AuthenticationScheme(
            type=AuthenticationScheme.Type.oauthbearertoken,
            name="OAuth Bearer Token",
            description="An access token (RFC 9068 JWT) from the Tongban auth service in the Authorization header "
            "(RFC 6750): user:read to read, user:write to provision; user:pii returns emails and phone numbers "
            "unmasked (audited); admin reaches the staff the caller administers (分级授权, asked of the org service).",
            spec_uri="https://www.rfc-editor.org/rfc/rfc6750",
            primary=True,
        )
    ],
    pagination=Pagination(
        cursor=False,
        index=True,
        default_pagination_method=Pagination.DefaultPaginationMethod.index,
        default_page_size=DEFAULT_COUNT,
        max_page_size=MAX_RESULTS,
    ),
)
