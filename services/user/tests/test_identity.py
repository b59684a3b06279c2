"""Tests for identity number, mobile and email validation and for masking."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tongban_user.identity import (
    PROVINCE_PREFIXES,
    birth_date_of,
    china_today,
    email_problem,
    gender_of,
    id_number_check_char,
    id_number_problem,
    make_id_number,
    mask_address,
    mask_email,
    mask_id_number,
    mask_mobile,
    mask_name,
    mobile_problem,
    normalise_email,
    normalise_id_number,
    normalise_mobile,
)

WORKED_EXAMPLE = "11010519491231002X"
TODAY = date(2024, 6, 1)

addresses = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(sorted(PROVINCE_PREFIXES)),
    st.text("0123456789", min_size=4, max_size=4),
)
births = st.dates(min_value=date(1900, 1, 1), max_value=china_today())
sequences = st.text("0123456789", min_size=3, max_size=3)


def with_check(first17: str) -> str:
    """Append the correct check character so that only the intended defect remains."""
    return first17 + id_number_check_char(first17)


def test_worked_example() -> None:
    assert id_number_problem(WORKED_EXAMPLE) is None
    assert normalise_id_number(" 110105 19491231 002x ") == WORKED_EXAMPLE
    assert birth_date_of(WORKED_EXAMPLE) == date(1949, 12, 31)
    assert gender_of(WORKED_EXAMPLE) == "female"
    assert id_number_check_char(WORKED_EXAMPLE[:17]) == "X"


def test_full_width_digits_are_folded() -> None:
    assert normalise_id_number("１１０１０５１９４９１２３１００２ｘ") == WORKED_EXAMPLE


@given(addresses, births, sequences)
def test_generated_numbers_validate_and_round_trip(address: str, birth: date, seq: str) -> None:
    number = make_id_number(address, birth, seq)
    assert id_number_problem(number) is None
    assert normalise_id_number(number.lower()) == number
    assert birth_date_of(number) == birth
    assert gender_of(number) == ("male" if int(seq[2]) % 2 else "female")


@given(addresses, births, sequences, st.integers(0, 16), st.integers(1, 9))
def test_every_single_digit_substitution_is_detected(
    address: str, birth: date, seq: str, position: int, shift: int
) -> None:
    number = make_id_number(address, birth, seq)
    changed = str((int(number[position]) + shift) % 10)
    mutated = number[:position] + changed + number[position + 1 :]
    # Weights are all non-zero mod 11 (a prime), so any single-digit change moves the weighted sum mod 11.
    assert id_number_check_char(mutated[:17]) != number[17]
    assert id_number_problem(mutated) is not None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (with_check("11010520230230002"), "birth date"),
        (with_check("11010518991231002"), "before 1900"),
        (with_check("99010519491231002"), "province"),
        (with_check("00010519491231002"), "province"),
        ("11010519491231002", "18 characters"),
        ("11010519491231002X1", "18 characters"),
        ("", "empty"),
        ("1101051949123A002X", "17 digits"),
        ("X1010519491231002X", "17 digits"),
        ("110105194912310021", "check character should be X"),
    ],
)
def test_invalid_numbers_give_a_reason(value: str, fragment: str) -> None:
    problem = id_number_problem(value, today=TODAY)
    assert problem is not None
    assert fragment in problem
    with pytest.raises(ValueError, match=fragment):
        normalise_id_number(value, today=TODAY)


def test_future_birth_date_is_rejected() -> None:
    tomorrow = with_check(f"330106{TODAY + timedelta(days=1):%Y%m%d}123")
    assert id_number_problem(tomorrow, today=TODAY) == "identity number has a birth date in the future"
    assert id_number_problem(with_check(f"330106{TODAY:%Y%m%d}123"), today=TODAY) is None
    far_future = with_check(f"330106{china_today() + timedelta(days=400):%Y%m%d}123")
    assert id_number_problem(far_future) is not None
    with pytest.raises(ValueError, match="future"):
        make_id_number("330106", china_today() + timedelta(days=400), "123")


def test_make_id_number_rejects_bad_parts() -> None:
    with pytest.raises(ValueError, match="address"):
        make_id_number("11010", date(1990, 1, 1), "001")
    with pytest.raises(ValueError, match="sequence"):
        make_id_number("110105", date(1990, 1, 1), "0a1")
    with pytest.raises(ValueError, match="province"):
        make_id_number("990105", date(1990, 1, 1), "001")
    with pytest.raises(ValueError, match="17 digits"):
        id_number_check_char("1101051949123100")


@pytest.mark.parametrize("value", ["13800138000", "+86 138 0013 8000", "+8613800138000", "86-138-0013-8000"])
def test_mobile_forms_normalise(value: str) -> None:
    assert mobile_problem(value) is None
    assert normalise_mobile(value) == "13800138000"


@pytest.mark.parametrize("value", ["12800138000", "1380013800", "+1 415 555 0100", "", "138001380001", "1380013800a"])
def test_bad_mobiles_are_rejected(value: str) -> None:
    problem = mobile_problem(value)
    assert problem is not None
    with pytest.raises(ValueError, match=problem[:20]):
        normalise_mobile(value)


def test_foreign_mobile_reason() -> None:
    assert mobile_problem("+1 415 555 0100") == "only mainland China (+86) mobile numbers are accepted"


@given(st.sampled_from("3456789"), st.text("0123456789", min_size=9, max_size=9))
def test_generated_mobiles_normalise(second: str, rest: str) -> None:
    mobile = f"1{second}{rest}"
    assert normalise_mobile(f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}") == mobile


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  Zhang.San@Example.COM ", "Zhang.San@example.com"),
        ("a@b.cn", "a@b.cn"),
        ("user+tag@mail.gov.cn", "user+tag@mail.gov.cn"),
        ("用户@例子.中国", "用户@例子.中国"),
    ],
)
def test_email_normalisation(value: str, expected: str) -> None:
    assert email_problem(value) is None
    assert normalise_email(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "plainaddress",
        "@example.com",
        "a@localhost",
        "a b@example.com",
        "a@exa mple.com",
        "a@@example.com",
        "a@example..com",
        "a@-example.com",
        "a.@example.com",
        "a@example.com.",
        "a" * 64 + "@" + "b" * 186 + ".com",
        "a" * 65 + "@example.com",
    ],
)
def test_bad_emails_are_rejected(value: str) -> None:
    assert email_problem(value) is not None
    with pytest.raises(ValueError):
        normalise_email(value)


def test_mask_formats() -> None:
    assert mask_id_number("33010619900101123X") == "330106********123X"
    assert mask_id_number(WORKED_EXAMPLE) == "110105********002X"
    assert mask_mobile("13812345678") == "138****5678"
    assert mask_mobile("+86 138 1234 5678") == "138****5678"
    assert mask_email("zhang@example.com") == "z***@example.com"
    assert mask_email("z@example.com") == "z***@example.com"
    assert mask_email("Zhang@Example.com") == "Z***@example.com"
    assert mask_name("张三") == "张*"
    assert mask_name("张三丰") == "张**"
    assert mask_name("欧阳娜娜") == "欧阳**"
    assert mask_name("欧阳") == "欧*"
    assert mask_name("Zhang San") == "Z***"
    assert mask_address("浙江省杭州市西湖区文三路 100 号") == "浙江省杭州市****"


def test_masks_pass_none_through() -> None:
    assert mask_id_number(None) is None
    assert mask_mobile(None) is None
    assert mask_email(None) is None
    assert mask_name(None) is None
    assert mask_address(None) is None
    optional: str | None = "13812345678"
    masked_optional: str | None = mask_mobile(optional)
    masked_plain: str = mask_mobile("13812345678")
    assert masked_optional == masked_plain == "138****5678"
    assert mask_name.__doc__ is not None
    assert mask_name.__doc__.startswith("Mask a person's name")


def test_masks_never_reveal_short_or_odd_values() -> None:
    assert mask_id_number("123") == "********"
    assert mask_mobile("123") == "****"
    assert mask_email("not-an-email") == "***"
    assert mask_name("") == ""


@given(addresses, births, sequences)
def test_masked_id_number_hides_the_birth_date(address: str, birth: date, seq: str) -> None:
    number = make_id_number(address, birth, seq)
    masked = mask_id_number(number)
    assert masked == number[:6] + "*" * 8 + number[-4:]
    assert f"{birth:%Y%m%d}" not in masked
