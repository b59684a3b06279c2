"""RPC over the NATS Services API: typed payloads, typed errors, discovery, load sharing."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel, Field

from tongban_kit.nats import Bus, connect
from tongban_kit.problems import Problem
from tongban_kit.rpc import (
    RpcBadRequest,
    RpcClient,
    RpcConflict,
    RpcNotFound,
    RpcServer,
    RpcSpec,
    RpcTimeout,
    RpcUnavailable,
    discover,
)


class EchoRequest(BaseModel):
    text: str = Field(min_length=1)
    mode: str = "echo"


class EchoReply(BaseModel):
    text: str
    served_by: str


ECHO = RpcSpec("echo", "kit.rpc.echo", EchoRequest, EchoReply, "echo")
MISSING = RpcSpec("missing", "kit.rpc.missing", EchoRequest, EchoReply, "nobody serves this")


def make_handler(tag: str):  # type: ignore[no-untyped-def]
    async def handle(req: EchoRequest) -> EchoReply:
        if req.mode == "missing":
            raise RpcNotFound(f"no {req.text}")
        if req.mode == "problem":
            raise Problem(409, "already there")
        if req.mode == "slow":
            await asyncio.sleep(1.0)
        if req.mode == "crash":
            raise RuntimeError("internal detail")
        return EchoReply(text=req.text, served_by=tag)

    return handle


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    b = await connect(nats_url, name="rpc-test", namespace="r" + secrets.token_hex(4))
    yield b
    await b.close()


@pytest.fixture
async def servers(bus: Bus) -> AsyncIterator[list[RpcServer]]:
    out = []
    for tag in ("a", "b"):
        srv = RpcServer(bus, "kittest", "1.2.3", "test service")
        srv.add(ECHO, make_handler(tag))
        await srv.start()
        out.append(srv)
    yield out
    for srv in out:
        await srv.stop()


async def test_typed_call_and_queue_group(bus: Bus, servers: list[RpcServer]) -> None:
    client = RpcClient(bus)
    served = {(await client.call(ECHO, EchoRequest(text="hi"), EchoReply)).served_by for _ in range(40)}
    assert served == {"a", "b"}, "replicas in one queue group share the load"


async def test_typed_errors(bus: Bus, servers: list[RpcServer]) -> None:
    client = RpcClient(bus, timeout=0.3)
    with pytest.raises(RpcNotFound, match="no thing"):
        await client.call(ECHO, EchoRequest(text="thing", mode="missing"), EchoReply)
    with pytest.raises(RpcConflict, match="already there"):
        await client.call(ECHO, EchoRequest(text="x", mode="problem"), EchoReply)
    with pytest.raises(RpcTimeout):
        await client.call(ECHO, EchoRequest(text="x", mode="slow"), EchoReply)
    with pytest.raises(RpcUnavailable):
        await client.call(MISSING, EchoRequest(text="x"), EchoReply)
    crash = await bus.nc.request(bus.subject(ECHO.subject), b'{"text":"x","mode":"crash"}', timeout=1)
    assert crash.headers and crash.headers["Nats-Service-Error-Code"] == "500"
    assert "internal detail" not in crash.headers["Nats-Service-Error"]
    bad = await bus.nc.request(bus.subject(ECHO.subject), b'{"text": ""}', timeout=1)
    assert bad.headers and bad.headers["Nats-Service-Error-Code"] == "400"
    with pytest.raises(RpcBadRequest):
        raise RpcBadRequest.from_code(400, "x")  # type: ignore[misc]


async def test_discovery(bus: Bus, servers: list[RpcServer]) -> None:
    await RpcClient(bus).call(ECHO, EchoRequest(text="count me"), EchoReply)
    pings = await discover(bus, "PING", "kittest")
    assert len(pings) == 2 and all(p["version"] == "1.2.3" for p in pings)
    infos = await discover(bus, "INFO", "kittest")
    assert infos[0]["endpoints"][0]["subject"] == bus.subject("kit.rpc.echo")
    stats = await discover(bus, "STATS", "kittest")
    assert sum(s["endpoints"][0]["num_requests"] for s in stats) >= 1
