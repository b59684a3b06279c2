"""Run the gateway: `python -m tongban_gateway`."""

from __future__ import annotations

import socket

import uvicorn

from tongban_gateway.app import create_app
from tongban_gateway.config import Settings
from tongban_kit.logging import configure_logging


def main() -> None:
    """Serve the gateway with uvicorn (uvloop, httptools); the context middleware writes the access log."""
    settings = Settings()
    configure_logging(Settings.service_name, settings.log_level, settings.log_json)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
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


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


if __name__ == "__main__":
    main()
