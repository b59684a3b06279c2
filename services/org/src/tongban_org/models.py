"""Data model of the organisation directory: units, history, memberships, admin grants."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic import Field as PField
from sqlalchemy import JSON, Column, ForeignKey, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from tongban_kit import codes
from tongban_kit.db import UtcDateTime
from tongban_kit.ids import new_id
from tongban_kit.outbox import utcnow


class UnitType(StrEnum):
    """Kinds of organisation unit."""

    government = "government"
    department = "department"
    internal_institution = "internal_institution"
    public_institution = "public_institution"
    enterprise = "enterprise"
    community = "community"


class Level(StrEnum):
    """Administrative level of a unit."""

    province = "province"
    city = "city"
    county = "county"
    township = "township"
    village = "village"


class UnitStatus(StrEnum):
    """Lifecycle of a unit."""

    active = "active"
    dissolved = "dissolved"


def _check_division(v: str | None) -> str | None:
    if v is None:
        return None
    try:
        v = codes.normalise_division(v)
    except ValueError as exc:
        raise ValueError(str(exc)) from exc
    problem = codes.division_problem(v)
    if problem:
        raise ValueError(problem)
    return v


def _check_credit(v: str | None) -> str | None:
    if v is None or v == "":
        return None
    v = v.strip().upper()
    problem = codes.credit_code_problem(v)
    if problem:
        raise ValueError(problem)
    return v


def _clean_tags(v: list[str]) -> list[str]:
    cleaned = [t.strip() for t in v if t and t.strip()]
    if any(len(t) > 50 for t in cleaned) or len(cleaned) > 20:
        raise ValueError("at most 20 tags of at most 50 characters")
    return list(dict.fromkeys(cleaned))


class UnitBase(SQLModel):
    """Fields a client sets on a unit."""

    name: str = Field(min_length=1, max_length=200, schema_extra={"examples": ["浙江省大数据发展管理局"]})
    short_name: str | None = Field(default=None, max_length=100, schema_extra={"examples": ["省大数据局"]})
    type: UnitType
    level: Level
    division_code: str = Field(
        min_length=2,
        max_length=12,
        regex=r"^[0-9]{2,12}$",
        description="12-digit administrative division code (GB/T 2260 6 digits + township 3 + village 3); "
        "shorter prefixes are padded with zeros",
        schema_extra={"examples": ["330000000000"]},
    )
    credit_code: str | None = Field(
        default=None,
        max_length=18,
        regex=r"^[0-9A-HJ-NPQRTUWXY]{18}$",
        description="unified social credit code (GB 32100-2015)",
        schema_extra={"examples": ["91110000600037341L"]},
    )
    tags: list[str] = Field(
        default_factory=list, description="business lines (条线)", schema_extra={"examples": [["数据"]]}
    )
    sort_order: int = Field(default=0, ge=-1_000_000, le=1_000_000)

    @field_validator("division_code", mode="before")
    @classmethod
    def _division(cls, v: Any) -> Any:
        return _check_division(v) if isinstance(v, str) else v

    @field_validator("credit_code", mode="before")
    @classmethod
    def _credit(cls, v: Any) -> Any:
        return _check_credit(v) if isinstance(v, str) else v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        return _clean_tags(v)


class UnitCreate(UnitBase):
    """Body of a unit creation; `parent_id` null creates a root (province)."""

    parent_id: str | None = Field(default=None, max_length=36)


class UnitUpdate(BaseModel):
    """Merge-patch of a unit: absent fields stay, null clears optional ones."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = PField(default=None, min_length=1, max_length=200)
    short_name: str | None = PField(default=None, max_length=100)
    type: UnitType | None = None
    level: Level | None = None
    division_code: str | None = PField(default=None, min_length=2, max_length=12, pattern=r"^[0-9]{2,12}$")
    credit_code: str | None = PField(default=None, max_length=18, pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")
    tags: list[str] | None = None
    sort_order: int | None = PField(default=None, ge=-1_000_000, le=1_000_000)

    _division = field_validator("division_code", mode="before")(
        classmethod(lambda cls, v: _check_division(v) if isinstance(v, str) else v)
    )
    _credit = field_validator("credit_code", mode="before")(
        classmethod(lambda cls, v: _check_credit(v) if isinstance(v, str) else v)
    )
    _tags = field_validator("tags")(classmethod(lambda cls, v: _clean_tags(v) if v is not None else v))


class Unit(UnitBase, table=True):
    """An organisation unit; `path` is the materialised path of ids from the root, `/a/b/self/`."""

    __tablename__ = "org_unit"
    __table_args__ = (
        Index("ix_org_unit_path", "path"),
        Index("ix_org_unit_parent_sort", "parent_id", "sort_order", "id"),
        Index("ix_org_unit_division", "division_code"),
        Index("ix_org_unit_name", "name"),
    )

    id: str = Field(default_factory=new_id, sa_column=Column(String(36), primary_key=True))
    type: UnitType = Field(sa_column=Column(String(32), nullable=False))
    level: Level = Field(sa_column=Column(String(16), nullable=False))
    parent_id: str | None = Field(default=None, sa_column=Column(String(36), ForeignKey("org_unit.id"), nullable=True))
    #: byte-order collation on PostgreSQL, so one btree index serves subtree ranges and depth-first order
    path: str = Field(
        sa_column=Column(String(1024).with_variant(String(1024, collation="C"), "postgresql"), nullable=False)
    )
    depth: int = 0
    division_code: str = Field(sa_column=Column(String(12), nullable=False))
    credit_code: str | None = Field(default=None, sa_column=Column(String(18), nullable=True, unique=True))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: UnitStatus = Field(default=UnitStatus.active, sa_column=Column(String(16), nullable=False))
    dissolved_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))


class UnitPublic(BaseModel):
    """A unit as the API returns it (no input validators: rows from the database are trusted)."""

    name: str = PField(examples=["浙江省大数据发展管理局"])
    short_name: str | None = PField(None, examples=["省大数据局"])
    type: UnitType
    level: Level
    division_code: str = PField(examples=["330000000000"])
    credit_code: str | None = None
    tags: list[str] = PField(default_factory=list)
    sort_order: int = 0
    id: str
    parent_id: str | None
    depth: int
    status: UnitStatus
    dissolved_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class UnitHistory(SQLModel, table=True):
    """What happened to a unit: created, updated, moved, dissolved."""

    __tablename__ = "org_unit_history"

    id: str = Field(default_factory=new_id, sa_column=Column(String(36), primary_key=True))
    unit_id: str = Field(sa_column=Column(String(36), ForeignKey("org_unit.id"), nullable=False, index=True))
    action: str = Field(sa_column=Column(String(20), nullable=False))
    actor: str | None = Field(default=None, sa_column=Column(String(100)))
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class HistoryPublic(BaseModel):
    """A history entry."""

    id: str
    unit_id: str
    action: str
    actor: str | None
    at: datetime
    details: dict[str, Any]


class MembershipBase(SQLModel):
    """Fields of a membership (a post of a user in a unit)."""

    title: str | None = Field(default=None, max_length=100, schema_extra={"examples": ["处长"]})
    is_primary: bool = False
    is_leader: bool = False
    sort_order: int = Field(default=0, ge=-1_000_000, le=1_000_000)


class MembershipCreate(MembershipBase):
    """Body of adding a user to a unit."""

    user_id: str = Field(min_length=1, max_length=64, schema_extra={"pattern": r"^[A-Za-z0-9._:@-]+$"})
    unit_id: str = Field(min_length=1, max_length=36)


class MembershipUpdate(BaseModel):
    """Merge-patch of a membership."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = PField(default=None, max_length=100)
    is_primary: bool | None = None
    is_leader: bool | None = None
    sort_order: int | None = PField(default=None, ge=-1_000_000, le=1_000_000)


class Membership(MembershipBase, table=True):
    """A user's post in a unit."""

    __tablename__ = "org_membership"
    __table_args__ = (
        UniqueConstraint("user_id", "unit_id", name="uq_org_membership_user_unit"),
        Index("ix_org_membership_unit", "unit_id", "id"),
        Index("ix_org_membership_user", "user_id"),
    )

    id: str = Field(default_factory=new_id, sa_column=Column(String(36), primary_key=True))
    user_id: str = Field(sa_column=Column(String(64), nullable=False))
    unit_id: str = Field(sa_column=Column(String(36), ForeignKey("org_unit.id"), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))


class UnitRef(BaseModel):
    """A short reference to a unit."""

    id: str
    name: str
    short_name: str | None = None


class MembershipPublic(MembershipBase):
    """A membership as the API returns it."""

    id: str
    user_id: str
    unit_id: str
    created_at: datetime
    unit: UnitRef | None = None


class AdminGrantCreate(BaseModel):
    """Body of delegating administration of a subtree to a principal."""

    principal: str = PField(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:@-]+$")
    unit_id: str = PField(min_length=1, max_length=36)


class AdminGrant(SQLModel, table=True):
    """A principal administers the subtree rooted at `unit_id` (分级授权)."""

    __tablename__ = "org_admin_grant"
    __table_args__ = (UniqueConstraint("principal", "unit_id", name="uq_org_admin_grant"),)

    id: str = Field(default_factory=new_id, sa_column=Column(String(36), primary_key=True))
    principal: str = Field(sa_column=Column(String(100), nullable=False, index=True))
    unit_id: str = Field(sa_column=Column(String(36), ForeignKey("org_unit.id"), nullable=False))
    created_by: str | None = Field(default=None, sa_column=Column(String(100)))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))


class AdminGrantPublic(BaseModel):
    """A grant as the API returns it."""

    id: str
    principal: str
    unit_id: str
    created_by: str | None
    created_at: datetime


class SendGrantCreate(BaseModel):
    """Body of letting a principal address messages to the members of a subtree."""

    principal: str = PField(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:@-]+$")
    unit_id: str = PField(min_length=1, max_length=36)


class SendGrant(SQLModel, table=True):
    """A principal may send messages to the members of the subtree rooted at `unit_id` (a sending right)."""

    __tablename__ = "org_send_grant"
    __table_args__ = (UniqueConstraint("principal", "unit_id", name="uq_org_send_grant"),)

    id: str = Field(default_factory=new_id, sa_column=Column(String(36), primary_key=True))
    principal: str = Field(sa_column=Column(String(100), nullable=False, index=True))
    unit_id: str = Field(sa_column=Column(String(36), ForeignKey("org_unit.id"), nullable=False))
    created_by: str | None = Field(default=None, sa_column=Column(String(100)))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))


class SendGrantPublic(BaseModel):
    """A sending right as the API returns it."""

    id: str
    principal: str
    unit_id: str
    created_by: str | None
    created_at: datetime
