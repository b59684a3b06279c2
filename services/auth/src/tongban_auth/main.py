"""The authentication service app."""

from __future__ import annotations

from fastapi import FastAPI

from tongban_auth import keys
from tongban_auth.api.routes import clients, discovery
from tongban_auth.config import Settings
from tongban_auth.contract import CONTRACT
from tongban_auth.tokens import Signer
from tongban_kit.app import Runtime, create_service_app
from tongban_kit.contracts import ServiceDescriptor

TAGS = [
    {"name": "discovery", "description": "OpenID Provider metadata and the published signing keys."},
    {"name": "clients", "description": "The registry of applications (OAuth clients), for administrators."},
    {"name": "ops", "description": "Health, readiness and metrics."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the authentication service app (resources start in the lifespan; signing keys are made if missing)."""
    settings = settings or Settings()
    box = keys.make_box(settings)

    async def start(rt: Runtime) -> None:
        await keys.ensure_keys(rt.db, settings, box)

    app = create_service_app(
        settings,
        CONTRACT,
        routers=[discovery.router, clients.router],
        title="Tongban authentication service",
        summary="统一身份认证: OpenID Connect provider, signing keys, client registry",
        openapi_tags=TAGS,
        on_startup=start,
    )
    app.state.key_box = box
    app.state.signer = Signer(app.state.runtime.db, box, settings)
    return app


DESCRIPTOR = ServiceDescriptor(
    contract=CONTRACT, app_factory=lambda: create_app(Settings(log_json=False)), module="tongban_auth", dev_port=8103
)
