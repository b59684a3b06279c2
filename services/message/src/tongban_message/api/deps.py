"""Request dependencies: settings, and the caller from its access token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPBearer

from tongban_kit.bearer import Principal, app_requires
from tongban_kit.problems import Problem, problem_responses
from tongban_kit.rpc import RpcClient
from tongban_message import access
from tongban_message.config import Settings
from tongban_message.messages import Sender

SEND_SCOPE = "message:send"
READ_SCOPE = "message:read"
ADMIN_SCOPE = "admin"
BEARER_DOC = HTTPBearer(
    auto_error=False,
    description=f"An access token (RFC 9068 JWT) from the auth service: {SEND_SCOPE} for apps that send, "
    f"{READ_SCOPE} for a person reading their inbox, {ADMIN_SCOPE} to manage templates (whole-tree "
    "administrators); the service checks the caller's entitlements with the org and auth services on each request",
)


def get_settings(request: Request) -> Settings:
    """This service's settings."""
    settings: Settings = request.app.state.runtime.settings
    return settings


def get_rpc(request: Request) -> RpcClient:
    """The RPC client (NATS connects at start-up)."""
    rpc: RpcClient | None = request.app.state.runtime.rpc
    if rpc is None:
        raise Problem(503, "the service is starting", type="unavailable")
    return rpc


SendTokenDep = Annotated[Principal, Depends(app_requires(SEND_SCOPE, scheme=BEARER_DOC))]


async def get_sender(token: SendTokenDep) -> Sender:
    """The app sending (and the person using it, if any); what they may send is checked in `access`."""
    return Sender(client_id=token.client_id, sub=token.sub if token.sub != token.client_id else None)


async def get_template_admin(
    token: Annotated[Principal, Depends(app_requires(ADMIN_SCOPE, scheme=BEARER_DOC))],
    settings: Annotated[Settings, Depends(get_settings)],
    rpc: Annotated[RpcClient, Depends(get_rpc)],
) -> str:
    """A person who administers the whole tree, as the org service says now (the admin scope alone is not enough)."""
    return await access.require_template_admin(token, rpc, settings.rpc_timeout_seconds)


async def get_reader(token: Annotated[Principal, Depends(app_requires(READ_SCOPE, scheme=BEARER_DOC))]) -> str:
    """The person whose inbox this is: the token's `sub`; a client's own token has no inbox."""
    if token.sub == token.client_id:
        raise Problem(403, "an inbox belongs to a person: use a token issued for a signed-in person", type="forbidden")
    return token.sub


SettingsDep = Annotated[Settings, Depends(get_settings)]
RpcDep = Annotated[RpcClient, Depends(get_rpc)]
SenderDep = Annotated[Sender, Depends(get_sender)]
ReaderDep = Annotated[str, Depends(get_reader)]
#: the account id of a whole-tree administrator
AdminDep = Annotated[str, Depends(get_template_admin)]
TemplateReaderDep = Annotated[Principal, Depends(app_requires(SEND_SCOPE, scheme=BEARER_DOC))]
Limit = Annotated[int, Query(ge=1, le=200, description="page size")]
Cursor = Annotated[str | None, Query(max_length=2048, description="next_cursor of the previous page")]

#: answers every protected route may give: no or bad token (401), missing scope or rights (403), not configured (503)
AUTH_RESPONSES = problem_responses(401, 403, 503)
