"""Repo-level fixtures: real service processes for contract and end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tongban_kit.natsserver import free_port, wait_for_port
from tongban_kit.testing.pg import PgServer

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Proc:
    """A service process and its base URL."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path


def start_process(module: str, env: dict[str, str], port: int, log: Path, args: tuple[str, ...] = ()) -> Proc:
    """Start `python -m module [args]` and wait for its /healthz."""
    out = open(log, "ab")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", module, *args], env={**os.environ, **env}, stdout=out, stderr=out)
    wait_for_port("127.0.0.1", port, timeout=30)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{module} exited: {log.read_text()[-2000:]}") from None
    return Proc(url, proc, log)


def stop_process(p: Proc) -> None:
    """Terminate and wait."""
    p.proc.terminate()
    try:
        p.proc.wait(10)
    except subprocess.TimeoutExpired:
        p.proc.kill()


def service_env(service: str, db_url: str, nats_url: str, namespace: str, port: int) -> dict[str, str]:
    """Environment of a service process."""
    prefix = f"TONGBAN_{service.upper()}_"
    return {
        f"{prefix}DATABASE_URL": db_url,
        f"{prefix}NATS_URL": nats_url,
        f"{prefix}NATS_NAMESPACE": namespace,
        f"{prefix}PORT": str(port),
        f"{prefix}LOG_LEVEL": "WARNING",
        f"{prefix}ENVIRONMENT": "dev",
    }


async def _service_db(pg_server: PgServer, service: str) -> str:
    """A fresh database for a service, migrated and seeded with its demo data."""
    name = await pg_server.create_database()
    url = pg_server.url_for(name)
    env = {
        **os.environ,
        f"TONGBAN_{service.upper()}_DATABASE_URL": url,
        f"TONGBAN_{service.upper()}_LOG_LEVEL": "WARNING",
    }
    for cmd in ("migrate", "seed"):
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", f"tongban_{service}", cmd],
            env=env,
            check=True,
            capture_output=True,
        )
    return name


@pytest.fixture(scope="session")
async def org_db(pg_server: PgServer) -> AsyncIterator[str]:
    """A migrated, seeded org database for the processes of this session."""
    name = await _service_db(pg_server, "org")
    yield pg_server.url_for(name)
    await pg_server.drop_database(name)


@pytest.fixture(scope="session")
async def user_db(pg_server: PgServer) -> AsyncIterator[str]:
    """A migrated, seeded user database for the processes of this session."""
    name = await _service_db(pg_server, "user")
    yield pg_server.url_for(name)
    await pg_server.drop_database(name)


@pytest.fixture(scope="session")
async def auth_db(pg_server: PgServer) -> AsyncIterator[str]:
    """A migrated, seeded auth database (signing keys are made at start) for the processes of this session."""
    name = await _service_db(pg_server, "auth")
    yield pg_server.url_for(name)
    await pg_server.drop_database(name)


@pytest.fixture(scope="session")
async def message_db(pg_server: PgServer) -> AsyncIterator[str]:
    """A migrated message database with the demo templates, for the processes of this session."""
    name = await _service_db(pg_server, "message")
    yield pg_server.url_for(name)
    await pg_server.drop_database(name)


@pytest.fixture(scope="session")
def org_process(
    org_db: str, nats_url: str, nats_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    """A real org service process (uvicorn) on PostgreSQL and NATS."""
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "org.log"
    p = start_process("tongban_org", service_env("org", org_db, nats_url, nats_namespace, port), port, log, ("serve",))
    yield p
    stop_process(p)


@pytest.fixture(scope="session")
def user_process(
    user_db: str, org_process: Proc, nats_url: str, nats_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    """A real user service process (with the org service it asks about admin scopes)."""
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "user.log"
    p = start_process(
        "tongban_user", service_env("user", user_db, nats_url, nats_namespace, port), port, log, ("serve",)
    )
    yield p
    stop_process(p)
