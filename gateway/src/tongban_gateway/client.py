"""The client's address: the connection's peer, or behind trusted proxies the nearest address they did not add.

The gateway is the edge: an `X-Forwarded-For` a client writes is a claim, believed only as far as the proxies
listed in `trusted_proxies` vouch for it. Rate limits, the access log and the one address sent upstream all use
the address decided here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from tongban_kit.observe import ACCESS_LOG_FIELDS

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse(text: str) -> Address | None:
    """An address from an X-Forwarded-For entry (`1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `::1`); None if it is not."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The networks whose forwarded-for claims are believed."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(e, strict=False) for e in entries)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: Address | None) -> bool:
        """True when `address` lies in a trusted network."""
        return address is not None and any(address in net for net in self.networks)

    def trusts_peer(self, host: str) -> bool:
        """True when a connection's peer address `host` lies in a trusted network."""
        return bool(self.networks) and self.trusts(_parse(host))

    def client(self, peer: str, forwarded_for: Iterable[bytes]) -> str:
        """The client of a request from `peer` carrying these X-Forwarded-For values.

        From a trusted peer: walk the chain from the right past trusted proxies; the first address they did not
        add themselves is the client (entries further left are the client's own claims). All trusted: the
        leftmost. An entry that is no address ends the walk at the last proxy that could be vouched for.
        """
        address = _parse(peer)
        if not self.trusts(address):
            return peer
        hops = [hop for value in forwarded_for for hop in value.decode("latin-1").split(",")]
        client = peer
        for hop in reversed(hops):
            found = _parse(hop)
            if found is None:
                break
            client = str(found)
            if not self.trusts(found):
                break
        return client


class ClientAddress:
    """Replaces the scope's client by the decided address (proto too, from a trusted proxy) and logs it."""

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        if client and self.proxies and self.proxies.trusts(_parse(client[0])):
            chain: list[bytes] = []
            proto: bytes | None = None
            for k, v in scope["headers"]:
                if k == b"x-forwarded-for":
                    chain.append(v)
                elif k == b"x-forwarded-proto":
                    proto = v.rsplit(b",", 1)[-1].strip().lower()
            address = self.proxies.client(client[0], chain)
            if address != client[0]:
                scope["client"] = client = (address, 0)
            if proto in (b"http", b"https"):
                scope["scheme"] = proto.decode()  # the scheme the client used with the proxy
        fields = scope.get(ACCESS_LOG_FIELDS)
        if fields is None:
            fields = scope[ACCESS_LOG_FIELDS] = {}
        fields["client"] = client[0] if client else None
        await self.app(scope, receive, send)
