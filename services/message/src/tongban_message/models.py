"""Tables and API models of the message service: templates, messages and their per-recipient deliveries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, model_validator
from pydantic import Field as PField
from sqlalchemy import JSON, Column, Index, Integer, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from tongban_kit.db import UtcDateTime
from tongban_kit.outbox import utcnow

#: a template code: lower-case words joined by dots, dashes or underscores (e.g. `affairs.step.completed`)
CODE_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,99}$"


class Channel(StrEnum):
    """Where a delivery goes: the inbox (站内信) kept here, or a text message or email through a provider."""

    inbox = "inbox"
    sms = "sms"
    email = "email"


class TemplateStatus(StrEnum):
    """Archived templates can no longer be sent (messages already sent keep their text)."""

    active = "active"
    archived = "archived"


class DeliveryStatus(StrEnum):
    """An inbox delivery is delivered when stored and read when opened; an SMS or email waits (queued) for the
    dispatcher, which hands it to the provider (delivered) or gives up after its attempts (failed)."""

    queued = "queued"
    delivered = "delivered"
    failed = "failed"
    read = "read"


class MessageStatus(StrEnum):
    """A message to an organisation unit (or to many people) is queued when accepted, then fanned out by a worker:
    sent once every delivery is written, failed when it could not be (the unit vanished, too many recipients)."""

    queued = "queued"
    sent = "sent"
    failed = "failed"


class Template(SQLModel, table=True):
    """A message template; `((name))` placeholders are filled from a message's personalisation."""

    __tablename__ = "message_template"

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    code: str = Field(sa_column=Column(String(100), nullable=False, unique=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    channel: str = Field(sa_column=Column(String(16), nullable=False))
    subject: str = Field(sa_column=Column(String(500), nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=TemplateStatus.active, sa_column=Column(String(16), nullable=False))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    created_by: str | None = Field(default=None, sa_column=Column(String(100)))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))


class Message(SQLModel, table=True):
    """One send: a template version, its personalisation, who sent it and to how many recipients."""

    __tablename__ = "message_message"
    #: a reference is the sender's own: the app (client id) and the person using it (no one for the app's own token:
    #: NULLs count as equal there so the app's own references stay unique; SQLite, for development, cannot say so)
    __table_args__ = (
        Index(
            "uq_message_message_sender_reference",
            "sender_client_id",
            "sender_sub",
            "reference",
            unique=True,
            postgresql_nulls_not_distinct=True,
            postgresql_where=text("reference IS NOT NULL"),
            sqlite_where=text("reference IS NOT NULL"),
        ),
        Index("ix_message_message_fanout", "status", "claimed_until"),
    )

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    template_id: str = Field(sa_column=Column(String(36), nullable=False))
    template_version: int = Field(sa_column=Column(Integer, nullable=False))
    channel: str = Field(sa_column=Column(String(16), nullable=False))
    sender_client_id: str = Field(sa_column=Column(String(100), nullable=False))
    sender_sub: str | None = Field(default=None, sa_column=Column(String(100)))
    reference: str | None = Field(default=None, sa_column=Column(String(200)))
    personalisation: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    recipients: int = Field(sa_column=Column(Integer, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    status: str = Field(
        default=MessageStatus.sent,
        sa_column=Column(String(16), nullable=False, server_default=MessageStatus.sent.value),
    )
    sent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    #: why the fan-out failed (status failed)
    error: str | None = Field(default=None, sa_column=Column(String(500)))
    # a queued fan-out: who it goes to and the text as rendered when accepted (the template may change meanwhile)
    audience: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    subject: str | None = Field(default=None, sa_column=Column(String(500)))
    body: str | None = Field(default=None, sa_column=Column(Text))
    #: the worker holding the fan-out, and until when (a crashed worker's claim runs out; another resumes)
    claim: str | None = Field(default=None, sa_column=Column(String(36)))
    claimed_until: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    fanout_attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


class Delivery(SQLModel, table=True):
    """A message to one recipient, with the text as it was rendered for them."""

    __tablename__ = "message_delivery"
    __table_args__ = (
        UniqueConstraint("message_id", "user_id", name="uq_message_delivery_recipient"),
        Index("ix_message_delivery_inbox", "user_id", "id"),
        Index("ix_message_delivery_unread", "user_id", "status"),
        Index("ix_message_delivery_due", "status", "next_attempt_at"),
    )

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    message_id: str = Field(sa_column=Column(String(36), nullable=False))
    user_id: str = Field(sa_column=Column(String(64), nullable=False))
    channel: str = Field(sa_column=Column(String(16), nullable=False))
    subject: str = Field(sa_column=Column(String(500), nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=DeliveryStatus.delivered, sa_column=Column(String(16), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    read_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    #: the mobile number or email address (SMS and email); kept with the delivery, as sent
    address: str | None = Field(default=None, sa_column=Column(String(320)))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    #: when the dispatcher may (again) try a queued delivery; also its claim while an attempt is under way
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    last_error: str | None = Field(default=None, sa_column=Column(String(500)))


# --- API models ---


class TemplateCreate(BaseModel):
    """A new template."""

    code: str = PField(pattern=CODE_PATTERN, description="stable name senders and events refer to")
    name: str = PField(min_length=1, max_length=200)
    channel: Channel = Channel.inbox
    subject: str = PField(
        "", max_length=500, description="may hold ((placeholders)); required for the inbox and email, unused by SMS"
    )
    body: str = PField(min_length=1, max_length=10_000, description="plain text with ((placeholders))")

    @model_validator(mode="after")
    def _subject_where_shown(self) -> TemplateCreate:
        if self.channel != Channel.sms and not self.subject.strip():
            raise ValueError(f"a {self.channel} template needs a subject")
        return self


class TemplateUpdate(BaseModel):
    """Changes to a template; each change makes a new version (sent messages keep their text)."""

    name: str | None = PField(None, min_length=1, max_length=200)
    subject: str | None = PField(None, min_length=1, max_length=500)
    body: str | None = PField(None, min_length=1, max_length=10_000)


class TemplatePublic(BaseModel):
    """A template as the API returns it."""

    id: str
    code: str
    name: str
    channel: Channel
    subject: str
    body: str
    placeholders: list[str] = PField(description="the personalisation keys a message must give")
    status: TemplateStatus
    version: int
    created_at: datetime
    updated_at: datetime


class Recipients(BaseModel):
    """Who gets a message: people by account id, and/or the members of an organisation unit."""

    user_ids: list[Annotated[str, PField(min_length=1, max_length=64)]] = PField(default_factory=list, max_length=1000)
    unit_id: str | None = PField(None, min_length=1, max_length=36, description="every member of this unit")
    recursive: bool = PField(False, description="with unit_id: the members of its whole subtree too")


class MessageCreate(BaseModel):
    """Send a template to recipients."""

    template_id: str | None = PField(None, min_length=1, max_length=36)
    template_code: str | None = PField(None, pattern=CODE_PATTERN)
    to: Recipients
    personalisation: dict[str, str | int | float | bool] = PField(default_factory=dict, max_length=100)
    reference: str | None = PField(
        None,
        min_length=1,
        max_length=200,
        description="the sender's own id of this message: a retry with the same reference sends nothing twice",
    )


class MessagePublic(BaseModel):
    """A message as its sender sees it."""

    id: str
    template_id: str
    template_version: int
    channel: Channel
    reference: str | None = None
    status: MessageStatus = PField(
        MessageStatus.sent, description="queued: accepted, deliveries being written; sent: all written; failed"
    )
    error: str | None = PField(None, description="why the fan-out failed")
    recipients: int = PField(description="people the message goes to (0 until a queued fan-out has resolved them)")
    read: int = PField(0, description="deliveries their recipient has opened")
    queued: int = PField(0, description="SMS and email deliveries not handed to the provider yet")
    delivered: int = PField(0, description="deliveries in the inbox or handed to the provider")
    failed: int = PField(0, description="deliveries that could not be made (no address, provider refused)")
    created_at: datetime
    sent_at: datetime | None = PField(None, description="when every delivery was written")


class DeliveryPublic(BaseModel):
    """An inbox item as its recipient sees it."""

    id: str
    message_id: str
    subject: str
    body: str
    status: DeliveryStatus
    created_at: datetime
    read_at: datetime | None = None


class InboxPage(BaseModel):
    """One page of a person's inbox, newest first."""

    items: list[DeliveryPublic]
    next_cursor: str | None = None
    unread: int = PField(description="unread items in the whole inbox")


class DeliveryStatusPublic(BaseModel):
    """One recipient's delivery as the sender sees it (the address masked)."""

    id: str
    user_id: str
    channel: Channel
    status: DeliveryStatus
    address: str | None = PField(None, description="masked mobile number or email address")
    attempts: int
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    read_at: datetime | None = None
