"""Settings of the organisation service."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from tongban_kit.settings import AdminSettings


class Settings(AdminSettings):
    """Org service settings, from `TONGBAN_ORG_*` environment variables."""

    # bootstrap_admins (kit AdminSettings): accounts that administer the whole tree (分级授权 root); grants
    # delegate subtrees from there

    model_config = SettingsConfigDict(env_prefix="TONGBAN_ORG_", extra="ignore")
    service_name: ClassVar[str] = "org"
    secret_fields: ClassVar[tuple[str, ...]] = ("cursor_secret",)

    port: int = 8101
    database_url: str = "sqlite+aiosqlite:///./data/org.db"
    #: rows accepted by one bulk import
    import_max_rows: int = 50_000
    #: the largest body of one bulk import (every other request: `max_body_bytes`)
    import_max_bytes: int = 16 * 1024 * 1024
