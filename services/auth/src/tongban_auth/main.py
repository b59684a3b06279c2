"""The authentication service app."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from tongban_auth import clients as client_registry
from tongban_auth import credentials, interaction, keys, logout, otp
from tongban_auth.api.routes import clients, discovery, oauth, registration, signin
from tongban_auth.config import Settings
from tongban_auth.contract import (
    CONTRACT,
    RPC_CLIENT_ALLOWANCES,
    RPC_WEB_ORIGINS,
    AllowancesReply,
    AllowancesRequest,
    WebOriginsReply,
    WebOriginsRequest,
)
from tongban_auth.models import Client, ClientStatus
from tongban_auth.tokens import Signer
from tongban_auth.web import Pages
from tongban_kit.app import Runtime, create_service_app
from tongban_kit.contracts import ServiceDescriptor
from tongban_kit.rpc import RpcClient

log = logging.getLogger(__name__)

#: seconds between purges of expired codes, sessions, challenges and throttle rows
PURGE_EVERY_SECONDS = 3600
TAGS = [
    {"name": "discovery", "description": "OpenID Provider metadata and the published signing keys."},
    {"name": "clients", "description": "The registry of applications (OAuth clients), for administrators."},
    {"name": "oidc", "description": "Authorization, pushed requests, sign-in pages, logout and the account page."},
    {"name": "oauth", "description": "Token, introspection, revocation and userinfo endpoints (back channel)."},
    {"name": "ops", "description": "Health, readiness and metrics."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the authentication service app (resources start in the lifespan; signing keys are made if missing)."""
    settings = settings or Settings()
    box = keys.make_box(settings)

    deliverer = _otp_deliverer(settings, lambda: app.state.runtime.rpc)

    async def start(rt: Runtime) -> None:
        await keys.ensure_keys(rt.db, settings, box)
        rt.every(PURGE_EVERY_SECONDS, lambda: credentials.purge_expired(rt), name="auth-purge")

    async def stop(rt: Runtime) -> None:
        await oauth.uninstall(app)

    def rpc_handlers(rt: Runtime) -> dict[str, Callable[[Any], Awaitable[Any]]]:
        async def web_origins(_: WebOriginsRequest) -> WebOriginsReply:
            async with rt.db.read_session() as s:
                return WebOriginsReply(origins=await client_registry.web_origins(s))

        async def allowances(req: AllowancesRequest) -> AllowancesReply:
            async with rt.db.read_session() as s:
                c = await s.get(Client, req.client_id)
            if c is None:
                return AllowancesReply(client_id=req.client_id, found=False)
            return AllowancesReply(
                client_id=c.client_id,
                found=True,
                active=c.status == ClientStatus.active,
                scopes=list(c.scopes),
                message_units=list(c.message_units),
                message_templates=list(c.message_templates),
                message_to_accounts=c.message_to_accounts,
            )

        return {RPC_WEB_ORIGINS.name: web_origins, RPC_CLIENT_ALLOWANCES.name: allowances}

    app = create_service_app(
        settings,
        CONTRACT,
        routers=[discovery.router, clients.router, registration.router, oauth.router, signin.router],
        title="Tongban authentication service",
        summary="统一身份认证: OpenID Connect provider, signing keys, client registry",
        openapi_tags=TAGS,
        on_startup=start,
        on_shutdown=stop,
        rpc_handlers=rpc_handlers,
        consumer_handlers=lambda rt: {
            "auth-backchannel-logout": logout.consumer_handler(app.state.signer, settings),
        },
    )
    app.state.key_box = box
    app.state.signer = Signer(app.state.runtime.db, box, settings)
    app.state.interaction_box = interaction.make_box(settings)
    app.state.otp_deliverer = deliverer
    Pages(settings).install(app)
    oauth.install(app, settings)
    return app


def _otp_deliverer(settings: Settings, rpc: Callable[[], RpcClient | None]) -> otp.Deliverer | None:
    """Where one-time codes go; outside development a missing channel stops the service at start."""
    if settings.otp_channel == "none":
        return None
    try:
        return otp.make_deliverer(settings, rpc)
    except otp.DeliveryUnavailable as exc:
        if settings.environment == "prod":
            raise
        log.warning("one-time codes by SMS or email are unavailable: %s", exc)
        return None


DESCRIPTOR = ServiceDescriptor(
    contract=CONTRACT, app_factory=lambda: create_app(Settings(log_json=False)), module="tongban_auth", dev_port=8103
)
