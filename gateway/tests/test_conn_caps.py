"""Connection floods against a real gateway: caps per client address, a management port that always answers."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import httpx
import pytest

from tongban_gateway.caps import MAX_LINGERING, client_key
from tongban_kit.natsserver import free_port

from .conftest import PREFIX, Gateway, ThreadServer
from .test_conn import GRACE, problem_of, read_until_closed, status_of

ROUTES = [{"prefix": PREFIX, "upstream": "org", "public": True}]
#: loopback addresses standing for distinct hosts (Linux answers for all of 127.0.0.0/8)
ATTACKER, OTHER, PROXY = "127.0.0.2", "127.0.0.3", "127.0.0.4"

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect_from(source: str, port: int) -> Conn:
    """A raw connection from `source` to the gateway's port."""
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0), limit=1 << 20)


def open_files(gw: Gateway) -> int:
    return len(os.listdir(f"/proc/{gw.proc.pid}/fd"))


def port_of(gw: Gateway) -> int:
    return int(gw.url.rsplit(":", 1)[1])


async def slow_flood(source: str, port: int, count: int) -> list[Conn]:
    """`count` connections from `source`, each sending one byte of a head that never completes."""
    held = []
    for _ in range(count):
        conn = await connect_from(source, port)
        conn[1].write(b"G")
        held.append(conn)
    return held


async def still_open(conn: Conn) -> bool:
    """True when the gateway has neither answered nor closed the connection (within a short wait)."""
    try:
        async with asyncio.timeout(0.3):
            return not await conn[0].read(1)  # b"" (closed) or an answer: not held
    except TimeoutError:
        return True


async def request_from(source: str, port: int, path: str = PREFIX + "/echo") -> bytes:
    """One request from `source` with Connection: close; the whole answer."""
    reader, writer = await connect_from(source, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode())
    try:
        return await read_until_closed(reader, GRACE + 5)
    finally:
        writer.close()


async def all_open(conns: list[Conn]) -> list[bool]:
    return list(await asyncio.gather(*(still_open(c) for c in conns)))


def close_all(conns: list[Conn]) -> None:
    for _, writer in conns:
        writer.close()


async def test_one_address_cannot_hold_the_connections_others_need(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer
) -> None:
    gw = start_gateway(
        {"org": [upstream.url]}, ROUTES, max_connections="30", max_connections_per_client="10", rate_limits="false"
    )
    port = port_of(gw)
    # the attacker tries to take the whole process cap with slow heads: only its share is held
    flood = await slow_flood(ATTACKER, port, 30)
    try:
        answer = await request_from(OTHER, port)  # another host is served meanwhile
        assert status_of(answer) == 200, answer[:300]
        assert await all_open(flood[:10]) == [True] * 10
        refused = await read_until_closed(flood[-1][0], GRACE)
        assert status_of(refused) == 503 and b"retry-after: 1" in refused.lower()
        assert problem_of(refused)["type"].endswith("/too-many-client-connections")
    finally:
        close_all(flood)
    await asyncio.sleep(0.3)
    assert status_of(await request_from(ATTACKER, port)) == 200  # its connections closed, the attacker's share is free


async def test_the_management_port_answers_while_the_public_cap_is_full(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer
) -> None:
    ops = free_port()
    gw = start_gateway({"org": [upstream.url]}, ROUTES, max_connections="10", management_port=str(ops))
    port = port_of(gw)
    # idle management connections take nothing from the public cap
    idle_ops = [await connect_from(OTHER, ops) for _ in range(5)]
    flood = await slow_flood(ATTACKER, port, 9)
    try:
        assert status_of(await request_from(OTHER, port)) == 200  # the tenth public connection is still free
        flood += await slow_flood(ATTACKER, port, 1)
        full = await request_from(OTHER, port)
        assert status_of(full) == 503 and problem_of(full)["type"].endswith("/too-many-connections")
        ready = await request_from(OTHER, ops, "/readyz")  # the orchestrator's probe: ready, not restarted
        assert status_of(ready) == 200, ready[:300]
        async with httpx.AsyncClient() as c:
            metrics = (await c.get(f"http://127.0.0.1:{ops}/metrics")).text
        assert 'gateway_connections_closed_total{reason="too_many_connections"} 1.0' in metrics
        assert all(await all_open(idle_ops))
    finally:
        close_all(flood + idle_ops)


async def test_a_trusted_proxy_is_not_held_to_one_client_share(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer
) -> None:
    gw = start_gateway(
        {"org": [upstream.url]},
        ROUTES,
        max_connections="40",
        max_connections_per_client="5",
        trusted_proxies=f'["{PROXY}/32"]',
        rate_limits="false",
    )
    port = port_of(gw)
    through_proxy = await slow_flood(PROXY, port, 12)  # many clients behind one proxy, some of them slow
    direct = await slow_flood(ATTACKER, port, 6)
    try:
        assert all(await all_open(through_proxy))
        assert status_of(await request_from(PROXY, port)) == 200
        assert await all_open(direct) == [True] * 5 + [False]  # a direct client keeps its share
    finally:
        close_all(through_proxy + direct)


@pytest.mark.slow
async def test_near_the_cap_new_connections_get_a_short_head_timeout(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer
) -> None:
    gw = start_gateway(
        {"org": [upstream.url]},
        ROUTES,
        max_connections="20",
        header_timeout_seconds="60",
        busy_header_timeout_seconds="1",
        rate_limits="false",
    )
    port = port_of(gw)
    calm = await slow_flood(ATTACKER, port, 18)  # 90 %: still the ordinary 60 s
    late: list[Conn] = []
    try:
        started = time.monotonic()
        late = await slow_flood(OTHER, port, 2)
        answers = await asyncio.gather(*(read_until_closed(r, 1 + GRACE) for r, _ in late))
        assert time.monotonic() - started < 1 + GRACE
        assert {status_of(a) for a in answers} == {408}
        assert all(await all_open(calm))
        assert status_of(await request_from(OTHER, port)) == 200  # a prompt client is served all the same
    finally:
        close_all(calm + late)


async def test_a_flood_of_refused_connections_does_not_use_up_the_files(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer
) -> None:
    ops = free_port()
    gw = start_gateway(
        {"org": [upstream.url]}, ROUTES, max_connections_per_client="1", management_port=str(ops), rate_limits="false"
    )
    port = port_of(gw)
    before = open_files(gw)
    flood: list[Conn] = []
    try:
        for _ in range(12):  # 1200 connections, refused but for one, as fast as they can be made
            flood += await asyncio.gather(*(connect_from(ATTACKER, port) for _ in range(100)))
        held = open_files(gw) - before  # each refused one lingers (2 s) only while few do
        assert held <= MAX_LINGERING + 50, held
        ready = await request_from(OTHER, ops, "/readyz")
        assert status_of(ready) == 200, ready[:300]
    finally:
        close_all(flood)


def test_an_ipv6_host_is_counted_by_its_64() -> None:
    # a host is routinely given a whole /64: counting single addresses would give it 2**64 shares
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff:ffff:ffff:fffe")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"  # a dual-stack socket's IPv4 peer
