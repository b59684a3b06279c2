"""One-time codes by SMS or email: 6 digits, valid 5 minutes, at most 5 attempts, one send per minute and channel.

Only a keyed digest of a code is stored (HMAC-SHA256 with a key derived from the key-encryption key and bound to
the challenge id: a 6-digit code under a plain hash would fall to a million guesses by anyone reading the table),
and only a masked destination. Codes leave through a `Deliverer`: `MessageDeliverer` (`otp_channel="message"`)
sends them through the message service (`message.rpc.send`, templates `auth.otp.sms` and `auth.otp.email`), which
takes the person's number or address from the user directory and hands the text to its SMS or email provider;
`LogDeliverer` writes them to the log and exists only in the development environment.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import and_, delete, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth.config import Settings
from tongban_auth.models import OtpChallenge
from tongban_kit.ids import new_id
from tongban_kit.outbox import utcnow
from tongban_kit.rpc import RpcClient, RpcError
from tongban_kit.secrets import derive_key
from tongban_message.contract import RPC_SEND, MessagePublic, Recipients, SendRequest

log = logging.getLogger(__name__)

CHANNELS = ("sms", "email")
DIGITS = 6
LIFETIME = timedelta(minutes=5)
MAX_ATTEMPTS = 5
RESEND_COOLDOWN_SECONDS = 60
DIGEST_INFO = b"tongban-auth/otp-digest/hmac-sha256/v1"
#: challenges are kept this long after expiry (for support questions), then purged
KEEP_AFTER_EXPIRY = timedelta(days=1)
_MOBILE = re.compile(r"\+?\d{7,15}")


class DeliveryUnavailable(RuntimeError):
    """No delivery channel can be used in this environment or configuration."""


class Deliverer(Protocol):
    """Sends a one-time code to a person's phone or mailbox."""

    async def deliver(
        self, *, channel: str, destination: str, code: str, expires_in: int, user_id: str, reference: str
    ) -> None:
        """Deliver `code` to the person `user_id` at `destination` (unmasked) over `channel` (`sms` or `email`);
        `reference` names this code (a retried send must not send twice). Raises when it cannot be sent."""
        ...


class LogDeliverer:
    """Development channel: writes the code to the service log instead of sending it. Refused outside dev."""

    def __init__(self, settings: Settings) -> None:
        """Refuse to exist unless the environment is dev: codes in a log are no second factor."""
        if not settings.is_dev:
            raise DeliveryUnavailable(
                f"otp_channel=log writes one-time codes to the log and is for development only "
                f"(environment={settings.environment})"
            )

    async def deliver(
        self, *, channel: str, destination: str, code: str, expires_in: int, user_id: str, reference: str
    ) -> None:
        """Log the code with the masked destination."""
        log.warning(
            "development one-time code %s for %s via %s (valid %ss)",
            code,
            mask(channel, destination),
            channel,
            expires_in,
        )


class DeliveryFailed(RuntimeError):
    """The message service could not send the code (no number or address on record, or no provider)."""


class MessageDeliverer:
    """Sends codes through the message service over NATS; the code counts as sent once it is queued there."""

    def __init__(self, rpc: Callable[[], RpcClient | None], timeout: float = 5.0) -> None:
        self.rpc = rpc
        self.timeout = timeout

    async def deliver(
        self, *, channel: str, destination: str, code: str, expires_in: int, user_id: str, reference: str
    ) -> None:
        """Ask the message service to send template `auth.otp.<channel>` to the person."""
        rpc = self.rpc()
        if rpc is None:
            raise DeliveryFailed("the service is not connected to NATS yet")
        request = SendRequest(
            sender="auth",
            template_code=f"auth.otp.{channel}",
            to=Recipients(user_ids=[user_id]),
            personalisation={"code": code, "minutes": max(1, expires_in // 60)},
            reference=reference,
        )
        try:
            sent = await rpc.call(RPC_SEND, request, MessagePublic, timeout=self.timeout)
        except RpcError as exc:
            raise DeliveryFailed(f"the message service did not take the code: {exc.description}") from None
        if sent.failed or not (sent.queued or sent.delivered):
            raise DeliveryFailed(f"the message service has no {channel} address for the person")


def make_deliverer(settings: Settings, rpc: Callable[[], RpcClient | None] | None = None) -> Deliverer:
    """The deliverer for `settings.otp_channel`; raises DeliveryUnavailable when it cannot be used (call at start)."""
    if settings.otp_channel == "log":
        return LogDeliverer(settings)
    if settings.otp_channel == "message" and rpc is not None:
        return MessageDeliverer(rpc)
    raise DeliveryUnavailable(f"otp_channel={settings.otp_channel} cannot deliver codes here")


def mask_mobile(mobile: str) -> str:
    """`13800138000` → `138****8000` (the first three and last four digits stay)."""
    digits = mobile.strip()
    if len(digits) <= 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def mask_email(email: str) -> str:
    """`demo@example.com` → `d***@example.com`."""
    local, _, domain = email.strip().rpartition("@")
    if not local:
        return "***"
    return f"{local[0]}***@{domain}"


def mask(channel: str, destination: str) -> str:
    """The masked destination of a channel."""
    return mask_email(destination) if channel == "email" else mask_mobile(destination)


def mask_login(login: str) -> str:
    """A login name as it may appear in events and logs: a mobile or email masked, a username cut to its ends."""
    value = login.strip()
    if "@" in value:
        return mask_email(value)
    if _MOBILE.fullmatch(value):
        return mask_mobile(value)
    if len(value) <= 2:
        return "*" * len(value)
    return f"{value[0]}***{value[-1]}"


def new_code() -> str:
    """A uniformly random 6-digit code."""
    return f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"


def code_digest(settings: Settings, challenge_id: str, code: str) -> str:
    """The stored form of a code: HMAC-SHA256 keyed from settings, bound to the challenge."""
    key = derive_key(settings.key_encryption_key, DIGEST_INFO)
    return hmac.new(key, f"{challenge_id}:{code}".encode(), hashlib.sha256).hexdigest()


def _digest_matches(settings: Settings, row: OtpChallenge, code: str) -> bool:
    """Compare with the current key and any old key-encryption key (codes outlive a key rotation by minutes)."""
    for secret in (settings.key_encryption_key, *settings.old_key_encryption_keys):
        key = derive_key(secret, DIGEST_INFO)
        candidate = hmac.new(key, f"{row.id}:{code}".encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(candidate, row.code_digest):
            return True
    return False


def cooldown_key(user_id: str, channel: str) -> str:
    """The throttle key of the resend cool-down of an account's channel."""
    return f"send:{channel}:{user_id}"


async def create_challenge(
    s: AsyncSession, settings: Settings, *, user_id: str, channel: str, destination: str, now: datetime | None = None
) -> tuple[OtpChallenge, str]:
    """A new challenge (earlier open ones of the account and channel are void); returns it and the plain code."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown one-time code channel {channel!r}")
    now = now or utcnow()
    await s.exec(
        update(OtpChallenge)
        .where(
            and_(
                col(OtpChallenge.user_id) == user_id,
                col(OtpChallenge.channel) == channel,
                col(OtpChallenge.used_at).is_(None),
            )
        )
        .values(used_at=now)
    )
    code = new_code()
    row = OtpChallenge(
        id=new_id(),
        user_id=user_id,
        channel=channel,
        destination=mask(channel, destination),
        code_digest="",
        created_at=now,
        expires_at=now + LIFETIME,
    )
    row.code_digest = code_digest(settings, row.id, code)
    s.add(row)
    return row, code


class CheckOutcome:
    """Why a one-time code was accepted or not."""

    ok = "ok"
    wrong = "wrong"  # a wrong code: counts as a failure
    none_open = "none_open"  # nothing was sent, or it expired, or it was used
    exhausted = "exhausted"  # attempts used up


@dataclass(frozen=True)
class CodeCheck:
    """The result of checking a one-time code."""

    outcome: str
    attempts_left: int = 0


async def check_code(
    s: AsyncSession, settings: Settings, *, user_id: str, channel: str, code: str, now: datetime | None = None
) -> CodeCheck:
    """Check a code against the open challenge of an account's channel; the caller commits.

    The attempt is counted with a conditional UPDATE before the comparison and a success marks the challenge used
    with another, so concurrent guesses cannot exceed the attempts and a code works once.
    """
    now = now or utcnow()
    stmt = (
        select(OtpChallenge)
        .where(
            col(OtpChallenge.user_id) == user_id,
            col(OtpChallenge.channel) == channel,
            col(OtpChallenge.used_at).is_(None),
            col(OtpChallenge.expires_at) > now,
        )
        .order_by(col(OtpChallenge.created_at).desc())
        .limit(1)
    )
    row = (await s.exec(stmt)).first()
    if row is None:
        return CodeCheck(CheckOutcome.none_open)
    before = row.attempts
    counted = await s.exec(
        update(OtpChallenge)
        .where(
            and_(
                col(OtpChallenge.id) == row.id,
                col(OtpChallenge.used_at).is_(None),
                col(OtpChallenge.attempts) < MAX_ATTEMPTS,
            )
        )
        .values(attempts=col(OtpChallenge.attempts) + 1)
    )
    if counted.rowcount != 1:
        return CodeCheck(CheckOutcome.exhausted)
    left = MAX_ATTEMPTS - before - 1
    candidate = code.strip().replace(" ", "")
    if not (len(candidate) == DIGITS and candidate.isascii() and candidate.isdigit()):
        return CodeCheck(CheckOutcome.wrong, left)
    if not _digest_matches(settings, row, candidate):
        return CodeCheck(CheckOutcome.wrong, left)
    used = await s.exec(
        update(OtpChallenge)
        .where(and_(col(OtpChallenge.id) == row.id, col(OtpChallenge.used_at).is_(None)))
        .values(used_at=now)
    )
    if used.rowcount != 1:
        return CodeCheck(CheckOutcome.none_open)
    return CodeCheck(CheckOutcome.ok, left)


async def purge(s: AsyncSession, *, now: datetime | None = None) -> int:
    """Delete challenges expired more than a day ago; returns how many."""
    now = now or utcnow()
    result = await s.exec(
        delete(OtpChallenge).where(
            or_(
                col(OtpChallenge.expires_at) < now - KEEP_AFTER_EXPIRY,
                col(OtpChallenge.used_at) < now - KEEP_AFTER_EXPIRY,
            )
        )
    )
    return int(result.rowcount or 0)
