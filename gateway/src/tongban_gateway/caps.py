"""Connection caps: per process and per client address (after nginx's `limit_conn`), decided at connect time.

A cap acts before any header is read, so the client is the TCP peer; a trusted proxy carries many clients and is
held to the process's cap only. The management port's connections are never counted nor refused: its health
probes must answer while a flood holds the public caps.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tongban_gateway.client import TrustedProxies
from tongban_gateway.config import Settings

#: share of `max_connections` open past which the gateway is busy (new heads get the short timeout)
BUSY_SHARE = 0.9
#: refused connections kept open at once for their answer to be read; past it, refused ones are reset at once so
#: that a flood of refusals cannot use up the process's files (the management port needs one per probe)
MAX_LINGERING = 512
#: refusal reason → problem detail
REFUSALS = {
    "too_many_connections": "the gateway holds as many connections as it may; try again shortly",
    "too_many_client_connections": "this address holds as many connections as it may; close some or try again shortly",
}


def client_key(host: str) -> str | int:
    """What a peer's connections are counted under: its IPv4 address, or its IPv6 /64 (one host's usual share)."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        return host
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else int(address) >> 64


@dataclass(slots=True)
class Hold:
    """A public connection's place under the caps; `key` None: counted in the process's total only."""

    key: str | int | None


class ConnectionCaps:
    """The public connections one process holds, in all and per client address; one event loop uses it."""

    def __init__(self, settings: Settings) -> None:
        self.max_total = settings.max_connections
        self.max_per_client = settings.max_connections_per_client
        self.busy_at = int(settings.max_connections * BUSY_SHARE)
        self.management_port = settings.management_port
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.total = 0
        self.by_client: dict[str | int, int] = {}
        self.lingering = 0  # refused connections waiting for their answer to be read

    @property
    def busy(self) -> bool:
        """True while over `BUSY_SHARE` of the process's cap is open."""
        return self.total > self.busy_at

    def admit(self, *, local_port: int | None, peer: str | None) -> Hold | str | None:
        """A new connection: None for a management one (uncounted), its Hold, or the reason it is refused."""
        if local_port is not None and local_port == self.management_port:
            return None
        key = client_key(peer) if peer is not None else None
        mine = self.by_client.get(key, 0) if key is not None else 0
        if peer is not None and mine >= self.max_per_client:
            # trust is asked only at the cap: the common case stays a dict look-up
            if not self.proxies.trusts_peer(peer):
                return "too_many_client_connections"
            key = None
        if self.total >= self.max_total:
            return "too_many_connections"
        self.total += 1
        if key is not None:
            self.by_client[key] = mine + 1
        return Hold(key)

    def release(self, hold: Hold) -> None:
        """Give a connection's place back."""
        self.total -= 1
        if hold.key is not None:
            left = self.by_client[hold.key] - 1
            if left:
                self.by_client[hold.key] = left
            else:
                del self.by_client[hold.key]
