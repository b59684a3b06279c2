"""Serve an ASGI app on a real loopback port inside the test's event loop (for clients that need real HTTP:
OAuth client libraries, browsers)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Literal

import uvicorn


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone (the test runner owns them)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing: a signal to the test process must not stop the server behind a fixture."""
        yield


def reserve_socket() -> socket.socket:
    """A listening-ready TCP socket bound to a free loopback port (hand it to `serve`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket) -> str:
    """`http://127.0.0.1:<port>` of a bound socket."""
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@asynccontextmanager
async def serve(
    app: Any,
    sock: socket.socket | None = None,
    *,
    lifespan: Literal["auto", "on", "off"] = "on",
    **options: Any,
) -> AsyncIterator[str]:
    """Run `app` with uvicorn on `sock` (or a fresh port) until the block ends; yields the base URL.

    With `lifespan="on"` uvicorn starts and stops the app's resources; pass `"off"` for an app whose lifespan
    already runs. `options` go to `uvicorn.Config` (e.g. `forwarding_options(settings)`, as `python -m … serve` does).
    """
    sock = sock or reserve_socket()
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False, **options)
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.01)
        else:
            raise TimeoutError("server did not start")
        yield url_of(sock)
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            task.cancel()
        sock.close()
