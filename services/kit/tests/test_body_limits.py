"""Request bodies are bounded before a route parses them: size (413) and JSON nesting (400), on a real service app."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Body, FastAPI, Request

from tongban_kit.app import ServiceContract, create_service_app
from tongban_kit.settings import ServiceSettings
from tongban_kit.testing.helpers import assert_problem
from tongban_kit.testing.serve import serve

router = APIRouter()
BULK = "/bulk"


@router.post("/echo")
async def echo(body: Any = Body()) -> Any:
    return body


@router.post("/raw")
async def raw(request: Request) -> dict[str, int]:
    """Parses JSON itself, as some routes do (json.loads recurses: 10,000 levels raise RecursionError)."""
    return {"items": len(json.loads(await request.body()))}


@router.post("/form")
async def form(request: Request) -> dict[str, int]:
    return {"fields": len(await request.form())}


@router.post(BULK)
async def bulk(request: Request) -> dict[str, int]:
    return {"bytes": len(await request.body())}


@pytest.fixture(scope="module")
async def app(tmp_path_factory: pytest.TempPathFactory, nats_url: str, nats_namespace: str) -> AsyncIterator[FastAPI]:
    db = Path(tmp_path_factory.mktemp("limits")) / "t.db"
    settings = ServiceSettings(
        database_url=f"sqlite+aiosqlite:///{db}",
        nats_url=nats_url,
        nats_namespace=nats_namespace,
        log_json=False,
        max_body_bytes=64 * 1024,
    )
    application = create_service_app(
        settings,
        ServiceContract("limitstest", "1", "test"),
        routers=[router],
        title="limits test",
        body_limits={BULK: 256 * 1024},
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def base_url(app: FastAPI) -> AsyncIterator[str]:
    """The app over real HTTP (uvicorn), so chunked bodies and Content-Length are what a client sends."""
    async with serve(app, lifespan="off") as url:
        yield url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url) as c:
        yield c


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("path", ["/echo", "/raw"])
async def test_deeply_nested_json_is_a_400_not_a_500(client: httpx.AsyncClient, path: str) -> None:
    for body, ctype in (
        ("[" * 10_000, "application/json"),  # never closed, as the attack sent it
        (nested(10_000), "application/json"),
        ('{"a":' * 5_000 + "1" + "}" * 5_000, "application/scim+json"),
        ("[" * 10_000, None),  # FastAPI reads a body without a content type as JSON
        ("[" * 10_000, "text/plain"),  # a route reading the body itself may not ask what it is labelled
    ):
        headers = {"Content-Type": ctype} if ctype else {}
        r = await client.post(path, content=body, headers=headers)
        problem = assert_problem(r, 400, "json-too-deep")
        assert "64" in problem["detail"]


async def test_ordinary_json_passes(client: httpx.AsyncClient) -> None:
    doc = json.loads(nested(60))
    assert (await client.post("/echo", json=doc)).json() == doc
    tricky = {"text": "[" * 1000 + '\\"{', "list": [{"a": [1, 2, {"b": "]]]"}]}] * 100}
    assert (await client.post("/echo", json=tricky)).json() == tricky
    assert (await client.post("/raw", content=nested(64))).json() == {"items": 1}


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_bodies_over_the_limit_are_413(client: httpx.AsyncClient) -> None:
    big = json.dumps({"text": "x" * 70_000})
    assert_problem(await client.post("/echo", content=big, headers={"Content-Type": "application/json"}), 413)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b"a=" + b"x" * 8190 + b"&"

    r = await client.post("/form", content=chunks(), headers=FORM)
    assert_problem(r, 413, "payload-too-large")
    small = await client.post("/form", content=b"a=1&b=2", headers=FORM)
    assert small.json() == {"fields": 2}


async def test_a_path_may_take_larger_bodies(client: httpx.AsyncClient) -> None:
    r = await client.post(BULK, content=b"x" * 200_000, headers={"Content-Type": "text/csv"})
    assert r.json() == {"bytes": 200_000}
    assert_problem(await client.post(BULK, content=b"x" * 300_000, headers={"Content-Type": "text/csv"}), 413)
    assert_problem(await client.post("/raw", content=b"[" + b"1," * 40_000 + b"1]"), 413)
