"""The org service app."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from tongban_kit.app import Runtime, create_service_app
from tongban_kit.bearer import BearerAuth, bearer_from_settings
from tongban_kit.contracts import ServiceDescriptor
from tongban_org import rpc
from tongban_org.api.routes import memberships, send_grants, units
from tongban_org.cache import UnitCache
from tongban_org.config import Settings
from tongban_org.contract import CONTRACT

log = logging.getLogger(__name__)

TAGS = [
    {
        "name": "units",
        "description": "The organisation tree: province → city → county → township; departments.",
    },
    {"name": "memberships", "description": "Posts of users in units."},
    {"name": "admin", "description": "Delegated administration of subtrees (分级授权) and sending rights."},
    {"name": "ops", "description": "Health, readiness and metrics."},
]


def create_app(settings: Settings | None = None, *, bearer: BearerAuth | None = None) -> FastAPI:
    """Build the org service app (resources start in the lifespan).

    Callers authenticate with access tokens of the issuer in `settings.oidc_issuer`; `bearer` replaces that
    verifier (tests hand in one that trusts their own token issuer).
    """
    settings = settings or Settings()
    bearer = bearer or bearer_from_settings(settings)

    def rpc_handlers(rt: Runtime) -> dict[str, Callable[[Any], Awaitable[Any]]]:
        app.state.unit_cache = UnitCache(rt.db)
        return rpc.handlers(rt, app.state.unit_cache)

    async def start(rt: Runtime) -> None:
        assert rt.bus is not None
        await app.state.unit_cache.start(rt.bus)

    async def stop(rt: Runtime) -> None:
        await app.state.unit_cache.stop()

    app = create_service_app(
        settings,
        CONTRACT,
        routers=[units.router, memberships.router, send_grants.router],
        title="Tongban organisation service",
        summary="组织体系: units, tree, memberships, delegated admin",
        rpc_handlers=rpc_handlers,
        on_startup=start,
        on_shutdown=stop,
        openapi_tags=TAGS,
        accepts_tokens=True,
        bearer=bearer,
        body_limits={"/api/v1/orgs/units/import": settings.import_max_bytes},
    )
    return app


DESCRIPTOR = ServiceDescriptor(
    contract=CONTRACT,
    app_factory=lambda: create_app(Settings(log_json=False)),
    module="tongban_org",
    dev_port=8101,
)
