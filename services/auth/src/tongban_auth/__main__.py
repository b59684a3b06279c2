"""`python -m tongban_auth serve|migrate|seed|rotate-keys`."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from tongban_auth.config import Settings
from tongban_kit.cli import Command, service_main
from tongban_kit.db import Database

MIGRATIONS = Path(__file__).parent / "alembic"


def _app(settings: Any) -> Any:
    from tongban_auth.main import create_app

    return create_app(settings)


async def _seed(db: Database, settings: Any) -> None:
    from tongban_auth.seed import seed

    await seed(db, settings)


def _rotate_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--alg", choices=["ES256", "RS256"], help="algorithm to rotate (default: the signing default)")
    ap.add_argument(
        "--now", action="store_true", help="rotate even if the next key was published less than the JWKS cache time ago"
    )


async def _rotate(db: Database, settings: Any, args: argparse.Namespace) -> int:
    from tongban_auth import keys

    box = keys.make_box(settings)
    await keys.ensure_keys(db, settings, box)
    try:
        done = await keys.rotate(
            db, settings, box, args.alg or settings.default_alg, min_next_age=timedelta(0) if args.now else None
        )
    except (keys.RotationTooEarly, ValueError) as exc:
        print(f"not rotated: {exc}", file=sys.stderr)
        return 2
    print(f"{done.alg}: active {done.active_kid}, next {done.next_kid}, retired {done.retired_kid or '-'}")
    if done.retire_after:
        print(f"the retired key stays published until {done.retire_after.isoformat()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    return service_main(
        name="auth",
        description="Tongban authentication service",
        settings_factory=Settings,
        migrations=MIGRATIONS,
        app_factory=_app,
        seed=_seed,
        commands=[
            Command(
                "rotate-keys", "make the next signing key active and retire the current one", _rotate, _rotate_arguments
            )
        ],
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
