"""Settings of the organisation service."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from tongban_kit.demo import demo_user_id
from tongban_kit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Org service settings, from `TONGBAN_ORG_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="TONGBAN_ORG_", extra="ignore")
    service_name: ClassVar[str] = "org"

    port: int = 8101
    database_url: str = "sqlite+aiosqlite:///./data/org.db"
    #: account ids (the `sub` of access tokens) that administer the whole tree (分级授权 root); grants delegate
    #: subtrees from there. The default is the demo administrator `demo-admin` of the development seeds.
    bootstrap_admins: list[str] = [demo_user_id("demo-admin")]
    #: rows accepted by one bulk import
    import_max_rows: int = 50_000
    #: the largest body of one bulk import (every other request: `max_body_bytes`)
    import_max_bytes: int = 16 * 1024 * 1024
