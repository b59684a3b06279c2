"""A lean HTTP/1.1 client for the proxy's hot path: pooled keep-alive connections per upstream instance, responses
parsed by httptools (the parser uvicorn uses), bodies streamed both ways with flow control.

Why not aiohttp here: measured in `bench/gateway_bench.py`, its client request path (request and response
objects, header normalisation, timers) cost the gateway more CPU per request than everything else it does; the
proxy needs far less — forward bytes it already holds, read a status line, headers and a body. aiohttp stays for
the gateway's probes and catalogue fetches.

One `Exchange` is one request and its response on one connection. Connections are reused only after a complete
response whose framing allows it (HTTP/1.1 keep-alive, no `Connection: close`), and are dropped from the pool
after `idle_seconds` without use, below the upstream server's own keep-alive timeout.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

#: buffered response bytes above which the upstream socket stops being read until the caller catches up
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
#: response headers accepted from an upstream
MAX_HEADERS = 200


class UpstreamError(Exception):
    """The exchange failed: no connection, the connection broke, or the answer was not HTTP."""

    def __init__(self, message: str, *, connect: bool = False, sent: bool = True) -> None:
        super().__init__(message)
        #: the connection could not be made (nothing reached the upstream)
        self.connect = connect
        #: False when a pooled connection turned out closed before any answer: the request may be sent again
        self.sent = sent


class UpstreamTimeout(UpstreamError, TimeoutError):
    """The upstream did not answer (or connect) in time."""


class Exchange(asyncio.Protocol):
    """One keep-alive connection to an upstream instance and the response being read on it."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._reset(head_only=False)

    def _reset(self, *, head_only: bool) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.head_only = head_only
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.received_any = False
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.error: UpstreamError | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.keep_alive = False
        self._framed = False
        self._informational = False

    # ------------------------------------------------------------------------------------ protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        if self.complete:  # bytes after a complete response: the connection is not reusable
            self.keep_alive = False
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, ValueError) as exc:
            self._fail(UpstreamError(f"the upstream's answer is not valid HTTP: {exc}"))
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._can_write.set()
        if self.complete:
            return
        if self.head_done and not self._framed:
            self.complete = True  # a close-delimited body ends with the connection
            self._wake()
            return
        self._fail(UpstreamError("the upstream closed the connection", sent=self.received_any or not self.reused))

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # ------------------------------------------------------------------------------ parser callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= MAX_HEADERS:
            raise ValueError("too many headers")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # informational (103 Early Hints): the final answer follows on the same parser
            self._informational = True
            self.headers = []
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        names = {k.lower() for k, _ in self.headers}
        self._framed = b"content-length" in names or b"transfer-encoding" in names or status in (204, 304)
        self.head_done = True
        if self.head_only or status in (204, 304):
            self.complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self.complete = True
        self._wake()

    # ---------------------------------------------------------------------------------- internals

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(error)

    def _close(self) -> None:
        self.keep_alive = False
        if self.transport is not None and not self.closed:
            self.transport.close()
            self.closed = True

    async def _wait(self, timeout: float) -> None:
        """Wait for more of the response (head, body or end); raises on failure or after `timeout` seconds."""
        if self.error is not None:
            raise self.error
        waiter = self.waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, self._on_timeout, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def _on_timeout(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(UpstreamTimeout("the upstream did not answer in time"))
        self._close()

    # -------------------------------------------------------------------------------- exchange API

    async def send(
        self, head: bytes, body: bytes | AsyncIterator[bytes] | None, chunked: bool, *, head_only: bool
    ) -> None:
        """Write the request head and body (awaiting the socket's drain between chunks)."""
        self._reset(head_only=head_only)
        transport = self.transport
        if transport is None or self.closed:
            raise UpstreamError("the upstream closed the connection", sent=False)
        if body is None or isinstance(body, bytes):
            transport.write(head + body if body else head)
            return
        transport.write(head)
        async for chunk in body:
            if self.closed or self.complete:
                break  # the upstream answered or went away before taking the whole body
            if chunked:
                transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                transport.write(chunk)
            if not self._can_write.is_set():
                await self._can_write.wait()
        else:
            if chunked and not self.closed:
                transport.write(b"0\r\n\r\n")
            return
        self.keep_alive = False  # part of the body was not sent: the connection's framing is lost

    async def read_head(self, timeout: float) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Status and headers of the response."""
        while not self.head_done:
            await self._wait(timeout)
        return self.status, self.headers

    async def read_chunk(self, timeout: float) -> bytes | None:
        """The next piece of the body as it arrives; None at its end."""
        while True:
            if self.chunks:
                chunk = self.chunks.popleft()
                self.buffered -= len(chunk)
                if self.reading_paused and self.buffered < LOW_WATER and self.transport is not None:
                    self.transport.resume_reading()
                    self.reading_paused = False
                return chunk
            if self.complete:
                return None
            await self._wait(timeout)

    async def read_all(self, timeout: float) -> bytes:
        """The rest of the body."""
        parts = []
        while (chunk := await self.read_chunk(timeout)) is not None:
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        """Back to the pool when the response was read whole and the connection may be reused; else closed."""
        if self.complete and self.keep_alive and not self.closed and self.error is None and not self.chunks:
            self.pool.put_back(self)
        else:
            self._close()


class Pool:
    """Idle keep-alive connections to one upstream instance (`http://host:port` or https)."""

    def __init__(self, base_url: str, *, max_idle: int, idle_seconds: float, ssl_context: ssl.SSLContext | None = None):
        self.base_url = base_url
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.ssl = (ssl_context or ssl.create_default_context()) if self.tls else None
        #: the Host header sent upstream
        self.authority = parts.netloc.encode("idna") if parts.netloc else self.host.encode()
        self.max_idle = max_idle
        self.idle_seconds = idle_seconds
        self.idle: collections.deque[Exchange] = collections.deque()
        self.closing = False

    async def acquire(self, connect_timeout: float, *, fresh: bool = False) -> Exchange:
        """An idle connection used recently enough, else (or when `fresh`) a new one."""
        now = time.monotonic()
        while self.idle and not fresh:
            conn = self.idle.pop()
            if not conn.closed and now - conn.idle_since < self.idle_seconds:
                conn.reused = True
                return conn
            conn._close()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                _, protocol = await loop.create_connection(lambda: Exchange(self), self.host, self.port, ssl=self.ssl)
        except TimeoutError:
            raise UpstreamTimeout("no connection to the upstream in time", connect=True) from None
        except OSError as exc:
            raise UpstreamError(f"no connection to the upstream: {exc.strerror or exc}", connect=True) from None
        return protocol

    def put_back(self, conn: Exchange) -> None:
        """Keep an idle connection (the oldest goes when the pool is full)."""
        if self.closing:
            conn._close()
            return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)
        while len(self.idle) > self.max_idle:
            self.idle.popleft()._close()

    def close(self) -> None:
        """Close every idle connection; connections in use close when released."""
        self.closing = True
        while self.idle:
            self.idle.pop()._close()
