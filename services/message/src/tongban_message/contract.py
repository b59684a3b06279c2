"""What the message service declares on the bus: its stream, events and RPC endpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from tongban_kit.app import ServiceContract
from tongban_kit.events import EventSpec
from tongban_kit.nats import StreamSpec
from tongban_kit.rpc import RpcSpec
from tongban_message.models import MessageCreate
from tongban_message.models import MessagePublic as MessagePublic
from tongban_message.models import Recipients as Recipients  # read by senders over RPC

VERSION = "0.1.0"


class MessageSent(BaseModel):
    """Payload of message.message.sent.v1: a template went to its recipients (inbox, or queued as SMS or email)."""

    message_id: str
    template_id: str
    template_code: str
    template_version: int
    channel: str
    sender_client_id: str
    recipients: int
    reference: str | None = None


class MessageFailed(BaseModel):
    """Payload of message.message.failed.v1: a queued message could not be fanned out (nothing was delivered)."""

    message_id: str
    template_id: str
    template_code: str
    channel: str
    sender_client_id: str
    reference: str | None = None
    error: str = Field(description="why, e.g. the unit was dissolved or has more members than a message may reach")


class DeliveryRead(BaseModel):
    """Payload of message.delivery.read.v1: a recipient opened a message (first time only)."""

    delivery_id: str
    message_id: str
    user_id: str
    read_at: datetime


class DeliveryOutcome(BaseModel):
    """Payload of message.delivery.delivered.v1 and message.delivery.failed.v1 (SMS and email)."""

    delivery_id: str
    message_id: str
    user_id: str
    channel: str
    attempts: int
    error: str | None = None


MESSAGE_SENT = EventSpec("message.message.sent.v1", MessageSent, "A message was delivered to its recipients.")
MESSAGE_FAILED = EventSpec(
    "message.message.failed.v1", MessageFailed, "A message accepted for fan-out could not reach its recipients."
)
DELIVERY_READ = EventSpec("message.delivery.read.v1", DeliveryRead, "A recipient opened a message.")
DELIVERY_DELIVERED = EventSpec(
    "message.delivery.delivered.v1", DeliveryOutcome, "An SMS or email was handed to its provider."
)
DELIVERY_FAILED = EventSpec(
    "message.delivery.failed.v1",
    DeliveryOutcome,
    "An SMS or email could not be delivered (no address, refused, or out of attempts).",
)


class SendRequest(MessageCreate):
    """Request of message.rpc.send: a message sent by another service (which names itself as the sender)."""

    sender: str = Field(pattern=r"^[a-z][a-z0-9-]{1,49}$", description="the calling service, e.g. auth")


RPC_SEND = RpcSpec(
    "send",
    "message.rpc.send",
    SendRequest,
    MessagePublic,
    "Send a template to people (for services: one-time codes, case progress, work notices); a send to a unit or "
    "to many people is accepted (status queued) and fanned out by a worker.",
)

CONTRACT = ServiceContract(
    name="message",
    version=VERSION,
    description="Messages (消息体系): templates, messages and per-recipient deliveries; the inbox (站内信).",
    streams=(StreamSpec("MESSAGE_EVENTS", ("message.*.*.v1",), "Events of the message service"),),
    events=(MESSAGE_SENT, MESSAGE_FAILED, DELIVERY_READ, DELIVERY_DELIVERED, DELIVERY_FAILED),
    rpcs=(RPC_SEND,),
)
