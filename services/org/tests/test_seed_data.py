"""Tests for the Zhejiang demo seed: codes valid, tree consistent, real division codes used."""

from __future__ import annotations

from tongban_kit.codes import (
    division_contains,
    division_level,
    division_problem,
    is_valid_credit_code,
    level_rank,
)
from tongban_org.seed_data import SEED_BY_KEY, SEED_UNITS, UNIT_TYPES

CITY_CODES = {
    "杭州市": "330100",
    "宁波市": "330200",
    "温州市": "330300",
    "嘉兴市": "330400",
    "湖州市": "330500",
    "绍兴市": "330600",
    "金华市": "330700",
    "衢州市": "330800",
    "舟山市": "330900",
    "台州市": "331000",
    "丽水市": "331100",
}


def test_keys_unique() -> None:
    keys = [unit.key for unit in SEED_UNITS]
    assert len(keys) == len(set(keys))
    assert set(SEED_BY_KEY) == set(keys)


def test_codes_valid() -> None:
    for unit in SEED_UNITS:
        assert division_problem(unit.division_code) is None, unit.key
        assert unit.type in UNIT_TYPES, unit.key
        if unit.credit_code is not None:
            assert is_valid_credit_code(unit.credit_code), unit.key
            assert unit.credit_code[2:8] == unit.division_code[:6], unit.key


def test_organs_and_institutions_have_credit_codes() -> None:
    for unit in SEED_UNITS:
        if unit.type in ("government", "department", "public_institution"):
            assert unit.credit_code is not None, unit.key
            expected_kind = "2" if unit.type == "public_institution" else "1"
            assert unit.credit_code[:2] == "1" + expected_kind, unit.key
    codes = [unit.credit_code for unit in SEED_UNITS if unit.credit_code is not None]
    assert len(codes) == len(set(codes))


def test_parents_precede_children_and_contain_them() -> None:
    seen: dict[str, int] = {}
    roots = []
    for index, unit in enumerate(SEED_UNITS):
        if unit.parent_key is None:
            roots.append(unit.key)
        else:
            assert unit.parent_key in seen, unit.key
            parent = SEED_UNITS[seen[unit.parent_key]]
            assert division_contains(parent.division_code, unit.division_code), unit.key
            assert level_rank(unit.level) >= level_rank(parent.level), unit.key
        seen[unit.key] = index
    assert roots == ["zj"]


def test_level_matches_division_for_governments() -> None:
    for unit in SEED_UNITS:
        if unit.type == "government":
            assert division_level(unit.division_code) == unit.level, unit.key


def test_eleven_cities() -> None:
    cities = {u.short_name: u for u in SEED_UNITS if u.type == "government" and u.level == "city"}
    assert {name: unit.division_code[:6] for name, unit in cities.items()} == CITY_CODES
    for name, unit in cities.items():
        assert unit.name == f"{name}人民政府"
        assert unit.division_code == CITY_CODES[name] + "000000"
        assert unit.parent_key == "zj"


def test_province_and_departments() -> None:
    province = SEED_BY_KEY["zj"]
    assert province.name == "浙江省人民政府"
    assert province.division_code == "330000000000"
    dsj = SEED_BY_KEY["zj-dsj"]
    assert (dsj.name, dsj.short_name, dsj.type, dsj.parent_key) == (
        "浙江省大数据发展管理局",
        "省大数据局",
        "department",
        "zj",
    )
    departments = [u for u in SEED_UNITS if u.type == "department" and u.parent_key == "zj"]
    assert len(departments) >= 14
    orders = [u.sort_order for u in departments]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    assert all(u.tags for u in departments)


def test_district_codes() -> None:
    by_short = {u.short_name: u.division_code[:6] for u in SEED_UNITS if u.level == "county"}
    assert by_short["西湖区"] == "330106"
    assert by_short["鄞州区"] == "330212"
    assert by_short["鹿城区"] == "330302"
