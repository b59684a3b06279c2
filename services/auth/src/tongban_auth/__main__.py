"""`python -m tongban_auth serve|migrate|seed|rotate-keys|set-password`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import uuid
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
    from tongban_auth.seed import DemoSeedRefused, seed

    try:
        await seed(db, settings)
    except DemoSeedRefused as exc:
        print(f"not seeded: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


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


def _password_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("account", help="account id, or a login name (mobile, email, username) looked up over NATS")
    ap.add_argument("--lang", choices=["zh-CN", "en"], default="zh-CN", help="language of policy messages")


def _read_password() -> str | None:
    """The new password: typed twice without echo on a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass("new password: ")
        if getpass.getpass("repeat: ") != first:
            print("the two entries differ", file=sys.stderr)
            return None
        return first
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


async def _resolve(settings: Any, account: str) -> tuple[str, list[str]] | str:
    """The account id and login names of an id or login name, or an error message."""
    try:
        return str(uuid.UUID(account)), []
    except ValueError:
        pass
    from tongban_auth.credentials import lookup_accounts
    from tongban_kit.nats import connect
    from tongban_kit.problems import Problem
    from tongban_kit.rpc import RpcClient

    try:
        bus = await asyncio.wait_for(
            connect(
                settings.nats_url,
                name="auth-cli",
                user=settings.nats_user,
                password=settings.nats_password,
                namespace=settings.nats_namespace,
            ),
            10,
        )
    except Exception as exc:
        return f"cannot reach NATS to look the login name up ({type(exc).__name__}); give the account id instead"
    try:
        found = await lookup_accounts(RpcClient(bus, timeout=5.0), account.strip())
    except Problem as exc:
        return f"the user directory did not answer: {exc.detail}"
    finally:
        await bus.close()
    if not found:
        return f"no account has the login name {account!r}"
    if len(found) > 1:
        return "the login name matches several accounts: " + ", ".join(f"{u.id} ({u.kind})" for u in found)
    return found[0].id, [account, found[0].username or ""]


async def _set_password(db: Database, settings: Any, args: argparse.Namespace) -> int:
    from tongban_auth import credentials

    resolved = await _resolve(settings, args.account)
    if isinstance(resolved, str):
        print(resolved, file=sys.stderr)
        return 2
    user_id, logins = resolved
    password = await asyncio.to_thread(_read_password)
    if password is None:
        return 2
    try:
        await credentials.set_password(db, settings, user_id=user_id, password=password, logins=logins)
    except credentials.PasswordRejected as exc:
        for violation in exc.violations:
            print(violation.message(args.lang), file=sys.stderr)
        return 2
    print(f"password set for {user_id}")
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
            ),
            Command(
                "set-password",
                "set an account's password, read from stdin (typed twice without echo on a terminal)",
                _set_password,
                _password_arguments,
            ),
        ],
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
