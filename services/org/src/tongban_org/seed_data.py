"""Demo seed of the Zhejiang (浙江省) organisation tree: governments, departments and sub-units."""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal

from tongban_kit.codes import make_credit_code

UnitType = Literal["government", "department", "internal_institution", "public_institution", "enterprise", "community"]
Level = Literal["province", "city", "county", "township", "village"]

UNIT_TYPES: tuple[UnitType, ...] = (
    "government",
    "department",
    "internal_institution",
    "public_institution",
    "enterprise",
    "community",
)


@dataclass(frozen=True, slots=True)
class SeedUnit:
    """One organisation unit of the demo seed."""

    key: str
    name: str
    short_name: str
    type: UnitType
    level: Level
    division_code: str
    parent_key: str | None
    credit_code: str | None
    tags: tuple[str, ...]
    sort_order: int


# Registration authority "1" = 机构编制 (establishment authority); kind "1" = 机关, "2" = 事业单位.
_AUTHORITY = "1"
_KIND_BY_TYPE: dict[UnitType, str] = {"government": "1", "department": "1", "public_institution": "2"}

ZJ = "330000000000"
HZ = "330100000000"
_GOV_TAGS = ("政务服务",)

# Provincial departments in display order: (key, name, short_name, tags).
_DEPARTMENTS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("zj-dsj", "浙江省大数据发展管理局", "省大数据局", ("数据", "政务服务")),
    ("zj-scjg", "浙江省市场监督管理局", "省市场监管局", ("市场监管",)),
    ("zj-gat", "浙江省公安厅", "省公安厅", ("公安",)),
    ("zj-sw", "国家税务总局浙江省税务局", "省税务局", ("税务",)),
    ("zj-rst", "浙江省人力资源和社会保障厅", "省人社厅", ("人社",)),
    ("zj-wjw", "浙江省卫生健康委员会", "省卫生健康委", ("卫健",)),
    ("zj-ybj", "浙江省医疗保障局", "省医保局", ("医保",)),
    ("zj-mzt", "浙江省民政厅", "省民政厅", ("民政",)),
    ("zj-fgw", "浙江省发展和改革委员会", "省发展改革委", ("发改",)),
    ("zj-czt", "浙江省财政厅", "省财政厅", ("财政",)),
    ("zj-jst", "浙江省住房和城乡建设厅", "省建设厅", ("住建",)),
    ("zj-jyt", "浙江省教育厅", "省教育厅", ("教育",)),
    ("zj-sft", "浙江省司法厅", "省司法厅", ("司法",)),
    ("zj-zrzyt", "浙江省自然资源厅", "省自然资源厅", ("自然资源",)),
)

# The 11 prefecture-level cities with their GB/T 2260 codes, in code order: (key, short_name, code6).
CITIES: tuple[tuple[str, str, str], ...] = (
    ("zj-hz", "杭州市", "330100"),
    ("zj-nb", "宁波市", "330200"),
    ("zj-wz", "温州市", "330300"),
    ("zj-jx", "嘉兴市", "330400"),
    ("zj-huz", "湖州市", "330500"),
    ("zj-sx", "绍兴市", "330600"),
    ("zj-jh", "金华市", "330700"),
    ("zj-qz", "衢州市", "330800"),
    ("zj-zs", "舟山市", "330900"),
    ("zj-tz", "台州市", "331000"),
    ("zj-ls", "丽水市", "331100"),
)

# A few county-level districts with their GB/T 2260 codes: (key, city_key, short_name, code6).
_DISTRICTS: tuple[tuple[str, str, str, str], ...] = (
    ("zj-hz-sc", "zj-hz", "上城区", "330102"),
    ("zj-hz-gs", "zj-hz", "拱墅区", "330105"),
    ("zj-hz-xh", "zj-hz", "西湖区", "330106"),
    ("zj-hz-bj", "zj-hz", "滨江区", "330108"),
    ("zj-hz-xs", "zj-hz", "萧山区", "330109"),
    ("zj-hz-yh", "zj-hz", "余杭区", "330110"),
    ("zj-nb-hs", "zj-nb", "海曙区", "330203"),
    ("zj-nb-yz", "zj-nb", "鄞州区", "330212"),
    ("zj-wz-lc", "zj-wz", "鹿城区", "330302"),
)


def _unit(
    key: str,
    name: str,
    short_name: str,
    unit_type: UnitType,
    level: Level,
    division_code: str,
    parent_key: str | None,
    tags: tuple[str, ...],
    sort_order: int,
) -> SeedUnit:
    """A seed unit without a credit code (assigned afterwards by `_with_credit_codes`)."""
    return SeedUnit(key, name, short_name, unit_type, level, division_code, parent_key, None, tags, sort_order)


def _units() -> list[SeedUnit]:
    """All seed units, parents before children, without credit codes."""
    # Sort order among siblings: departments and bodies from 1, subordinate governments from 101.
    units = [_unit("zj", "浙江省人民政府", "浙江省", "government", "province", ZJ, None, _GOV_TAGS, 1)]
    for order, (key, name, short_name, tags) in enumerate(_DEPARTMENTS, start=1):
        units.append(_unit(key, name, short_name, "department", "province", ZJ, "zj", tags, order))
    units += [
        _unit("zj-gjj", "浙江省省直住房公积金管理中心", "省公积金中心", "public_institution", "province", ZJ,
              "zj-jst", ("住建", "公积金"), 1),
        _unit("zj-dsj-bgs", "浙江省大数据发展管理局办公室", "办公室", "internal_institution", "province", ZJ,
              "zj-dsj", ("数据",), 1),
        _unit("zj-dsj-sjzyc", "浙江省大数据发展管理局数据资源处", "数据资源处", "internal_institution",
              "province", ZJ, "zj-dsj", ("数据",), 2),
    ]  # fmt: skip
    city_names = {key: short_name for key, short_name, _ in CITIES}
    for order, (key, short_name, code6) in enumerate(CITIES, start=101):
        name, division = f"{short_name}人民政府", code6 + "000000"
        units.append(_unit(key, name, short_name, "government", "city", division, "zj", _GOV_TAGS, order))
    units += [
        _unit("zj-hz-sjj", "杭州市数据资源管理局", "市数据资源局", "department", "city", HZ, "zj-hz",
              ("数据", "政务服务"), 1),
        _unit("zj-hz-scjg", "杭州市市场监督管理局", "市市场监管局", "department", "city", HZ, "zj-hz",
              ("市场监管",), 2),
    ]  # fmt: skip
    district_count: dict[str, int] = {}
    for key, city_key, short_name, code6 in _DISTRICTS:
        order = district_count[city_key] = district_count.get(city_key, 100) + 1
        name = f"{city_names[city_key]}{short_name}人民政府"
        division = code6 + "000000"
        units.append(_unit(key, name, short_name, "government", "county", division, city_key, _GOV_TAGS, order))
    return units


def _with_credit_codes(units: list[SeedUnit]) -> tuple[SeedUnit, ...]:
    """Give each organ and public institution a deterministic demo credit code."""
    result: list[SeedUnit] = []
    serial = 0
    for unit in units:
        kind = _KIND_BY_TYPE.get(unit.type)
        if kind is not None:
            serial += 1
            # Valid-format demo codes (both check characters correct); not the units' real codes.
            code = make_credit_code(_AUTHORITY, kind, unit.division_code[:6], f"TB{serial:06d}")
            unit = replace(unit, credit_code=code)
        result.append(unit)
    return tuple(result)


#: every seed unit, each parent listed before its children
SEED_UNITS: tuple[SeedUnit, ...] = _with_credit_codes(_units())
#: seed units by key
SEED_BY_KEY: MappingProxyType[str, SeedUnit] = MappingProxyType({u.key: u for u in SEED_UNITS})
