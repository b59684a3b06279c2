"""Run the gateway: `python -m tongban_gateway`."""

from __future__ import annotations

import resource
import socket

import uvicorn

from tongban_gateway.app import create_app
from tongban_gateway.config import Settings
from tongban_gateway.conn import guarded_protocol
from tongban_kit.logging import configure_logging


def main() -> None:
    """Serve the gateway with uvicorn (uvloop, httptools); the context middleware writes the access log."""
    settings = Settings()
    configure_logging(Settings.service_name, settings.log_level, settings.log_json)
    _raise_open_files(settings.max_connections)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=guarded_protocol(settings, app.state.metrics),  # httptools with header/body/send timeouts and limits
        timeout_keep_alive=int(settings.keepalive_timeout_seconds),
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,  # the gateway is the edge: X-Forwarded-For gets the real peer appended
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    if settings.management_port is None:
        server.run()
        return
    # one server, two listening sockets: the app tells them apart by the local port
    sockets = [_listen(settings.host, port) for port in (settings.port, settings.management_port)]
    server.run(sockets=sockets)


def _raise_open_files(connections: int) -> None:
    """Lift the soft limit of open files toward the hard one: each connection is a file, and the pools need some."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 1024
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


if __name__ == "__main__":
    main()
