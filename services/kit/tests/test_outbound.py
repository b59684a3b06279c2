"""The guarded outbound client: address forms refused, resolution checked, no redirects, small bodies, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tongban_kit.outbound import (
    GuardedResolver,
    OutboundBlocked,
    OutboundClient,
    OutboundError,
    OutboundPolicy,
    OutboundRefused,
    check_url,
)

STRICT = OutboundPolicy()
LOOPBACK = OutboundPolicy(allow_loopback=True, connect_timeout=1.0, read_timeout=0.5, max_bytes=1024)


REFUSED = [
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1:4222/",
    "https://172.31.255.255/",
    "https://192.168.0.1/",
    "https://100.64.0.1/",
    "https://127.0.0.1/",
    "https://127.255.0.9/",
    "https://[::1]/",
    "https://0.0.0.0/",
    "https://[::]/",
    "https://224.0.0.251/",
    "https://[ff02::1]/",
    "https://240.0.0.1/",
    "https://255.255.255.255/",
    "https://[fe80::1]/",
    "https://[fe80::1%25eth0]/",
    "https://[fd12:3456::1]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:8.8.8.8]/",  # mapped forms are refused whatever they carry
    "https://[::127.0.0.1]/",
    "https://[64:ff9b::7f00:1]/",
    "https://[2002:a9fe:a9fe::]/",
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
    "https://0x7f000001/",
    "https://0x7F.0.0.1/",
    "https://2130706433/",
    "https://017700000001/",
    "https://0177.0.0.1/",
    "https://127.1/",
    "https://127.0.0.1./",
    "https://nats:4222/",
    "https://postgres/",
    "https://LOCALHOST/",
    "https://api.localhost/",
    "https://auth.tongban.svc.cluster.local/",
    "https://org.tongban.svc/",
    "https://metadata.google.internal/",
    "https://printer.local/",
    "https://%31%32%37.0.0.1/",
    "https://１２７.０.０.１/",  # full-width digits: IDNA folds them to 127.0.0.1
    "https://ｎａｔｓ/",
    "https://user:pw@app.example.gov.cn/",
    "http://app.example.gov.cn/",
    "ftp://app.example.gov.cn/",
    "https://app.example.gov.cn:99999/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_internal_and_odd_hosts_are_refused(url: str) -> None:
    with pytest.raises(OutboundRefused):
        check_url(url, STRICT)


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.gov.cn/backchannel",
        "https://浙里办.政务.cn/logout",
        "https://8.8.8.8/jwks",
        "https://[2001:4860:4860::8888]/",
        "https://a.b-c.io:8443/x",
    ],
)
def test_public_https_urls_pass(url: str) -> None:
    check_url(url, STRICT)


def test_settings_deny_more_hosts_and_relax_only_loopback() -> None:
    corp = OutboundPolicy(denied_hosts=frozenset({".corp.example", "idp.example.gov.cn"}))
    for url in ("https://git.corp.example/", "https://corp.example/", "https://idp.example.gov.cn/"):
        with pytest.raises(OutboundRefused):
            check_url(url, corp)
    check_url("https://www.example.gov.cn/", corp)
    # loopback (plain http too) where allowed; never private networks or other internal names
    for url in ("http://127.0.0.1:8765/cb", "http://[::1]/", "http://localhost:3000/"):
        check_url(url, LOOPBACK)
    for url in ("https://10.1.2.3/", "http://app.example.gov.cn/", "https://nats:4222/"):
        with pytest.raises(OutboundRefused):
            check_url(url, LOOPBACK)
    check_url("http://app.example.gov.cn/", OutboundPolicy(allow_http=True))  # development


async def test_the_resolver_checks_every_address_it_hands_to_the_connector() -> None:
    # the name passed the syntax check in someone's eyes (a DNS name that points home): its address does not
    with pytest.raises(OutboundRefused, match="loopback"):
        await GuardedResolver(STRICT).resolve("localhost", 443)
    found = await GuardedResolver(LOOPBACK).resolve("localhost", 443)
    assert found and all(r["host"] in ("127.0.0.1", "::1") and r["hostname"] == "localhost" for r in found)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback server: a redirect, a large body, a slow answer; it logs every request."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        if request.path == "/redirect":
            raise web.HTTPFound("/target")
        if request.path == "/large":
            return web.Response(body=b"x" * 4096)
        if request.path == "/slow":
            await asyncio.sleep(3)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_the_client_calls_nothing_it_refuses(server: tuple[str, list[str]]) -> None:
    url, seen = server
    port = url.rsplit(":", 1)[1]
    strict = OutboundClient(STRICT)
    try:
        for target in (url, f"http://localhost:{port}/", f"http://0x7f000001:{port}/", f"http://2130706433:{port}/"):
            with pytest.raises(OutboundBlocked, match="not called"):
                await strict.request("POST", target, data={"logout_token": "x"})
    finally:
        await strict.close()
    assert seen == []


async def test_no_redirects_small_bodies_short_timeouts(server: tuple[str, list[str]]) -> None:
    url, seen = server
    client = OutboundClient(LOOPBACK)
    try:
        got = await client.request("GET", url + "/ok")
        assert got.status == 200 and got.body == b'{"ok": true}'
        got = await client.request("GET", url + "/redirect")
        assert got.status == 302 and "/target" not in seen
        with pytest.raises(OutboundError, match="more than 1024 bytes"):
            await client.request("GET", url + "/large")
        started = asyncio.get_running_loop().time()
        with pytest.raises(OutboundError):
            await client.request("GET", url + "/slow")
        assert asyncio.get_running_loop().time() - started < 2.5
    finally:
        await client.close()


@pytest.mark.parametrize("url", REFUSED)
async def test_the_client_refuses_every_form_at_call_time(url: str) -> None:
    client = OutboundClient(STRICT)
    try:
        with pytest.raises(OutboundBlocked):
            await client.request("GET", url)
    finally:
        await client.close()
