"""SCIM filters (RFC 7644 §3.4.2.2) on Users, translated to SQL conditions on user_account."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scim2_models import InvalidFilterException, InvalidValueException, ScimFilter
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterVisitor,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from sqlalchemy import and_, false, func, not_, or_, true
from sqlmodel import col

from tongban_user.models import Status, UserAccount
from tongban_user.scim.schemas import ENTERPRISE_URN, TONGBAN_URN, USER_URN

Op = CompareOperator


@dataclass(frozen=True)
class Column:
    """A filterable attribute: its SQL expression, value type and case sensitivity."""

    expr: Any
    type: str = "string"  # string | boolean | dateTime | work | mobile | primary
    case_exact: bool = False
    stored_lower: bool = False
    #: the personal-data field behind a masked attribute: comparing or sorting its value needs user:pii
    personal: str | None = None


def _ent(key: str) -> Any:
    return col(UserAccount.enterprise)[key].as_string()


_EMAIL, _MOBILE = col(UserAccount.email), col(UserAccount.mobile)
COLUMNS: dict[tuple[str, str, str | None], Column] = {
    (USER_URN, "id", None): Column(col(UserAccount.id), case_exact=True),
    (USER_URN, "externalid", None): Column(col(UserAccount.external_id), case_exact=True),
    (USER_URN, "username", None): Column(col(UserAccount.username), stored_lower=True),
    (USER_URN, "displayname", None): Column(col(UserAccount.name)),
    (USER_URN, "name", "formatted"): Column(col(UserAccount.real_name)),
    (USER_URN, "emails", None): Column(_EMAIL, personal="email"),
    (USER_URN, "emails", "value"): Column(_EMAIL, personal="email"),
    (USER_URN, "emails", "type"): Column(_EMAIL, "work"),
    (USER_URN, "emails", "primary"): Column(_EMAIL, "primary"),
    (USER_URN, "phonenumbers", None): Column(_MOBILE, personal="mobile"),
    (USER_URN, "phonenumbers", "value"): Column(_MOBILE, personal="mobile"),
    (USER_URN, "phonenumbers", "type"): Column(_MOBILE, "mobile"),
    (USER_URN, "phonenumbers", "primary"): Column(_MOBILE, "primary"),
    (USER_URN, "active", None): Column(col(UserAccount.status), "boolean"),
    (USER_URN, "meta", "created"): Column(col(UserAccount.created_at), "dateTime"),
    (USER_URN, "meta", "lastmodified"): Column(col(UserAccount.updated_at), "dateTime"),
    (ENTERPRISE_URN, "employeenumber", None): Column(_ent("employee_number")),
    (ENTERPRISE_URN, "costcenter", None): Column(_ent("cost_center")),
    (ENTERPRISE_URN, "organization", None): Column(_ent("organization")),
    (ENTERPRISE_URN, "division", None): Column(_ent("division")),
    (ENTERPRISE_URN, "department", None): Column(_ent("department")),
    (ENTERPRISE_URN, "manager", "value"): Column(_ent("manager_id"), case_exact=True),
    (TONGBAN_URN, "kind", None): Column(col(UserAccount.kind), case_exact=True),
}
_URNS = {u.lower(): u for u in (USER_URN, ENTERPRISE_URN, TONGBAN_URN)}


def column(path: AttrPath, parent: str | None = None) -> Column:
    """The column an attribute path names (inside `parent[...]` for a value filter); 400 invalidFilter if none."""
    uri = _URNS.get((path.uri or USER_URN).lower())
    attr, sub = (parent, path.attr) if parent else (path.attr, path.sub_attr)
    found = COLUMNS.get((uri or "", attr.lower(), sub.lower() if sub else None)) if uri else None
    if found is None:
        raise InvalidFilterException(detail=f"cannot filter or sort on {path}: not a supported attribute")
    return found


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _datetime(value: Any, path: AttrPath) -> datetime:
    try:
        out = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise InvalidFilterException(detail=f"{path}: {value!r} is not a dateTime") from exc
    if out.tzinfo is None:
        raise InvalidFilterException(detail=f"{path}: give the dateTime with its time zone, e.g. ...Z")
    return out


class SqlFilter(FilterVisitor[Any]):
    """Translate a parsed filter into one SQLAlchemy condition."""

    def __init__(self) -> None:
        self.parent: str | None = None

    def visit_logical_expr(self, node: LogicalExpr) -> Any:
        """and / or."""
        terms = [self.visit(t) for t in node.terms]
        return and_(*terms) if node.op == LogicalOperator.and_ else or_(*terms)

    def visit_not(self, node: Not) -> Any:
        """not (...)."""
        return not_(self.visit(node.expr))

    def visit_value_path(self, node: ValuePath) -> Any:
        """emails[type eq "work" and value co "x"]: the inner filter applies to the one stored value."""
        if self.parent is not None or node.attr_path.sub_attr:
            raise InvalidFilterException(detail=f"nested value filters are not supported: {node}")
        column(node.attr_path)
        self.parent = node.attr_path.attr
        try:
            return self.visit(node.val_filter)
        finally:
            self.parent = None

    def visit_present(self, node: Present) -> Any:
        """pr: the attribute has a (non-empty) value."""
        c = column(node.attr_path, self.parent)
        if c.type == "boolean":
            return true()
        if c.type == "string":
            return and_(c.expr.is_not(None), c.expr != "")
        return c.expr.is_not(None)

    def visit_comparison(self, node: Comparison) -> Any:
        """eq, ne, co, sw, ew, gt, ge, lt, le."""
        c = column(node.attr_path, self.parent)
        op, value, path = node.op, node.value, node.attr_path
        if c.type == "boolean":
            if not isinstance(value, bool) or op not in (Op.eq, Op.ne):
                raise InvalidFilterException(detail=f"{path} is a boolean: use eq or ne with true or false")
            want = Status.active if (value if op == Op.eq else not value) else Status.disabled
            return c.expr == want
        if c.type in ("work", "mobile", "primary"):
            expected = True if c.type == "primary" else c.type
            if op not in (Op.eq, Op.ne):
                raise InvalidFilterException(detail=f"{path}: use eq or ne")
            matches = value == expected if op == Op.eq else value != expected
            return c.expr.is_not(None) if matches else false()
        if value is None:
            if op not in (Op.eq, Op.ne):
                raise InvalidFilterException(detail=f"{path}: null can only be compared with eq or ne")
            return c.expr.is_(None) if op == Op.eq else c.expr.is_not(None)
        if c.type == "dateTime":
            if op in (Op.co, Op.sw, Op.ew):
                raise InvalidFilterException(detail=f"{path} is a dateTime: use eq, ne, gt, ge, lt or le")
            return _compare(c.expr, op, _datetime(value, path))
        if not isinstance(value, str):
            raise InvalidFilterException(detail=f"{path} is a string: compare it with a quoted value")
        expr = c.expr if c.case_exact or c.stored_lower else func.lower(c.expr)
        value = value if c.case_exact else value.lower()
        if op == Op.co:
            return expr.like(f"%{_like(value)}%", escape="\\")
        if op == Op.sw:
            return expr.like(f"{_like(value)}%", escape="\\")
        if op == Op.ew:
            return expr.like(f"%{_like(value)}", escape="\\")
        return _compare(expr, op, value)


def _compare(expr: Any, op: CompareOperator, value: Any) -> Any:
    if op == Op.eq:
        return expr == value
    if op == Op.ne:
        return or_(expr.is_(None), expr != value)
    return {Op.gt: expr > value, Op.ge: expr >= value, Op.lt: expr < value, Op.le: expr <= value}[op]


@dataclass(frozen=True)
class Compiled:
    """A filter as SQL, and the masked attributes whose values it compares (attribute → personal-data field)."""

    where: Any
    personal: dict[str, str]


def to_sql(text: str) -> Compiled:
    """The SQL condition of a filter string; 400 invalidFilter when it cannot be parsed or names other attributes."""
    if "\x00" in text:
        raise InvalidFilterException(detail="a filter must not contain NUL characters")
    try:
        ast = ScimFilter(text).ast
    except InvalidFilterException:
        raise
    except (ValueError, TypeError) as exc:
        raise InvalidFilterException(detail=f"not a valid filter: {exc}") from exc
    return Compiled(SqlFilter().visit(ast), personal_values(ast))


def personal_values(node: Any, parent: str | None = None) -> dict[str, str]:
    """Masked values a parsed filter or PATCH path compares (e.g. phoneNumbers[value sw "1"]): attribute → field.

    Presence tests are left out (the masked value shows presence); attributes this service does not store are
    skipped, so a filter that is refused later for naming them is still judged on the rest.
    """
    if isinstance(node, LogicalExpr):
        return {k: v for term in node.terms for k, v in personal_values(term, parent).items()}
    if isinstance(node, Not):
        return personal_values(node.expr, parent)
    if isinstance(node, ValuePath):
        return personal_values(node.val_filter, node.attr_path.attr)
    if not isinstance(node, Comparison) or node.value is None:
        return {}
    try:
        c = column(node.attr_path, parent)
    except InvalidFilterException:
        return {}
    if c.personal is None:
        return {}
    return {f"{parent}[{node.attr_path}]" if parent else str(node.attr_path): c.personal}


SORTABLE = {"string", "dateTime"}


def sort_column(attribute: str) -> tuple[Any, str | None]:
    """The column of a sortBy attribute (single-valued strings and dates) and the personal-data field it orders
    by, if masked; 400 invalidValue otherwise."""
    try:
        path = ScimFilter(f"{attribute} pr").ast
        c = column(path.attr_path) if isinstance(path, Present) else None
    except (InvalidFilterException, ValueError, TypeError):
        c = None
    if c is None or c.type not in SORTABLE:
        raise InvalidValueException(detail=f"sortBy: cannot sort on {attribute!r}")
    key = c.expr if c.case_exact or c.stored_lower or c.type != "string" else func.lower(c.expr)
    return key, c.personal
