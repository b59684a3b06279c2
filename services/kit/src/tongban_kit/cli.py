"""The command line every service shares: `python -m tongban_<name> serve|migrate|seed`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI

from tongban_kit.db import Database, run_migrations
from tongban_kit.logging import configure_logging
from tongban_kit.settings import ServiceSettings


def service_main(
    *,
    name: str,
    description: str,
    settings_factory: Callable[[], ServiceSettings],
    migrations: Path,
    app_factory: Callable[[ServiceSettings], FastAPI],
    seed: Callable[[Database, ServiceSettings], Awaitable[object]] | None = None,
    argv: list[str] | None = None,
) -> int:
    """Parse the command and run it; demo seeding is refused outside dev unless forced."""
    ap = argparse.ArgumentParser(prog=f"tongban_{name}", description=description)
    ap.add_argument("command", choices=["serve", "migrate", "seed"])
    ap.add_argument("--force", action="store_true", help="seed outside the dev environment")
    args = ap.parse_args(argv)
    settings = settings_factory()
    configure_logging(name, settings.log_level, settings.log_json)
    if args.command == "migrate":
        run_migrations(migrations, settings.database_url)
        return 0
    if args.command == "seed":
        if seed is None:
            print(f"{name} has no demo data", file=sys.stderr)
            return 2
        if not settings.is_dev and not args.force:
            print("refusing to seed demo data outside the dev environment (use --force)", file=sys.stderr)
            return 2

        async def go() -> None:
            db = Database(settings.database_url)
            try:
                await seed(db, settings)
            finally:
                await db.dispose()

        asyncio.run(go())
        return 0
    import uvicorn

    uvicorn.run(
        app_factory(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )
    return 0
