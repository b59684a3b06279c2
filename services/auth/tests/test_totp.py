"""TOTP (RFC 6238) and recovery codes: test vectors, the Key URI, sealed secrets, replay refused under races."""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid

import pytest

from tongban_auth import credentials, keys, totp
from tongban_auth.models import Credential
from tongban_kit.db import Database
from tongban_kit.outbox import utcnow
from tongban_kit.problems import Problem
from tongban_kit.secrets import SecretDecryptError

from .credential_support import db_fixture, make_settings, pg_db_fixture, sqlite_db_fixture  # noqa: F401

RFC_SECRET = b"12345678901234567890"
SETTINGS = make_settings()


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_rfc6238_appendix_b_sha1(when: int, expected: str) -> None:
    assert totp.totp(RFC_SECRET, when, digits=8) == expected


def test_rfc4226_appendix_d() -> None:
    expected = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"]
    assert [totp.hotp(RFC_SECRET, i) for i in range(10)] == expected


def test_secrets_are_160_bit_base32() -> None:
    made = {totp.generate_secret() for _ in range(20)}
    assert len(made) == 20
    for secret in made:
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        assert len(totp.decode_secret(secret)) == 20
    assert totp.decode_secret("gezd gnbv gy3t qojq") == b"1234567890"


def test_otpauth_uri() -> None:
    assert (
        totp.otpauth_uri("JBSWY3DPEHPK3PXP", "demo-citizen")
        == "otpauth://totp/Tongban:demo-citizen?secret=JBSWY3DPEHPK3PXP&issuer=Tongban"
    )
    assert totp.otpauth_uri("JBSWY3DPEHPK3PXP", "张 三").startswith("otpauth://totp/Tongban:%E5%BC%A0%20%E4%B8%89?")


def test_codes_match_one_step_either_side_only() -> None:
    secret = base64.b32encode(RFC_SECRET).decode()
    now = 1_700_000_000.0
    step = totp.step_at(now)
    for offset in (-1, 0, 1):
        code = totp.totp(RFC_SECRET, now + 30 * offset)
        assert totp.matching_step(secret, code, when=now) == step + offset
    for offset in (-2, 2):
        assert totp.matching_step(secret, totp.totp(RFC_SECRET, now + 30 * offset), when=now) is None
    code = totp.totp(RFC_SECRET, now)
    assert totp.matching_step(secret, f" {code[:3]} {code[3:]} ", when=now) == step
    for bad in ("", "12345", "1234567", "abcdef", "١٢٣٤٥٦"):  # Arabic-Indic digits are digits to Python
        assert totp.matching_step(secret, bad, when=now) is None


def test_secrets_are_sealed_with_their_own_key_and_bound_to_the_account() -> None:
    box = totp.make_box(SETTINGS)
    sealed = totp.seal_secret(box, "JBSWY3DPEHPK3PXP", "user-1")
    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert totp.open_secret(box, sealed, "user-1") == "JBSWY3DPEHPK3PXP"
    with pytest.raises(SecretDecryptError):
        totp.open_secret(box, sealed, "user-2")
    with pytest.raises(SecretDecryptError):
        keys.make_box(SETTINGS).open(sealed, b"user-1")  # the signing-key cipher cannot open it


def test_recovery_codes() -> None:
    codes = totp.new_recovery_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        assert re.fullmatch(r"[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}", code)
    assert len(totp.RECOVERY_ALPHABET) == len(set(totp.RECOVERY_ALPHABET)) == 32
    assert totp.normalise_recovery_code(" 7KQ2 X9MF 3HDO ") == "7kq2x9mf3hd0"
    assert totp.normalise_recovery_code("7kq2-x9mf-3hdu") is None  # u is not in the alphabet
    assert totp.normalise_recovery_code("7kq2-x9mf") is None
    assert totp.recovery_digest("7KQ2-X9MF-3HDA") == totp.recovery_digest("7kq2x9mf3hda")
    assert re.fullmatch(r"[0-9a-f]{64}", totp.recovery_digest(codes[0]))


def now_code(secret: str, offset_steps: int = 0) -> str:
    return totp.totp(totp.decode_secret(secret), time.time() + 30 * offset_steps)


async def enrolled(db: Database) -> tuple[str, str, list[str]]:
    """A new account with a confirmed TOTP app: its id, secret and recovery codes."""
    user_id = str(uuid.uuid4())
    started = await credentials.begin_totp_enrolment(db, SETTINGS, user_id=user_id, label="zhang.san")
    assert started.otpauth_uri.startswith("otpauth://totp/Tongban:zhang.san?secret=" + started.secret)
    done = await credentials.confirm_totp_enrolment(db, SETTINGS, user_id=user_id, code=now_code(started.secret))
    assert done.ok and done.recovery_codes is not None
    return user_id, started.secret, done.recovery_codes


async def test_enrolment(db: Database) -> None:
    user_id = str(uuid.uuid4())
    started = await credentials.begin_totp_enrolment(db, SETTINGS, user_id=user_id, label="li.si")
    async with db.session() as s:
        assert not await credentials.totp_enabled(s, user_id)
    wrong = await credentials.confirm_totp_enrolment(db, SETTINGS, user_id=user_id, code="000000")
    assert not wrong.ok and wrong.error_key == "totp.error.invalid"
    done = await credentials.confirm_totp_enrolment(db, SETTINGS, user_id=user_id, code=now_code(started.secret))
    assert done.ok and done.amr == ["otp"] and done.recovery_codes and len(done.recovery_codes) == 10
    async with db.session() as s:
        assert await credentials.totp_enabled(s, user_id)
        row = await s.get(Credential, user_id)
        assert row is not None and row.totp_secret_enc and started.secret not in row.totp_secret_enc
        assert sorted(row.recovery_codes) == sorted(totp.recovery_digest(c) for c in done.recovery_codes)
    again = await credentials.confirm_totp_enrolment(db, SETTINGS, user_id=user_id, code=now_code(started.secret))
    assert not again.ok and again.error_key == "totp.error.expired"
    with pytest.raises(Problem) as exc:
        await credentials.begin_totp_enrolment(db, SETTINGS, user_id=user_id, label="li.si")
    assert exc.value.status == 409


async def test_a_code_works_once(db: Database) -> None:
    user_id, secret, _ = await enrolled(db)
    # the enrolment used the current step: the same code is a replay now, the next step's code is fine once
    replay = await credentials.verify_totp(db, SETTINGS, user_id=user_id, code=now_code(secret))
    assert not replay.ok and replay.error_key == "mfa.error.invalid"
    ahead = await credentials.verify_totp(db, SETTINGS, user_id=user_id, code=now_code(secret, 1))
    assert ahead.ok and ahead.amr == ["otp"]
    assert not (await credentials.verify_totp(db, SETTINGS, user_id=user_id, code=now_code(secret, 1))).ok
    assert not (await credentials.verify_totp(db, SETTINGS, user_id=user_id, code=now_code(secret))).ok


async def test_step_acceptance_is_conditional(db: Database) -> None:
    user_id, _, _ = await enrolled(db)
    async with db.session() as s:
        row = await s.get(Credential, user_id)
        assert row is not None and row.totp_last_step is not None
        last = row.totp_last_step
        assert not await totp.accept_step(s, user_id, last)
        assert not await totp.accept_step(s, user_id, last - 1)
        assert await totp.accept_step(s, user_id, last + 1)
        assert not await totp.accept_step(s, "no-such-account", last + 5)
        await s.commit()


async def test_concurrent_submissions_of_one_code_pass_once(db: Database) -> None:
    user_id, secret, _ = await enrolled(db)
    code = now_code(secret, 1)
    results = await asyncio.gather(
        *(credentials.verify_totp(db, SETTINGS, user_id=user_id, code=code) for _ in range(2))
    )
    assert sorted(r.ok for r in results) == [False, True]


async def test_not_enrolled_accounts_have_no_totp(db: Database) -> None:
    user_id = str(uuid.uuid4())
    started = await credentials.begin_totp_enrolment(db, SETTINGS, user_id=user_id, label="x")
    # a pending secret is not a second factor yet
    assert not (await credentials.verify_totp(db, SETTINGS, user_id=user_id, code=now_code(started.secret))).ok
    assert not (await credentials.verify_totp(db, SETTINGS, user_id=str(uuid.uuid4()), code="123456")).ok
    with pytest.raises(Problem) as exc:
        await credentials.regenerate_recovery_codes(db, user_id=user_id)
    assert exc.value.status == 409


async def test_recovery_codes_work_once_and_can_be_regenerated(db: Database) -> None:
    user_id, _, codes = await enrolled(db)
    used = await credentials.use_recovery_code(db, SETTINGS, user_id=user_id, code=codes[0].upper())
    assert used.ok and used.amr == ["otp"]
    assert not (await credentials.use_recovery_code(db, SETTINGS, user_id=user_id, code=codes[0])).ok
    async with db.session() as s:
        row = await s.get(Credential, user_id)
        assert row is not None and len(row.recovery_codes) == 9
        assert credentials.mfa_methods(row) == ["totp", "recovery"]
    fresh = await credentials.regenerate_recovery_codes(db, user_id=user_id)
    assert len(fresh) == 10 and not set(fresh) & set(codes)
    assert not (await credentials.use_recovery_code(db, SETTINGS, user_id=user_id, code=codes[1])).ok
    assert (await credentials.use_recovery_code(db, SETTINGS, user_id=user_id, code=fresh[1])).ok


async def test_concurrent_uses_of_one_recovery_code_pass_once(db: Database) -> None:
    user_id, _, codes = await enrolled(db)
    results = await asyncio.gather(
        *(credentials.use_recovery_code(db, SETTINGS, user_id=user_id, code=codes[3]) for _ in range(3)),
        credentials.use_recovery_code(db, SETTINGS, user_id=user_id, code=codes[4]),
    )
    assert sorted(r.ok for r in results[:3]) == [False, False, True]
    assert results[3].ok  # another code used at the same time is not lost
    async with db.session() as s:
        row = await s.get(Credential, user_id)
        assert row is not None and len(row.recovery_codes) == 8


async def test_disable_with_a_current_code(db: Database) -> None:
    user_id, secret, codes = await enrolled(db)
    wrong = await credentials.disable_totp(db, SETTINGS, user_id=user_id, code="000000")
    assert not wrong.ok
    assert (await credentials.disable_totp(db, SETTINGS, user_id=user_id, code=now_code(secret, 1))).ok
    async with db.session() as s:
        row = await s.get(Credential, user_id)
        assert row is not None
        assert (row.totp_secret_enc, row.totp_confirmed_at, row.totp_last_step, row.recovery_codes) == (
            None,
            None,
            None,
            [],
        )
    assert not (await credentials.use_recovery_code(db, SETTINGS, user_id=user_id, code=codes[0])).ok
    restarted = await credentials.begin_totp_enrolment(db, SETTINGS, user_id=user_id, label="again")
    assert restarted.secret != secret


async def test_disable_with_a_recovery_code(db: Database) -> None:
    user_id, _, codes = await enrolled(db)
    assert (await credentials.disable_totp(db, SETTINGS, user_id=user_id, code=codes[9])).ok
    async with db.session() as s:
        assert not await credentials.totp_enabled(s, user_id)
        row = await s.get(Credential, user_id)
        assert row is not None and row.updated_at <= utcnow()
