"""Faults of a service's dependencies on a real service app, real PostgreSQL and NATS, each broken for real:
the database unreachable answers 503 (logged once per outage) and makes the process unready; NATS down does not."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from sqlalchemy import text
from sqlmodel import SQLModel

from tongban_kit.app import Runtime, ServiceContract, SessionDep, create_service_app
from tongban_kit.rpc import RpcClient, RpcSpec, RpcUnavailable
from tongban_kit.settings import ServiceSettings
from tongban_kit.testing.helpers import assert_problem, eventually
from tongban_kit.testing.pg import PgServer
from tongban_kit.testing.proxy import TcpProxy

from .conftest import KIT_TABLES

router = APIRouter()


class CountRequest(BaseModel):
    table: str = "kit_outbox"


class CountReply(BaseModel):
    rows: int


COUNT = RpcSpec("count", "outagetest.rpc.count", CountRequest, CountReply, "rows of the outbox")


def rpc_handlers(rt: Runtime) -> dict[str, Any]:
    async def count(_: CountRequest) -> CountReply:
        async with rt.db.session() as s:
            conn = await s.connection()
            return CountReply(rows=(await conn.execute(text("SELECT count(*) FROM kit_outbox"))).scalar_one())

    return {"count": count}


@router.get("/rows")
async def rows(s: SessionDep) -> dict[str, int]:
    conn = await s.connection()
    return {"outbox": (await conn.execute(text("SELECT count(*) FROM kit_outbox"))).scalar_one()}


@dataclass
class Service:
    client: httpx.AsyncClient
    rpc: RpcClient
    db_proxy: TcpProxy
    nats_proxy: TcpProxy
    database: str


@pytest.fixture(scope="module")
async def service(pg_server: PgServer, nats_url: str) -> AsyncIterator[Service]:
    """A service whose database and NATS connections both go through proxies the tests can cut."""
    name = await pg_server.create_database()
    setup = pg_server.url_for(name)
    from tongban_kit.db import Database

    db = Database(setup)
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=KIT_TABLES))
    await db.dispose()
    db_proxy, through_proxy = TcpProxy.to_database_url(setup)
    await db_proxy.start()
    nats_proxy = await TcpProxy.to_url(nats_url).start()
    settings = ServiceSettings(
        database_url=through_proxy,
        nats_url=nats_proxy.url("nats"),
        nats_namespace="outage" + secrets.token_hex(3),  # its RPC subject is no contract of the run's recorder
        log_json=False,
    )
    app: FastAPI = create_service_app(
        settings,
        ServiceContract("outagetest", "1.0.0", "test", rpcs=[COUNT]),
        routers=[router],
        title="outage test",
        rpc_handlers=rpc_handlers,
    )
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert app.state.runtime.rpc is not None
                yield Service(client, app.state.runtime.rpc, db_proxy, nats_proxy, name)
    finally:
        await db_proxy.cut()
        await nats_proxy.cut()
        await pg_server.drop_database(name)


@contextmanager
def outage_log() -> Iterator[list[logging.LogRecord]]:
    """Records of the database outage log (and any traceback logged meanwhile, by anyone)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == "tongban_kit.outage" or record.exc_info:
                records.append(record)

    handler = Keep(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield records
    finally:
        root.removeHandler(handler)


async def _ok(client: httpx.AsyncClient) -> bool | None:
    return True if (await client.get("/rows")).status_code == 200 else None


async def test_database_unreachable_is_503_logged_once_and_unready(service: Service) -> None:
    c = service.client
    assert (await c.get("/rows")).status_code == 200
    with outage_log() as records:
        await service.db_proxy.cut()  # open connections reset, new ones refused
        for _ in range(10):
            r = await c.get("/rows")
            assert_problem(r, 503, "dependency-unavailable")
            assert int(r.headers["retry-after"]) > 0
        with pytest.raises(RpcUnavailable):  # other services asking over NATS hear the same
            await service.rpc.call(COUNT, CountRequest(), CountReply)
        ready = await c.get("/readyz")
        body = assert_problem(ready, 503, "not-ready")
        assert body["checks"]["database"].startswith("unavailable")
        await service.db_proxy.restore()
        await eventually(lambda: _ok(c), timeout=10, what="recovery")
        assert (await c.get("/readyz")).status_code == 200
    messages = [r.getMessage() for r in records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("database unavailable") and "available again" in messages[1]
    assert not any(r.exc_info for r in records), "no traceback per request"


async def test_database_refusing_connections_is_503(service: Service, pg_server: PgServer) -> None:
    """The database itself shuts its door: sessions terminated, new connections not allowed."""
    c = service.client
    admin = await asyncpg.connect(pg_server.url_for(pg_server.prefix, "postgresql"))
    try:
        assert (await c.get("/rows")).status_code == 200
        await admin.execute(f'ALTER DATABASE "{service.database}" ALLOW_CONNECTIONS false')
        terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1"
        await admin.execute(terminate, service.database)
        for _ in range(3):
            assert_problem(await c.get("/rows"), 503, "dependency-unavailable")
        assert (await c.get("/readyz")).status_code == 503
    finally:
        await admin.execute(f'ALTER DATABASE "{service.database}" ALLOW_CONNECTIONS true')
        await admin.close()
    await eventually(lambda: _ok(c), timeout=10, what="recovery")


async def test_nats_down_leaves_the_process_ready(service: Service) -> None:
    c = service.client
    await service.nats_proxy.cut()
    try:
        await asyncio.sleep(0.5)
        ready = await c.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["checks"] == {"database": "ok"}
        assert body["dependencies"]["nats"].startswith("unavailable")
        assert (await c.get("/rows")).status_code == 200, "the API still works"
    finally:
        await service.nats_proxy.restore()

    async def nats_ok() -> bool | None:
        return True if (await c.get("/readyz")).json()["dependencies"]["nats"] == "ok" else None

    await eventually(nats_ok, timeout=10, what="NATS back")


async def test_a_database_that_does_not_answer_is_503_within_seconds(service: Service) -> None:
    """Connections open but nothing comes back (a partition): the request fails in seconds, not after a minute."""
    c = service.client
    assert (await c.get("/rows")).status_code == 200
    await service.db_proxy.cut()
    assert_problem(await c.get("/rows"), 503, "dependency-unavailable")  # the pooled connections are gone
    await service.db_proxy.restore()
    service.db_proxy.hold()
    try:
        started = asyncio.get_running_loop().time()
        r = await asyncio.wait_for(c.get("/rows"), 30)
        assert_problem(r, 503, "dependency-unavailable")
        assert asyncio.get_running_loop().time() - started < 8
    finally:
        await service.db_proxy.restore()
    await eventually(lambda: _ok(c), timeout=10, what="recovery")
