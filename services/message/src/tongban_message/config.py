"""Settings of the message service."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tongban_kit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Message service settings, from `TONGBAN_MESSAGE_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="TONGBAN_MESSAGE_", extra="ignore")
    service_name: ClassVar[str] = "message"

    port: int = 8104
    database_url: str = "sqlite+aiosqlite:///./data/message.db"
    #: the most recipients one message may reach (after expanding units to their members)
    max_recipients: int = Field(10_000, ge=1, le=1_000_000)
    #: timeout of RPC calls to other services (the org service, to expand units)
    rpc_timeout_seconds: float = 5.0
