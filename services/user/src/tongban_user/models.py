"""Data model of people: citizens, staff and legal persons."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic import Field as PField
from sqlalchemy import JSON, Column, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from tongban_kit.db import UtcDateTime
from tongban_kit.ids import new_id
from tongban_kit.outbox import utcnow

USERNAME_PATTERN = r"^[a-z][a-z0-9._-]{2,63}$"
CREDIT_PATTERN = r"^[0-9A-HJ-NPQRTUWXY]{18}$"


class Kind(StrEnum):
    """Kinds of account."""

    citizen = "citizen"
    staff = "staff"
    legal_person = "legal_person"


class Status(StrEnum):
    """Lifecycle of an account."""

    active = "active"
    disabled = "disabled"
    deleted = "deleted"


class Gender(StrEnum):
    """Gender as derived from the identity number."""

    male = "male"
    female = "female"


class UserAccount(SQLModel, table=True):
    """An account; the identity number is stored encrypted with a keyed hash for exact lookup."""

    __tablename__ = "user_account"
    __table_args__ = (
        UniqueConstraint("kind", "id_number_hash", name="uq_user_kind_id_number"),
        Index("ix_user_name", "name", "id"),
        Index("ix_user_id_number_hash", "id_number_hash"),
        Index("ix_user_kind_status", "kind", "status", "id"),
    )

    id: str = Field(default_factory=new_id, sa_column=Column(String(36), primary_key=True))
    kind: Kind = Field(sa_column=Column(String(16), nullable=False))
    #: byte-order collation on PostgreSQL: one (name, id) index serves prefix search and its order
    name: str = Field(
        sa_column=Column(String(100).with_variant(String(100, collation="C"), "postgresql"), nullable=False)
    )
    real_name: str | None = Field(default=None, sa_column=Column(String(100)))
    username: str | None = Field(default=None, sa_column=Column(String(64), unique=True))
    mobile: str | None = Field(default=None, sa_column=Column(String(11), unique=True))
    email: str | None = Field(default=None, sa_column=Column(String(254), unique=True))
    credit_code: str | None = Field(default=None, sa_column=Column(String(18), unique=True))
    id_number_enc: str | None = Field(default=None, sa_column=Column(Text))
    id_number_hash: str | None = Field(default=None, sa_column=Column(String(64)))
    id_number_masked: str | None = Field(default=None, sa_column=Column(String(18)))
    gender: Gender | None = Field(default=None, sa_column=Column(String(8)))
    birth_date: date | None = Field(default=None, sa_column=Column(Date))
    representative_id: str | None = Field(default=None, sa_column=Column(String(36), ForeignKey("user_account.id")))
    external_id: str | None = Field(default=None, sa_column=Column(String(200), index=True))
    enterprise: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: Status = Field(default=Status.active, sa_column=Column(String(16), nullable=False))
    status_reason: str | None = Field(default=None, sa_column=Column(String(500)))
    status_changed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))
    deleted_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), index=True))


class LegalPersonOperator(SQLModel, table=True):
    """A citizen authorised to act for a legal-person account."""

    __tablename__ = "user_operator"

    legal_person_id: str = Field(sa_column=Column(String(36), ForeignKey("user_account.id"), primary_key=True))
    citizen_id: str = Field(sa_column=Column(String(36), ForeignKey("user_account.id"), primary_key=True, index=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))


class Enterprise(BaseModel):
    """Enterprise attributes of staff (SCIM enterprise user extension)."""

    model_config = ConfigDict(extra="forbid")

    employee_number: str | None = PField(None, max_length=100)
    organization: str | None = PField(None, max_length=200)
    division: str | None = PField(None, max_length=200)
    department: str | None = PField(None, max_length=200)
    cost_center: str | None = PField(None, max_length=100)
    manager_id: str | None = PField(None, max_length=36)


class UserCreate(BaseModel):
    """Body of creating an account."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind
    name: str = PField(min_length=1, max_length=100, examples=["张三"])
    real_name: str | None = PField(None, min_length=1, max_length=100, examples=["张三"])
    username: str | None = PField(None, pattern=USERNAME_PATTERN, examples=["zhang.san"])
    id_number: str | None = PField(None, min_length=15, max_length=22, examples=["11010519491231002X"])
    mobile: str | None = PField(None, min_length=11, max_length=20, examples=["13800138000"])
    email: str | None = PField(None, min_length=3, max_length=254, examples=["zhang.san@example.com"])
    credit_code: str | None = PField(None, pattern=CREDIT_PATTERN, examples=["91110000600037341L"])
    representative_id: str | None = PField(None, max_length=36, description="legal persons: the representative")
    operator_ids: list[str] = PField(default_factory=list, max_length=100, description="legal persons: operators")
    external_id: str | None = PField(None, max_length=200)
    enterprise: Enterprise | None = None

    @field_validator("username", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("credit_code", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v


class UserUpdate(BaseModel):
    """Merge-patch of an account: absent fields stay, null clears optional ones."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = PField(None, min_length=1, max_length=100)
    real_name: str | None = PField(None, min_length=1, max_length=100)
    username: str | None = PField(None, pattern=USERNAME_PATTERN)
    id_number: str | None = PField(None, min_length=15, max_length=22)
    mobile: str | None = PField(None, min_length=11, max_length=20)
    email: str | None = PField(None, min_length=3, max_length=254)
    credit_code: str | None = PField(None, pattern=CREDIT_PATTERN)
    representative_id: str | None = PField(None, max_length=36)
    operator_ids: list[str] | None = PField(None, max_length=100)
    external_id: str | None = PField(None, max_length=200)
    enterprise: Enterprise | None = None

    @field_validator("username", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("credit_code", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v


class UserPublic(BaseModel):
    """An account as the API returns it; personal data is masked unless `masked` is false."""

    id: str
    kind: Kind
    name: str
    real_name: str | None = None
    username: str | None = None
    id_number: str | None = None
    mobile: str | None = None
    email: str | None = None
    credit_code: str | None = None
    gender: Gender | None = None
    birth_date: date | None = PField(None, description="only when unmasked")
    representative_id: str | None = None
    operator_ids: list[str] = PField(default_factory=list)
    external_id: str | None = None
    enterprise: Enterprise | None = None
    status: Status
    status_reason: str | None = None
    status_changed_at: datetime | None = None
    masked: bool = PField(description="true when personal data in this body is masked")
    version: int
    created_at: datetime
    updated_at: datetime


class StatusChange(BaseModel):
    """Why an account is disabled, enabled or deleted."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = PField(None, max_length=500)
