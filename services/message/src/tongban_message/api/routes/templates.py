"""Templates: whole-tree administrators write them (system templates excepted), senders read them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from tongban_kit.app import SessionDep
from tongban_kit.pagination import Page
from tongban_kit.problems import problem_responses
from tongban_message import access, templates
from tongban_message.api.deps import AUTH_RESPONSES, AdminDep, Cursor, Limit, TemplateReaderDep
from tongban_message.models import TemplateCreate, TemplatePublic, TemplateStatus, TemplateUpdate

router = APIRouter(prefix="/api/v1/messages/templates", tags=["templates"])
TemplateId = Annotated[str, Path(min_length=1, max_length=36)]


@router.post(
    "", status_code=201, summary="Create a template", responses=AUTH_RESPONSES | problem_responses(400, 409, 422)
)
async def create_template(body: TemplateCreate, s: SessionDep, admin: AdminDep) -> TemplatePublic:
    """A new template of plain text; `((name))` in its subject and body are filled when a message is sent."""
    access.require_changeable(body.code)
    access.check_plain_text(body.name, body.subject, body.body)
    return await templates.create(s, body, actor=admin)


@router.get("", summary="List templates", responses=AUTH_RESPONSES | problem_responses(400, 422))
async def list_templates(
    s: SessionDep,
    _: TemplateReaderDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: Annotated[TemplateStatus | None, Query(description="only templates in this state")] = None,
) -> Page[TemplatePublic]:
    """Templates ordered by code."""
    return await templates.search(s, limit=limit, cursor=cursor, status=status)


@router.get("/{template_id}", summary="Get a template", responses=AUTH_RESPONSES | problem_responses(404, 422))
async def get_template(template_id: TemplateId, s: SessionDep, _: TemplateReaderDep) -> TemplatePublic:
    """One template with the placeholders a message must fill."""
    return templates.to_public(await templates.get(s, template_id))


@router.patch(
    "/{template_id}", summary="Change a template", responses=AUTH_RESPONSES | problem_responses(400, 404, 422)
)
async def update_template(template_id: TemplateId, body: TemplateUpdate, s: SessionDep, _: AdminDep) -> TemplatePublic:
    """A changed template is a new version; messages already sent keep the text they had."""
    access.require_changeable((await templates.get(s, template_id)).code)
    access.check_plain_text(body.name, body.subject, body.body)
    return await templates.update(s, template_id, body)


@router.post(
    "/{template_id}/archive", summary="Archive a template", responses=AUTH_RESPONSES | problem_responses(404, 422)
)
async def archive_template(template_id: TemplateId, s: SessionDep, _: AdminDep) -> TemplatePublic:
    """No more messages from this template."""
    access.require_changeable((await templates.get(s, template_id)).code)
    return await templates.set_status(s, template_id, TemplateStatus.archived)


@router.post(
    "/{template_id}/restore",
    summary="Restore an archived template",
    responses=AUTH_RESPONSES | problem_responses(404, 422),
)
async def restore_template(template_id: TemplateId, s: SessionDep, _: AdminDep) -> TemplatePublic:
    """The template can be sent again."""
    access.require_changeable((await templates.get(s, template_id)).code)
    return await templates.set_status(s, template_id, TemplateStatus.active)
