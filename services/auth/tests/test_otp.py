"""One-time codes by SMS and email: digests, expiry, attempts, resend cool-down, masking, the development channel."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlmodel import select

from tongban_auth import credentials, otp
from tongban_auth.models import OtpChallenge
from tongban_kit.db import Database
from tongban_kit.outbox import utcnow
from tongban_user.models import Status

from .credential_support import (  # noqa: F401
    DirectoryStack,
    db_fixture,
    directory_fixture,
    make_settings,
    pg_db_fixture,
    sqlite_db_fixture,
)

SETTINGS = make_settings()


@dataclass
class Outbox:
    """A deliverer that keeps what it would send (the delivery boundary, not the code under test)."""

    sent: list[dict[str, object]] = field(default_factory=list)
    fail: bool = False

    async def deliver(
        self, *, channel: str, destination: str, code: str, expires_in: int, user_id: str, reference: str
    ) -> None:
        if self.fail:
            raise ConnectionError("gateway down")
        self.sent.append({"channel": channel, "destination": destination, "code": code, "expires_in": expires_in})

    def last_code(self) -> str:
        return str(self.sent[-1]["code"])


def test_masking() -> None:
    assert otp.mask_mobile("13800138000") == "138****8000"
    assert otp.mask_mobile("+8613800138000") == "+86*******8000"
    assert otp.mask_email("demo@example.com") == "d***@example.com"
    assert otp.mask("email", "zhang.san@zj.gov.cn") == "z***@zj.gov.cn"
    assert otp.mask_login("13800138000") == "138****8000"
    assert otp.mask_login("zhang.san") == "z***n"
    assert otp.mask_login("li@example.com") == "l***@example.com"
    assert otp.mask_login("ab") == "**"


def test_codes_are_six_digits_and_stored_as_keyed_digests() -> None:
    codes = {otp.new_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes) and len(codes) > 150
    d1 = otp.code_digest(SETTINGS, "c1", "123456")
    assert d1 != otp.code_digest(SETTINGS, "c2", "123456")  # bound to the challenge
    assert d1 != otp.code_digest(make_settings(key_encryption_key="another-key-of-enough-length"), "c1", "123456")
    import hashlib

    assert d1 != hashlib.sha256(b"123456").hexdigest() and "123456" not in d1


@pytest.mark.parametrize("environment", ["test", "prod"])
def test_the_log_channel_is_refused_outside_dev(environment: str) -> None:
    settings = make_settings(environment=environment)
    with pytest.raises(otp.DeliveryUnavailable, match="development only"):
        otp.LogDeliverer(settings)
    with pytest.raises(otp.DeliveryUnavailable):
        otp.make_deliverer(settings)


def test_the_message_channel_needs_the_bus() -> None:
    settings = make_settings(environment="prod", otp_channel="message")
    with pytest.raises(otp.DeliveryUnavailable, match="otp_channel=message"):
        otp.make_deliverer(settings)  # no RPC client to reach the message service with
    deliverer = otp.make_deliverer(settings, lambda: None)
    assert isinstance(deliverer, otp.MessageDeliverer)  # any environment: the message service delivers for real


async def test_the_log_channel_writes_the_code_in_dev(caplog: pytest.LogCaptureFixture) -> None:
    deliverer = otp.make_deliverer(make_settings(environment="dev"))
    assert isinstance(deliverer, otp.LogDeliverer)
    with caplog.at_level(logging.WARNING, logger="tongban_auth.otp"):
        await deliverer.deliver(
            channel="sms", destination="13800138000", code="042917", expires_in=300, user_id="u-1", reference="otp-1"
        )
    assert "042917" in caplog.text and "138****8000" in caplog.text and "13800138000" not in caplog.text


async def challenge(db: Database, user_id: str, channel: str = "sms", **kw: object) -> str:
    destination = "zhang.san@example.com" if channel == "email" else "13800138000"
    async with db.session() as s:
        row, code = await otp.create_challenge(
            s,
            SETTINGS,
            user_id=user_id,
            channel=channel,
            destination=destination,
            **kw,  # type: ignore[arg-type]
        )
        await s.commit()
    assert row.destination == otp.mask(channel, destination) and code not in row.code_digest
    return code


async def check(db: Database, user_id: str, code: str, channel: str = "sms") -> otp.CodeCheck:
    async with db.session() as s:
        result = await otp.check_code(s, SETTINGS, user_id=user_id, channel=channel, code=code)
        await s.commit()
        return result


def other(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


async def test_a_code_works_once(db: Database) -> None:
    user = str(uuid.uuid4())
    code = await challenge(db, user)
    wrong = await check(db, user, other(code))
    assert (wrong.outcome, wrong.attempts_left) == ("wrong", 4)
    assert (await check(db, user, code, channel="email")).outcome == "none_open"  # per channel
    assert (await check(db, user, f" {code[:3]} {code[3:]} ")).outcome == "ok"
    assert (await check(db, user, code)).outcome == "none_open"


async def test_codes_expire_after_five_minutes(db: Database) -> None:
    user = str(uuid.uuid4())
    code = await challenge(db, user, now=utcnow() - timedelta(minutes=5, seconds=1))
    assert (await check(db, user, code)).outcome == "none_open"


async def test_five_attempts_per_challenge(db: Database) -> None:
    user = str(uuid.uuid4())
    code = await challenge(db, user)
    outcomes = [(await check(db, user, other(code))).attempts_left for _ in range(5)]
    assert outcomes == [4, 3, 2, 1, 0]
    assert (await check(db, user, code)).outcome == "exhausted"


async def test_a_new_code_voids_the_previous_one(db: Database) -> None:
    user = str(uuid.uuid4())
    first = await challenge(db, user)
    second = await challenge(db, user)
    if first != second:
        assert (await check(db, user, first)).outcome == "wrong"
    assert (await check(db, user, second)).outcome == "ok"


async def test_concurrent_checks_of_the_right_code_pass_once(db: Database) -> None:
    user = str(uuid.uuid4())
    code = await challenge(db, user)
    results = await asyncio.gather(*(check(db, user, code) for _ in range(4)))
    assert sorted(r.outcome == "ok" for r in results) == [False, False, False, True]


async def test_purge_removes_old_challenges(db: Database) -> None:
    user = str(uuid.uuid4())
    await challenge(db, user, now=utcnow() - timedelta(days=2))
    await challenge(db, user, channel="email")
    async with db.session() as s:
        assert await otp.purge(s) >= 1
        await s.commit()
        left = (await s.exec(select(OtpChallenge).where(OtpChallenge.user_id == user))).all()
    assert [r.channel for r in left] == ["email"]


async def test_send_and_verify_through_the_directory(db: Database, directory: DirectoryStack) -> None:
    user = str(uuid.uuid4())
    directory.directory.add(user, f"u{user[:8]}", mobile="13800138000", email="zhang.san@example.com")
    box = Outbox()
    sent = await credentials.send_otp(db, directory.rpc, SETTINGS, box, user_id=user, channel="sms", ip="192.0.2.1")
    assert sent.ok and sent.sent_to == "138****8000"
    assert box.sent[-1]["destination"] == "13800138000" and box.sent[-1]["expires_in"] == 300
    again = await credentials.send_otp(db, directory.rpc, SETTINGS, box, user_id=user, channel="sms")
    assert not again.ok and again.error_key == "mfa.error.throttled" and 55 <= (again.retry_after or 0) <= 60
    mail = await credentials.send_otp(db, directory.rpc, SETTINGS, box, user_id=user, channel="email")
    assert mail.ok and mail.sent_to == "z***@example.com" and len(box.sent) == 2
    email_code = box.last_code()
    sms_code = str(box.sent[0]["code"])
    wrong = await credentials.verify_otp(db, SETTINGS, user_id=user, channel="sms", code=other(sms_code))
    assert not wrong.ok and wrong.error_key == "mfa.error.invalid"
    ok = await credentials.verify_otp(db, SETTINGS, user_id=user, channel="sms", code=sms_code)
    assert ok.ok and ok.amr == ["sms"]
    used = await credentials.verify_otp(db, SETTINGS, user_id=user, channel="sms", code=sms_code)
    assert not used.ok and used.error_key == "mfa.error.expired"
    assert (await credentials.verify_otp(db, SETTINGS, user_id=user, channel="email", code=email_code)).amr == ["otp"]


async def test_sending_needs_an_active_account_with_that_contact(db: Database, directory: DirectoryStack) -> None:
    no_mobile, disabled = str(uuid.uuid4()), str(uuid.uuid4())
    directory.directory.add(no_mobile, f"n{no_mobile[:8]}", email="n@example.com")
    directory.directory.add(disabled, f"d{disabled[:8]}", mobile="13900139000", status=Status.disabled)
    box = Outbox()
    for user in (no_mobile, disabled, str(uuid.uuid4())):
        sent = await credentials.send_otp(db, directory.rpc, SETTINGS, box, user_id=user, channel="sms")
        assert not sent.ok and sent.error_key == "mfa.error.send_failed"
    bad = await credentials.send_otp(db, directory.rpc, SETTINGS, box, user_id=no_mobile, channel="fax")
    assert bad.error_key == "mfa.error.invalid"
    assert box.sent == []
    methods = await credentials.available_methods(db, directory.rpc, user_id=no_mobile)
    assert methods == ["email"]


async def test_a_failed_delivery_frees_the_cooldown(db: Database, directory: DirectoryStack) -> None:
    user = str(uuid.uuid4())
    directory.directory.add(user, f"f{user[:8]}", mobile="13700137000")
    box = Outbox(fail=True)
    failed = await credentials.send_otp(db, directory.rpc, SETTINGS, box, user_id=user, channel="sms")
    assert not failed.ok and failed.error_key == "mfa.error.send_failed"
    box.fail = False
    assert (await credentials.send_otp(db, directory.rpc, SETTINGS, box, user_id=user, channel="sms")).ok
    assert len(box.sent) == 1


async def test_exhausted_codes_need_a_new_one(db: Database, directory: DirectoryStack) -> None:
    user = str(uuid.uuid4())
    directory.directory.add(user, f"e{user[:8]}", mobile="13600136000")
    box = Outbox()
    settings = make_settings(throttle_free_failures=50)  # isolate the per-challenge limit from the throttle
    assert (await credentials.send_otp(db, directory.rpc, settings, box, user_id=user, channel="sms")).ok
    code = box.last_code()
    for _ in range(5):
        assert not (await credentials.verify_otp(db, settings, user_id=user, channel="sms", code=other(code))).ok
    late = await credentials.verify_otp(db, settings, user_id=user, channel="sms", code=code)
    assert not late.ok and late.error_key == "mfa.error.expired"
