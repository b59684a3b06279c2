"""Tests for credit-code (GB 32100) and division-code (GB/T 2260) validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tongban_kit.codes import (
    CREDIT_ALPHABET,
    CREDIT_WEIGHTS,
    LEVELS,
    PROVINCE_PREFIXES,
    credit_code_check_char,
    credit_code_division,
    credit_code_problem,
    division_contains,
    division_level,
    division_prefix,
    division_problem,
    is_valid_credit_code,
    level_rank,
    make_credit_code,
    normalise_division,
    org_code_check_char,
)

WORKED = "91110000600037341L"

alphabet_char = st.sampled_from(CREDIT_ALPHABET)
digits = st.text(alphabet="0123456789", min_size=6, max_size=6)
org_body = st.text(alphabet=CREDIT_ALPHABET, min_size=8, max_size=8)
credit_codes = st.builds(make_credit_code, alphabet_char, alphabet_char, digits, org_body)


# --- credit codes -------------------------------------------------------------------------------


def test_weights_are_powers_of_three_mod_31() -> None:
    assert CREDIT_WEIGHTS == (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def test_worked_example_is_valid() -> None:
    assert credit_code_problem(WORKED) is None
    assert is_valid_credit_code(WORKED)
    assert credit_code_check_char(WORKED[:17]) == "L"
    assert org_code_check_char("60003734") == "1"
    assert credit_code_division(WORKED) == "110000"
    assert make_credit_code("9", "1", "110000", "60003734") == WORKED


def test_worked_example_with_wrong_last_char() -> None:
    code = WORKED[:17] + "M"
    assert not is_valid_credit_code(code)
    assert credit_code_problem(code) == "position 18 check character should be 'L', got 'M'"


def test_wrong_org_code_check_is_reported() -> None:
    problem = credit_code_problem(WORKED[:16] + "2" + WORKED[17])
    assert problem is not None
    assert "position 17" in problem


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("91110000600037341l", "lower-case"),
        ("91110000600037341", "18 characters"),
        ("91110000600037341LL", "18 characters"),
        ("", "18 characters"),
        ("91110000600037341I", "not allowed"),
        ("9111000060003734OL", "not allowed"),
        ("S1110000600037341L", "not allowed"),
        ("91110000600037341-", "position 18"),
        ("9111000060003734１L", "position 17"),
        ("911100A0600037341L", "positions 3-8"),
    ],
)
def test_malformed_codes_give_reasons(code: str, fragment: str) -> None:
    problem = credit_code_problem(code)
    assert problem is not None
    assert fragment in problem
    assert not is_valid_credit_code(code)


def test_org_code_check_char_special_values() -> None:
    # c == 11 -> '0' and c == 10 -> 'X'
    assert org_code_check_char("00000000") == "0"  # sum 0
    assert org_code_check_char("00000001") == "9"  # sum 2
    assert org_code_check_char("00000006") == "X"  # sum 12 = 1 mod 11
    assert org_code_check_char("0000000A") == "2"  # A = 10, sum 20 = 9 mod 11


@pytest.mark.parametrize("bad", ["0000000", "000000000", "0000000a", "0000000-"])
def test_org_code_check_char_rejects_bad_bodies(bad: str) -> None:
    with pytest.raises(ValueError):
        org_code_check_char(bad)


@pytest.mark.parametrize(
    "args",
    [
        ("I", "1", "330000", "00000000"),
        ("1", "", "330000", "00000000"),
        ("1", "1", "33000A", "00000000"),
        ("1", "1", "330000", "0000000O"),
        ("1", "1", "330000", "0000000"),
    ],
)
def test_make_credit_code_rejects_bad_parts(args: tuple[str, str, str, str]) -> None:
    with pytest.raises(ValueError):
        make_credit_code(*args)


def test_credit_code_division_rejects_invalid() -> None:
    with pytest.raises(ValueError):
        credit_code_division(WORKED[:17] + "M")
    with pytest.raises(ValueError):
        credit_code_check_char("abc")


@given(credit_codes)
def test_generated_codes_validate(code: str) -> None:
    assert credit_code_problem(code) is None
    assert len(code) == 18
    assert credit_code_division(code) == code[2:8]


@given(credit_codes, st.integers(0, 17), alphabet_char)
def test_single_substitution_within_alphabet_is_detected(code: str, pos: int, ch: str) -> None:
    if code[pos] == ch:
        return
    mutated = code[:pos] + ch + code[pos + 1 :]
    assert credit_code_problem(mutated) is not None


def test_every_single_substitution_of_worked_example_is_detected() -> None:
    for pos in range(18):
        for ch in CREDIT_ALPHABET + "IOSVZabc-":
            if ch != WORKED[pos]:
                mutated = WORKED[:pos] + ch + WORKED[pos + 1 :]
                assert credit_code_problem(mutated) is not None, mutated


@given(credit_codes, st.integers(0, 16))
def test_adjacent_transposition_within_first_17_is_detected(code: str, pos: int) -> None:
    # (a - b) * (w_i - w_{i+1}) = (a - b) * -2 * 3^i is never 0 mod the prime 31
    if code[pos] == code[pos + 1]:
        return
    swapped = code[:pos] + code[pos + 1] + code[pos] + code[pos + 2 :]
    assert credit_code_problem(swapped) is not None


@given(st.text(max_size=20))
def test_problem_never_crashes(text: str) -> None:
    problem = credit_code_problem(text)
    assert problem is None or isinstance(problem, str)


@pytest.mark.parametrize("pos", [0, 3, 7, 12, 15, 16])
def test_specific_transpositions_of_worked_example(pos: int) -> None:
    swapped = WORKED[:pos] + WORKED[pos + 1] + WORKED[pos] + WORKED[pos + 2 :]
    assert swapped != WORKED
    assert not is_valid_credit_code(swapped)


# --- division codes -----------------------------------------------------------------------------


def test_province_prefixes() -> None:
    assert len(PROVINCE_PREFIXES) == 34
    assert {"11", "33", "65", "71", "81", "82"} <= PROVINCE_PREFIXES
    assert "99" not in PROVINCE_PREFIXES


@pytest.mark.parametrize(
    ("code", "level", "prefix"),
    [
        ("330000000000", "province", "33"),
        ("330100000000", "city", "3301"),
        ("330106000000", "county", "330106"),
        ("330106001000", "township", "330106001"),
        ("330106001001", "village", "330106001001"),
        ("110105000000", "county", "110105"),
        ("500001000000", "county", "500001"),  # city segment 00, county non-zero
        ("441900003000", "township", "441900003"),  # township directly under a city
    ],
)
def test_levels_and_prefixes(code: str, level: str, prefix: str) -> None:
    assert division_problem(code) is None
    assert division_level(code) == level
    assert division_prefix(code) == prefix
    assert normalise_division(prefix) == code


@pytest.mark.parametrize(
    "code",
    [
        "990000000000",
        "000000000000",
        "33010600100",
        "3301060010001",
        "33010600100a",
        "330106000001",
        "330000001000",
        "３30000000000",
    ],
)
def test_invalid_divisions(code: str) -> None:
    assert division_problem(code) is not None
    with pytest.raises(ValueError):
        division_level(code)
    assert not division_contains(code, "330106000000")
    assert not division_contains("330000000000", code)


def test_containment() -> None:
    assert division_contains("330000000000", "330106001001")
    assert division_contains("330100000000", "330106000000")
    assert division_contains("330106000000", "330106000000")
    assert division_contains("110000000000", "110105000000")
    assert division_contains("441900000000", "441900003000")
    assert not division_contains("330100000000", "330200000000")
    assert not division_contains("330106000000", "330100000000")
    assert not division_contains("330106001000", "330106002001")


def test_levels_and_ranks() -> None:
    assert LEVELS == ("province", "city", "county", "township", "village")
    assert [level_rank(level) for level in LEVELS] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        level_rank("nation")


def test_normalise_division() -> None:
    assert normalise_division("330106") == "330106000000"
    assert normalise_division(" 330106001 ") == "330106001000"
    assert normalise_division("330 106") == "330106000000"
    assert normalise_division("330106001001") == "330106001001"
    for bad in ("33010a", "", "3301060", "3301060010011", "-330106"):
        with pytest.raises(ValueError):
            normalise_division(bad)


valid_divisions = st.builds(
    lambda p, c, k, t, v: p + c + k + t + v,
    st.sampled_from(sorted(PROVINCE_PREFIXES)),
    st.sampled_from(["00", "01", "90"]),
    st.sampled_from(["00", "02", "81"]),
    st.sampled_from(["000", "001", "100"]),
    st.sampled_from(["000", "001", "200"]),
).filter(lambda code: division_problem(code) is None)


@given(valid_divisions, valid_divisions)
def test_containment_agrees_with_prefix(parent: str, child: str) -> None:
    contained = division_contains(parent, child)
    assert contained == child.startswith(division_prefix(parent))
    if contained:
        assert level_rank(division_level(child)) >= level_rank(division_level(parent))
    assert division_contains(parent, parent)
