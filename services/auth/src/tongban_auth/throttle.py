"""Brute-force protection shared by every replica: failure counters in `auth_throttle`, progressive delays.

The attacker pays, the owner does not. A password attempt has *hard* keys, which refuse it unchecked while they
are delayed, and *soft* keys (`password_gate`):
- from a browser without a device cookie for the account (`tongban_auth.devices`) the hard key is the pair of
  account and client address, `pair:acct:<user id>@<address>` (`pair:login:<name>@…` for a name no account has):
  what this address did to this account. The account across addresses (`acct:`/`login:`), the address across
  accounts (`ip:`) and the app (`client:`) are soft: while one of them is delayed, only an account with a second
  factor has its password checked, and a right one must pass that factor; every other attempt is refused. So a
  guesser gets no password checked past those limits, and the owner of an account with a second factor is not
  locked out by them;
- from a browser with a device cookie for the account (it signed in there before), the only key is the device's
  own `dev:<device id>`; a device past its free failures is treated as untrusted until its delay ends.
An IPv6 client counts by its /64 network (`address`): one host is usually given a whole /64 to rotate through.
Second-factor checks count on `mfa:<user id>` (hard, apart, so a right password cannot reset it) and on the
address and app. After the free failures of a key, each further failure delays it for
`min(2 ** (failures - free), max_delay)` seconds. Shared keys are looser: an office NAT puts many people behind
one address and an app signs in all its users, so an address gets ten times and a client a hundred times the free
failures of an account; at an address past its free failures a pair has none.

A counter is forgotten a day after its last failure and purged then; every failure writes a bounded number of
rows (one per key of the attempt). Counting is one `INSERT … ON CONFLICT DO UPDATE … RETURNING` per key, atomic
on PostgreSQL and SQLite alike, so concurrent failures are all counted.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth.config import Settings
from tongban_auth.models import Throttle
from tongban_kit.outbox import utcnow

#: a counter with no failure for this long starts again from zero
FORGET_AFTER = timedelta(days=1)
#: free failures of shared keys, as multiples of an account's
SCALE = {"ip": 10, "client": 100}
_MAX_EXPONENT = 30
_TABLE: Any = Throttle.__table__  # type: ignore[attr-defined]


def address(ip: str | None) -> str:
    """The throttled unit of a client address: an IPv4 address, or the /64 network of an IPv6 one."""
    if not ip:
        return "-"
    try:
        parsed = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip[:45]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def account_key(user_id: str) -> str:
    """The key of an account's password checks from every address."""
    return f"acct:{user_id}"


def pair_key(own: str, ip: str | None) -> str:
    """The key of an account's (or unknown login name's) password checks from one client address."""
    return f"pair:{own[:150]}@{address(ip)}"


def device_key(device_id: str) -> str:
    """The key of the password checks made with one device cookie."""
    return f"dev:{device_id[:64]}"


def mfa_key(user_id: str) -> str:
    """The key of an account's second-factor checks."""
    return f"mfa:{user_id}"


def login_key(login: str) -> str:
    """The key of a login name that matches no account (normalised: trimmed, case-folded)."""
    return f"login:{login.strip().casefold()[:190]}"


def keys_for(*, ip: str | None = None, client_id: str | None = None, own: Iterable[str] = ()) -> list[str]:
    """The keys of one attempt: its own (`acct:`, `mfa:` or `login:`) plus the address and client, when known."""
    keys = list(own)
    if ip:
        keys.append(f"ip:{address(ip)}")
    if client_id:
        keys.append(f"client:{client_id[:190]}")
    return keys


@dataclass(frozen=True)
class Gate:
    """The keys of one password attempt: `hard` refuse it unchecked while delayed; while a `soft` one is delayed
    only an account with a second factor is checked (a right password then takes a step-up), any other attempt is
    refused; a failure counts on both."""

    hard: list[str]
    soft: list[str] = field(default_factory=list)

    @property
    def count(self) -> list[str]:
        """Every key a failure of this attempt counts on."""
        return list(dict.fromkeys(self.hard + self.soft))

    @property
    def refused(self) -> list[str]:
        """The keys a refused attempt counts on: the hard keys and the address (the attacker's own), never the
        account or the app, so that refusals cannot push delays onto others."""
        return list(dict.fromkeys(self.hard + [k for k in self.soft if k.startswith("ip:")]))


def password_gate(*, own: Iterable[str], ip: str | None, client_id: str | None, devices: Iterable[str] = ()) -> Gate:
    """The keys of a password attempt on the accounts (or login name) `own`; `devices` are the device ids of a
    trusted device cookie for them (then only they count)."""
    trusted = [device_key(d) for d in devices]
    if trusted:
        return Gate(hard=trusted)
    own = list(own)
    return Gate(hard=[pair_key(k, ip) for k in own], soft=keys_for(ip=ip, client_id=client_id, own=own))


def free_failures(key: str, settings: Settings, *, hot_address: bool = False) -> int:
    """Failures a key may have before delays start (a pair has none at an address past its own free failures)."""
    if hot_address and key.startswith("pair:"):
        return 0
    return settings.throttle_free_failures * SCALE.get(key.split(":", 1)[0], 1)


def delay_seconds(failures: int, free: int, max_delay: int) -> int:
    """The delay after the n-th failure: none while free, then doubling up to `max_delay`."""
    if failures <= free:
        return 0
    return int(min(2 ** min(failures - free, _MAX_EXPONENT), max_delay))


async def retry_after(s: AsyncSession, keys: Iterable[str], *, now: datetime | None = None) -> int:
    """Seconds until every key of an attempt is free again (0: the attempt may be checked now)."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return 0
    now = now or utcnow()
    stmt = select(func.max(col(Throttle.blocked_until))).where(
        col(Throttle.key).in_(wanted), col(Throttle.blocked_until) > now
    )
    until = (await s.exec(stmt)).one()
    if until is None:
        return 0
    return max(1, math.ceil((until - now).total_seconds()))


def _upsert(dialect: str) -> Any:
    return (postgresql if dialect == "postgresql" else sqlite).insert(_TABLE)


async def record_failure(
    s: AsyncSession, keys: Iterable[str], settings: Settings, *, now: datetime | None = None
) -> int:
    """Count a failure on every key (in the caller's transaction); returns the longest delay it now imposes."""
    now = now or utcnow()
    dialect = (await s.connection()).dialect.name
    t = _TABLE
    longest = 0
    wanted = sorted(set(keys))  # one lock order for every writer
    hot = [k for k in wanted if k.startswith("ip:")]
    hot_address = bool(hot) and await retry_after(s, hot, now=now) > 0
    for key in wanted:
        stmt = _upsert(dialect).values(key=key, failures=1, last_failure_at=now, blocked_until=None)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.key],
            set_={
                "failures": case(
                    (or_(t.c.last_failure_at.is_(None), t.c.last_failure_at < now - FORGET_AFTER), 1),
                    else_=t.c.failures + 1,
                ),
                "last_failure_at": now,
            },
        ).returning(t.c.failures)
        failures = int((await s.exec(stmt)).scalar_one())
        free = free_failures(key, settings, hot_address=hot_address)
        delay = delay_seconds(failures, free, settings.throttle_max_delay_seconds)
        if delay:
            until = now + timedelta(seconds=delay)
            await s.exec(
                update(t)
                .where(and_(t.c.key == key, or_(t.c.blocked_until.is_(None), t.c.blocked_until < until)))
                .values(blocked_until=until)
            )
            longest = max(longest, delay)
    return longest


async def reset(s: AsyncSession, keys: Iterable[str]) -> None:
    """Forget the failures of keys after a success (the caller passes its own keys, never the address)."""
    wanted = list(set(keys))
    if wanted:
        await s.exec(delete(_TABLE).where(_TABLE.c.key.in_(wanted)))


async def claim_cooldown(s: AsyncSession, key: str, seconds: int, *, now: datetime | None = None) -> int:
    """Take a cool-down slot (e.g. one code sent per minute): 0 when taken now, else the seconds left.

    Atomic like the counters: of two concurrent claims exactly one gets the slot.
    """
    now = now or utcnow()
    t = _TABLE
    until = now + timedelta(seconds=seconds)
    dialect = (await s.connection()).dialect.name
    stmt = (
        _upsert(dialect)
        .values(key=key, failures=0, blocked_until=until, last_failure_at=None)
        .on_conflict_do_update(
            index_elements=[t.c.key],
            set_={"blocked_until": until},
            where=or_(t.c.blocked_until.is_(None), t.c.blocked_until <= now),
        )
        .returning(t.c.key)
    )
    if (await s.exec(stmt)).first() is not None:
        return 0
    return await retry_after(s, [key], now=now) or 1


async def purge(s: AsyncSession, *, now: datetime | None = None) -> int:
    """Delete counters that block nothing and were forgotten; returns how many (run periodically)."""
    now = now or utcnow()
    t = _TABLE
    result = await s.exec(
        delete(t).where(
            or_(t.c.blocked_until.is_(None), t.c.blocked_until <= now),
            or_(t.c.last_failure_at.is_(None), t.c.last_failure_at < now - FORGET_AFTER),
        )
    )
    return int(result.rowcount or 0)
