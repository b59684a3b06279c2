"""Settings of the organisation service."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from tongban_kit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Org service settings, from `TONGBAN_ORG_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="TONGBAN_ORG_", extra="ignore")
    service_name: ClassVar[str] = "org"

    port: int = 8101
    database_url: str = "sqlite+aiosqlite:///./data/org.db"
    #: principals that administer the whole tree (分级授权 root); grants delegate subtrees from there
    bootstrap_admins: list[str] = ["demo-admin"]
    #: interim identity: trust the `X-Tongban-Principal` header (until tokens from the auth service arrive)
    trust_principal_header: bool = True
    #: rows accepted by one bulk import
    import_max_rows: int = 50_000
