"""The org service app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from tongban_kit.app import Runtime, create_service_app
from tongban_kit.contracts import ServiceDescriptor
from tongban_org import rpc
from tongban_org.api.routes import memberships, units
from tongban_org.cache import UnitCache
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
    settings = settings or Settings()

    def rpc_handlers(rt: Runtime) -> dict[str, Callable[[Any], Awaitable[Any]]]:
        app.state.unit_cache = UnitCache(rt.db)
        return rpc.handlers(rt, app.state.unit_cache)

    async def start_cache(rt: Runtime) -> None:
        assert rt.bus is not None
        await app.state.unit_cache.start(rt.bus)

    app = create_service_app(
        settings,
        CONTRACT,
        routers=[units.router, memberships.router],
        title="Tongban organisation service",
        summary="组织体系: units, tree, memberships, delegated admin",
        rpc_handlers=rpc_handlers,
        on_startup=start_cache,
        openapi_tags=TAGS,
    )
    return app


DESCRIPTOR = ServiceDescriptor(
    contract=CONTRACT,
    app_factory=lambda: create_app(Settings(log_json=False)),
    module="tongban_org",
    dev_port=8101,
)
