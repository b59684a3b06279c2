"""Templates: `((placeholder))` text (as GOV.UK Notify writes it), versioned on every change."""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.ids import new_id
from tongban_kit.outbox import utcnow
from tongban_kit.pagination import Page, decode_cursor, page_of
from tongban_kit.problems import Problem
from tongban_message.models import Template, TemplateCreate, TemplatePublic, TemplateStatus, TemplateUpdate

PLACEHOLDER = re.compile(r"\(\(([^()\n]{1,64})\)\)")
#: one personalisation value, after conversion to text
MAX_VALUE_CHARS = 2000


def placeholders(*texts: str) -> list[str]:
    """The placeholder names in order of first appearance (surrounding spaces ignored)."""
    seen: dict[str, None] = {}
    for text in texts:
        for m in PLACEHOLDER.finditer(text):
            seen.setdefault(m.group(1).strip(), None)
    return list(seen)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "是" if value else "否"
    return str(value)


def render(text: str, values: Mapping[str, object]) -> str:
    """Fill the placeholders of `text` (every one must have a value)."""
    return PLACEHOLDER.sub(lambda m: _text(values[m.group(1).strip()]), text)


def check_personalisation(template: Template, values: Mapping[str, object]) -> None:
    """Every placeholder needs a value of reasonable size; 400 names the missing ones."""
    missing = [p for p in placeholders(template.subject, template.body) if p not in values]
    if missing:
        raise Problem(
            400,
            f"personalisation is missing: {', '.join(missing)}",
            type="personalisation-missing",
            missing=missing,
        )
    too_long = [k for k, v in values.items() if len(_text(v)) > MAX_VALUE_CHARS]
    if too_long:
        raise Problem(400, f"personalisation values longer than {MAX_VALUE_CHARS} characters: {', '.join(too_long)}")


#: the longest subject a message may have once filled in (the column it is stored in)
MAX_SUBJECT_CHARS = 500


def render_subject(template: Template, values: Mapping[str, object]) -> str:
    """The filled-in subject; 400 when the personalisation makes it longer than a subject may be."""
    subject = render(template.subject, values)
    if len(subject) > MAX_SUBJECT_CHARS:
        raise Problem(400, f"the subject would be longer than {MAX_SUBJECT_CHARS} characters once filled in")
    return subject


def to_public(t: Template) -> TemplatePublic:
    """The API view of a template."""
    return TemplatePublic.model_validate(
        {**t.model_dump(warnings=False), "placeholders": placeholders(t.subject, t.body)}
    )


async def create(s: AsyncSession, body: TemplateCreate, *, actor: str | None) -> TemplatePublic:
    """Store a new template (409 when its code is taken)."""
    now = utcnow()
    t = Template(
        id=new_id(),
        code=body.code,
        name=body.name,
        channel=body.channel,
        subject=body.subject,
        body=body.body,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    s.add(t)
    try:
        await s.commit()
    except IntegrityError:
        await s.rollback()
        raise Problem(409, f"a template with code {body.code} exists", type="conflict") from None
    return to_public(t)


async def get(s: AsyncSession, template_id: str, *, lock: bool = False) -> Template:
    """A template by id (404 when unknown)."""
    stmt = select(Template).where(Template.id == template_id)
    if lock:
        stmt = stmt.with_for_update()
    found = (await s.exec(stmt)).first()
    if found is None:
        raise Problem(404, f"no template {template_id}", type="not-found")
    return found


async def by_code(s: AsyncSession, code: str) -> Template:
    """A template by code (404 when unknown)."""
    found = (await s.exec(select(Template).where(Template.code == code))).first()
    if found is None:
        raise Problem(404, f"no template with code {code}", type="not-found")
    return found


async def search(
    s: AsyncSession, *, limit: int, cursor: str | None, status: TemplateStatus | None
) -> Page[TemplatePublic]:
    """Templates ordered by code, one page."""
    after = decode_cursor(cursor)
    stmt = select(Template).order_by(col(Template.code)).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(col(Template.code) > str(after.get("code", "")))
    if status is not None:
        stmt = stmt.where(Template.status == status)
    rows = [to_public(t) for t in (await s.exec(stmt)).all()]
    return page_of(rows, limit, lambda t: {"code": t.code})


async def update(s: AsyncSession, template_id: str, body: TemplateUpdate) -> TemplatePublic:
    """Change a template; a real change makes a new version."""
    t = await get(s, template_id, lock=True)
    changes = body.model_dump(exclude_none=True)
    changed = {k: v for k, v in changes.items() if getattr(t, k) != v}
    if changed:
        for k, v in changed.items():
            setattr(t, k, v)
        t.version += 1
        t.updated_at = utcnow()
        s.add(t)
        await s.commit()
    return to_public(t)


async def set_status(s: AsyncSession, template_id: str, status: TemplateStatus) -> TemplatePublic:
    """Archive a template, or bring it back."""
    t = await get(s, template_id, lock=True)
    if t.status != status:
        t.status = status
        t.updated_at = utcnow()
        s.add(t)
        await s.commit()
    return to_public(t)
