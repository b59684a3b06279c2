"""Device cookies: sealed, per account, bounded, expiring; a forged or foreign cookie trusts nothing."""

from __future__ import annotations

import secrets
import time

from tongban_auth import devices

from .credential_support import make_settings

SETTINGS = make_settings(device_cookie_days=30)


def test_a_cookie_remembers_the_accounts_signed_in_with_new_device_ids() -> None:
    first = devices.remember(SETTINGS, None, "u1")
    second = devices.remember(SETTINGS, first, "u2")
    again = devices.remember(SETTINGS, second, "u1")
    assert [d.user_id for d in devices.read(SETTINGS, again)] == ["u1", "u2"]
    assert devices.trusted_for(SETTINGS, again, ["u1"])["u1"] != devices.trusted_for(SETTINGS, first, ["u1"])["u1"]
    assert devices.trusted_for(SETTINGS, again, ["u3"]) == {}


def test_a_cookie_holds_a_few_accounts() -> None:
    raw = None
    for n in range(devices.MAX_ACCOUNTS + 3):
        raw = devices.remember(SETTINGS, raw, f"u{n}")
    kept = [d.user_id for d in devices.read(SETTINGS, raw)]
    assert len(kept) == devices.MAX_ACCOUNTS and kept[0] == f"u{devices.MAX_ACCOUNTS + 2}"


def test_forged_foreign_and_expired_cookies_trust_nothing() -> None:
    raw = devices.remember(SETTINGS, None, "u1")
    other = make_settings(key_encryption_key=secrets.token_urlsafe(32))
    assert devices.read(other, raw) == []
    assert devices.read(SETTINGS, raw[:-4] + "AAAA") == []
    assert devices.read(SETTINGS, "v1.x.y") == [] and devices.read(SETTINGS, "x" * 5000) == []
    assert devices.read(SETTINGS, raw, now=time.time() + 31 * 86400) == []
    assert devices.cookie_name(make_settings(issuer="https://id.example")) == "__Host-tongban_device"
