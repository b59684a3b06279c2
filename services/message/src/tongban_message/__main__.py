"""`python -m tongban_message serve|migrate|seed`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tongban_kit.cli import service_main
from tongban_kit.db import Database
from tongban_message.config import Settings

MIGRATIONS = Path(__file__).parent / "alembic"


def _app(settings: Any) -> Any:
    from tongban_message.main import create_app

    return create_app(settings)


async def _seed(db: Database, settings: Any) -> None:
    from tongban_message.seed import seed

    await seed(db)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    return service_main(
        name="message",
        description="Tongban message service",
        settings_factory=Settings,
        migrations=MIGRATIONS,
        app_factory=_app,
        seed=_seed,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
