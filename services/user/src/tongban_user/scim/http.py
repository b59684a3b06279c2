"""HTTP plumbing of /scim/v2: bodies, ETags, response parameters, OpenAPI documentation."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scim2_models import Resource, ResponseParameters

from tongban_user.scim.errors import SCIM_JSON, ScimError, from_validation

PREFIX = "/scim/v2"
JSON_TYPES = ("application/scim+json", "application/json")
Attributes = Annotated[
    str | None, Query(max_length=2000, description="comma-separated attributes to return (RFC 7644 §3.9)")
]
ExcludedAttributes = Annotated[
    str | None,
    Query(alias="excludedAttributes", max_length=2000, description="comma-separated attributes to leave out"),
]
IfMatch = Annotated[
    str | None, Header(alias="If-Match", max_length=500, description='only if the version matches, e.g. W/"3"')
]
IfNoneMatch = Annotated[
    str | None, Header(alias="If-None-Match", max_length=500, description="304 if the version still matches")
]


def base_url(request: Request) -> str:
    """The absolute URL of /scim/v2 as this request reached it."""
    return str(request.base_url).rstrip("/") + PREFIX


async def read_json(request: Request) -> dict[str, Any]:
    """The JSON object of a request (application/scim+json or application/json); 400 invalidSyntax otherwise."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media not in JSON_TYPES:
        raise ScimError(415, f"send application/scim+json or application/json, not {media}")
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ScimError(400, f"the body is not JSON: {exc}", "invalidSyntax") from exc
    if not isinstance(body, dict):
        raise ScimError(400, "the body must be a JSON object", "invalidSyntax")
    if _has_nul(body):
        raise ScimError(400, "text values must not contain NUL characters", "invalidValue")
    return body


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _tags(header: str) -> set[str]:
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}


def matches(header: str | None, current: str) -> bool:
    """Whether an If-Match / If-None-Match header names the current version (weak comparison; * matches)."""
    if header is None:
        return False
    tags = _tags(header)
    return "*" in tags or current.removeprefix("W/") in tags


def require_match(if_match: str | None, current: str) -> None:
    """412 when If-Match is given and names another version."""
    if if_match is not None and not matches(if_match, current):
        raise ScimError(412, f"the resource has changed: its version is {current}")


def paging(start_index: int | None, count: int | None, *, default: int, most: int, last: int) -> tuple[int, int]:
    """startIndex and count of a list request (RFC 7644 §3.4.2.4): a startIndex below 1 is taken as 1, a count
    above `most` as `most`; a negative count is refused (400 invalidValue) rather than read as 0, so a client's
    mistake is not answered with an empty page that looks like success."""
    if count is not None and count < 0:
        raise ScimError(400, f"count must be 0 or more (at most {most} are returned), not {count}", "invalidValue")
    start = min(max(start_index or 1, 1), last)
    return start, default if count is None else min(count, most)


def response_parameters(model: type[Resource[Any]], attributes: str | None, excluded: str | None) -> Any:
    """The attributes / excludedAttributes of a request; 400 invalidValue when malformed."""
    if not attributes and not excluded:
        return None
    try:
        return ResponseParameters[model].model_validate(  # type: ignore[valid-type]
            {"attributes": attributes, "excludedAttributes": excluded}
        )
    except ValidationError as exc:
        raise from_validation(list(exc.errors())) from exc


class ScimErrorDoc(BaseModel):
    """A SCIM error (RFC 7644 §3.12)."""

    schemas: list[str]
    status: str = Field(description="HTTP status code, as a string")
    scimType: str | None = None
    detail: str | None = None


class ScimResourceDoc(BaseModel):
    """A SCIM resource (see /scim/v2/Schemas for its attributes)."""

    model_config = ConfigDict(extra="allow")

    schemas: list[str]
    id: str | None = None


class ScimListDoc(BaseModel):
    """A SCIM list response (RFC 7644 §3.4.2)."""

    model_config = ConfigDict(extra="allow")

    schemas: list[str]
    totalResults: int
    startIndex: int | None = None
    itemsPerPage: int | None = None
    Resources: list[dict[str, Any]] | None = None


Responses = dict[int | str, dict[str, Any]]


def _error_doc(status: int, description: str) -> Responses:
    return {status: {"description": description, "model": ScimErrorDoc}}


def ok(status: int, model: type[BaseModel], description: str = "OK") -> Responses:
    """OpenAPI entry of a successful SCIM response."""
    return {status: {"description": description, "model": model}}


ERRORS: Responses = {
    **_error_doc(400, "Bad request (scimType: invalidFilter, invalidSyntax, invalidValue, mutability, ...)"),
    **_error_doc(401, "No access token, or one that is not valid (RFC 6750 challenge in WWW-Authenticate)"),
    **_error_doc(
        403, "Not allowed: a scope the request needs is missing, or the account is outside the caller's rights"
    ),
    **_error_doc(404, "No such resource"),
    **_error_doc(503, "A service this one depends on did not answer, or access tokens are not configured"),
    "default": {"description": "Any other SCIM error", "model": ScimErrorDoc},
}
WRITE_ERRORS = (
    ERRORS
    | _error_doc(409, "A unique value is taken (scimType uniqueness)")
    | _error_doc(412, "If-Match names another version")
)
BODY_ERRORS = WRITE_ERRORS | _error_doc(415, "Not a JSON body")


def body_doc(description: str) -> dict[str, Any]:
    """OpenAPI request body of a SCIM JSON object (parsed by the route itself)."""
    schema = {"type": "object", "description": description}
    return {
        "requestBody": {
            "required": True,
            "content": {SCIM_JSON: {"schema": schema}, "application/json": {"schema": schema}},
        }
    }
