"""Demo templates for development (`python -m tongban_message seed`); idempotent."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from tongban_kit.db import Database
from tongban_kit.ids import new_id
from tongban_message.models import Channel, Template

#: templates other services send by code (one-time codes of the auth service); made at start when missing
SYSTEM_TEMPLATES = (
    (
        "auth.otp.sms",
        "短信验证码",
        Channel.sms,
        "",
        "【通办】您的验证码为((code))，((minutes))分钟内有效。请勿告诉他人。",
    ),
    (
        "auth.otp.email",
        "邮件验证码",
        Channel.email,
        "【通办】验证码((code))",
        "您的验证码为((code))，((minutes))分钟内有效。如非本人操作，请忽略本邮件。",
    ),
)
DEMO_TEMPLATES = (
    ("notice.general", "通用通知", "((title))", "((content))"),
    (
        "affairs.progress",
        "办件进度提醒",
        "((matter))办理进度",
        "您申请的“((matter))”有新进展：((step))已((status))。可在“我的办件”查看详情。",
    ),
    (
        "staff.task.assigned",
        "工作通知：新的待办",
        "新的待办：((matter))",
        "您有一件“((matter))”待办理，请于((deadline))前处理。",
    ),
)


async def _ensure(db: Database, rows: tuple[tuple[str, str, Channel, str, str], ...]) -> list[str]:
    async with db.session() as s:
        have = set((await s.exec(select(Template.code))).all())
        made = []
        for code, name, channel, subject, body in rows:
            if code not in have:
                s.add(Template(id=new_id(), code=code, name=name, channel=channel, subject=subject, body=body))
                made.append(code)
        try:
            await s.commit()
        except IntegrityError:  # another replica made them at the same moment
            await s.rollback()
            return []
    return made


async def ensure_system_templates(db: Database) -> list[str]:
    """Make the templates other services rely on, where missing (administrators may change their text later)."""
    return await _ensure(db, SYSTEM_TEMPLATES)


async def seed(db: Database) -> list[str]:
    """Create the demo templates that do not exist yet; returns their codes."""
    return await _ensure(db, tuple((c, n, Channel.inbox, s, b) for c, n, s, b in DEMO_TEMPLATES))
