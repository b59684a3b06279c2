"""Run the gateway: `python -m tongban_gateway`."""

from __future__ import annotations

import uvicorn

from tongban_gateway.app import create_app
from tongban_gateway.config import Settings
from tongban_kit.logging import configure_logging


def main() -> None:
    """Serve the gateway with uvicorn (uvloop, httptools); the context middleware writes the access log."""
    settings = Settings()
    configure_logging(Settings.service_name, settings.log_level, settings.log_json)
    uvicorn.run(
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


if __name__ == "__main__":
    main()
