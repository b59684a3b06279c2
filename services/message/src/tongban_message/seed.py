"""Demo templates for development (`python -m tongban_message seed`); idempotent."""

from __future__ import annotations

from sqlmodel import select

from tongban_kit.db import Database
from tongban_kit.ids import new_id
from tongban_message.models import Channel, Template

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


async def seed(db: Database) -> list[str]:
    """Create the demo templates that do not exist yet; returns their codes."""
    async with db.session() as s:
        have = set((await s.exec(select(Template.code))).all())
        made = []
        for code, name, subject, body in DEMO_TEMPLATES:
            if code not in have:
                s.add(Template(id=new_id(), code=code, name=name, channel=Channel.inbox, subject=subject, body=body))
                made.append(code)
        await s.commit()
    return made
