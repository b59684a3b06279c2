"""Device cookies (OWASP "Slow down online guessing attacks with device cookies").

A browser that signed in to an account gets a device cookie for it: sealed (AES-256-GCM, so it cannot be forged
or read), HttpOnly, kept `device_cookie_days`. Password checks for that account from that browser count only on
the device's own throttle key, so failures others cause (on the account, the address or the app) never lock it
out. One cookie holds the last few accounts signed in on the browser; each sign-in gives the account a new device
id, so the failures counted on a copied cookie stay with the copy.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

from tongban_auth.config import Settings
from tongban_kit.secrets import SecretBox, SecretDecryptError

INFO = b"tongban-auth/device-cookie/aes-256-gcm/v1"
#: accounts remembered per browser (a shared family computer), the most recent first
MAX_ACCOUNTS = 5
_CONTEXT = b"device"


@dataclass(frozen=True)
class Device:
    """One account's entry in a device cookie."""

    user_id: str
    device_id: str
    issued: int


def cookie_name(settings: Settings) -> str:
    """The device cookie's name: `__Host-` prefixed when cookies are Secure."""
    return f"__Host-{settings.device_cookie}" if settings.cookie_secure else settings.device_cookie


def make_box(settings: Settings) -> SecretBox:
    """The cipher sealing device cookies."""
    return SecretBox(settings.key_encryption_key, INFO, settings.old_key_encryption_keys)


def read(settings: Settings, raw: str | None, *, now: float | None = None) -> list[Device]:
    """The unexpired entries of a device cookie (none when it is missing, forged or unreadable)."""
    if not raw or len(raw) > 4096:
        return []
    try:
        entries = json.loads(make_box(settings).open(raw, _CONTEXT))
        devices = [Device(str(u), str(d), int(i)) for u, d, i in entries]
    except (SecretDecryptError, ValueError, TypeError):
        return []
    oldest = (now or time.time()) - settings.device_cookie_days * 86400
    return [d for d in devices if d.issued > oldest][:MAX_ACCOUNTS]


def trusted_for(settings: Settings, raw: str | None, user_ids: list[str]) -> dict[str, str]:
    """Device ids of the cookie's entries for these accounts, by account."""
    return {d.user_id: d.device_id for d in read(settings, raw) if d.user_id in user_ids}


def remember(settings: Settings, raw: str | None, user_id: str) -> str:
    """The cookie value after `user_id` signed in: a new device id for it, the other accounts kept."""
    now = int(time.time())
    kept = [d for d in read(settings, raw, now=now) if d.user_id != user_id][: MAX_ACCOUNTS - 1]
    entries = [Device(user_id, secrets.token_urlsafe(16), now), *kept]
    body = json.dumps([[d.user_id, d.device_id, d.issued] for d in entries], separators=(",", ":"))
    return make_box(settings).seal(body.encode(), _CONTEXT)
