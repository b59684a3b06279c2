"""TOTP (RFC 6238 over RFC 4226 HOTP) and recovery codes: secrets, codes, replay-safe acceptance.

Authenticator apps support SHA-1, 6 digits and 30-second steps, so those are the parameters; a code is accepted for
the current step and one step either side, and never for a step at or before the last one accepted (the update
that records the step is conditional, so two concurrent submissions of one code cannot both pass).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

from sqlalchemy import and_, or_, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth.config import Settings
from tongban_auth.models import Credential
from tongban_kit.outbox import utcnow
from tongban_kit.secrets import SecretBox

ISSUER = "Tongban"
DIGITS = 6
STEP_SECONDS = 30
WINDOW = 1
SECRET_BYTES = 20  # 160 bits, as RFC 4226 §4 recommends
TOTP_INFO = b"tongban-auth/totp-secret/aes-256-gcm/v1"

#: recovery codes: 10 codes of 12 symbols from Crockford's base32 alphabet (no i, l, o, u), 60 bits each
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
RECOVERY_COUNT = 10
RECOVERY_GROUPS = 3
RECOVERY_GROUP_LENGTH = 4
_RECOVERY_FOLD = str.maketrans({"o": "0", "i": "1", "l": "1", "-": None, " ": None})


def make_box(settings: Settings) -> SecretBox:
    """The cipher sealing TOTP secrets (a key of its own, derived from the key-encryption key)."""
    return SecretBox(settings.key_encryption_key, TOTP_INFO, settings.old_key_encryption_keys)


def seal_secret(box: SecretBox, secret: str, user_id: str) -> str:
    """Seal a base32 secret, bound to the account so it cannot be moved to another row."""
    return box.seal(secret.encode("ascii"), user_id.encode())


def open_secret(box: SecretBox, sealed: str, user_id: str) -> str:
    """Open a sealed secret of an account."""
    return box.open(sealed, user_id.encode()).decode("ascii")


def generate_secret() -> str:
    """A new shared secret: 160 random bits, base32 without padding (what authenticator apps take)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def decode_secret(secret: str) -> bytes:
    """The key bytes of a base32 secret (spaces and case ignored)."""
    text = secret.replace(" ", "").upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


def hotp(key: bytes, counter: int, *, digits: int = DIGITS, digest: str = "sha1") -> str:
    """RFC 4226 HOTP value of a counter."""
    mac = hmac.new(key, struct.pack(">Q", counter), digest).digest()
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def step_at(when: float, *, period: int = STEP_SECONDS) -> int:
    """The RFC 6238 time step of a Unix time."""
    return int(when // period)


def totp(key: bytes, when: float, *, digits: int = DIGITS, digest: str = "sha1", period: int = STEP_SECONDS) -> str:
    """RFC 6238 TOTP value at a Unix time."""
    return hotp(key, step_at(when, period=period), digits=digits, digest=digest)


def matching_step(secret: str, code: str, *, when: float | None = None, window: int = WINDOW) -> int | None:
    """The time step whose code equals `code` (current step ± `window`), or None; compares in constant time."""
    candidate = code.strip().replace(" ", "")
    if len(candidate) != DIGITS or not candidate.isascii() or not candidate.isdigit():
        return None
    key = decode_secret(secret)
    now = step_at(time.time() if when is None else when)
    found: int | None = None
    for step in range(now - window, now + window + 1):
        if hmac.compare_digest(hotp(key, step), candidate) and found is None:
            found = step
    return found


def otpauth_uri(secret: str, label: str, *, issuer: str = ISSUER) -> str:
    """The Key URI for authenticator apps: `otpauth://totp/Tongban:<label>?secret=...&issuer=Tongban`."""
    path = quote(f"{issuer}:{label}", safe=":@")
    return f"otpauth://totp/{path}?" + urlencode({"secret": secret, "issuer": issuer}, quote_via=quote)


async def accept_step(s: AsyncSession, user_id: str, step: int) -> bool:
    """Record `step` as the last accepted one unless that step (or a later one) was accepted already.

    One conditional UPDATE: of two concurrent submissions of the same code, exactly one changes the row.
    """
    result = await s.exec(
        update(Credential)
        .where(
            and_(
                col(Credential.user_id) == user_id,
                col(Credential.totp_confirmed_at).is_not(None),
                or_(col(Credential.totp_last_step).is_(None), col(Credential.totp_last_step) < step),
            )
        )
        .values(totp_last_step=step, updated_at=utcnow())
    )
    return bool(result.rowcount == 1)


def new_recovery_codes(count: int = RECOVERY_COUNT) -> list[str]:
    """Fresh recovery codes like `7kq2-x9mf-3hda`, to be shown once."""
    codes = []
    for _ in range(count):
        symbols = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_GROUPS * RECOVERY_GROUP_LENGTH))
        groups = [symbols[i : i + RECOVERY_GROUP_LENGTH] for i in range(0, len(symbols), RECOVERY_GROUP_LENGTH)]
        codes.append("-".join(groups))
    return codes


def normalise_recovery_code(code: str) -> str | None:
    """The canonical form of a typed recovery code (case, hyphens, spaces and look-alikes folded), or None."""
    folded = code.strip().lower().translate(_RECOVERY_FOLD)
    expected = RECOVERY_GROUPS * RECOVERY_GROUP_LENGTH
    if len(folded) != expected or any(c not in RECOVERY_ALPHABET for c in folded):
        return None
    return folded


def recovery_digest(code: str) -> str:
    """SHA-256 hex digest of a recovery code as stored (codes carry 60 random bits, so no slow hash is needed)."""
    canonical = normalise_recovery_code(code)
    if canonical is None:
        raise ValueError("not a recovery code")
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
