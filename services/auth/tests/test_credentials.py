"""Password sign-in against a user directory on the real NATS: lookups, throttling, events, password changes,
the demo seed and the `set-password` command."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher, Type
from jsonschema import Draft202012Validator
from sqlmodel import col, select

from tongban_auth import credentials, passwords, throttle, totp
from tongban_auth.__main__ import main as auth_main
from tongban_auth.models import Credential, Throttle
from tongban_auth.seed import DEMO_USERNAMES, DemoSeedRefused, seed
from tongban_kit.db import Database
from tongban_kit.demo import DEMO_PASSWORD, demo_user_id
from tongban_kit.outbox import OutboxEvent
from tongban_kit.problems import Problem
from tongban_user.models import Kind, Status

from .credential_support import (  # noqa: F401
    DirectoryStack,
    db_fixture,
    directory_fixture,
    make_settings,
    pg_db_fixture,
    sqlite_db_fixture,
)

SETTINGS = make_settings()
PASSWORD = "Xihu-Lake-2026"
CONTRACTS = Path(__file__).resolve().parents[3] / "contracts" / "events"
FAILED = Draft202012Validator(json.loads((CONTRACTS / "auth.login.failed.v1.json").read_text()))


async def account(db: Database, d: DirectoryStack, *, password: str | None = PASSWORD, **kw: Any) -> tuple[str, str]:
    """A new directory account (username `u<hex>`), with a password unless None; returns id and username."""
    user_id, username = str(uuid.uuid4()), "u" + uuid.uuid4().hex[:10]
    d.directory.add(user_id, kw.pop("username", username), **kw)
    if password is not None:
        await credentials.set_password(db, SETTINGS, user_id=user_id, password=password)
    return user_id, kw.get("username", username)


async def login(db: Database, d: DirectoryStack, name: str, password: str = PASSWORD, **kw: Any) -> Any:
    return await credentials.authenticate_password(
        db,
        d.rpc,
        SETTINGS,
        login=name,
        password=password,
        ip=kw.get("ip", "203.0.113.9"),
        client_id=kw.get("client_id", "demo-app"),
    )


async def failures(db: Database) -> list[dict[str, Any]]:
    """Payloads of the auth.login.failed.v1 events in the outbox, each checked against its contract."""
    async with db.read_session() as s:
        rows = (await s.exec(select(OutboxEvent).where(col(OutboxEvent.type) == "auth.login.failed.v1"))).all()
    out = []
    for row in rows:
        doc = json.loads(row.payload)
        errors = [e.message for e in FAILED.iter_errors(doc)]
        assert not errors, errors
        out.append(doc["data"])
    return out


async def test_sign_in(db: Database, directory: DirectoryStack) -> None:
    user_id, username = await account(db, directory, name="张三")
    result = await login(db, directory, username.upper())  # usernames are case-insensitive in the directory
    assert result == credentials.LoginResult(True, user_id=user_id, name="张三")


async def test_wrong_password_is_refused_and_recorded(db: Database, directory: DirectoryStack) -> None:
    user_id, username = await account(db, directory)
    result = await login(db, directory, username, "Xihu-Lake-2025")
    assert not result.ok and result.error_key == "login.error.invalid" and result.user_id is None
    [event] = [e for e in await failures(db) if e.get("user_id") == user_id]
    assert event["reason"] == "bad_credentials" and event["method"] == "pwd"
    assert event["login_hint"] == f"{username[0]}***{username[-1]}" and event["client_id"] == "demo-app"
    async with db.read_session() as s:
        assert await throttle.retry_after(s, [throttle.account_key(user_id)]) == 0  # a free failure


async def test_unknown_and_passwordless_accounts(db: Database, directory: DirectoryStack) -> None:
    unknown = await login(db, directory, "13000000001")
    assert unknown.error_key == "login.error.invalid"
    no_password, name = await account(db, directory, password=None)
    assert (await login(db, directory, name)).error_key == "login.error.invalid"
    events = await failures(db)
    assert any(e["reason"] == "unknown_account" and e["login_hint"] == "130****0001" for e in events)
    assert any(e["reason"] == "no_password" and e["user_id"] == no_password for e in events)


async def test_disabled_accounts_are_refused_only_with_the_right_password(
    db: Database, directory: DirectoryStack
) -> None:
    _, name = await account(db, directory, status=Status.disabled)
    assert (await login(db, directory, name, "Wrong-Password-1")).error_key == "login.error.invalid"
    assert (await login(db, directory, name)).error_key == "login.error.disabled"
    _, gone = await account(db, directory, status=Status.deleted)
    assert (await login(db, directory, gone)).error_key == "login.error.invalid"


async def test_login_names_shared_across_kinds(db: Database, directory: DirectoryStack) -> None:
    shared = "shared" + uuid.uuid4().hex[:8]
    await account(db, directory, username=shared, kind=Kind.citizen, password=None)
    staff, _ = await account(db, directory, username=shared, kind=Kind.staff, password="Staff-Pass-2026")
    enterprise, _ = await account(db, directory, username=shared, kind=Kind.legal_person, password="Firm-Pass-2026")
    assert (await login(db, directory, shared, "Staff-Pass-2026")).user_id == staff
    assert (await login(db, directory, shared, "Firm-Pass-2026")).user_id == enterprise
    assert not (await login(db, directory, shared, "Citizen-Pass-2026")).ok


async def test_throttled_attempts_are_refused_without_checking(
    db: Database, directory: DirectoryStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id, name = await account(db, directory)
    for _ in range(4):  # three free failures, the fourth blocks for 2 s
        assert (await login(db, directory, name, "Wrong-Password-1")).error_key == "login.error.invalid"
    checked: list[str | None] = []
    real = passwords.verify_password

    async def spy(stored: str | None, password: str) -> bool:
        checked.append(stored)
        return await real(stored, password)

    monkeypatch.setattr(passwords, "verify_password", spy)
    blocked = await login(db, directory, name)
    assert not blocked.ok and blocked.error_key == "login.error.throttled" and 1 <= (blocked.retry_after or 0) <= 2
    assert checked == []
    assert any(e["reason"] == "throttled" and e["user_id"] == user_id for e in await failures(db))
    await asyncio.sleep(blocked.retry_after or 0)
    assert (await login(db, directory, name)).ok and len(checked) == 1
    async with db.read_session() as s:
        rows = {r.key: r.failures for r in (await s.exec(select(Throttle))).all()}
    assert throttle.account_key(user_id) not in rows  # success resets the account …
    assert rows["ip:203.0.113.9"] >= 4  # … not the address


async def test_unknown_login_names_are_throttled_like_accounts(db: Database, directory: DirectoryStack) -> None:
    name = "nobody" + uuid.uuid4().hex[:6]
    _, known = await account(db, directory)
    for who in (name, known):
        for _ in range(4):
            await login(db, directory, who, "Wrong-Password-1", ip="198.51.100.77")
    assert (await login(db, directory, name.upper(), ip="198.51.100.77")).error_key == "login.error.throttled"
    # from another address too (the name or account is hammered), and the same answer whether an account has it
    elsewhere = [await login(db, directory, who, ip="198.51.100.78") for who in (name, known)]
    assert [(r.ok, r.error_key) for r in elsewhere] == [(False, "login.error.throttled")] * 2
    assert all(1 <= (r.retry_after or 0) <= 2 for r in elsewhere)


def fresh_ip() -> str:
    """An address of its own for a test (the PostgreSQL database is shared by the module's tests)."""
    n = uuid.uuid4().int
    return f"2001:db8:{n % 65536:x}:{(n >> 16) % 65536:x}::{(n >> 32) % 65536:x}"


async def spy_checks(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The stored hashes that every password check is made against from now on (None: a check without one)."""
    checked: list[str | None] = []
    real = passwords.verify_password

    async def spy(stored: str | None, password: str) -> bool:
        checked.append(stored)
        return await real(stored, password)

    monkeypatch.setattr(passwords, "verify_password", spy)
    return checked


async def test_a_spray_from_one_address_is_refused_past_its_limit(
    db: Database, directory: DirectoryStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim_id, victim = await account(db, directory)  # no second factor
    _, guarded = await account(db, directory, mobile="13000000001")
    network = fresh_ip().rsplit(":", 1)[0]
    free = throttle.free_failures("ip:x", SETTINGS)
    for n in range(free + 1):  # one password across many names, a new address of the same /64 each time
        assert not (await login(db, directory, f"nobody-{n}-{uuid.uuid4().hex[:6]}", ip=f"{network}:{n + 1:x}")).ok
    checked = await spy_checks(monkeypatch)
    hit = await login(db, directory, victim, ip=f"{network}:ffff")
    unknown = await login(db, directory, "nobody" + uuid.uuid4().hex[:6], ip=f"{network}:fffe")
    assert checked == [None, None]  # the victim's password was never checked
    # an account with a second factor: its right password is checked and must pass that factor ...
    owner = await login(db, directory, guarded, ip=f"{network}:fffc")
    assert owner.ok and owner.step_up
    # ... and a wrong one gets the same refusal as the rest
    wrong = await login(db, directory, guarded, "Wrong-Password-1", ip=f"{network}:fffd")
    for refused in (hit, unknown, wrong):
        assert (refused.ok, refused.error_key) == (False, "login.error.throttled") and (refused.retry_after or 0) >= 1
    assert any(e["reason"] == "throttled" and e["user_id"] == victim_id for e in await failures(db))


async def test_guessing_an_account_from_many_addresses_is_refused_past_its_limit(
    db: Database, directory: DirectoryStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, victim = await account(db, directory)  # no second factor
    _, guarded = await account(db, directory, email="guarded@example.com")
    for who in (victim, guarded):
        for _ in range(throttle.free_failures("acct:x", SETTINGS) + 1):  # each guess from a new address
            assert not (await login(db, directory, who, "Wrong-Password-1", ip=fresh_ip())).ok
    checked = await spy_checks(monkeypatch)
    hit = await login(db, directory, victim, ip="192.0.2.201")
    assert (hit.ok, hit.error_key) == (False, "login.error.throttled") and checked == [None]
    assert (await login(db, directory, guarded, "Wrong-Password-1", ip="192.0.2.202")).error_key == (
        "login.error.throttled"
    )
    owner = await login(db, directory, guarded, ip="192.0.2.203")
    assert owner.ok and owner.step_up


async def test_second_factors_and_password_hygiene_in_the_result(db: Database, directory: DirectoryStack) -> None:
    user_id, name = await account(db, directory)
    started = await credentials.begin_totp_enrolment(db, SETTINGS, user_id=user_id, label=name)
    code = totp.totp(totp.decode_secret(started.secret), __import__("time").time())
    assert (await credentials.confirm_totp_enrolment(db, SETTINGS, user_id=user_id, code=code)).ok
    assert (await login(db, directory, name)).mfa_methods == ["totp", "recovery"]
    weak_id, weak_name = await account(db, directory, password=None)
    async with db.session() as s:  # a password from before the policy
        s.add(Credential(user_id=weak_id, password_hash=await passwords.hash_password("abcdefghij")))
        await s.commit()
    weak = await login(db, directory, weak_name, "abcdefghij")
    assert weak.ok and weak.needs_password_change


async def test_old_hashes_are_upgraded_at_sign_in(db: Database, directory: DirectoryStack) -> None:
    user_id, name = await account(db, directory, password=None)
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID).hash(PASSWORD)
    async with db.session() as s:
        s.add(Credential(user_id=user_id, password_hash=old))
        await s.commit()
    assert (await login(db, directory, name)).ok
    async with db.read_session() as s:
        row = await s.get(Credential, user_id)
    assert row is not None and row.password_hash != old and not passwords.needs_rehash(row.password_hash or "")
    assert await passwords.verify_password(row.password_hash, PASSWORD)


async def test_set_and_change_password(db: Database, directory: DirectoryStack) -> None:
    user_id, name = await account(db, directory)
    with pytest.raises(credentials.PasswordRejected) as rejected:
        await credentials.set_password(db, SETTINGS, user_id=user_id, password=f"{name}-X1", logins=[name])
    assert rejected.value.status == 422
    assert [v["key"] for v in rejected.value.extensions["violations"]] == ["password.contains_login"]
    wrong = await credentials.change_password(
        db, SETTINGS, user_id=user_id, old_password="Not-The-One-1", new_password="Qiantang-River-9"
    )
    assert not wrong.ok and wrong.error_key == "login.error.invalid"
    with pytest.raises(credentials.PasswordRejected) as same:
        await credentials.change_password(db, SETTINGS, user_id=user_id, old_password=PASSWORD, new_password=PASSWORD)
    assert [v.key for v in same.value.violations] == ["password.unchanged"]
    changed = await credentials.change_password(
        db, SETTINGS, user_id=user_id, old_password=PASSWORD, new_password="Qiantang-River-9"
    )
    assert changed.ok
    assert not (await login(db, directory, name)).ok
    assert (await login(db, directory, name, "Qiantang-River-9")).ok


async def test_an_unavailable_directory_is_a_503(db: Database, directory: DirectoryStack) -> None:
    directory.directory.down = True
    try:
        with pytest.raises(Problem) as exc:
            await login(db, directory, "zhang.san")
    finally:
        directory.directory.down = False
    assert exc.value.status == 503 and exc.value.headers == {"Retry-After": "5"}


async def test_demo_seed(sqlite_db: Database) -> None:
    assert "demo-citizen" in DEMO_USERNAMES and "demo-enterprise" in DEMO_USERNAMES and "demo-admin" in DEMO_USERNAMES
    await seed(sqlite_db, SETTINGS)
    async with sqlite_db.read_session() as s:
        rows = {c.user_id: c for c in (await s.exec(select(Credential))).all()}
    assert set(rows) == {demo_user_id(n) for n in DEMO_USERNAMES}
    assert len({r.password_hash for r in rows.values()}) == len(rows)  # salted one by one
    assert await passwords.verify_password(rows[demo_user_id("demo-citizen")].password_hash, DEMO_PASSWORD)
    assert passwords.check_policy(DEMO_PASSWORD, logins=["demo-citizen"]) == []
    from tongban_auth.seed import seed_passwords

    assert await seed_passwords(sqlite_db) == []  # nothing left to do; changed passwords are kept


async def test_demo_seed_is_refused_in_production(sqlite_db: Database) -> None:
    with pytest.raises(DemoSeedRefused):
        await seed(sqlite_db, make_settings(environment="prod"))
    async with sqlite_db.read_session() as s:
        assert (await s.exec(select(Credential))).all() == []


def _cli(monkeypatch: pytest.MonkeyPatch, url: str, namespace: str, stdin: str) -> None:
    env = {
        "ENVIRONMENT": "test",
        "CURSOR_SECRET": "c" * 32,
        "DATABASE_URL": url,
        "KEY_ENCRYPTION_KEY": "k" * 43,
        "NATS_NAMESPACE": namespace,
        "LOG_JSON": "false",
        "LOG_LEVEL": "WARNING",
    }
    for k, v in env.items():
        monkeypatch.setenv(f"TONGBAN_AUTH_{k}", v)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))


async def test_set_password_command(
    sqlite_db: Database,
    directory: DirectoryStack,
    nats_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TONGBAN_AUTH_NATS_URL", nats_url)
    user_id, name = await account(sqlite_db, directory, password=None)
    _cli(monkeypatch, sqlite_db.url, directory.bus.namespace, "short\n")
    assert await asyncio.to_thread(auth_main, ["set-password", user_id, "--lang", "en"]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    _cli(monkeypatch, sqlite_db.url, directory.bus.namespace, "Lingyin-Temple-7\n")
    assert await asyncio.to_thread(auth_main, ["set-password", name]) == 0
    assert f"password set for {user_id}" in capsys.readouterr().out
    assert (await login(sqlite_db, directory, name, "Lingyin-Temple-7")).ok
    _cli(monkeypatch, sqlite_db.url, directory.bus.namespace, f"{name}-Xy9\n")
    assert await asyncio.to_thread(auth_main, ["set-password", name]) == 2
    assert "登录名" in capsys.readouterr().err  # zh-CN by default; the login name is refused in the password
    _cli(monkeypatch, sqlite_db.url, directory.bus.namespace, "Lingyin-Temple-8\n")
    assert await asyncio.to_thread(auth_main, ["set-password", "nobody-" + uuid.uuid4().hex[:6]]) == 2
    assert "no account" in capsys.readouterr().err
