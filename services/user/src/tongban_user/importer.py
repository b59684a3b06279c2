"""Bulk import of users (JSON or CSV) in one transaction, with a per-row error report."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field, ValidationError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.db import copy_rows
from tongban_kit.events import make_event
from tongban_kit.ids import new_id
from tongban_kit.outbox import add_events
from tongban_kit.problems import Problem
from tongban_user.access import Caller
from tongban_user.accounts import SOURCE, UNIQUE_FIELDS, new_account, to_public
from tongban_user.contract import ACCOUNT_CREATED, AccountCreated
from tongban_user.crypto import PiiCipher
from tongban_user.models import Kind, Status, UserAccount, UserCreate

CSV_COLUMNS = (
    "kind",
    "name",
    "real_name",
    "username",
    "id_number",
    "mobile",
    "email",
    "credit_code",
    "representative_id",
    "external_id",
)
COLUMNS = (
    "id",
    "kind",
    "name",
    "real_name",
    "username",
    "mobile",
    "email",
    "credit_code",
    "id_number_enc",
    "id_number_hash",
    "id_number_masked",
    "gender",
    "birth_date",
    "representative_id",
    "external_id",
    "enterprise",
    "status",
    "version",
    "created_at",
    "updated_at",
)


class RowError(BaseModel):
    """What is wrong with one row (1-based)."""

    row: int
    field: str | None = None
    message: str


class ImportReport(BaseModel):
    """Outcome of a successful import."""

    created: int
    ids: list[str] = Field(description="new account ids, in row order")


async def _rows(request: Request) -> list[Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    try:
        text = raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise Problem(400, "the body must be UTF-8", type="invalid-import") from exc
    if ctype == "text/csv":
        reader = csv.DictReader(io.StringIO(text))
        unknown = set(reader.fieldnames or ()) - set(CSV_COLUMNS)
        if not reader.fieldnames or "kind" not in reader.fieldnames or unknown:
            raise Problem(
                400,
                f"the CSV needs a header line from columns {', '.join(CSV_COLUMNS)}"
                + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else ""),
                type="invalid-import",
            )
        rows = [{k: v.strip() for k, v in r.items() if k and v and v.strip()} for r in reader]
    elif ctype in ("application/json", ""):
        import orjson

        try:
            doc = orjson.loads(text or "{}")
        except orjson.JSONDecodeError as exc:
            raise Problem(400, "the body is not JSON", type="invalid-import") from exc
        found = doc.get("users") if isinstance(doc, dict) else None
        if not isinstance(found, list):
            raise Problem(422, 'send {"users": [...]}', type="validation-error")
        rows = found
    else:
        raise Problem(415, "send application/json or text/csv", type="unsupported-media-type")
    if not rows:
        raise Problem(422, "the import has no rows", type="invalid-import")
    return rows


async def import_users(
    s: AsyncSession, *, request: Request, caller: Caller, cipher: PiiCipher, max_rows: int
) -> ImportReport:
    """Validate every row, then create all accounts in one transaction, or none and report every error."""
    rows = await _rows(request)
    if len(rows) > max_rows:
        raise Problem(413, f"at most {max_rows} rows per import", type="import-too-large")
    errors: list[RowError] = []
    accounts: list[tuple[int, UserAccount]] = []
    kinds: set[Kind] = set()
    for n, raw in enumerate(rows, start=1):
        try:
            data = UserCreate.model_validate(raw)
            u = new_account(data, cipher, account_id=new_id(), plain=True)
        except ValidationError as exc:
            errors += [
                RowError(row=n, field=".".join(str(p) for p in e["loc"]) or None, message=e["msg"])
                for e in exc.errors()
            ]
            continue
        except Problem as exc:
            errors.append(RowError(row=n, message=exc.detail or "invalid"))
            continue
        if data.operator_ids:
            errors.append(
                RowError(row=n, field="operator_ids", message="operators are set per account, not in an import")
            )
            continue
        if u.kind == Kind.citizen and not u.id_number_hash:
            errors.append(RowError(row=n, field="id_number", message="a citizen account needs an id_number"))
        if u.kind == Kind.legal_person and not u.credit_code:
            errors.append(RowError(row=n, field="credit_code", message="a legal-person account needs a credit_code"))
        kinds.add(u.kind)
        accounts.append((n, u))
    for kind in kinds:
        await caller.require_create(kind)
    errors += await _duplicates(s, accounts)
    errors += await _representatives(s, accounts)
    if errors:
        bad = len({e.row for e in errors})
        raise Problem(
            422,
            f"{bad} row(s) have errors; nothing was imported",
            type="import-rejected",
            created=0,
            errors=[e.model_dump() for e in sorted(errors, key=lambda e: e.row)],
        )
    users = [u for _, u in accounts]
    for i in range(0, len(users), 2000):
        chunk = users[i : i + 2000]
        await copy_rows(s, UserAccount.__table__, COLUMNS, [tuple(getattr(u, c) for c in COLUMNS) for u in chunk])  # type: ignore[attr-defined]
        await add_events(
            s,
            [
                make_event(
                    ACCOUNT_CREATED,
                    AccountCreated(user=to_public(u), actor=caller.principal, via="import"),
                    source=SOURCE,
                    subject=u.id,
                )
                for u in chunk
            ],
        )
    await s.commit()
    return ImportReport(created=len(users), ids=[u.id for u in users])


async def _duplicates(s: AsyncSession, accounts: list[tuple[int, UserAccount]]) -> list[RowError]:
    """Unique values repeated within the import or already taken."""
    errors: list[RowError] = []
    checks: list[tuple[str, Any]] = [(f, lambda u, f=f: getattr(u, f)) for f in UNIQUE_FIELDS]
    checks.append(("id_number", lambda u: f"{u.kind}:{u.id_number_hash}" if u.id_number_hash else None))
    for field, value_of in checks:
        seen: dict[Any, int] = {}
        for n, u in accounts:
            v = value_of(u)
            if v is None:
                continue
            if v in seen:
                errors.append(RowError(row=n, field=field, message=f"repeats row {seen[v]}"))
            else:
                seen[v] = n
        if not seen:
            continue
        taken: set[Any] = set()
        values = list(seen)
        for i in range(0, len(values), 1000):
            chunk = values[i : i + 1000]
            if field == "id_number":
                hashes = [v.split(":", 1)[1] for v in chunk]
                found = await s.exec(
                    select(UserAccount.kind, UserAccount.id_number_hash).where(
                        col(UserAccount.id_number_hash).in_(hashes)
                    )
                )
                taken |= {f"{k}:{h}" for k, h in found.all()}
            else:
                found_v = await s.exec(
                    select(getattr(UserAccount, field)).where(col(getattr(UserAccount, field)).in_(chunk))
                )
                taken |= set(found_v.all())
        errors += [
            RowError(row=seen[v], field=field, message="already belongs to another account")
            for v in values
            if v in taken
        ]
    return errors


async def _representatives(s: AsyncSession, accounts: list[tuple[int, UserAccount]]) -> list[RowError]:
    """Only legal persons have a representative, and it must be an active citizen account."""
    wanted = sorted({u.representative_id for _, u in accounts if u.representative_id})
    ok: set[str] = set()
    for i in range(0, len(wanted), 1000):
        found = await s.exec(
            select(UserAccount.id).where(
                col(UserAccount.id).in_(wanted[i : i + 1000]),
                col(UserAccount.kind) == Kind.citizen,
                col(UserAccount.status) == Status.active,
            )
        )
        ok |= set(found.all())
    errors: list[RowError] = []
    for n, u in accounts:
        if u.representative_id is None:
            continue
        if u.kind != Kind.legal_person:
            message = "only legal-person accounts have a representative"
        elif u.representative_id not in ok:
            message = "not an active citizen account"
        else:
            continue
        errors.append(RowError(row=n, field="representative_id", message=message))
    return errors
