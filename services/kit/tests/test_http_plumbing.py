"""Problem details, pagination cursors, health and metrics on a real service app (SQLite, real NATS)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from tongban_kit.app import ServiceContract, create_service_app
from tongban_kit.pagination import CursorCodec, Page, decode_cursor, page_of
from tongban_kit.problems import Problem
from tongban_kit.settings import ServiceSettings

router = APIRouter()


class Item(BaseModel):
    n: int


@router.post("/items")
async def create(item: Item) -> Item:
    return item


@router.get("/items")
async def items(limit: int = 3, cursor: str | None = None) -> Page[int]:
    start = int((decode_cursor(cursor) or {}).get("n", 0))
    rows = list(range(start + 1, min(start + limit + 2, 11)))
    return page_of(rows, limit, lambda n: {"n": n})


@router.get("/teapot")
async def teapot() -> None:
    raise Problem(418, "short and stout", type="teapot", extra_member=1)


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("secret internals")


@pytest.fixture(scope="module")
async def app(tmp_path_factory: pytest.TempPathFactory, nats_url: str, nats_namespace: str) -> AsyncIterator[FastAPI]:
    db = Path(tmp_path_factory.mktemp("kit")) / "t.db"
    settings = ServiceSettings(
        database_url=f"sqlite+aiosqlite:///{db}",
        nats_url=nats_url,
        nats_namespace=nats_namespace,
        log_json=False,
    )
    application = create_service_app(
        settings, ServiceContract("kittest", "1", "test"), routers=[router], title="kit test"
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
    ) as c:
        yield c


async def test_validation_error_is_problem(client: httpx.AsyncClient) -> None:
    r = await client.post("/items", json={"n": "not a number"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 422 and body["errors"][0]["location"] == "body.n"
    assert body["request_id"] == r.headers["x-request-id"]


async def test_not_found_and_custom_and_unhandled(client: httpx.AsyncClient) -> None:
    r = await client.get("/nothing-here")
    assert r.status_code == 404 and r.json()["type"] == "about:blank"
    r = await client.get("/teapot")
    assert r.status_code == 418 and r.json()["type"].endswith("/teapot") and r.json()["extra_member"] == 1
    r = await client.get("/boom")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert "secret internals" not in r.text


async def test_cursor_pagination_walks_all(client: httpx.AsyncClient) -> None:
    seen: list[int] = []
    cursor = None
    while True:
        r = await client.get("/items", params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        page = r.json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(range(1, 11))
    r = await client.get("/items", params={"cursor": "%%%not-base64"})
    assert r.status_code == 400 and r.json()["type"].endswith("invalid-cursor")


async def test_cursors_are_signed_and_tampering_is_a_400(client: httpx.AsyncClient, app: FastAPI) -> None:
    first = (await client.get("/items", params={"limit": 3})).json()["next_cursor"]
    body, dot, tag = first.partition(".")
    assert dot and len(tag) == 22 and first.replace("-", "").replace("_", "").replace(".", "").isalnum()
    own = app.state.runtime.cursor_codec()
    assert own.decode(first) == {"n": 3} and own.decode(own.encode({"a": 1})) == {"a": 1}
    forged = [
        CursorCodec("a secret that is not this service's", "kittest").encode({"n": 8}),  # another key
        CursorCodec(app.state.runtime.settings.cursor_secret or "tongban-dev-cursor-secret", "other").encode({"n": 8}),
        own.encode({"n": 8}).split(".")[0] + "." + tag,  # another key spliced onto a genuine tag
        body,  # the tag left off (the old, unsigned form)
        first[:-1] + ("A" if first[-1] != "A" else "B"),  # one character of the tag changed
        first + "x",
        "é." + tag,
        "",
    ]
    for cursor in forged:
        r = await client.get("/items", params={"limit": 3, "cursor": cursor})
        if cursor == "":  # an empty cursor is no cursor: the first page
            assert r.json()["items"] == [1, 2, 3]
            continue
        assert r.status_code == 400, (cursor, r.text)
        assert r.headers["content-type"] == "application/problem+json" and r.json()["type"].endswith("invalid-cursor")
    with pytest.raises(RuntimeError):
        decode_cursor(first)  # outside a request of the service there is no key to check it with


async def test_health_ready_metrics_and_trace(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = (await client.get("/readyz")).json()
    assert ready["checks"] == {"database": "ok"} and ready["dependencies"] == {"nats": "ok"}
    tp = "00-" + "c" * 32 + "-" + "d" * 16 + "-01"
    r = await client.get("/items", headers={"traceparent": tp, "X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert r.headers["traceparent"].startswith("00-" + "c" * 32)
    metrics = (await client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/items",status="200"}' in metrics
    assert "http_request_duration_seconds_bucket" in metrics
