"""The proxy's HTTP/1.1 client against scripted upstreams: framing, reuse, informational answers, broken peers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tongban_gateway.upstream_http import Pool, UpstreamError, UpstreamTimeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[bool]]


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


class Scripted:
    """A TCP server answering each request with `handler`; counts connections and keeps what it received."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await read_head(reader)
                self.heads.append(head)
                if not await self.handler(reader, writer, head):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Pool:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.pool = Pool(f"http://127.0.0.1:{port}", max_idle=4, idle_seconds=4.0)
        return self.pool

    async def __aexit__(self, *exc: object) -> None:
        self.pool.close()
        assert self.server is not None
        self.server.close()


async def get(pool: Pool, path: str = "/", *, method: str = "GET", timeout: float = 5.0) -> tuple[int, bytes]:
    conn = await pool.acquire(2.0)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: up\r\n\r\n".encode()
        await conn.send(head, None, False, head_only=method == "HEAD")
        status, _ = await conn.read_head(timeout)
        return status, await conn.read_all(timeout)
    finally:
        conn.release()


async def answer(writer: asyncio.StreamWriter, raw: bytes) -> bool:
    writer.write(raw)
    await writer.drain()
    return True


async def test_head_answers_end_after_the_headers_and_the_connection_is_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        if head.startswith(b"HEAD"):
            return await answer(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        return await answer(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")

    script = Scripted(handler)
    async with script as pool:
        assert await get(pool, method="HEAD") == (200, b"")
        assert await get(pool) == (200, b"hello")
        assert await get(pool, method="HEAD") == (200, b"")
    assert script.connections == 1


async def test_chunked_answers_are_dechunked() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        return await answer(
            writer, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )

    script = Scripted(handler)
    async with script as pool:
        assert await get(pool) == (200, b"hello world")
        assert await get(pool) == (200, b"hello world")
    assert script.connections == 1


async def test_close_delimited_bodies_end_with_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"the end")
        return False

    script = Scripted(handler)
    async with script as pool:
        assert await get(pool) == (200, b"until the end")
        assert await get(pool) == (200, b"until the end")
    assert script.connections == 2  # never reused


async def test_informational_answers_are_skipped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        return await answer(
            writer,
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        )

    async with Scripted(handler) as pool:
        assert await get(pool) == (201, b"ok")


async def test_a_kept_alive_connection_closed_by_the_upstream_is_reported_as_not_sent() -> None:
    served: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        served.append(script.connections)
        if len(served) == 2:
            return False  # the keep-alive race: the upstream closes the idle connection as the request arrives
        return await answer(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    script = Scripted(handler)
    async with script as pool:
        assert await get(pool) == (200, b"ok")
        conn = await pool.acquire(2.0)
        assert conn.reused
        await conn.send(b"GET / HTTP/1.1\r\nHost: up\r\n\r\n", None, False, head_only=False)
        with pytest.raises(UpstreamError) as caught:
            await conn.read_head(2.0)
        conn.release()
        assert caught.value.sent is False and caught.value.connect is False
        assert await get(pool) == (200, b"ok")  # on a new connection
    assert script.connections == 2


async def test_garbage_is_an_error_and_silence_a_timeout() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        return await answer(writer, b"SMTP ready\r\n\r\n")

    async with Scripted(garbage) as pool:
        with pytest.raises(UpstreamError, match="not valid HTTP"):
            await get(pool)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        await reader.read()  # until the client hangs up
        return False

    async with Scripted(silent) as pool:
        with pytest.raises(UpstreamTimeout):
            await get(pool, timeout=0.2)


async def test_connection_refused_is_a_connect_error() -> None:
    pool = Pool("http://127.0.0.1:9", max_idle=1, idle_seconds=1.0)
    with pytest.raises(UpstreamError) as caught:
        await pool.acquire(1.0)
    assert caught.value.connect is True


async def test_streamed_uploads_are_chunked_when_no_length_is_known() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
        script.bodies.append(body)
        return await answer(writer, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))

    async def parts() -> AsyncIterator[bytes]:
        for i in range(100):
            yield b"%d," % i

    script = Scripted(handler)
    async with script as pool:
        conn = await pool.acquire(2.0)
        head = b"POST /up HTTP/1.1\r\nHost: up\r\ntransfer-encoding: chunked\r\n\r\n"
        await conn.send(head, parts(), True, head_only=False)
        status, _ = await conn.read_head(2.0)
        expected = b"".join(b"%d," % i for i in range(100))
        assert (status, await conn.read_all(2.0)) == (200, expected)
        conn.release()
        assert len(pool.idle) == 1  # the framing held: the connection may carry the next request
