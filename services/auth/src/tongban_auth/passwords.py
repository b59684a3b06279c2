"""Passwords: Argon2id hashing off the event loop, rehash on parameter change, and the password policy.

Policy (NIST SP 800-63B §3.1.1.2, compatible with GB/T 22239-2019 (等保 2.0) complexity requirements):

- 10 to 128 characters after NFKC normalisation (`password.too_short`, `password.too_long`);
- no control or format characters (`password.control_character`) and not blank (`password.blank`);
- at least 3 of the 4 classes upper case, lower case, digit, symbol — unless the password has 16 characters or more
  (a passphrase), which is strong by length alone (`password.too_simple`);
- at least 4 different characters (`password.repetitive`);
- does not contain the login name (or the local part of an email login), ignoring case (`password.contains_login`);
- not one of the most common passwords shipped in `common_passwords.txt`, ignoring case (`password.common`).

Every violation is reported at once, each with a message key; `message(key, locale)` gives the zh-CN or English
text for pages and the command line.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import unicodedata
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from argon2.exceptions import InvalidHashError, VerificationError

# one hasher for every secret this service keeps (Argon2id, OWASP parameters: 19 MiB, t=2, p=1)
from tongban_auth.clients import HASHER as HASHER

T = TypeVar("T")
MIN_LENGTH = 10
MAX_LENGTH = 128
PASSPHRASE_LENGTH = 16
MIN_CLASSES = 3
MIN_DISTINCT = 4
MIN_LOGIN_PART = 3

MESSAGES: dict[str, dict[str, str]] = {
    "password.too_short": {
        "zh-CN": "密码至少需要 {min} 个字符。",
        "en": "The password needs at least {min} characters.",
    },
    "password.too_long": {
        "zh-CN": "密码不能超过 {max} 个字符。",
        "en": "The password may have at most {max} characters.",
    },
    "password.blank": {"zh-CN": "密码不能只包含空格。", "en": "The password cannot be only spaces."},
    "password.control_character": {
        "zh-CN": "密码不能包含控制字符。",
        "en": "The password cannot contain control characters.",
    },
    "password.too_simple": {
        "zh-CN": "密码需包含大写字母、小写字母、数字、符号中的至少 3 类，或长度不少于 {passphrase} 个字符。",
        "en": "Use at least 3 of: upper-case letters, lower-case letters, digits, symbols — "
        "or at least {passphrase} characters.",
    },
    "password.repetitive": {
        "zh-CN": "密码中重复的字符太多。",
        "en": "The password uses too few different characters.",
    },
    "password.contains_login": {
        "zh-CN": "密码不能包含登录名。",
        "en": "The password cannot contain your login name.",
    },
    "password.unchanged": {
        "zh-CN": "新密码不能与当前密码相同。",
        "en": "The new password must differ from the current one.",
    },
    "password.common": {
        "zh-CN": "这是一个常见密码，很容易被猜到，请换一个。",
        "en": "This is a common password that is easy to guess; choose another.",
    },
}


@dataclass(frozen=True)
class Violation:
    """One broken rule of the password policy: a message key and the numbers its message needs."""

    key: str
    params: dict[str, int] = field(default_factory=dict)

    def message(self, locale: str = "zh-CN") -> str:
        """The text of this violation in a locale (`zh-CN` or `en`)."""
        return message(self.key, locale, **self.params)


def message(key: str, locale: str = "zh-CN", **params: int) -> str:
    """The text of a policy message key in `zh-CN` or `en` (other locales fall back to zh-CN)."""
    texts = MESSAGES[key]
    return texts.get(locale, texts["zh-CN"]).format(**params)


@functools.cache
def common_passwords() -> frozenset[str]:
    """The built-in list of common passwords, lower-cased."""
    text = (Path(__file__).parent / "common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def normalise(password: str) -> str:
    """NFKC normal form, so the same password typed on different keyboards (full-width digits…) matches."""
    return unicodedata.normalize("NFKC", password)


def _classes(password: str) -> int:
    upper = any(c.isupper() for c in password)
    lower = any(c.islower() for c in password)
    digit = any(c.isdigit() for c in password)
    symbol = any(not c.isalnum() and not c.isspace() for c in password)
    return upper + lower + digit + symbol


def _login_parts(logins: Iterable[str]) -> set[str]:
    parts: set[str] = set()
    for login in logins:
        value = login.strip().casefold()
        for part in (value, value.split("@", 1)[0]):
            if len(part) >= MIN_LOGIN_PART:
                parts.add(part)
    return parts


def check_policy(password: str, *, logins: Iterable[str] = ()) -> list[Violation]:
    """Every rule the password breaks (empty: acceptable); `logins` are the account's login names."""
    pw = normalise(password)
    out: list[Violation] = []
    if len(pw) < MIN_LENGTH:
        out.append(Violation("password.too_short", {"min": MIN_LENGTH}))
    if len(pw) > MAX_LENGTH:
        out.append(Violation("password.too_long", {"max": MAX_LENGTH}))
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in pw):
        out.append(Violation("password.control_character"))
    if not pw.strip():
        out.append(Violation("password.blank"))
        return out
    if len(pw) < PASSPHRASE_LENGTH and _classes(pw) < MIN_CLASSES:
        out.append(Violation("password.too_simple", {"passphrase": PASSPHRASE_LENGTH}))
    if len(set(pw)) < MIN_DISTINCT:
        out.append(Violation("password.repetitive"))
    folded = pw.casefold()
    if any(part in folded for part in _login_parts(logins)):
        out.append(Violation("password.contains_login"))
    if folded in common_passwords():
        out.append(Violation("password.common"))
    return out


# Argon2id needs 19 MiB and ~20-40 ms of one core per call: a bounded pool keeps the event loop free and memory
# predictable under a burst of sign-ins (argon2-cffi releases the GIL while hashing).
_POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="argon2")


async def _off_loop(fn: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_POOL, fn)


async def hash_password(password: str) -> str:
    """The Argon2id hash (PHC string) of a password, computed off the event loop."""
    return await _off_loop(functools.partial(HASHER.hash, normalise(password)))


def _verify(stored: str | None, password: str) -> bool:
    try:
        return HASHER.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches the stored hash; with no hash, a dummy verification of equal cost runs and
    the answer is False, so timing does not tell whether an account (or its password) exists."""
    ok = await _off_loop(functools.partial(_verify, stored or None, normalise(password)))
    return ok


def needs_rehash(stored: str) -> bool:
    """Whether a stored hash was made with other parameters than the current ones (rehash at the next sign-in)."""
    try:
        return HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


@functools.cache
def _dummy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(24))
