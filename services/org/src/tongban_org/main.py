"""The org service app."""

from __future__ import annotations

from fastapi import FastAPI

from tongban_kit.app import create_service_app
from tongban_kit.contracts import ServiceDescriptor
from tongban_org import rpc
from tongban_org.api.routes import memberships, units
from tongban_org.config import Settings
from tongban_org.contract import CONTRACT

TAGS = [
    {
        "name": "units",
        "description": "The organisation tree: province → city → county → township; departments.",
    },
    {"name": "memberships", "description": "Posts of users in units."},
    {"name": "admin", "description": "Delegated administration of subtrees (分级授权)."},
    {"name": "ops", "description": "Health, readiness and metrics."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the org service app (resources start in the lifespan)."""
    return create_service_app(
        settings or Settings(),
        CONTRACT,
        routers=[units.router, memberships.router],
        title="Tongban organisation service",
        summary="组织体系: units, tree, memberships, delegated admin",
        rpc_handlers=rpc.handlers,
        openapi_tags=TAGS,
    )


DESCRIPTOR = ServiceDescriptor(
    contract=CONTRACT,
    app_factory=lambda: create_app(Settings(log_json=False)),
    module="tongban_org",
    dev_port=8101,
)
