"""Slow, idle and oversized clients against a real gateway: raw sockets, as slowloris and friends would use them."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable

import httpx
import pytest

from tongban_kit.testing.helpers import eventually

from .conftest import ECHOED, PREFIX, Gateway, ThreadServer

ROUTES = [{"prefix": PREFIX, "upstream": "org", "public": True}]
#: seconds the test gateway gives a body pause, an unread answer and an idle keep-alive connection
TIMEOUT = 1.0
#: seconds it gives a head: longer than the body's, so that a body is cut at its own deadline, not the head's
HEAD_TIMEOUT = 2.5
#: how long past a timeout the test waits for the cut (a loaded machine is slow)
GRACE = 2.5


@pytest.fixture(scope="module")
def strict(start_gateway: Callable[..., Gateway], upstream: ThreadServer) -> Gateway:
    return start_gateway(
        {"org": [upstream.url]},
        ROUTES,
        header_timeout_seconds=str(HEAD_TIMEOUT),
        body_timeout_seconds=str(TIMEOUT),
        keepalive_timeout_seconds=str(int(TIMEOUT)),
        send_timeout_seconds=str(TIMEOUT),
        rate_limits="false",
    )


async def connect(gw: Gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = gw.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port), limit=1 << 20)


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything the gateway sends until it closes; TimeoutError if it is still open after `timeout`."""
    out = b""
    async with asyncio.timeout(timeout):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                return out
            if not chunk:
                return out
            out += chunk


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def problem_of(answer: bytes) -> dict[str, object]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower(), head
    return dict(json.loads(body))


async def closed_count(gw: Gateway, reason: str) -> float:
    async with httpx.AsyncClient(base_url=gw.url) as c:
        text = (await c.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(f'gateway_connections_closed_total{{reason="{reason}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.slow
async def test_partial_and_silent_heads_are_cut_off_while_others_are_served(strict: Gateway) -> None:
    silent = [await connect(strict) for _ in range(100)]
    trickling = [await connect(strict) for _ in range(100)]
    for _, w in trickling:
        w.write(f"GET {PREFIX}/echo HTTP/1.1\r\nHost: gw\r\n".encode())
    started = time.monotonic()

    async def trickle() -> None:
        # a header line every 0.3 s: each piece is in time, the head never completes
        for n in range(int((HEAD_TIMEOUT + GRACE) / 0.3)):
            for _, w in trickling:
                if not w.is_closing():
                    w.write(f"X-Slow-{n}: 1\r\n".encode())
            await asyncio.sleep(0.3)

    feeder = asyncio.create_task(trickle())
    try:
        async with httpx.AsyncClient(base_url=strict.url, timeout=5) as c:
            t0 = time.monotonic()
            resp = await c.get(PREFIX + "/echo/served")  # 200 slow clients do not keep a normal one waiting
        assert resp.status_code == 200 and time.monotonic() - t0 < 1.0
        answers = await asyncio.gather(*(read_until_closed(r, HEAD_TIMEOUT + GRACE) for r, _ in silent + trickling))
    finally:
        feeder.cancel()
    assert time.monotonic() - started < HEAD_TIMEOUT + GRACE
    assert {status_of(a) for a in answers} == {408}
    assert problem_of(answers[-1])["type"] == "https://tongban.dev/problems/header-timeout"
    assert await closed_count(strict, "header_timeout") >= 200
    for _, w in silent + trickling:
        w.close()


@pytest.mark.slow
async def test_a_stalled_body_is_cut_off_but_a_steady_one_is_not(strict: Gateway) -> None:
    reader, writer = await connect(strict)
    started = time.monotonic()
    writer.write(f"POST {PREFIX}/echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n0123456789".encode())
    answer = await read_until_closed(reader, HEAD_TIMEOUT + GRACE)
    assert status_of(answer) == 408 and problem_of(answer)["detail"] == "the request body did not arrive in time"
    assert time.monotonic() - started < HEAD_TIMEOUT  # the body's deadline, not the head's
    writer.close()

    # pauses shorter than the timeout, 2 s in all: the timeout is between pieces, not for the whole body
    reader, writer = await connect(strict)
    writer.write(f"POST {PREFIX}/echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nConnection: close\r\n\r\n".encode())
    for byte in b"abcde":
        await asyncio.sleep(TIMEOUT * 0.4)
        writer.write(bytes([byte]))
    answer = await read_until_closed(reader, GRACE)
    assert status_of(answer) == 200 and b'"body":"abcde"' in answer
    writer.close()


@pytest.mark.slow
async def test_idle_keep_alive_connections_are_closed(strict: Gateway) -> None:
    reader, writer = await connect(strict)
    writer.write(f"GET {PREFIX}/echo HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert status_of(head) == 200
    length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
    await reader.readexactly(length)
    started = time.monotonic()
    assert await read_until_closed(reader, TIMEOUT + GRACE) == b""  # closed without a word: it asked nothing
    assert time.monotonic() - started < TIMEOUT + GRACE
    writer.close()


async def send_head(gw: Gateway, head: bytes) -> bytes:
    """Send a request head in 64 KiB pieces and read the answer (the gateway may stop reading part-way)."""
    reader, writer = await connect(gw)
    try:
        for i in range(0, len(head), 65536):
            writer.write(head[i : i + 65536])
            await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        pass
    try:
        return await read_until_closed(reader, GRACE + 5)
    finally:
        writer.close()


async def test_an_8_mb_header_is_refused_and_never_forwarded(strict: Gateway) -> None:
    path = f"{PREFIX}/echo/{secrets.token_hex(4)}"
    head = f"GET {path} HTTP/1.1\r\nHost: gw\r\nX-Big: ".encode() + b"a" * (8 << 20) + b"\r\n\r\n"
    answer = await send_head(strict, head)
    assert status_of(answer) == 431, answer[:200]
    assert problem_of(answer)["type"] == "https://tongban.dev/problems/header-too-large"
    assert path not in ECHOED


async def test_head_limits_follow_nginx(strict: Gateway) -> None:
    path = f"{PREFIX}/echo/{secrets.token_hex(4)}"
    line = f"GET {path} HTTP/1.1\r\nHost: gw\r\n".encode()
    one_long = line + b"X-Long: " + b"b" * 9000 + b"\r\n\r\n"  # one header line past 8 KiB
    assert status_of(await send_head(strict, one_long)) == 431
    many = line + b"".join(b"X-Part-%d: %s\r\n" % (n, b"c" * 4000) for n in range(10)) + b"\r\n"  # 40 KiB in all
    assert status_of(await send_head(strict, many)) == 431
    long_target = f"GET {path}?q={'d' * 9000} HTTP/1.1\r\nHost: gw\r\n\r\n".encode()
    answer = await send_head(strict, long_target)
    assert status_of(answer) == 414 and problem_of(answer)["type"].endswith("/request-line-too-long")
    assert path not in ECHOED
    fits = line + b"".join(b"X-Part-%d: %s\r\n" % (n, b"e" * 4000) for n in range(6)) + b"Connection: close\r\n\r\n"
    assert status_of(await send_head(strict, fits)) == 200  # 24 KiB in lines under 8 KiB: an ordinary big head
    assert path in ECHOED


@pytest.mark.slow
async def test_a_client_that_reads_nothing_is_cut_off(strict: Gateway) -> None:
    reader, writer = await connect(strict)
    writer.write(f"GET {PREFIX}/big?size={64 << 20} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
    before = await closed_count(strict, "send_timeout")

    async def cut_off() -> bool | None:  # read nothing meanwhile: the gateway's send buffer fills and stays full
        return True if await closed_count(strict, "send_timeout") > before else None

    await eventually(cut_off, timeout=30, what="the connection cut off")
    received = await read_until_closed(reader, 30)  # what was in the socket buffers, then the end
    assert len(received) < 64 << 20  # not delivered in full to someone who never read
    writer.close()


async def test_connections_past_the_cap_are_refused(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer
) -> None:
    gw = start_gateway({"org": [upstream.url]}, ROUTES, max_connections="20", rate_limits="false")
    held = [await connect(gw) for _ in range(20)]
    reader, writer = await connect(gw)
    answer = await read_until_closed(reader, GRACE)
    assert status_of(answer) == 503 and b"retry-after: 1" in answer.lower()
    assert problem_of(answer)["type"].endswith("/too-many-connections")
    writer.close()
    for _, w in held:
        w.close()
    await asyncio.sleep(0.2)
    async with httpx.AsyncClient(base_url=gw.url) as c:
        assert (await c.get(PREFIX + "/echo")).status_code == 200
