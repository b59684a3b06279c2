"""`python -m tongban_user serve|migrate|seed`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from tongban_kit.db import Database, run_migrations
from tongban_kit.logging import configure_logging
from tongban_user.config import Settings

MIGRATIONS = Path(__file__).parent / "alembic"


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(prog="tongban_user", description="Tongban user service")
    ap.add_argument("command", choices=["serve", "migrate", "seed"])
    ap.add_argument("--force", action="store_true", help="seed outside the dev environment")
    args = ap.parse_args(argv)
    settings = Settings()
    configure_logging("user", settings.log_level, settings.log_json)
    if args.command == "migrate":
        run_migrations(MIGRATIONS, settings.database_url)
        return 0
    if args.command == "seed":
        if not settings.is_dev and not args.force:
            print("refusing to seed demo data outside the dev environment (use --force)", file=sys.stderr)
            return 2
        from tongban_user.main import make_cipher
        from tongban_user.seed import seed

        async def go() -> None:
            db = Database(settings.database_url)
            try:
                await seed(db, make_cipher(settings))
            finally:
                await db.dispose()

        asyncio.run(go())
        return 0
    import uvicorn

    from tongban_user.main import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
