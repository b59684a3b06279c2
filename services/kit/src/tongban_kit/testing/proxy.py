"""A TCP proxy on a loopback port that a test can cut and restore, to break a dependency the way a network does."""

from __future__ import annotations

import asyncio
import contextlib
import socket


class TcpProxy:
    """Forwards a loopback port to `target` (a host and port, or a Unix socket when `unix_path` is given);
    `hold()` loses what is sent (a partition the peers have not noticed yet), `cut()` drops every connection and
    refuses new ones, `restore()` undoes both."""

    def __init__(self, target_host: str, target_port: int, unix_path: str | None = None) -> None:
        self.target = (target_host, target_port)
        self.unix_path = unix_path
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port: int = sock.getsockname()[1]
        sock.close()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._dropping = False

    @classmethod
    def to_url(cls, url: str) -> TcpProxy:
        """A proxy to the host and port of a URL such as `nats://127.0.0.1:4222`."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        assert parts.hostname and parts.port, url
        return cls(parts.hostname, parts.port)

    @classmethod
    def to_database_url(cls, url: str) -> tuple[TcpProxy, str]:
        """A proxy to a PostgreSQL server's URL (TCP, or a Unix socket folder given as `?host=/dir`, as an embedded
        server has) and the same URL pointed at the proxy's loopback port."""
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        port = parsed.port or 5432
        folder = parsed.query.get("host")
        if isinstance(folder, str) and folder.startswith("/"):
            proxy = cls("", port, unix_path=f"{folder}/.s.PGSQL.{port}")
        else:
            assert parsed.host, url
            proxy = cls(parsed.host, port)
        through = parsed.difference_update_query(["host"]).set(host="127.0.0.1", port=proxy.port)
        return proxy, through.render_as_string(hide_password=False)

    def url(self, scheme: str) -> str:
        """This proxy's address as a URL of `scheme`."""
        return f"{scheme}://127.0.0.1:{self.port}"

    async def start(self) -> TcpProxy:
        """Listen (again) on the proxy's port."""
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        return self

    def hold(self) -> None:
        """Keep connections open but lose everything sent either way."""
        self._dropping = True

    async def cut(self) -> None:
        """Stop listening and close every open connection (both sides see it end)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        for t in list(self._tasks):
            t.cancel()
        self._writers.clear()

    async def restore(self) -> None:
        """Forward and accept connections again."""
        self._dropping = False
        await self.start()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.unix_path:
                up_reader, up_writer = await asyncio.open_unix_connection(self.unix_path)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the test's loop is ending
            pass
        finally:
            for t in pumps:
                t.cancel()
                self._tasks.discard(t)
            for w in (writer, up_writer):
                w.transport.abort()
                self._writers.discard(w)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if not self._dropping:
                    writer.write(data)
                    await writer.drain()
