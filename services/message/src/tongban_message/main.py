"""The message service app."""

from __future__ import annotations

import asyncio
import contextlib
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
from tongban_message.messages import Sender
from tongban_message.models import Channel, MessageCreate, MessagePublic
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
        # SMS and email go out from every replica's dispatcher
        rt.background.append(asyncio.create_task(app.state.dispatcher.run(), name="message-dispatcher"))

        async def forget() -> None:
            while True:
                with contextlib.suppress(Exception):
                    keep = timedelta(days=settings.address_retention_days)
                    n = await forget_addresses(rt.db, older_than=keep)
                    if n:
                        log.info("addresses of settled deliveries forgotten", extra={"deliveries": n})
                await asyncio.sleep(FORGET_EVERY_SECONDS)

        rt.background.append(asyncio.create_task(forget(), name="message-forget-addresses"))
        if bearer is None:
            log.warning("no token issuer configured (TONGBAN_MESSAGE_OIDC_ISSUER): the API answers 503 until one is")
        else:
            await bearer.start(rt.bus)  # follow token revocations

    def rpc_handlers(rt: Runtime) -> dict[str, Callable[[Any], Awaitable[Any]]]:
        async def send(request: SendRequest) -> MessagePublic:
            assert rt.rpc is not None
            dispatcher: Dispatcher = app.state.dispatcher
            body = MessageCreate.model_validate(request.model_dump(exclude={"sender"}))
            async with rt.db.session() as s:
                message, new = await sending.send(
                    s,
                    body,
                    Sender(client_id=f"service:{request.sender}", sub=None),
                    rt.rpc,
                    limit=settings.max_recipients,
                    timeout=settings.rpc_timeout_seconds,
                    channels=frozenset({Channel.inbox, *dispatcher.providers}),
                )
            if new and message.queued:
                dispatcher.wake()
            return message

        return {RPC_SEND.name: send}

    async def stop(rt: Runtime) -> None:
        if bearer is not None:
            await bearer.close()

    app = create_service_app(
        settings,
        CONTRACT,
        routers=[templates.router, messages.router],
        title="Tongban message service",
        summary="消息体系: templates, messages, the inbox",
        openapi_tags=TAGS,
        rpc_handlers=rpc_handlers,
        on_startup=start,
        on_shutdown=stop,
    )
    app.state.bearer = bearer
    app.state.providers = providers
    app.state.dispatcher = Dispatcher(app.state.runtime.db, providers, settings)
    return app


DESCRIPTOR = ServiceDescriptor(
    contract=CONTRACT, app_factory=lambda: create_app(Settings(log_json=False)), module="tongban_message", dev_port=8104
)
