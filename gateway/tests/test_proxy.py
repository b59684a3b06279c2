"""Integration tests of forwarding: a real gateway process in front of a real upstream over TCP."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tongban_kit.problems import PROBLEM_JSON

from .conftest import CHUNK, MAIN_MAX_BODY, PREFIX, STREAM_PROGRESS, Gateway, pattern_sha

BIG = 20 * 1024 * 1024


def received(resp: httpx.Response) -> dict[str, str]:
    """The headers the upstream saw (lower-cased names; last value wins)."""
    return {k.lower(): v for k, v in resp.json()["headers"]}


def raw_request(gw: Gateway, head: str) -> tuple[int, dict[str, str], bytes]:
    """Send a hand-written request head (no body); return status, headers and body."""
    port = int(gw.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head.encode() + b"\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        top, body = data.split(b"\r\n\r\n", 1)
        lines = top.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        while len(body) < int(headers.get("content-length", "0")):
            body += s.recv(65536)
    return int(lines[0].split()[1]), headers, body


def assert_problem(resp: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with that status (and type slug)."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = resp.json()
    assert body["status"] == status and body["request_id"] == resp.headers["x-request-id"]
    if slug:
        assert body["type"].endswith("/" + slug)
    return body


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as c:
        yield c


async def test_get_passes_status_headers_body_and_query(client: httpx.AsyncClient) -> None:
    resp = await client.get(PREFIX + "/echo/a%2Fb?status=203&q=a%20b&x=%E4%B8%AD&x=2")
    assert resp.status_code == 203
    assert resp.headers["x-upstream"] == "stand-in"
    assert resp.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    seen = resp.json()
    assert seen["method"] == "GET" and seen["body"] == ""
    assert seen["raw_path"] == PREFIX + "/echo/a%2Fb"
    assert seen["query"] == "status=203&q=a%20b&x=%E4%B8%AD&x=2"
    headers = received(resp)
    assert headers["x-forwarded-proto"] == "http" and headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-host"] == client.base_url.netloc.decode()
    assert "cookie" not in headers  # the shared client session keeps no cookie jar
    client.cookies.clear()  # the test client's own jar; the gateway must not replay them either
    again = await client.get(PREFIX + "/echo")
    assert "cookie" not in received(again)


async def test_post_body_and_content_type_pass_through(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        PREFIX + "/echo?status=201",
        json={"name": "省大数据局"},
        headers={"X-Custom": "v1", "X-Forwarded-For": "203.0.113.9"},
    )
    assert resp.status_code == 201
    seen = resp.json()
    assert seen["method"] == "POST" and seen["body"] == '{"name":"省大数据局"}'
    headers = received(resp)
    assert headers["content-type"] == "application/json" and headers["x-custom"] == "v1"
    assert headers["content-length"] == str(len(seen["body"].encode()))
    assert headers["x-forwarded-for"] == "127.0.0.1"  # the caller's own claim never reaches a service


async def test_every_method_passes(client: httpx.AsyncClient) -> None:
    for method in ("PUT", "PATCH", "DELETE", "OPTIONS"):
        resp = await client.request(method, PREFIX + "/echo/m", content=method.encode())
        assert (resp.json()["method"], resp.json()["body"]) == (method, method)
    head = await client.head(PREFIX + "/echo/m")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0


async def test_no_invented_headers_and_encoded_bodies_untouched(client: httpx.AsyncClient) -> None:
    resp = await client.get(PREFIX + "/gzip")
    assert resp.headers["content-encoding"] == "gzip"
    assert resp.text == "compressed " * 100  # decoded once, by the client
    seen = received(await client.get(PREFIX + "/echo", headers={"Accept-Encoding": "identity"}))
    assert seen["accept-encoding"] == "identity" and "content-type" not in seen


async def test_request_id_and_trace_context(client: httpx.AsyncClient) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    resp = await client.get(
        PREFIX + "/echo",
        headers={"X-Request-Id": "client-req-123", "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    headers = received(resp)
    assert headers["x-request-id"] == "client-req-123"
    assert resp.headers.get_list("x-request-id") == ["client-req-123"]
    up_trace, up_span = headers["traceparent"].split("-")[1:3]
    gw_trace, gw_span = resp.headers["traceparent"].split("-")[1:3]
    assert up_trace == gw_trace == trace_id
    assert len({up_span, gw_span, "00f067aa0ba902b7"}) == 3
    fresh = await client.get(PREFIX + "/echo")
    assert received(fresh)["x-request-id"] == fresh.headers["x-request-id"]


async def test_hop_by_hop_headers_are_stripped_both_ways(client: httpx.AsyncClient) -> None:
    resp = await client.get(
        PREFIX + "/echo",
        headers={
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic eDp5",
            "TE": "trailers",
            "Upgrade": "h2c",
            "X-End": "kept",
        },
    )
    headers = received(resp)
    for name in ("x-secret-hop", "keep-alive", "proxy-authorization", "te", "upgrade"):
        assert name not in headers, name
    assert "x-secret-hop" not in headers.get("connection", "").lower()
    assert headers["x-end"] == "kept"
    hop = await client.get(PREFIX + "/hop")
    assert hop.text == "hop" and hop.headers["x-kept"] == "yes"
    for name in ("x-upstream-hop", "proxy-authenticate"):
        assert name not in hop.headers, name
    assert hop.headers.get("keep-alive") != "timeout=99"
    assert "x-upstream-hop" not in hop.headers.get("connection", "").lower()


def _reset_peak_rss(gw: Gateway) -> None:
    try:
        Path(f"/proc/{gw.proc.pid}/clear_refs").write_text("5")
    except OSError:
        pass  # older kernels: the peak then includes earlier tests, which only loosens the check


def _kib(gw: Gateway, field: str) -> int:
    return int(gw.status()[field].split()[0])


async def test_large_download_and_upload_stream_without_buffering(client: httpx.AsyncClient, gateway: Gateway) -> None:
    await client.get(PREFIX + "/big", params={"size": 1024 * 1024})  # warm up pools and code paths
    _reset_peak_rss(gateway)
    before = _kib(gateway, "VmRSS")
    h, size = hashlib.sha256(), 0
    async with client.stream("GET", PREFIX + "/big", params={"size": BIG}) as resp:
        assert resp.status_code == 200 and "content-length" not in resp.headers
        async for part in resp.aiter_raw():
            h.update(part)
            size += len(part)
    assert (size, h.hexdigest()) == (BIG, pattern_sha(BIG))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(BIG // len(CHUNK)):
            yield CHUNK

    up = await client.post(PREFIX + "/upload", content=chunks())
    assert up.json() == {"size": BIG, "sha256": pattern_sha(BIG)}
    body = CHUNK * (BIG // len(CHUNK))
    up = await client.post(PREFIX + "/upload", content=body)
    assert up.json() == {"size": BIG, "sha256": pattern_sha(BIG)}
    del body
    grown = _kib(gateway, "VmHWM") - before
    assert grown < 12 * 1024, f"gateway peak RSS grew by {grown} KiB while moving 3 x 20 MiB"


async def test_client_leaving_mid_download_stops_the_upstream(client: httpx.AsyncClient) -> None:
    async with client.stream("GET", PREFIX + "/big", params={"size": 1 << 40}) as resp:
        got = 0
        async for part in resp.aiter_raw():
            got += len(part)
            if got > 1 << 20:
                break  # closing the stream early drops the connection
    last, stable = -1, 0
    for _ in range(100):  # both hops notice the disconnect within moments; allow a loaded machine 10 s
        await asyncio.sleep(0.1)
        now = STREAM_PROGRESS["sent"]
        stable = stable + 1 if now == last else 0
        last = now
        if stable == 3:
            break
    assert stable == 3 and last < 1 << 40, "the upstream kept streaming after the client left"
    assert (await client.get("/healthz")).status_code == 200


async def test_upstream_down_is_502_problem_without_address(client: httpx.AsyncClient, dead_url: str) -> None:
    for method in ("GET", "POST"):
        resp = await client.request(method, "/api/v1/ghost/x", content=b"x" if method == "POST" else None)
        body = assert_problem(resp, 502, "upstream-unavailable")
        assert "ghost" in body["detail"]
        port = dead_url.rsplit(":", 1)[1]
        assert "127.0.0.1" not in resp.text and port not in resp.text and "Connect" not in resp.text


async def test_idempotent_requests_retry_the_next_instance(client: httpx.AsyncClient) -> None:
    gets = [await client.get(PREFIX + "/echo/mixed") for _ in range(4)]
    assert [r.status_code for r in gets] == [200] * 4
    posts = [await client.post(PREFIX + "/echo/mixed", content=b"once") for _ in range(4)]
    assert sorted(r.status_code for r in posts) == [200, 200, 502, 502]  # round-robin, no retry


async def test_slow_upstream_is_504(client: httpx.AsyncClient) -> None:
    resp = await client.get(PREFIX + "/slow", params={"seconds": 2})
    assert "org" in assert_problem(resp, 504, "upstream-timeout")["detail"]
    fast = await client.get(PREFIX + "/slow", params={"seconds": 0})
    assert fast.json() == {"status": "late"}


async def test_unknown_paths_are_404_problems(client: httpx.AsyncClient, gateway: Gateway) -> None:
    for path in ("/nothing/here", "/api/v1/orgsx", "/api/v1"):
        assert_problem(await client.get(path), 404)
    status, headers, _ = raw_request(gateway, f"GET {PREFIX}/%2e%2e/healthz HTTP/1.1\r\nHost: t")
    assert status == 404 and headers["content-type"] == PROBLEM_JSON


async def test_oversize_body_is_413(client: httpx.AsyncClient, gateway: Gateway) -> None:
    status, headers, body = raw_request(
        gateway, f"POST {PREFIX}/upload HTTP/1.1\r\nHost: t\r\nContent-Length: {MAIN_MAX_BODY + 1}"
    )
    assert status == 413 and headers["content-type"] == PROBLEM_JSON and b"body-too-large" in body

    async def too_much() -> AsyncIterator[bytes]:
        for _ in range(MAIN_MAX_BODY // len(CHUNK) + 2):
            yield CHUNK

    assert_problem(await client.post(PREFIX + "/upload", content=too_much()), 413, "body-too-large")
    ok = await client.post(PREFIX + "/upload", content=b"still fine")
    assert ok.json()["size"] == 10


async def test_concurrent_requests_share_the_pool(client: httpx.AsyncClient) -> None:
    resps = await asyncio.gather(*(client.get(PREFIX + f"/echo/{i}") for i in range(50)))
    assert [r.json()["raw_path"] for r in resps] == [f"{PREFIX}/echo/{i}" for i in range(50)]
