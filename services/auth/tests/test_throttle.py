"""Brute-force protection: atomic failure counters shared through the database, progressive delays, cool-downs."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import select

from tongban_auth import throttle
from tongban_auth.models import Throttle
from tongban_kit.db import Database
from tongban_kit.outbox import utcnow

from .credential_support import db_fixture, make_settings, pg_db_fixture, sqlite_db_fixture  # noqa: F401

SETTINGS = make_settings(throttle_free_failures=3, throttle_max_delay_seconds=900)


def test_delays_double_after_the_free_failures_up_to_the_maximum() -> None:
    assert [throttle.delay_seconds(n, 3, 900) for n in range(1, 9)] == [0, 0, 0, 2, 4, 8, 16, 32]
    assert throttle.delay_seconds(13, 3, 900) == 900
    assert throttle.delay_seconds(10_000, 3, 900) == 900


def test_shared_keys_are_looser() -> None:
    assert throttle.free_failures("acct:u1", SETTINGS) == 3
    assert throttle.free_failures("login:zhang.san", SETTINGS) == 3
    assert throttle.free_failures("ip:10.0.0.1", SETTINGS) == 30
    assert throttle.free_failures("client:demo-app", SETTINGS) == 300


def test_keys_of_an_attempt() -> None:
    assert throttle.keys_for(ip="10.0.0.1", client_id="demo-app", own=[throttle.account_key("u1")]) == [
        "acct:u1",
        "ip:10.0.0.1",
        "client:demo-app",
    ]
    assert throttle.keys_for(own=[throttle.login_key("  Zhang.San ")]) == ["login:zhang.san"]
    assert throttle.mfa_key("u1") == "mfa:u1"


def test_the_keys_of_a_password_attempt() -> None:
    own = [throttle.account_key("u1")]
    gate = throttle.password_gate(own=own, ip="10.0.0.1", client_id="demo-app")
    assert gate.hard == ["pair:acct:u1@10.0.0.1"]
    assert gate.soft == ["acct:u1", "ip:10.0.0.1", "client:demo-app"] and gate.count == gate.hard + gate.soft
    # a refused attempt counts on the attacker's own keys only: never the account or the app of others
    assert gate.refused == ["pair:acct:u1@10.0.0.1", "ip:10.0.0.1"]
    trusted = throttle.password_gate(own=own, ip="10.0.0.1", client_id="demo-app", devices=["d1"])
    assert trusted.hard == ["dev:d1"] and trusted.soft == []


@pytest.mark.parametrize(
    ("ip", "counted_as"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:0:0:0:77", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("198.51.100.7", "198.51.100.7"),
        (None, "-"),
    ],
)
def test_an_ipv6_client_counts_by_its_64(ip: str | None, counted_as: str) -> None:
    gate = throttle.password_gate(own=[throttle.account_key("u1")], ip=ip, client_id=None)
    assert gate.hard == [f"pair:acct:u1@{counted_as}"]
    if ip:
        assert gate.soft == ["acct:u1", f"ip:{counted_as}"]


async def test_a_pair_has_no_free_failures_at_a_hammered_address(db: Database) -> None:
    ip = "ip:192.0.2.99"
    for _ in range(throttle.free_failures(ip, SETTINGS) + 1):
        await fail(db, [ip])
    assert await wait(db, [ip]) > 0
    pair = throttle.pair_key(throttle.account_key("u-hot"), "192.0.2.99")
    await fail(db, [pair, ip])
    assert 1 <= await wait(db, [pair]) <= 2  # its first failure delays it
    calm = throttle.pair_key(throttle.account_key("u-hot"), "192.0.2.98")
    assert await fail(db, [calm, "ip:192.0.2.98"]) == 0


async def failures(db: Database, key: str) -> int:
    async with db.read_session() as s:
        row = (await s.exec(select(Throttle).where(Throttle.key == key))).first()
        return row.failures if row else 0


async def fail(db: Database, keys: list[str], **kw: object) -> int:
    async with db.session() as s:
        delay = await throttle.record_failure(s, keys, SETTINGS, **kw)  # type: ignore[arg-type]
        await s.commit()
        return delay


async def wait(db: Database, keys: list[str], **kw: object) -> int:
    async with db.read_session() as s:
        return await throttle.retry_after(s, keys, **kw)  # type: ignore[arg-type]


async def test_progressive_delay_and_reset(db: Database) -> None:
    acct, ip = throttle.account_key("u-progressive"), "ip:192.0.2.7"
    keys = [acct, ip]
    assert [await fail(db, keys) for _ in range(3)] == [0, 0, 0]
    assert await wait(db, keys) == 0
    assert await fail(db, keys) == 2
    assert 1 <= await wait(db, keys) <= 2
    assert await wait(db, [ip]) == 0  # the address has 30 free failures
    assert await fail(db, keys) == 4
    assert 3 <= await wait(db, keys) <= 4
    assert await wait(db, keys, now=utcnow() + timedelta(seconds=5)) == 0  # a delay, not a lockout
    async with db.session() as s:
        await throttle.reset(s, [acct])
        await s.commit()
    assert await failures(db, acct) == 0 and await failures(db, ip) == 5
    assert await wait(db, keys) == 0


async def test_counters_are_forgotten_after_a_quiet_day(db: Database) -> None:
    key = throttle.account_key("u-forgotten")
    old = utcnow() - timedelta(days=2)
    for _ in range(6):
        await fail(db, [key], now=old)
    assert await failures(db, key) == 6
    assert await fail(db, [key]) == 0
    assert await failures(db, key) == 1


async def test_concurrent_failures_are_all_counted_and_delays_grow(db: Database) -> None:
    settings = make_settings(throttle_free_failures=3, throttle_max_delay_seconds=10**6)
    key = throttle.account_key("u-race")
    n = 20

    async def one() -> int:
        async with db.session() as s:
            delay = await throttle.record_failure(s, [key, "ip:198.51.100.1"], settings)
            await s.commit()
            return delay

    delays = await asyncio.gather(*(one() for _ in range(n)))
    assert await failures(db, key) == n
    # each failure saw its own count: 3 free ones, then 2, 4, ... 2**17
    assert sorted(delays) == [0, 0, 0] + [2**k for k in range(1, n - 2)]
    assert await wait(db, [key]) > 2**16


async def test_cooldown_slots(db: Database) -> None:
    key = "send:sms:u-cool"
    now = utcnow()
    async with db.session() as s:
        assert await throttle.claim_cooldown(s, key, 60, now=now) == 0
        assert 59 <= await throttle.claim_cooldown(s, key, 60, now=now + timedelta(seconds=1)) <= 60
        assert await throttle.claim_cooldown(s, key, 60, now=now + timedelta(seconds=61)) == 0
        await s.commit()


async def test_concurrent_cooldown_claims_give_one_slot(db: Database) -> None:
    key = "send:email:u-cool-race"

    async def claim() -> int:
        async with db.session() as s:
            left = await throttle.claim_cooldown(s, key, 60)
            await s.commit()
            return left

    results = await asyncio.gather(*(claim() for _ in range(5)))
    assert sorted(r == 0 for r in results) == [False, False, False, False, True]


async def test_purge_keeps_live_counters(db: Database) -> None:
    now = utcnow()
    await fail(db, ["acct:u-old"], now=now - timedelta(days=3))
    await fail(db, ["acct:u-recent"], now=now)
    for _ in range(4):
        await fail(db, ["acct:u-blocked-old"], now=now - timedelta(days=2))
    async with db.session() as s:  # blocked until far ahead although the failures are old
        await throttle.record_failure(s, ["acct:u-blocked"], make_settings(throttle_free_failures=0), now=now)
        assert await throttle.purge(s, now=now) >= 2
        await s.commit()
    async with db.read_session() as s:
        left = set((await s.exec(select(Throttle.key))).all())
    assert {"acct:u-recent", "acct:u-blocked"} <= left
    assert not {"acct:u-old", "acct:u-blocked-old"} & left


@pytest.mark.parametrize("n", [0, 1])
def test_no_delay_before_the_first_failure(n: int) -> None:
    assert throttle.delay_seconds(n, 0, 900) == (0 if n == 0 else 2)
