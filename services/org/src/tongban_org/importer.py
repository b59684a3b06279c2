"""Bulk import of units (JSON or CSV) in one transaction, with a per-row error report."""

from __future__ import annotations

import csv
import io
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.events import make_event
from tongban_kit.ids import new_id
from tongban_kit.outbox import add_events, utcnow
from tongban_kit.problems import Problem
from tongban_org.authz import Principal
from tongban_org.contract import UNIT_CREATED, UnitCreated
from tongban_org.models import Unit, UnitCreate, UnitHistory, UnitPublic, UnitStatus
from tongban_org.tree import SOURCE, lock_tree, placement_problems

CSV_COLUMNS = (
    "ref",
    "parent_ref",
    "parent_id",
    "name",
    "short_name",
    "type",
    "level",
    "division_code",
    "credit_code",
    "tags",
    "sort_order",
)


class ImportRow(UnitCreate):
    """One unit to import; `parent_ref` names the `ref` of an earlier row of the same import."""

    ref: str | None = Field(default=None, max_length=100)
    parent_ref: str | None = Field(default=None, max_length=100)


class ImportRequest(BaseModel):
    """A JSON import: rows in parent-before-child order."""

    units: list[dict[str, Any]] = Field(min_length=1)


class RowError(BaseModel):
    """What is wrong with one row (1-based; CSV rows count from the first data line)."""

    row: int
    field: str | None = None
    message: str


class ImportReport(BaseModel):
    """Outcome of an import: either everything was created or nothing was."""

    created: int
    errors: list[RowError]
    ids: dict[str, str] = Field(default_factory=dict, description="ref → new unit id, for rows with a ref")


def parse_csv(text: str) -> list[dict[str, Any]]:
    """Rows of a CSV import (header line required; tags separated by '|')."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if not reader.fieldnames or "name" not in reader.fieldnames:
        raise Problem(400, f"the CSV needs a header line with columns {', '.join(CSV_COLUMNS)}", type="invalid-import")
    unknown = set(reader.fieldnames) - set(CSV_COLUMNS)
    if unknown:
        raise Problem(400, f"unknown CSV columns: {', '.join(sorted(unknown))}", type="invalid-import")
    rows: list[dict[str, Any]] = []
    for raw in reader:
        row: dict[str, Any] = {
            k: (v.strip() if isinstance(v, str) else v) for k, v in raw.items() if v not in ("", None)
        }
        if "tags" in row:
            row["tags"] = [t for t in str(row["tags"]).split("|") if t.strip()]
        rows.append(row)
    if not rows:
        raise Problem(422, "the CSV has no data rows", type="invalid-import")
    return rows


async def import_units(
    s: AsyncSession, *, rows: list[dict[str, Any]], principal: Principal, max_rows: int
) -> ImportReport:
    """Validate every row, then create all units in one transaction, or none and report every error."""
    if len(rows) > max_rows:
        raise Problem(413, f"at most {max_rows} rows per import", type="import-too-large")
    await lock_tree(s)
    errors: list[RowError] = []
    parsed: list[tuple[int, ImportRow]] = []
    for n, raw in enumerate(rows, start=1):
        if not isinstance(raw, dict):
            errors.append(RowError(row=n, message="a row must be an object"))
            continue
        try:
            parsed.append((n, ImportRow.model_validate(raw)))
        except ValidationError as exc:
            errors.extend(
                RowError(row=n, field=".".join(str(p) for p in e["loc"]) or None, message=e["msg"])
                for e in exc.errors()
            )
    parent_ids = {r.parent_id for _, r in parsed if r.parent_id}
    existing: dict[str, Unit] = {}
    for chunk in _chunks(sorted(parent_ids), 1000):
        for u in (await s.exec(select(Unit).where(col(Unit.id).in_(chunk)))).all():
            existing[u.id] = u
    codes_wanted = [r.credit_code for _, r in parsed if r.credit_code]
    taken: set[str] = set()
    for chunk in _chunks(codes_wanted, 1000):
        taken.update(
            c for c in (await s.exec(select(Unit.credit_code).where(col(Unit.credit_code).in_(chunk)))).all() if c
        )
    by_ref: dict[str, Unit] = {}
    seen_codes: dict[str, int] = {}
    new_units: list[Unit] = []
    refs: dict[str, str] = {}
    for n, row in parsed:
        row_errors = len(errors)
        parent: Unit | None = None
        if row.parent_ref and row.parent_id:
            errors.append(RowError(row=n, field="parent_ref", message="give parent_ref or parent_id, not both"))
        elif row.parent_ref:
            parent = by_ref.get(row.parent_ref)
            if parent is None:
                errors.append(
                    RowError(row=n, field="parent_ref", message=f"no earlier valid row has ref {row.parent_ref!r}")
                )
        elif row.parent_id:
            parent = existing.get(row.parent_id)
            if parent is None:
                errors.append(RowError(row=n, field="parent_id", message=f"no unit with id {row.parent_id}"))
            elif not await principal.administers(s, parent.path):
                errors.append(
                    RowError(
                        row=n,
                        field="parent_id",
                        message=f"{principal.id} does not administer this parent's subtree",
                    )
                )
        elif not principal.bootstrap:
            errors.append(RowError(row=n, field="parent_id", message="only whole-tree administrators add roots"))
        if parent is not None or not (row.parent_ref or row.parent_id):
            for msg in placement_problems(parent, level=row.level, type_=row.type, division_code=row.division_code):
                errors.append(RowError(row=n, message=msg))
        if row.credit_code:
            if row.credit_code in taken:
                errors.append(RowError(row=n, field="credit_code", message="credit code already belongs to a unit"))
            elif row.credit_code in seen_codes:
                errors.append(
                    RowError(
                        row=n,
                        field="credit_code",
                        message=f"credit code repeats row {seen_codes[row.credit_code]}",
                    )
                )
            else:
                seen_codes[row.credit_code] = n
        if row.ref and row.ref in by_ref:
            errors.append(RowError(row=n, field="ref", message=f"ref {row.ref!r} is used by an earlier row"))
        if len(errors) > row_errors:
            continue
        uid = new_id()
        now = utcnow()
        unit = Unit(
            id=uid,
            parent_id=parent.id if parent else None,
            path=(parent.path if parent else "/") + uid + "/",
            depth=parent.depth + 1 if parent else 0,
            name=row.name,
            short_name=row.short_name,
            type=row.type,
            level=row.level,
            division_code=row.division_code,
            credit_code=row.credit_code,
            tags=row.tags,
            sort_order=row.sort_order,
            status=UnitStatus.active,
            created_at=now,
            updated_at=now,
        )
        new_units.append(unit)
        if row.ref:
            by_ref[row.ref] = unit
            refs[row.ref] = uid
    if errors:
        return ImportReport(created=0, errors=errors)
    await _write(s, new_units, principal.id)
    return ImportReport(created=len(new_units), errors=[], ids=refs)


async def _write(s: AsyncSession, units: list[Unit], actor: str) -> None:
    cols = (
        "id",
        "parent_id",
        "path",
        "depth",
        "name",
        "short_name",
        "type",
        "level",
        "division_code",
        "credit_code",
        "tags",
        "sort_order",
        "status",
        "created_at",
        "updated_at",
    )
    for chunk in _chunks(units, 2000):
        await s.exec(insert(Unit), params=[{c: getattr(u, c) for c in cols} for u in chunk])
        await s.exec(
            insert(UnitHistory),
            params=[
                {
                    "id": new_id(),
                    "unit_id": u.id,
                    "action": "created",
                    "actor": actor,
                    "at": u.created_at,
                    "details": {"parent_id": u.parent_id, "import": True},
                }
                for u in chunk
            ],
        )
        await add_events(
            s,
            [
                make_event(
                    UNIT_CREATED,
                    UnitCreated(unit=UnitPublic.model_validate(u, from_attributes=True), actor=actor),
                    source=SOURCE,
                    subject=u.id,
                )
                for u in chunk
            ],
        )
    await s.commit()


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
