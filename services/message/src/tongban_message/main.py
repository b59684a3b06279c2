"""The message service app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi import FastAPI

from tongban_kit.app import Runtime, create_service_app
from tongban_kit.bearer import BearerAuth, bearer_from_settings
from tongban_kit.contracts import ServiceDescriptor
from tongban_message import messages as sending
from tongban_message.api.routes import messages, templates
from tongban_message.config import Settings
from tongban_message.contract import CONTRACT, RPC_SEND, SendRequest
from tongban_message.dispatcher import Dispatcher, forget_addresses
from tongban_message.fanout import FanoutWorker
from tongban_message.messages import Sender
from tongban_message.models import MessageCreate, MessagePublic
from tongban_message.providers import make_providers
from tongban_message.seed import ensure_system_templates

log = logging.getLogger(__name__)

FORGET_EVERY_SECONDS = 3600
TAGS = [
    {"name": "messages", "description": "Sending messages to people and organisation units; the inbox (站内信)."},
    {"name": "templates", "description": "Message templates with ((placeholders)), versioned."},
    {"name": "ops", "description": "Health, readiness and metrics."},
]


def create_app(settings: Settings | None = None, *, bearer: BearerAuth | None = None) -> FastAPI:
    """Build the message service app (resources start in the lifespan).

    Callers authenticate with access tokens of the issuer in `settings.oidc_issuer`; `bearer` replaces that
    verifier (tests hand in one that trusts their own token issuer).
    """
    settings = settings or Settings()
    bearer = bearer or bearer_from_settings(settings)
    providers = make_providers(settings)

    async def start(rt: Runtime) -> None:
        made = await ensure_system_templates(rt.db)
        if made:
            log.info("system templates made", extra={"templates": made})
        # SMS and email go out from every replica's dispatcher; large sends are fanned out by every replica's worker
        rt.background.append(asyncio.create_task(app.state.dispatcher.run(), name="message-dispatcher"))
        assert rt.rpc is not None
        rt.background.append(asyncio.create_task(app.state.fanout.run(rt.rpc), name="message-fanout"))

        async def forget() -> None:
            n = await forget_addresses(rt.db, older_than=timedelta(days=settings.address_retention_days))
            if n:
                log.info("addresses of settled deliveries forgotten", extra={"deliveries": n})

        rt.every(FORGET_EVERY_SECONDS, forget, name="message-forget-addresses")

    def rpc_handlers(rt: Runtime) -> dict[str, Callable[[Any], Awaitable[Any]]]:
        async def send(request: SendRequest) -> MessagePublic:
            assert rt.rpc is not None
            body = MessageCreate.model_validate(request.model_dump(exclude={"sender"}))
            sender = Sender(client_id=f"service:{request.sender}", sub=None)
            async with rt.db.session() as s:
                message, _ = await sending.send_and_dispatch(
                    s, body, sender, rt.rpc, settings, app.state.dispatcher, app.state.fanout.wake
                )
            return message

        return {RPC_SEND.name: send}

    app = create_service_app(
        settings,
        CONTRACT,
        routers=[templates.router, messages.router],
        title="Tongban message service",
        summary="消息体系: templates, messages, the inbox",
        openapi_tags=TAGS,
        rpc_handlers=rpc_handlers,
        on_startup=start,
        accepts_tokens=True,
        bearer=bearer,
    )
    app.state.providers = providers
    app.state.dispatcher = Dispatcher(app.state.runtime.db, providers, settings)
    app.state.fanout = FanoutWorker(app.state.runtime.db, settings, app.state.dispatcher)
    return app


DESCRIPTOR = ServiceDescriptor(
    contract=CONTRACT, app_factory=lambda: create_app(Settings(log_json=False)), module="tongban_message", dev_port=8104
)
