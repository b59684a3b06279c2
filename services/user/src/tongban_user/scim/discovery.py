"""Discovery (RFC 7644 §4): /ServiceProviderConfig, /ResourceTypes and /Schemas; read-only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from scim2_models import Context, ListResponse, Meta, Resource, ResourceType, Schema

from tongban_user.api.deps import CallerDep
from tongban_user.scim.errors import ScimError, ScimJSONResponse, ScimRoute
from tongban_user.scim.http import ERRORS, ScimListDoc, ScimResourceDoc, base_url, ok
from tongban_user.scim.schemas import RESOURCE_TYPES, SCHEMAS, SERVICE_PROVIDER_CONFIG

router = APIRouter(route_class=ScimRoute, default_response_class=ScimJSONResponse, tags=["scim"])
ONE = ERRORS | ok(200, ScimResourceDoc)
MANY = ERRORS | ok(200, ScimListDoc)
NoFilter = Annotated[
    str | None, Query(alias="filter", max_length=4000, description="not supported here (403, RFC 7644 §4)")
]


def _described(obj: Resource[Any], kind: str, location: str) -> Resource[Any]:
    out = obj.model_copy(deep=True)
    out.meta = Meta(resource_type=kind, location=location)
    return out


def _dump(obj: Resource[Any]) -> dict[str, Any]:
    return obj.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)


def _listing(model: type[Resource[Any]], items: list[Resource[Any]]) -> ScimJSONResponse:
    listing = ListResponse[model](  # type: ignore[valid-type]
        total_results=len(items), start_index=1, items_per_page=len(items), resources=items
    )
    return ScimJSONResponse(listing.model_dump(scim_ctx=Context.SEARCH_RESPONSE))


def _no_filter(filter_: str | None) -> None:
    if filter_ is not None:
        raise ScimError(403, "discovery endpoints cannot be filtered")


def _schema(request: Request, schema_id: str) -> Resource[Any]:
    return _described(SCHEMAS[schema_id], "Schema", f"{base_url(request)}/Schemas/{schema_id}")


def _resource_type(request: Request, name: str) -> Resource[Any]:
    return _described(RESOURCE_TYPES[name], "ResourceType", f"{base_url(request)}/ResourceTypes/{name}")


@router.get("/ServiceProviderConfig", summary="What this SCIM service supports", responses=ONE, response_model=None)
async def service_provider_config(request: Request, caller: CallerDep) -> ScimJSONResponse:
    """PATCH, filters (maxResults), sorting and ETags are supported; bulk and password changes are not."""
    location = f"{base_url(request)}/ServiceProviderConfig"
    return ScimJSONResponse(_dump(_described(SERVICE_PROVIDER_CONFIG, "ServiceProviderConfig", location)))


@router.get("/ResourceTypes", summary="Resource types: User and Group", responses=MANY, response_model=None)
async def resource_types(request: Request, caller: CallerDep, filter_: NoFilter = None) -> ScimJSONResponse:
    """User (with the enterprise and Tongban extensions) and Group (org units, read-only)."""
    _no_filter(filter_)
    return _listing(ResourceType, [_resource_type(request, name) for name in RESOURCE_TYPES])


@router.get("/ResourceTypes/{name}", summary="A resource type", responses=ONE, response_model=None)
async def resource_type(request: Request, caller: CallerDep, name: str) -> ScimJSONResponse:
    """User or Group."""
    if name not in RESOURCE_TYPES:
        raise ScimError(404, f"no resource type {name}")
    return ScimJSONResponse(_dump(_resource_type(request, name)))


@router.get("/Schemas", summary="Schemas of the resources", responses=MANY, response_model=None)
async def schemas(request: Request, caller: CallerDep, filter_: NoFilter = None) -> ScimJSONResponse:
    """Only the attributes this service stores; what it does not store is left out."""
    _no_filter(filter_)
    return _listing(Schema, [_schema(request, schema_id) for schema_id in SCHEMAS])


@router.get("/Schemas/{schema_id}", summary="A schema", responses=ONE, response_model=None)
async def schema(request: Request, caller: CallerDep, schema_id: str) -> ScimJSONResponse:
    """A schema by its URN."""
    if schema_id not in SCHEMAS:
        raise ScimError(404, f"no schema {schema_id}")
    return ScimJSONResponse(_dump(_schema(request, schema_id)))
