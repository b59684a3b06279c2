"""Fixtures: a real upstream service (uvicorn in a thread) and real gateways (`python -m tongban_gateway`)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tongban_kit.nats import Bus, StreamSpec, connect
from tongban_kit.natsserver import free_port, wait_for_port
from tongban_kit.testing.tokens import TestIssuer

CHUNK = bytes(range(256)) * 256  # 64 KiB
MAIN_MAX_BODY = 24 * 1024 * 1024
PREFIX = "/api/v1/orgs"
#: the public URL every test gateway has, and so the issuer of the tokens it accepts
PUBLIC_URL = "https://gateway.example"
#: signs the test access tokens; the stand-in upstream publishes its keys at /oauth2/jwks
ISSUER = TestIssuer(PUBLIC_URL, rsa_bits=2048)
#: bytes the latest /big stream has produced so far
STREAM_PROGRESS = {"sent": 0}
#: raw paths the stand-in's echo endpoint has answered, in order
ECHOED: list[str] = []


def pattern_sha(size: int) -> str:
    """sha256 of `size` bytes of the repeating CHUNK pattern."""
    h = hashlib.sha256()
    full, rest = divmod(size, len(CHUNK))
    for _ in range(full):
        h.update(CHUNK)
    h.update(CHUNK[:rest])
    return h.hexdigest()


def upstream_app() -> FastAPI:
    """The stand-in org service: echoes what it receives, streams big bodies, sleeps on demand."""
    tags = [{"name": n, "description": n} for n in ("echo", "stream", "ops")]
    app = FastAPI(title="Stand-in org", version="9.9.9", openapi_tags=tags)

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/oauth2/jwks")
    async def jwks() -> dict[str, object]:
        return ISSUER.jwks

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response("stand_in_secret_total 1\n", media_type="text/plain")

    async def echo(request: Request, rest: str) -> Response:
        ECHOED.append(request.scope["raw_path"].decode())
        body = await request.body()
        seen = {
            "method": request.method,
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.scope["query_string"].decode(),
            "headers": [[k.decode(), v.decode()] for k, v in request.scope["headers"]],
            "body": body.decode(errors="replace"),
        }
        status = int(request.query_params.get("status", "200"))
        headers = {"X-Upstream": "stand-in", "X-Request-Id": request.headers.get("x-request-id", "")}
        out = JSONResponse(seen, status_code=status, headers=headers)
        out.raw_headers += [(b"set-cookie", b"a=1; Path=/"), (b"set-cookie", b"b=2; Path=/")]
        return out

    for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        app.add_api_route(
            PREFIX + "/echo{rest:path}",
            echo,
            methods=[method],
            tags=["echo"],
            summary="Echo the request",
            operation_id=f"echo_{method.lower()}",
        )

    @app.get(PREFIX + "/hop", tags=["echo"])
    async def hop() -> Response:
        out = Response(b"hop", media_type="text/plain")
        out.raw_headers += [
            (b"connection", b"X-Upstream-Hop"),
            (b"x-upstream-hop", b"1"),
            (b"keep-alive", b"timeout=99"),
            (b"proxy-authenticate", b"Basic"),
            (b"x-kept", b"yes"),
        ]
        return out

    @app.get(PREFIX + "/gzip", tags=["echo"])
    async def gz() -> Response:
        return Response(
            gzip.compress(b"compressed " * 100), media_type="text/plain", headers={"Content-Encoding": "gzip"}
        )

    @app.get(PREFIX + "/big", tags=["stream"])
    async def big(size: int) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            left = size
            STREAM_PROGRESS["sent"] = 0
            while left > 0:
                part = CHUNK[: min(left, len(CHUNK))]
                left -= len(part)
                STREAM_PROGRESS["sent"] += len(part)
                yield part
                await asyncio.sleep(0)  # let the server notice a disconnect, as real I/O would

        return StreamingResponse(gen(), media_type="application/octet-stream")

    @app.post(PREFIX + "/upload", tags=["stream"])
    async def upload(request: Request) -> dict[str, object]:
        h, size = hashlib.sha256(), 0
        async for chunk in request.stream():
            h.update(chunk)
            size += len(chunk)
        return {"size": size, "sha256": h.hexdigest()}

    @app.get(PREFIX + "/slow", tags=["echo"])
    async def slow(seconds: float = 2.0) -> dict[str, str]:
        await asyncio.sleep(seconds)
        return {"status": "late"}

    return app


class ThreadServer:
    """A uvicorn server for an ASGI app in a background thread."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_for_port("127.0.0.1", self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class Gateway:
    """A gateway process."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def status(self) -> dict[str, str]:
        """The process's /proc status fields (VmRSS, VmHWM, …)."""
        lines = Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line)


@pytest.fixture(scope="session")
def upstream() -> Iterator[ThreadServer]:
    """The running stand-in org service."""
    with ThreadServer(upstream_app()) as server:
        yield server


@pytest.fixture(scope="session")
def dead_url() -> str:
    """A base URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


#: the authentication service's stream, as it declares it (the gateway follows revocations there)
AUTH_STREAM = StreamSpec("AUTH_EVENTS", ("auth.*.*.v1",), "Events of the authentication service")


@pytest.fixture(scope="session")
async def auth_bus(nats_url: str, nats_namespace: str) -> AsyncIterator[Bus]:
    """A bus in this run's namespace with the auth service's stream, as the auth service would make it."""
    bus = await connect(nats_url, name="gateway-test", namespace=nats_namespace)
    await bus.ensure_stream(AUTH_STREAM)
    yield bus
    await bus.close()


def _redis_answers(url: str) -> bool:
    import asyncio

    from tongban_gateway.resp import Redis, StoreError

    async def ping() -> bool:
        client = Redis(url, timeout=1.0)
        try:
            return bool(await client.execute("PING") == "PONG")
        except StoreError:
            return False
        finally:
            await client.close()

    return asyncio.run(ping())


@pytest.fixture(scope="session")
def redis_url() -> str | None:
    """A Redis for the rate limits gateways share: `TONGBAN_TEST_REDIS_URL`, else the local one if it answers.

    Without one, gateways keep their buckets in their process and the tests of sharing are skipped (in CI, which
    has a Redis, they fail instead).
    """
    url = os.environ.get("TONGBAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    if _redis_answers(url):
        return url
    if os.environ.get("CI"):
        raise RuntimeError(f"no Redis answers at {url} (set TONGBAN_TEST_REDIS_URL)")
    return None


@pytest.fixture
def shared_redis(redis_url: str | None) -> str:
    """The Redis of the run; skips the test where there is none."""
    if redis_url is None:
        pytest.skip("no Redis: set TONGBAN_TEST_REDIS_URL or run one on 127.0.0.1:6379")
    return redis_url


@pytest.fixture(scope="session")
def rate_limit_namespace() -> str:
    """A Redis key prefix unique to this test run."""
    return f"tongban-test:{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def start_gateway(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: ThreadServer,
    nats_url: str,
    nats_namespace: str,
    rate_limit_namespace: str,
    redis_url: str | None,
    auth_bus: Bus,
) -> Iterator[Callable[..., Gateway]]:
    """Start gateway processes with the given upstreams, routes and settings; all stop at the end.

    Every gateway takes its signing keys from the stand-in upstream and revocations from this run's NATS namespace.
    """
    started: list[Gateway] = []

    def start(upstreams: dict[str, list[str]], routes: list[dict[str, object]] | None = None, **env: str) -> Gateway:
        tmp = tmp_path_factory.mktemp("gateway")
        port = free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TONGBAN_GATEWAY_")}
        environ.update(
            {
                "TONGBAN_GATEWAY_PORT": str(port),
                "TONGBAN_GATEWAY_UPSTREAMS": json.dumps(upstreams),
                "TONGBAN_GATEWAY_PUBLIC_URL": PUBLIC_URL,
                "TONGBAN_GATEWAY_ENVIRONMENT": "test",
                "TONGBAN_GATEWAY_OIDC_JWKS_URL": upstream.url + "/oauth2/jwks",
                "TONGBAN_GATEWAY_NATS_URL": nats_url,
                "TONGBAN_GATEWAY_NATS_NAMESPACE": nats_namespace,
                "TONGBAN_GATEWAY_RATE_LIMIT_NAMESPACE": rate_limit_namespace,
                "TONGBAN_GATEWAY_REDIS_URL": redis_url or "",
                **{f"TONGBAN_GATEWAY_{k.upper()}": v for k, v in env.items()},
            }
        )
        if routes is not None:
            (tmp / "routes.yaml").write_text(json.dumps(routes))
            environ["TONGBAN_GATEWAY_ROUTES_FILE"] = str(tmp / "routes.yaml")
        log = tmp / "gateway.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "tongban_gateway"], env=environ, stdout=out, stderr=out)
        gw = Gateway(f"http://127.0.0.1:{port}", proc, log)
        started.append(gw)
        try:
            wait_for_port("127.0.0.1", port, timeout=20)
        except TimeoutError:
            raise RuntimeError(f"gateway did not start:\n{log.read_text()}") from None
        return gw

    yield start
    for gw in started:
        gw.proc.terminate()
        try:
            gw.proc.wait(15)
        except subprocess.TimeoutExpired:
            gw.proc.kill()


@pytest.fixture(scope="session")
def gateway(start_gateway: Callable[..., Gateway], upstream: ThreadServer, dead_url: str) -> Gateway:
    """The forwarding gateway: org up, `ghost` down, `mixed` with one dead and one live instance.

    Its routes are public and its limits out of reach: these tests are about forwarding (see test_access,
    test_breaker and test_ratelimit for the checks in front of it).
    """
    routes = [
        {"prefix": PREFIX, "upstream": "org", "public": True},
        {"prefix": PREFIX + "/slow", "upstream": "org", "timeout": 0.5, "public": True},
        {"prefix": "/api/v1/ghost", "upstream": "ghost", "public": True},
        {"prefix": PREFIX + "/echo/mixed", "upstream": "mixed", "public": True},
    ]
    upstreams = {"org": [upstream.url], "ghost": [dead_url], "mixed": [dead_url, upstream.url]}
    return start_gateway(
        upstreams,
        routes,
        max_body_bytes=str(MAIN_MAX_BODY),
        breaker_failures="1000",
        rate_limit_burst="1000000",
        rate_limit_per_second="100000",
    )
