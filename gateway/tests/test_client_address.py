"""The client address: the peer, unless it is a trusted proxy; what goes upstream, into rate limits and the log."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable

import httpx
import pytest

from tongban_gateway.client import TrustedProxies
from tongban_kit.testing.helpers import eventually

from .conftest import PREFIX, Gateway, ThreadServer
from .test_proxy import assert_problem

ROUTES = [{"prefix": PREFIX, "upstream": "org", "public": True, "rate_limit": {"per_second": 0.01, "burst": 3}}]
SPOOFED = {
    "X-Forwarded-For": "198.51.100.66",
    "X-Real-IP": "198.51.100.67",
    "Forwarded": "for=198.51.100.68;proto=https",
    "X-Forwarded-Proto": "https",
    "True-Client-IP": "198.51.100.69",
    "X-Client-IP": "198.51.100.70",
}


def upstream_saw(resp: httpx.Response) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for k, v in resp.json()["headers"]:
        seen.setdefault(k, []).append(v)
    return seen


def logged_clients(gw: Gateway, path: str) -> list[str]:
    out = []
    for line in gw.log.read_text().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("path") == path and "status" in record:
                out.append(record.get("client"))
    return out


async def logged(gw: Gateway, path: str, lines: int) -> bool | None:
    """True once the access log holds `lines` lines for `path` (each is written just after its answer)."""
    return True if len(logged_clients(gw, path)) >= lines else None


async def test_an_untrusted_peer_cannot_say_who_it_is(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer
) -> None:
    gw = start_gateway({"org": [upstream.url]}, ROUTES, redis_url="")  # no trusted proxies: the default
    path = f"{PREFIX}/echo/{secrets.token_hex(4)}"
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
        resp = await c.get(path, headers=SPOOFED)
        seen = upstream_saw(resp)
        assert seen["x-forwarded-for"] == ["127.0.0.1"]  # the claim never reaches a service
        assert seen["x-forwarded-proto"] == ["http"]
        assert not {"x-real-ip", "forwarded", "true-client-ip", "x-client-ip"} & set(seen)
        assert "198.51.100" not in resp.text
        for n in range(2):  # a new address in every request is no new bucket
            assert (await c.get(path, headers={"X-Forwarded-For": f"198.51.100.{n}"})).status_code == 200
        assert_problem(await c.get(path, headers={"X-Forwarded-For": "198.51.100.99"}), 429, "rate-limited")
    await eventually(lambda: logged(gw, path, 4), what="four access-log lines")
    assert logged_clients(gw, path) == ["127.0.0.1"] * 4


async def test_behind_a_trusted_proxy_the_nearest_untrusted_address_is_the_client(
    start_gateway: Callable[..., Gateway], upstream: ThreadServer
) -> None:
    # the test talks from 127.0.0.1, as a proxy on the gateway's host would; 10.0.0.0/8 are further proxies
    gw = start_gateway({"org": [upstream.url]}, ROUTES, redis_url="", trusted_proxies='["127.0.0.1", "10.0.0.0/8"]')
    path = f"{PREFIX}/echo/{secrets.token_hex(4)}"
    chain = "198.51.100.66, 203.0.113.7, 10.1.2.3"  # the client's own claim, the client, a proxy
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
        resp = await c.get(path, headers={"X-Forwarded-For": chain, "X-Forwarded-Proto": "https"})
        seen = upstream_saw(resp)
        assert seen["x-forwarded-for"] == ["203.0.113.7"] and seen["x-forwarded-proto"] == ["https"]
        for _ in range(2):
            assert (await c.get(path, headers={"X-Forwarded-For": chain})).status_code == 200
        # the bucket is the client's: it is spent, another client behind the same proxy is not
        assert_problem(await c.get(path, headers={"X-Forwarded-For": "203.0.113.7"}), 429, "rate-limited")
        other = await c.get(path, headers={"X-Forwarded-For": "203.0.113.8, 10.9.9.9"})
        assert other.status_code == 200 and upstream_saw(other)["x-forwarded-for"] == ["203.0.113.8"]
    await eventually(lambda: logged(gw, path, 5), what="five access-log lines")
    assert logged_clients(gw, path) == ["203.0.113.7"] * 4 + ["203.0.113.8"]


@pytest.mark.parametrize(
    ("peer", "chain", "client"),
    [
        ("192.0.2.1", ["203.0.113.7"], "192.0.2.1"),  # an untrusted peer is the client, whatever it claims
        ("10.0.0.1", [], "10.0.0.1"),  # a trusted proxy asking for itself
        ("10.0.0.1", ["203.0.113.7, 10.0.0.2"], "203.0.113.7"),
        ("10.0.0.1", ["198.51.100.1", "203.0.113.7"], "203.0.113.7"),  # several header lines read as one list
        ("10.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),  # all trusted: the leftmost
        ("10.0.0.1", ["203.0.113.7:5050"], "203.0.113.7"),
        ("10.0.0.1", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("10.0.0.1", ["203.0.113.7, unknown"], "10.0.0.1"),  # not an address: nobody vouches for what is left of it
        ("10.0.0.1", ["evil\r\nx: y"], "10.0.0.1"),
        ("::ffff:10.0.0.1", ["203.0.113.7"], "203.0.113.7"),
    ],
)
def test_client_address_rules(peer: str, chain: list[str], client: str) -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client(peer, [v.encode() for v in chain]) == client
