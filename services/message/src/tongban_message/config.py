"""Settings of the message service."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from tongban_kit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Message service settings, from `TONGBAN_MESSAGE_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="TONGBAN_MESSAGE_", extra="ignore")
    service_name: ClassVar[str] = "message"
    secret_fields: ClassVar[tuple[str, ...]] = ("cursor_secret",)

    port: int = 8104
    database_url: str = "sqlite+aiosqlite:///./data/message.db"
    #: the most recipients one message may reach (after expanding units to their members)
    max_recipients: int = Field(10_000, ge=1, le=1_000_000)
    #: timeout of RPC calls to other services (the org service to expand units, the user service for contacts)
    rpc_timeout_seconds: float = 5.0

    # SMS and email: who carries them (`none`: the channel is not offered; `log`: development, to the log)
    sms_provider: Literal["none", "log"] = "none"
    email_provider: Literal["none", "log", "smtp"] = "none"
    smtp_host: str = "localhost"
    smtp_port: int = Field(587, ge=1, le=65535)
    #: `starttls` (port 587), `tls` (port 465) or `none` (a relay on a trusted network only)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = "通办 <noreply@tongban.example.gov.cn>"
    smtp_timeout_seconds: float = Field(20.0, gt=0)

    # the dispatcher of SMS and email deliveries
    #: attempts before a delivery fails for good
    delivery_max_attempts: int = Field(5, ge=1, le=50)
    #: seconds before the first retry; doubled after each failed attempt (at most an hour)
    delivery_retry_seconds: float = Field(30.0, gt=0)
    #: seconds an attempt may take before the delivery is due again (a crashed attempt is retried)
    delivery_claim_seconds: float = Field(120.0, gt=0)
    #: deliveries taken per round, and at most at once
    dispatch_batch: int = Field(50, ge=1, le=1000)
    #: seconds between rounds while nothing is due
    dispatch_idle_seconds: float = Field(1.0, gt=0)
    #: days a settled SMS or email delivery keeps the number or address it went to (then only the state stays)
    address_retention_days: int = Field(7, ge=0)

    # large sends: accepted (202) and fanned out by a worker in every replica
    #: a message to more listed people than this, or to an organisation unit, is fanned out asynchronously
    sync_max_recipients: int = Field(100, ge=1, le=1000)
    #: queued fan-outs beyond which a new large send is refused (503 + Retry-After) rather than queued
    fanout_queue_limit: int = Field(50, ge=1, le=100_000)
    #: the Retry-After of that refusal, seconds
    fanout_retry_after_seconds: int = Field(5, ge=1, le=3600)
    #: deliveries written per transaction of a fan-out
    fanout_batch: int = Field(500, ge=1, le=5000)
    #: seconds a worker holds a fan-out without progress before another may resume it (a crashed worker)
    fanout_claim_seconds: float = Field(60.0, gt=0)
    #: seconds before a fan-out is tried again after the org or user service did not answer
    fanout_retry_seconds: float = Field(5.0, gt=0)
    #: seconds between looks for queued fan-outs while there are none (a send wakes the worker at once)
    fanout_idle_seconds: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _smtp_login_needs_a_real_password(self) -> Settings:
        login = self.email_provider == "smtp" and bool(self.smtp_username)
        if login and self.environment != "dev" and len(self.smtp_password.get_secret_value()) < 8:
            raise ValueError("smtp_password must be set when smtp_username is (outside development)")
        return self
