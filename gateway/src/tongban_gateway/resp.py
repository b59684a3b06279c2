"""A small Redis client for the rate limiter: one pipelined connection, RESP2, asyncio protocol.

Every request through the gateway takes from a bucket in Redis, so this call is on the hot path. A general client
(redis-py) spends far more CPU per command in its connection pool and command layers than the round trip itself
costs; measured in `bench/gateway_bench.py`, it halved the gateway's throughput. Here each command is a few
bytes written to one shared connection and a future resolved in order when its reply arrives; concurrent requests
pipeline on that connection by themselves. URLs: `redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any, cast
from urllib.parse import unquote, urlsplit


class StoreError(Exception):
    """Redis could not be reached, answered too late, or the connection broke."""


class ReplyError(Exception):
    """Redis answered a command with an error reply (`-ERR …`, `-NOSCRIPT …`)."""


_INCOMPLETE = object()


def encode(*args: bytes | str | int | float) -> bytes:
    """A command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def parse(buf: bytes | bytearray, pos: int = 0) -> tuple[Any, int]:
    """One RESP2 reply from `buf` at `pos`: (value, position after it), or (_INCOMPLETE, pos) if more is needed."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind, line = buf[pos : pos + 1], bytes(buf[pos + 1 : end])
    nxt = end + 2
    if kind == b"+":
        return line.decode(), nxt
    if kind == b"-":
        return ReplyError(line.decode(errors="replace")), nxt
    if kind == b":":
        return int(line), nxt
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, nxt
        if len(buf) < nxt + size + 2:
            return _INCOMPLETE, pos
        return bytes(buf[nxt : nxt + size]), nxt + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, nxt
        items = []
        for _ in range(count):
            item, nxt = parse(buf, nxt)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            items.append(item)
        return items, nxt
    raise StoreError(f"not a RESP reply: {bytes(buf[pos : pos + 20])!r}")


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        pos = 0
        try:
            while self.pending and pos < len(self.buffer):
                value, nxt = parse(self.buffer, pos)
                if value is _INCOMPLETE:
                    break
                pos = nxt
                future = self.pending.popleft()
                if not future.done():  # a caller that timed out keeps its place in the order, unanswered
                    future.set_result(value)
        except (StoreError, ValueError) as exc:
            self._abort(StoreError(f"unreadable reply from Redis: {exc}"))
            return
        del self.buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(StoreError("the connection to Redis was lost"))

    def _fail(self, error: StoreError) -> None:
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(error)

    def _abort(self, error: StoreError) -> None:
        self._fail(error)
        self.close()

    def send(self, command: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.closed or self.transport is None:
            future.set_exception(StoreError("the connection to Redis is closed"))
            return future
        self.pending.append(future)
        self.transport.write(command)
        return future

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Redis:
    """Commands over one pipelined connection, opened on first use and again after it broke."""

    def __init__(self, url: str, *, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("a Redis URL starts with redis:// or rediss://")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.ssl = ssl.create_default_context() if parts.scheme == "rediss" else None
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password is not None else None
        db = parts.path.lstrip("/")
        self.db = int(db) if db else 0
        self.timeout = timeout
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is not None and not self._conn.closed:
                return self._conn
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.timeout):
                    _, conn = await loop.create_connection(_Connection, self.host, self.port, ssl=self.ssl)
                    setup = []
                    if self.password is not None:
                        auth = (self.username, self.password) if self.username else (self.password,)
                        setup.append(conn.send(encode("AUTH", *auth)))
                    if self.db:
                        setup.append(conn.send(encode("SELECT", self.db)))
                    for reply in await asyncio.gather(*setup):
                        if isinstance(reply, ReplyError):
                            conn.close()
                            raise StoreError(f"Redis refused the connection set-up: {reply}")
            except TimeoutError:
                raise StoreError("no connection to Redis in time") from None
            except OSError as exc:
                raise StoreError(f"no connection to Redis: {exc.strerror or exc}") from None
            self._conn = conn
            return conn

    async def execute(self, *args: bytes | str | int | float) -> Any:
        """Send one command and return its reply (a ReplyError instance for error replies); raises StoreError."""
        conn = await self._connection()
        future = conn.send(encode(*args))
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    async def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(StoreError("Redis did not answer in time"))


class Script:
    """A Lua script run by its SHA1 (EVALSHA), loaded with EVAL when the server does not know it yet."""

    def __init__(self, redis: Redis, source: str) -> None:
        import hashlib

        self.redis = redis
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: list[str], args: list[bytes | str | int | float]) -> Any:
        """The script's reply; raises StoreError, or ReplyError when the script itself failed."""
        reply = await self.redis.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        if isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self.redis.execute("EVAL", self.source, len(keys), *keys, *args)
        if isinstance(reply, ReplyError):
            raise reply
        return reply
