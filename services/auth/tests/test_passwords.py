"""Passwords: Argon2id at the OWASP parameters, off the event loop, rehash on parameter change, and the policy."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from argon2 import PasswordHasher, Type

from tongban_auth import clients, passwords
from tongban_auth.passwords import check_policy


def keys(password: str, **kw: object) -> set[str]:
    return {v.key for v in check_policy(password, **kw)}  # type: ignore[arg-type]


def test_one_hasher_with_owasp_parameters() -> None:
    h = passwords.HASHER
    assert h is clients.HASHER
    assert (h.memory_cost, h.time_cost, h.parallelism, h.type) == (19456, 2, 1, Type.ID)


@pytest.mark.parametrize(
    "password",
    [
        "Tongban-Demo-1",  # the demo password: 4 classes, 14 characters
        "Zhejiang2026x",  # 3 classes (upper, lower, digit)
        "correct horse battery staple",  # a passphrase: length alone
        "门前大桥下游过一群鸭子快来快来数一数",  # a Chinese passphrase of 18 characters
        "hz.xihu-9_west",  # lower, symbol, digit
    ],
)
def test_acceptable_passwords(password: str) -> None:
    assert check_policy(password, logins=["zhang.san", "13800138000"]) == []


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("Ab1!xyz", {"password.too_short"}),
        ("A" * 60 + "b1!" + "c" * 70, {"password.too_long"}),
        ("           ", {"password.blank"}),
        ("Abc1!\x00defgh", {"password.control_character"}),
        ("Abc1!\u200bdefgh", {"password.control_character"}),  # a zero-width space (format character)
        ("abcdefghijkl", {"password.too_simple"}),  # one class, 12 characters
        ("abcdefgh1234", {"password.too_simple"}),  # two classes, 12 characters
        ("aaaaaaaaaaaaaaaaaaaa", {"password.repetitive"}),  # 20 characters but one symbol
        ("Zhang.San-2026", {"password.contains_login"}),
        ("My13800138000!", {"password.contains_login"}),
        ("Qwer1234!", {"password.too_short", "password.common"}),
        ("P@ssw0rd123", {"password.common"}),
        ("1QAZ2WSX3EDC", {"password.too_simple", "password.common"}),
        ("Password@2026", set()),  # not on the list: policy is not a blocklist of patterns
        ("x", {"password.too_short", "password.too_simple", "password.repetitive"}),
    ],
)
def test_violations(password: str, expected: set[str]) -> None:
    assert keys(password, logins=["zhang.san", "13800138000", "zs@example.com"]) == expected


def test_email_local_part_counts_as_login_and_short_names_do_not() -> None:
    assert "password.contains_login" in keys("Lihua.Wang!2026", logins=["lihua.wang@example.com"])
    assert keys("Xy-2026-Qwerty", logins=["xy"]) == set()  # a 2-letter login would forbid too much


def test_every_violation_is_reported_at_once() -> None:
    assert keys("zhang", logins=["zhang"]) == {"password.too_short", "password.too_simple", "password.contains_login"}


def test_messages_exist_in_both_languages_with_their_numbers() -> None:
    for key, texts in passwords.MESSAGES.items():
        assert set(texts) == {"zh-CN", "en"}, key
    [v] = check_policy("Ab1!xyz")
    assert v.message("en") == "The password needs at least 10 characters."
    assert "10" in v.message("zh-CN") and "密码" in v.message("zh-CN")
    assert v.message("fr") == v.message("zh-CN")


def test_common_list_is_shipped_lower_cased() -> None:
    common = passwords.common_passwords()
    assert len(common) >= 400
    assert all(p == p.lower() and p.strip() == p for p in common)
    assert {"123456", "password", "1qaz2wsx3edc", "woaini1314", "p@ssw0rd"} <= common


async def test_hash_and_verify() -> None:
    stored = await passwords.hash_password("Tongban-Demo-1")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await passwords.verify_password(stored, "Tongban-Demo-1")
    assert not await passwords.verify_password(stored, "Tongban-Demo-2")
    assert not await passwords.verify_password(None, "Tongban-Demo-1")
    assert not await passwords.verify_password("not a hash", "Tongban-Demo-1")


async def test_passwords_are_compared_in_nfkc_form() -> None:
    stored = await passwords.hash_password("Ｔｏｎｇｂａｎ－２０２６")  # full-width, as some IMEs type it
    assert await passwords.verify_password(stored, "Tongban-2026")


async def test_rehash_when_parameters_change() -> None:
    weaker = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID).hash("x")
    assert passwords.needs_rehash(weaker)
    assert not passwords.needs_rehash(await passwords.hash_password("x"))
    assert passwords.needs_rehash("garbage")


async def test_unknown_accounts_cost_the_same_as_known_ones() -> None:
    stored = await passwords.hash_password("Tongban-Demo-1")
    await passwords.verify_password(None, "warm-up")  # the dummy hash is made once

    async def timed(target: str | None) -> float:
        start = time.perf_counter()
        for _ in range(4):
            await passwords.verify_password(target, "a wrong password")
        return time.perf_counter() - start

    known, unknown = await timed(stored), await timed(None)
    assert 0.5 < unknown / known < 2.0, (known, unknown)


async def test_hashing_does_not_block_the_event_loop() -> None:
    stored = await passwords.hash_password("Tongban-Demo-1")
    ticks: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    start = time.perf_counter()
    results = await asyncio.gather(*(passwords.verify_password(stored, "Tongban-Demo-1") for _ in range(10)))
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    assert all(results)
    during = [t for t in ticks if t >= start]
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(during) >= elapsed / 0.05, (len(during), elapsed)  # ticks kept coming while hashing
    assert max(gaps) < 0.1, max(gaps)
