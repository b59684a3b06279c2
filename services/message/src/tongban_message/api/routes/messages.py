"""Sending messages (apps) and reading the inbox (people)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from tongban_kit.app import SessionDep
from tongban_kit.pagination import Page
from tongban_kit.problems import PROBLEM_JSON, problem_responses
from tongban_message import access, messages
from tongban_message.api.deps import (
    AUTH_RESPONSES,
    Cursor,
    Limit,
    ReaderDep,
    RpcDep,
    SenderDep,
    SendTokenDep,
    SettingsDep,
)
from tongban_message.dispatcher import Dispatcher
from tongban_message.fanout import FanoutWorker
from tongban_message.models import (
    DeliveryPublic,
    DeliveryStatusPublic,
    InboxPage,
    MessageCreate,
    MessagePublic,
    MessageStatus,
)

router = APIRouter(prefix="/api/v1/messages", tags=["messages"])
ItemId = Annotated[str, Path(min_length=1, max_length=36)]


@router.post(
    "",
    status_code=201,
    summary="Send a message",
    responses=AUTH_RESPONSES
    | problem_responses(400, 404, 409, 422)
    | {
        200: {"description": "Sent before with this reference: the earlier message, nothing sent again"},
        202: {
            "description": "Accepted for fan-out (a unit's members, or many people): the message, status queued; "
            "`Location` is where to follow it (also the answer to a replay while it is still queued)",
            "model": MessagePublic,
            "headers": {"Location": {"description": "the message", "schema": {"type": "string"}}},
        },
        503: {
            "description": "Too many large sends wait to be fanned out (`overloaded`, nothing written; "
            "retry after `Retry-After` seconds), a directory did not answer, or the service is not ready",
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}},
            "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}},
        },
    },
)
async def send_message(
    body: MessageCreate,
    s: SessionDep,
    sender: SenderDep,
    token: SendTokenDep,
    rpc: RpcDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
) -> MessagePublic:
    """Render a template for each recipient (people by account id, or the members of an organisation unit): into
    their inboxes, or queued as SMS or email to their numbers and addresses from the user directory.

    A person sends only to the units (and their members) they may address; an app's own token within what its
    registration allows (units, templates, people by account id). A send to a unit, or to more people than the
    deployment writes while the caller waits, is accepted (202) and fanned out by a worker: follow it at
    `Location`. While too many such sends wait, a new one is refused (503 with `Retry-After`) and nothing is
    written."""
    await access.require_send(s, body, token, rpc, settings.rpc_timeout_seconds)
    dispatcher: Dispatcher = request.app.state.dispatcher
    fanout: FanoutWorker = request.app.state.fanout
    message, new = await messages.send_and_dispatch(s, body, sender, rpc, settings, dispatcher, fanout.wake)
    if message.status == MessageStatus.queued:
        response.status_code = 202
        response.headers["Location"] = f"{router.prefix}/{message.id}"
    elif not new:
        response.status_code = 200
    return message


@router.get("/inbox", summary="My inbox", responses=AUTH_RESPONSES | problem_responses(400, 422))
async def my_inbox(
    s: SessionDep,
    user_id: ReaderDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    unread: Annotated[bool, Query(description="only the unread ones")] = False,
) -> InboxPage:
    """The signed-in person's messages, newest first, with the number unread."""
    return await messages.inbox(s, user_id, limit=limit, cursor=cursor, unread=unread)


@router.post(
    "/inbox/{delivery_id}/read", summary="Mark as read", responses=AUTH_RESPONSES | problem_responses(404, 422)
)
async def mark_read(delivery_id: ItemId, s: SessionDep, user_id: ReaderDep) -> DeliveryPublic:
    """Open an inbox item (idempotent)."""
    return await messages.read(s, user_id, delivery_id)


@router.get("/{message_id}", summary="A message I sent", responses=AUTH_RESPONSES | problem_responses(404, 422))
async def get_message(message_id: ItemId, s: SessionDep, sender: SenderDep) -> MessagePublic:
    """A message of this app: its fan-out state (queued, sent, failed), its deliveries counted by state and how
    many of its recipients opened it."""
    return await messages.get_message(s, message_id, sender)


@router.get(
    "/{message_id}/deliveries",
    summary="The deliveries of a message I sent",
    responses=AUTH_RESPONSES | problem_responses(400, 404, 422),
)
async def list_deliveries(
    message_id: ItemId, s: SessionDep, sender: SenderDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[DeliveryStatusPublic]:
    """One per recipient: state, attempts, the last error, the address masked."""
    return await messages.deliveries(s, message_id, sender, limit=limit, cursor=cursor)
