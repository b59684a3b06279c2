"""The command line every service shares: `python -m tongban_<name> serve|migrate|seed` plus its own commands."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from tongban_kit.db import Database, run_migrations
from tongban_kit.logging import configure_logging
from tongban_kit.settings import ServiceSettings, forwarding_options


@dataclass(frozen=True)
class Command:
    """A service's own subcommand: it gets the service database and settings, and returns the exit code."""

    name: str
    help: str
    run: Callable[[Database, ServiceSettings, argparse.Namespace], Awaitable[int]]
    #: adds the subcommand's options to its parser
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


async def _with_database(settings: ServiceSettings, work: Callable[[Database], Awaitable[int | None]]) -> int | None:
    db = Database(settings.database_url)
    try:
        return await work(db)
    finally:
        await db.dispose()


def service_main(
    *,
    name: str,
    description: str,
    settings_factory: Callable[[], ServiceSettings],
    migrations: Path,
    app_factory: Callable[[ServiceSettings], FastAPI],
    seed: Callable[[Database, ServiceSettings], Awaitable[object]] | None = None,
    commands: Sequence[Command] = (),
    argv: list[str] | None = None,
) -> int:
    """Parse the command and run it; demo seeding is refused outside dev unless forced."""
    ap = argparse.ArgumentParser(prog=f"tongban_{name}", description=description)
    sub = ap.add_subparsers(dest="command", required=True, metavar="command")
    sub.add_parser("serve", help="run the HTTP service")
    sub.add_parser("migrate", help="upgrade the database to the latest schema")
    seed_parser = sub.add_parser("seed", help="load the demo data (development only)")
    seed_parser.add_argument("--force", action="store_true", help="seed outside the dev environment")
    extra = {c.name: c for c in commands}
    for c in commands:
        parser = sub.add_parser(c.name, help=c.help, description=c.help)
        if c.arguments is not None:
            c.arguments(parser)
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

        async def go(db: Database) -> None:
            await seed(db, settings)

        asyncio.run(_with_database(settings, go))
        return 0
    if args.command in extra:
        command = extra[args.command]

        async def run(db: Database) -> int:
            return await command.run(db, settings, args)

        return asyncio.run(_with_database(settings, run)) or 0
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
        **forwarding_options(settings),
    )
    return 0
