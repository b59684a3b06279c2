"""Settings of the user service."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from tongban_kit.settings import AdminSettings


class Settings(AdminSettings):
    """User service settings, from `TONGBAN_USER_*` environment variables."""

    # bootstrap_admins (kit AdminSettings): accounts that see and manage every account, with the admin scope

    model_config = SettingsConfigDict(env_prefix="TONGBAN_USER_", extra="ignore")
    service_name: ClassVar[str] = "user"
    secret_fields: ClassVar[tuple[str, ...]] = ("pii_encryption_key", "pii_hash_key", "cursor_secret")

    port: int = 8102
    database_url: str = "sqlite+aiosqlite:///./data/user.db"
    #: encrypts identity numbers at rest (AES-256-GCM); any string, or a base64 32-byte key
    pii_encryption_key: str = "changethis"
    #: earlier encryption keys, still accepted for reading after a rotation
    pii_old_encryption_keys: list[str] = []
    #: keys the exact-match lookup hash of identity numbers (HMAC-SHA256)
    pii_hash_key: str = "changethis"
    #: soft-deleted accounts are purged after this many days
    deleted_retention_days: int = 30
    #: rows accepted by one bulk import
    import_max_rows: int = 100_000
    #: the largest body of one bulk import (every other request: `max_body_bytes`)
    import_max_bytes: int = 32 * 1024 * 1024
    #: timeout of RPC calls to other services
    rpc_timeout_seconds: float = 2.0
