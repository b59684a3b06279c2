"""Secrets at rest (SecretBox) and service-specific commands on the shared command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from fastapi import FastAPI

from tongban_kit.cli import Command, service_main
from tongban_kit.db import Database
from tongban_kit.secrets import SecretBox, SecretDecryptError
from tongban_kit.settings import ServiceSettings

INFO = b"tongban-test/secret/v1"


def test_sealed_values_open_only_with_their_key_and_context() -> None:
    box = SecretBox("a passphrase for tests", INFO)
    token = box.seal(b"private key bytes", b"row-1")
    assert token.startswith(f"v1.{box.key_id}.") and b"private" not in token.encode()
    assert box.open(token, b"row-1") == b"private key bytes"
    with pytest.raises(SecretDecryptError, match="failed authentication"):
        box.open(token, b"row-2")
    with pytest.raises(SecretDecryptError, match="no decryption key"):
        SecretBox("another passphrase", INFO).open(token, b"row-1")
    assert SecretBox("a passphrase for tests", b"other/label").key_id != box.key_id


def test_old_secrets_still_open_and_tokens_report_resealing() -> None:
    old = SecretBox("key of last year", INFO)
    token = old.seal(b"x")
    new = SecretBox("key of this year", INFO, ["key of last year"])
    assert new.open(token) == b"x" and new.needs_resealing(token)
    assert not new.needs_resealing(new.seal(b"x"))
    with pytest.raises(TypeError):
        SecretBox("k", INFO, "single string")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SecretBox("  ", INFO)


def test_service_commands_get_database_settings_and_arguments(tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    async def run(db: Database, settings: ServiceSettings, args: argparse.Namespace) -> int:
        await db.ping()
        seen.update(url=settings.database_url, level=args.level)
        return 3

    def arguments(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--level", type=int, default=1)

    url = f"sqlite+aiosqlite:///{tmp_path}/x.db"

    def app_factory(_s: ServiceSettings) -> FastAPI:
        return FastAPI()

    rc = service_main(
        name="x",
        description="test",
        settings_factory=lambda: ServiceSettings(database_url=url, log_json=False),
        migrations=tmp_path,
        app_factory=app_factory,
        commands=[Command("do-it", "does it", run, arguments)],
        argv=["do-it", "--level", "7"],
    )
    assert rc == 3 and seen == {"url": url, "level": 7}
    with pytest.raises(SystemExit):
        service_main(
            name="x",
            description="test",
            settings_factory=ServiceSettings,
            migrations=tmp_path,
            app_factory=app_factory,
            argv=["do-it"],
        )
