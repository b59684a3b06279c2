"""Shared test helpers."""

from __future__ import annotations

from typing import Any, TypeVar

from tongban_kit.testing.helpers import assert_problem, eventually  # noqa: F401
from tongban_kit.testing.recorder import EventRecorder

T = TypeVar("T")
#: headers of a platform administrator's request: a Bearer token minted per test module (see conftest)
ADMIN: dict[str, str] = {}
CLIENTS = "/api/v1/auth/clients"


async def event_about(recorder: EventRecorder, type_: str, subject: str) -> dict[str, Any]:
    """The first recorded event of a type about a subject (waits for the outbox relay)."""

    async def probe() -> dict[str, Any] | None:
        return next((e for e in recorder.events(type_) if e.get("subject") == subject), None)

    return await eventually(probe, what=f"{type_} about {subject}")
