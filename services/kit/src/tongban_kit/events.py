"""CloudEvents 1.0 envelope (structured JSON mode) and the declared catalogue of a service's events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from tongban_kit.context import TRACEPARENT_HEADER, current_headers
from tongban_kit.ids import new_id
from tongban_kit.nats import Bus

CONTENT_TYPE = "application/cloudevents+json"


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event in structured JSON; `traceparent` is the distributed-tracing extension."""

    model_config = ConfigDict(extra="allow")

    specversion: str = "1.0"
    id: str = Field(default_factory=new_id)
    source: str
    type: str
    subject: str | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    traceparent: str | None = None
    data: dict[str, Any]

    def to_json(self) -> bytes:
        """Serialise to the structured JSON wire form."""
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def from_json(cls, raw: bytes) -> CloudEvent:
        """Parse the structured JSON wire form."""
        return cls.model_validate_json(raw)


@dataclass(frozen=True)
class EventSpec:
    """A declared event: its subject (= CloudEvents type), payload model and meaning."""

    subject: str
    model: type[BaseModel]
    description: str

    @property
    def schema_id(self) -> str:
        """The `dataschema` URI of this event's payload."""
        return f"https://tongban.dev/contracts/events/{self.subject}.json"


def make_event(spec: EventSpec, data: BaseModel, *, source: str, subject: str | None = None) -> CloudEvent:
    """Build an event for a declared spec, carrying the current trace context."""
    tp = current_headers().get(TRACEPARENT_HEADER)
    return CloudEvent(
        source=source,
        type=spec.subject,
        subject=subject,
        dataschema=spec.schema_id,
        traceparent=tp,
        data=data.model_dump(mode="json"),
    )


async def publish_event(bus: Bus, event: CloudEvent, *, timeout: float = 5.0) -> None:
    """Publish to JetStream on the subject named by the event type, de-duplicated by event id."""
    headers = {"Nats-Msg-Id": event.id, "Content-Type": CONTENT_TYPE}
    if event.traceparent:
        headers[TRACEPARENT_HEADER] = event.traceparent
    await bus.js.publish(bus.subject(event.type), event.to_json(), headers=headers, timeout=timeout)
