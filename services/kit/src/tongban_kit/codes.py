"""Standard code checks shared by services: GB 32100 credit codes and GB/T 2260 division codes."""

from __future__ import annotations

import string

# --- Unified social credit code (GB 32100-2015) -------------------------------------------------

#: the 31 characters a credit code may use: digits and upper-case letters except I, O, S, V, Z
CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_CODE_LENGTH = 18
_CREDIT_VALUE = {ch: i for i, ch in enumerate(CREDIT_ALPHABET)}
_EXCLUDED_LETTERS = frozenset("IOSVZ")
#: weights for positions 1..17: 3**i mod 31
CREDIT_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))

#: GB 11714 organisation code: 8 body characters (digits or A-Z) weighted, then a check character
ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_BODY_CHARS = frozenset(string.digits + string.ascii_uppercase)


def _org_value(ch: str) -> int:
    """Value of one organisation-code body character: digits 0-9, letters A-Z 10-35."""
    return int(ch) if ch.isdigit() else ord(ch) - ord("A") + 10


def org_code_check_char(body8: str) -> str:
    """GB 11714 check character for an 8-character organisation-code body."""
    if len(body8) != 8 or any(ch not in _ORG_BODY_CHARS for ch in body8):
        raise ValueError(f"organisation code body must be 8 digits or upper-case letters, got {body8!r}")
    c = 11 - sum(_org_value(ch) * w for ch, w in zip(body8, ORG_CODE_WEIGHTS, strict=True)) % 11
    if c == 10:
        return "X"
    if c == 11:
        return "0"
    return str(c)


def credit_code_check_char(first17: str) -> str:
    """GB 32100 check character (position 18) for the first 17 characters of a credit code."""
    if len(first17) != 17 or any(ch not in _CREDIT_VALUE for ch in first17):
        raise ValueError(f"expected 17 characters from the credit-code alphabet, got {first17!r}")
    total = sum(_CREDIT_VALUE[ch] * w for ch, w in zip(first17, CREDIT_WEIGHTS, strict=True))
    return CREDIT_ALPHABET[(31 - total % 31) % 31]


def _char_problem(position: int, ch: str) -> str | None:
    """Reason why one character may not appear in a credit code, or None."""
    if ch in _CREDIT_VALUE:
        return None
    if ch.isascii() and ch.isalpha() and ch.islower():
        return f"position {position} character {ch!r} is lower-case; credit codes use upper-case letters"
    if ch in _EXCLUDED_LETTERS:
        return f"position {position} character {ch!r} is not allowed (I, O, S, V and Z are never used)"
    return f"position {position} character {ch!r} is not a digit or an allowed upper-case letter"


def credit_code_problem(code: str) -> str | None:
    """Human-readable reason why `code` is not a valid unified social credit code, or None if valid."""
    if len(code) != CREDIT_CODE_LENGTH:
        return f"a credit code has {CREDIT_CODE_LENGTH} characters, got {len(code)}"
    for position, ch in enumerate(code, start=1):
        problem = _char_problem(position, ch)
        if problem is not None:
            return problem
    if not code[2:8].isdigit():
        return "positions 3-8 (administrative division code) must be digits"
    org_check = org_code_check_char(code[8:16])
    if code[16] != org_check:
        return f"position 17 (organisation code check) character should be {org_check!r}, got {code[16]!r}"
    check = credit_code_check_char(code[:17])
    if code[17] != check:
        return f"position 18 check character should be {check!r}, got {code[17]!r}"
    return None


def is_valid_credit_code(code: str) -> bool:
    """True if `code` is a well-formed unified social credit code with both check characters right."""
    return credit_code_problem(code) is None


def make_credit_code(authority: str, kind: str, division6: str, org_body8: str) -> str:
    """Build a valid credit code from its parts, computing both check characters."""
    for label, part in (("authority", authority), ("kind", kind)):
        if len(part) != 1 or part not in _CREDIT_VALUE:
            raise ValueError(f"{label} must be one character from the credit-code alphabet, got {part!r}")
    if len(division6) != 6 or not division6.isdigit() or not division6.isascii():
        raise ValueError(f"division must be 6 digits, got {division6!r}")
    if len(org_body8) != 8 or any(ch not in _CREDIT_VALUE for ch in org_body8):
        raise ValueError(f"organisation body must be 8 characters from the credit-code alphabet, got {org_body8!r}")
    first16 = authority + kind + division6 + org_body8
    first17 = first16 + org_code_check_char(org_body8)
    return first17 + credit_code_check_char(first17)


def credit_code_division(code: str) -> str:
    """The 6-digit administrative division (positions 3-8) of a valid credit code."""
    problem = credit_code_problem(code)
    if problem is not None:
        raise ValueError(f"invalid credit code {code!r}: {problem}")
    return code[2:8]


# --- Administrative division codes (GB/T 2260 + township + village) ----------------------------

DIVISION_CODE_LENGTH = 12
LEVELS = ("province", "city", "county", "township", "village")
_LEVEL_RANK = {level: rank for rank, level in enumerate(LEVELS)}
_PREFIX_LENGTH = {"province": 2, "city": 4, "county": 6, "township": 9, "village": 12}

#: the 34 province-level prefixes of GB/T 2260 (incl. Taiwan 71, Hong Kong 81, Macao 82)
PROVINCE_PREFIXES = frozenset(
    {
        "11", "12", "13", "14", "15",
        "21", "22", "23",
        "31", "32", "33", "34", "35", "36", "37",
        "41", "42", "43", "44", "45", "46",
        "50", "51", "52", "53", "54",
        "61", "62", "63", "64", "65",
        "71", "81", "82",
    }
)  # fmt: skip


def level_rank(level: str) -> int:
    """Depth of a division level: province 0, city 1, county 2, township 3, village 4."""
    try:
        return _LEVEL_RANK[level]
    except KeyError:
        raise ValueError(f"unknown division level {level!r}; expected one of {LEVELS}") from None


def _segments(code: str) -> tuple[str, str, str, str, str]:
    """Split a 12-digit code into province, city, county, township and village segments."""
    return code[0:2], code[2:4], code[4:6], code[6:9], code[9:12]


def division_problem(code: str) -> str | None:
    """Human-readable reason why `code` is not a valid 12-digit division code, or None if valid."""
    if len(code) != DIVISION_CODE_LENGTH or not code.isdigit() or not code.isascii():
        return f"a division code is {DIVISION_CODE_LENGTH} digits, got {code!r}"
    province, city, county, township, village = _segments(code)
    if province not in PROVINCE_PREFIXES:
        return f"unknown province-level prefix {province!r}"
    if village != "000" and township == "000":
        return "a village segment (digits 10-12) needs a township segment (digits 7-9)"
    # Townships directly under a city without counties (e.g. 441900 Dongguan) have county 00.
    if township != "000" and city == "00" and county == "00":
        return "a township segment (digits 7-9) needs a city or county segment"
    return None


def _checked(code: str) -> str:
    """Return `code` unchanged, or raise ValueError with the reason it is not a division code."""
    problem = division_problem(code)
    if problem is not None:
        raise ValueError(f"invalid division code {code!r}: {problem}")
    return code


def division_level(code: str) -> str:
    """Level of a division code: the deepest non-zero segment ("province" ... "village")."""
    _, city, county, township, village = _segments(_checked(code))
    if village != "000":
        return "village"
    if township != "000":
        return "township"
    if county != "00":
        return "county"  # also when the city segment is 00
    if city != "00":
        return "city"
    return "province"


def division_prefix(code: str) -> str:
    """Significant prefix of a division code: 2, 4, 6, 9 or 12 digits according to its level."""
    return code[: _PREFIX_LENGTH[division_level(code)]]


def division_contains(parent: str, child: str) -> bool:
    """True iff `child` lies within or equals `parent`'s region; False if either code is invalid."""
    if division_problem(parent) is not None or division_problem(child) is not None:
        return False
    return child.startswith(division_prefix(parent))


def normalise_division(code: str) -> str:
    """Strip whitespace and right-pad a 2/4/6/9/12-digit division code with zeros to 12 digits."""
    compact = "".join(code.split())
    if not compact.isdigit() or not compact.isascii():
        raise ValueError(f"a division code has digits only, got {code!r}")
    if len(compact) not in _PREFIX_LENGTH.values():
        raise ValueError(f"a division code has 2, 4, 6, 9 or 12 digits, got {len(compact)} in {code!r}")
    return compact.ljust(DIVISION_CODE_LENGTH, "0")
