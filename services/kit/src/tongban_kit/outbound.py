"""The one HTTP client for URLs that apps supply (back-channel logout, client JWKS): guarded against SSRF.

An app's URL could name the cloud metadata service, NATS, a database or any host of the internal network. Every
call resolves the host once, refuses it unless every address is public, and connects to exactly the addresses it
checked (aiohttp takes them from the resolver below, so a DNS answer cannot change between check and connect).
Redirects are never followed, timeouts are short and bodies small. `check_url` is the same test without DNS, for
registration time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

#: names of the deployment's own services (compose and Kubernetes) and of private DNS zones; an entry starting
#: with a dot denies every name below it
INTERNAL_HOSTS = frozenset(
    {
        "localhost",
        ".localhost",
        ".local",
        ".localdomain",
        ".internal",
        ".intranet",
        ".lan",
        ".home.arpa",
        ".svc",
        ".cluster.local",
    }
)
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
#: IPv6 prefixes that carry an IPv4 address (NAT64 well-known and local-use); the address inside is not checked
_EMBEDDING = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class OutboundRefused(ValueError):
    """A URL the guard will not call; the message says why."""


class OutboundError(Exception):
    """A guarded call that failed: refused, unreachable, timed out or answered too much."""


class OutboundBlocked(OutboundError):
    """A guarded call refused before anything was sent (the URL or its addresses are not allowed)."""


@dataclass(frozen=True)
class OutboundPolicy:
    """What the guarded client may call."""

    #: plain http anywhere (development only); otherwise https, or http to loopback when that is allowed
    allow_http: bool = False
    #: loopback addresses and `localhost` (development and test rehearsals); never private or internal hosts
    allow_loopback: bool = False
    #: more denied names (exact, or `.suffix` for a whole zone), added to INTERNAL_HOSTS
    denied_hosts: frozenset[str] = frozenset()
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    #: the largest response body read
    max_bytes: int = 64 * 1024

    def denies_name(self, host: str) -> bool:
        """Whether a host name is an internal or configured denied name."""
        if self.allow_loopback and (host == "localhost" or host.endswith(".localhost")):
            return False
        for entry in INTERNAL_HOSTS | self.denied_hosts:
            entry = entry.lower()
            if host == entry.lstrip(".") or (entry.startswith(".") and host.endswith(entry)):
                return True
        return False


def check_address(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address, policy: OutboundPolicy) -> None:
    """Refuse an address that is not a public unicast one (loopback only when the policy allows it)."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            raise OutboundRefused(f"{ip} names a network interface")
        if ip.ipv4_mapped or ip.sixtofour or ip.teredo or any(ip in net for net in _EMBEDDING):
            raise OutboundRefused(f"{ip} embeds an IPv4 address")
    if ip.is_loopback:
        if policy.allow_loopback:
            return
        raise OutboundRefused(f"{ip} is a loopback address")
    kinds = {
        "an unspecified": ip.is_unspecified,
        "a link-local": ip.is_link_local,
        "a multicast": ip.is_multicast,
        "a reserved": ip.is_reserved,
        "a private": ip.is_private,
        "a non-global": not ip.is_global,  # also shared address space (CGNAT, 100.64.0.0/10)
    }
    for kind, hit in kinds.items():
        if hit:
            raise OutboundRefused(f"{ip} is {kind} address")


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _a_label(raw_host: str) -> str:
    """A host without its trailing dot, an internationalised name in its A-label (`xn--`) form."""
    host = raw_host.rstrip(".").lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise OutboundRefused(f"{raw_host!r} is not a valid internationalised name") from None
    return host


def check_url(url: str, policy: OutboundPolicy) -> SplitResult:
    """The parts of a URL the guard may call, judged without DNS; raises OutboundRefused."""
    parts = urlsplit(url)
    raw_host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not raw_host:
        raise OutboundRefused("only absolute http(s) URLs are called")
    if parts.username is not None or parts.password is not None:
        raise OutboundRefused("the URL carries credentials")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise OutboundRefused("the URL has an invalid port") from None
    host = _a_label(raw_host)
    ip = _ip_literal(host)
    if ip is not None:
        check_address(ip, policy)
        loopback = ip.is_loopback
    else:
        if not _NAME.fullmatch(host) or len(host) > 253:
            raise OutboundRefused(f"{raw_host!r} is not a DNS name or an IP address")
        labels = host.split(".")
        if _NUMERIC_LABEL.fullmatch(labels[-1]):  # 0x7f000001, 2130706433, 0177.1, 127.1: IPv4 in disguise
            raise OutboundRefused(f"{raw_host!r} is an IPv4 address in an unusual form")
        if policy.denies_name(host):
            raise OutboundRefused(f"{raw_host!r} is an internal host")
        loopback = host == "localhost" or host.endswith(".localhost")
        if len(labels) == 1 and not loopback:
            raise OutboundRefused(f"{raw_host!r} is a single-label (internal) host name")
    if parts.scheme == "http" and not policy.allow_http and not (loopback and policy.allow_loopback):
        raise OutboundRefused("the URL must use https")
    return parts


class GuardedResolver(AbstractResolver):
    """Resolves a name once and hands aiohttp only addresses that pass `check_address` (or refuses the name)."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        """Every address of `host`, each checked; one refused address refuses the host."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        found: list[ResolveResult] = []
        for fam, _, proto, _, sockaddr in infos:
            address = str(sockaddr[0])
            check_address(address.split("%", 1)[0], self.policy)
            found.append(
                ResolveResult(
                    hostname=host,
                    host=address,
                    port=int(sockaddr[1]),
                    family=fam,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        if not found:
            raise OutboundRefused(f"{host!r} has no address")
        return found

    async def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True)
class OutboundResponse:
    """A guarded call's answer: status, headers and the (bounded) body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class OutboundClient:
    """Calls app-supplied URLs under an OutboundPolicy; one aiohttp session, opened on first use."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.policy), use_dns_cache=False)
            timeout = aiohttp.ClientTimeout(
                total=self.policy.connect_timeout + self.policy.read_timeout,
                sock_connect=self.policy.connect_timeout,
                sock_read=self.policy.read_timeout,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def request(
        self, method: str, url: str, *, data: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None
    ) -> OutboundResponse:
        """Call `url` (no redirects followed); raises OutboundError when refused, unreachable or too large."""
        try:
            checked = _a_label(check_url(url, self.policy).hostname or "")
            target = URL(url)
            # the host aiohttp will connect to must be the one judged (no parser differential to slip through)
            if _a_label(target.raw_host or "") != checked:
                raise OutboundRefused(f"the URL's host is ambiguous ({target.raw_host!r} or {checked!r})")
            async with self._client().request(
                method, target, data=data, headers=headers, allow_redirects=False
            ) as resp:
                body = await resp.content.read(self.policy.max_bytes + 1)
                if len(body) > self.policy.max_bytes:
                    raise OutboundError(f"{url} answered more than {self.policy.max_bytes} bytes")
                return OutboundResponse(resp.status, resp.headers.copy(), body)
        except OutboundRefused as exc:
            raise OutboundBlocked(f"{url} is not called: {exc}") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            refused = _refusal_in(exc)
            if refused is not None:
                raise OutboundBlocked(f"{url} is not called: {refused}") from exc
            raise OutboundError(f"{url} failed: {exc.__class__.__name__} {exc}") from exc

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _refusal_in(exc: BaseException) -> OutboundRefused | None:
    """The resolver's refusal, when aiohttp wrapped it in a connection error."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OutboundRefused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
