"""Validation, normalisation and masking of resident identity numbers, mobile numbers, emails, names and addresses."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Literal, Protocol, cast, overload

# GB 11643-1999 check character: weights for the first 17 digits and the mod-11 lookup table.
ID_WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"

# GB/T 2260 province-level prefixes; 71 Taiwan, 81 Hong Kong, 82 Macau (also used by residence permits since 2018),
# 83 residence permits of Taiwan residents.
PROVINCE_PREFIXES: frozenset[str] = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82 83".split()  # noqa: SIM905
)

# Civil dates (birth dates, "not in the future") are judged in China Standard Time, whatever the server's zone.
CHINA_TZ = timezone(timedelta(hours=8), "CST")

EMAIL_MAX_LENGTH = 254
EMAIL_LOCAL_MAX_LENGTH = 64

_ID_SHAPE = re.compile(r"\d{17}[\dX]", re.ASCII)
_DIGITS = re.compile(r"\d+", re.ASCII)
_MOBILE_SEPARATORS = re.compile(r"[\s\-]+")
_MOBILE_WITH_PREFIX = re.compile(r"(?:\+86|0086|86)?(\d{11})", re.ASCII)
_MOBILE = re.compile(r"1[3-9]\d{9}", re.ASCII)
_EMAIL_LOCAL_SPECIALS = frozenset("!#$%&'*+/=?^_`{|}~-.")
_DOMAIN_LABEL = re.compile(r"[^\W_]+(?:-+[^\W_]+)*")

# Common two-character (compound) surnames, kept whole when masking names of three or more characters.
COMPOUND_SURNAMES: frozenset[str] = frozenset(
    (  # noqa: SIM905
        "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 司空 夏侯 轩辕 令狐 端木 独孤 南宫 西门 "
        "申屠 澹台 公冶 太史 闻人 呼延 赫连 钟离 万俟 拓跋 百里 东郭 濮阳 单于 第五 左丘 仲孙 微生 羊舌 梁丘"
    ).split()
)


class MaskFunction(Protocol):
    """A masking function: text in, masked text out; None passes through."""

    @overload
    def __call__(self, value: str, /) -> str: ...
    @overload
    def __call__(self, value: None, /) -> None: ...
    @overload
    def __call__(self, value: str | None, /) -> str | None: ...


def _none_passes(mask: Callable[[str], str]) -> MaskFunction:
    """Let a masking function accept None and return None for it."""

    @functools.wraps(mask)
    def wrapper(value: str | None, /) -> str | None:
        return None if value is None else mask(value)

    return cast(MaskFunction, wrapper)


def china_today() -> date:
    """Today's date in China Standard Time."""
    return datetime.now(CHINA_TZ).date()


# --- Resident identity number -------------------------------------------------------------------------------------


def _clean_id_number(value: str) -> str:
    """Fold full-width characters, drop all whitespace and upper-case a trailing 'x'."""
    return "".join(unicodedata.normalize("NFKC", value).split()).upper()


def id_number_check_char(first17: str) -> str:
    """Compute the GB 11643-1999 check character for the first 17 digits."""
    if len(first17) != 17 or not _DIGITS.fullmatch(first17):
        raise ValueError("expected exactly 17 digits")
    return ID_CHECK_CHARS[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def _birth_date(number: str) -> date | None:
    """The birth date encoded in positions 7-14, or None if it is not a calendar date."""
    try:
        return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None


def id_number_problem(value: str, *, today: date | None = None) -> str | None:
    """Why the value is not a valid resident identity number, or None if it is."""
    number = _clean_id_number(value)
    if not number:
        return "identity number is empty"
    if len(number) != 18:
        return f"identity number must have 18 characters, got {len(number)}"
    if not _ID_SHAPE.fullmatch(number):
        return "identity number must be 17 digits followed by a digit or X"
    if number[:2] not in PROVINCE_PREFIXES:
        return f"identity number has an unknown province code {number[:2]}"
    birth = _birth_date(number)
    if birth is None:
        return f"identity number has an invalid birth date {number[6:14]}"
    if birth.year < 1900:
        return "identity number has a birth year before 1900"
    if birth > (today or china_today()):
        return "identity number has a birth date in the future"
    expected = id_number_check_char(number[:17])
    if number[17] != expected:
        return f"identity number check character should be {expected}, not {number[17]}"
    return None


def normalise_id_number(value: str, *, today: date | None = None) -> str:
    """Return the canonical 18-character form (upper-case X); raise ValueError with the reason if invalid."""
    problem = id_number_problem(value, today=today)
    if problem is not None:
        raise ValueError(problem)
    return _clean_id_number(value)


def birth_date_of(id_number: str) -> date:
    """Birth date encoded in a valid identity number."""
    birth = _birth_date(normalise_id_number(id_number))
    if birth is None:  # pragma: no cover - excluded by validation
        raise ValueError("identity number has an invalid birth date")
    return birth


def gender_of(id_number: str) -> Literal["male", "female"]:
    """Gender encoded in the 17th digit: odd is male, even is female."""
    return "male" if int(normalise_id_number(id_number)[16]) % 2 else "female"


def make_id_number(address6: str, birth: date, seq3: str) -> str:
    """Build a valid identity number (for tests and demo data); raise ValueError if the parts cannot make one."""
    if len(address6) != 6 or not _DIGITS.fullmatch(address6):
        raise ValueError("address code must be 6 digits")
    if len(seq3) != 3 or not _DIGITS.fullmatch(seq3):
        raise ValueError("sequence code must be 3 digits")
    first17 = f"{address6}{birth:%Y%m%d}{seq3}"
    return normalise_id_number(first17 + id_number_check_char(first17))


# --- Mobile number ----------------------------------------------------------------------------------------------


def _mobile_or_problem(value: str) -> tuple[str | None, str | None]:
    """Return (normalised mobile, None) or (None, reason)."""
    compact = _MOBILE_SEPARATORS.sub("", unicodedata.normalize("NFKC", value))
    if not compact:
        return None, "mobile number is empty"
    if compact.startswith("+") and not compact.startswith("+86"):
        return None, "only mainland China (+86) mobile numbers are accepted"
    match = _MOBILE_WITH_PREFIX.fullmatch(compact)
    if match is None or not _MOBILE.fullmatch(match.group(1)):
        return None, "mobile number must be 11 digits starting with 13 to 19, optionally prefixed by +86"
    return match.group(1), None


def mobile_problem(value: str) -> str | None:
    """Why the value is not a mainland China mobile number, or None if it is."""
    return _mobile_or_problem(value)[1]


def normalise_mobile(value: str) -> str:
    """Return the 11-digit mobile number; raise ValueError with the reason if invalid."""
    mobile, problem = _mobile_or_problem(value)
    if mobile is None:
        raise ValueError(problem)
    return mobile


# --- Email ------------------------------------------------------------------------------------------------------


def _email_or_problem(value: str) -> tuple[str | None, str | None]:
    """Return (normalised email, None) or (None, reason)."""
    email = value.strip()
    if not email:
        return None, "email is empty"
    if len(email) > EMAIL_MAX_LENGTH:
        return None, f"email must be at most {EMAIL_MAX_LENGTH} characters"
    if any(ch.isspace() or not ch.isprintable() for ch in email):
        return None, "email must not contain spaces or control characters"
    if email.count("@") != 1:
        return None, "email must contain exactly one @"
    local, _, domain = email.partition("@")
    if not local:
        return None, "email has an empty local part"
    if len(local) > EMAIL_LOCAL_MAX_LENGTH:
        return None, f"email local part must be at most {EMAIL_LOCAL_MAX_LENGTH} characters"
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return None, "email local part has a misplaced dot"
    if any(not (ch.isalnum() or ch in _EMAIL_LOCAL_SPECIALS) for ch in local):
        return None, "email local part contains a character that is not allowed"
    if "." not in domain:
        return None, "email domain must contain a dot"
    labels = domain.split(".")
    if any(len(label) > 63 or not _DOMAIN_LABEL.fullmatch(label) for label in labels):
        return None, "email domain is not a valid host name"
    return f"{local}@{domain.lower()}", None


def email_problem(value: str) -> str | None:
    """Why the value is not a usable email address, or None if it is."""
    return _email_or_problem(value)[1]


def normalise_email(value: str) -> str:
    """Trim and lower-case the domain (the local part is kept as given); raise ValueError with the reason if invalid."""
    email, problem = _email_or_problem(value)
    if email is None:
        raise ValueError(problem)
    return email


# --- Masking (数据脱敏) -------------------------------------------------------------------------------------------


@_none_passes
def mask_id_number(value: str) -> str:
    """Mask an identity number as 330106********123X (first 6, 8 asterisks, last 4)."""
    number = _clean_id_number(value)
    return f"{number[:6]}********{number[-4:]}" if len(number) > 10 else "********"


@_none_passes
def mask_mobile(value: str) -> str:
    """Mask a mobile number as 138****5678 (first 3, 4 asterisks, last 4)."""
    mobile, _ = _mobile_or_problem(value)
    digits = mobile or _MOBILE_SEPARATORS.sub("", value)
    return f"{digits[:3]}****{digits[-4:]}" if len(digits) > 7 else "****"


@_none_passes
def mask_email(value: str) -> str:
    """Mask an email as z***@example.com (first character of the local part, 3 asterisks, the domain)."""
    email, _ = _email_or_problem(value)
    local, at, domain = (email or value.strip()).rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def _is_cjk(ch: str) -> bool:
    """Whether the character is a CJK unified ideograph (including extensions)."""
    code = ord(ch)
    return 0x3400 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x3134F


@_none_passes
def mask_name(name: str) -> str:
    """Mask a person's name: 张三 -> 张*, 欧阳娜娜 -> 欧阳**, Zhang San -> Z***."""
    text = name.strip()
    if not text:
        return ""
    if not _is_cjk(text[0]):
        return f"{text[0]}***"
    kept = 2 if len(text) >= 3 and text[:2] in COMPOUND_SURNAMES else 1
    return text[:kept] + "*" * max(len(text) - kept, 1)


@_none_passes
def mask_address(text: str) -> str:
    """Mask an address by keeping its first 6 characters followed by ****."""
    return f"{text.strip()[:6]}****"
