"""Sending a template to its recipients' inboxes, the sender's view of a message, and the recipient's inbox."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, insert
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.ids import new_id
from tongban_kit.outbox import emit, utcnow
from tongban_kit.pagination import decode_cursor, encode_cursor
from tongban_kit.problems import Problem
from tongban_kit.rpc import RpcClient, RpcError, RpcNotFound
from tongban_message import templates
from tongban_message.contract import DELIVERY_READ, MESSAGE_SENT, DeliveryRead, MessageSent
from tongban_message.models import (
    Delivery,
    DeliveryPublic,
    DeliveryStatus,
    InboxPage,
    Message,
    MessageCreate,
    MessagePublic,
    Recipients,
    Template,
    TemplateStatus,
)
from tongban_org.contract import RPC_MEMBERS, ListMembersRequest, MembersReply

SOURCE = "/tongban/message"
#: members asked of the org service per call when a message goes to a unit
MEMBER_PAGE = 500


@dataclass(frozen=True)
class Sender:
    """Who sends: the app (client id) and, when a person uses it, that person."""

    client_id: str
    sub: str | None
    admin: bool = False


async def recipients_of(to: Recipients, rpc: RpcClient, *, limit: int, timeout: float) -> list[str]:
    """The distinct account ids a message goes to, in order: the listed ones, then the unit's members."""
    found: dict[str, None] = dict.fromkeys(u.strip() for u in to.user_ids if u.strip())
    if to.unit_id is not None:
        cursor: str | None = None
        while True:
            request = ListMembersRequest(unit_id=to.unit_id, recursive=to.recursive, limit=MEMBER_PAGE, cursor=cursor)
            try:
                page = await rpc.call(RPC_MEMBERS, request, MembersReply, timeout=timeout)
            except RpcNotFound:
                raise Problem(404, f"no unit {to.unit_id}", type="not-found") from None
            except RpcError as exc:
                raise Problem(503, "the organisation directory did not answer; try again", type="unavailable") from exc
            for membership in page.items:
                found.setdefault(membership.user_id, None)
            if len(found) > limit or page.next_cursor is None:
                break
            cursor = page.next_cursor
    if not found:
        raise Problem(400, "the message has no recipients", type="no-recipients")
    if len(found) > limit:
        raise Problem(422, f"the message would reach more than {limit} recipients", type="too-many-recipients")
    return list(found)


async def _template(s: AsyncSession, body: MessageCreate) -> Template:
    if (body.template_id is None) == (body.template_code is None):
        raise Problem(400, "name the template by template_id or template_code (one of them)")
    if body.template_id is not None:
        return await templates.get(s, body.template_id)
    assert body.template_code is not None
    return await templates.by_code(s, body.template_code)


async def _existing(s: AsyncSession, sender: Sender, reference: str | None) -> Message | None:
    if reference is None:
        return None
    stmt = select(Message).where(Message.sender_client_id == sender.client_id, Message.reference == reference)
    return (await s.exec(stmt)).first()


def _replayed(existing: Message, template: Template) -> MessagePublic:
    if existing.template_id != template.id:
        raise Problem(409, "this reference was used for another message of this sender", type="reference-conflict")
    return to_public(existing)


async def send(
    s: AsyncSession, body: MessageCreate, sender: Sender, rpc: RpcClient, *, limit: int, timeout: float
) -> tuple[MessagePublic, bool]:
    """Render the template for every recipient and deliver to their inboxes, with the event, in one transaction.

    Returns the message and whether it is new (False: the same reference was sent before; nothing is sent again).
    """
    template = await _template(s, body)
    existing = await _existing(s, sender, body.reference)
    if existing is not None:
        return _replayed(existing, template), False
    if template.status != TemplateStatus.active:
        raise Problem(409, f"template {template.code} is archived", type="template-archived")
    templates.check_personalisation(template, body.personalisation)
    users = await recipients_of(body.to, rpc, limit=limit, timeout=timeout)
    subject = templates.render(template.subject, body.personalisation)
    text = templates.render(template.body, body.personalisation)
    now = utcnow()
    message = Message(
        id=new_id(),
        template_id=template.id,
        template_version=template.version,
        channel=template.channel,
        sender_client_id=sender.client_id,
        sender_sub=sender.sub,
        reference=body.reference,
        personalisation=dict(body.personalisation),
        recipients=len(users),
        created_at=now,
    )
    s.add(message)
    rows = [
        {
            "id": new_id(),
            "message_id": message.id,
            "user_id": user_id,
            "channel": template.channel,
            "subject": subject,
            "body": text,
            "status": DeliveryStatus.delivered.value,
            "created_at": now,
        }
        for user_id in users
    ]
    event = MessageSent(
        message_id=message.id,
        template_id=template.id,
        template_code=template.code,
        template_version=template.version,
        channel=template.channel,
        sender_client_id=sender.client_id,
        recipients=len(users),
        reference=body.reference,
    )
    try:
        await s.flush()
        conn = await s.connection()  # one executemany for every recipient, no ORM objects
        await conn.execute(insert(Delivery), rows)
        emit(s, MESSAGE_SENT, event, source=SOURCE, subject=message.id)
        await s.commit()
    except IntegrityError:  # the same reference, sent at the same moment by a retry
        await s.rollback()
        again = await _existing(s, sender, body.reference)
        if again is None:
            raise
        return _replayed(again, template), False
    return to_public(message), True


def to_public(m: Message, read: int = 0) -> MessagePublic:
    """The sender's view of a message."""
    return MessagePublic.model_validate({**m.model_dump(warnings=False), "read": read})


async def get_message(s: AsyncSession, message_id: str, sender: Sender) -> MessagePublic:
    """A message with how many recipients opened it; only its sending app (or an administrator) sees it."""
    message = await s.get(Message, message_id)
    if message is None or not (sender.admin or message.sender_client_id == sender.client_id):
        raise Problem(404, f"no message {message_id}", type="not-found")
    read = await s.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.message_id == message_id, Delivery.status == DeliveryStatus.read)
    )
    return to_public(message, int(read or 0))


def _delivery(d: Delivery) -> DeliveryPublic:
    return DeliveryPublic.model_validate(d.model_dump(warnings=False))


async def inbox(s: AsyncSession, user_id: str, *, limit: int, cursor: str | None, unread: bool) -> InboxPage:
    """A person's inbox, newest first (ids are time-ordered)."""
    after = decode_cursor(cursor)
    stmt = select(Delivery).where(Delivery.user_id == user_id).order_by(col(Delivery.id).desc()).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(col(Delivery.id) < str(after.get("id", "")))
    if unread:
        stmt = stmt.where(Delivery.status == DeliveryStatus.delivered)
    rows = list((await s.exec(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    count = await s.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.user_id == user_id, Delivery.status == DeliveryStatus.delivered)
    )
    return InboxPage(
        items=[_delivery(d) for d in rows],
        next_cursor=encode_cursor({"id": rows[-1].id}) if more and rows else None,
        unread=int(count or 0),
    )


async def read(s: AsyncSession, user_id: str, delivery_id: str) -> DeliveryPublic:
    """Open one of the person's inbox items: marked read (the event only the first time)."""
    now = utcnow()
    done = await s.exec(
        sql_update(Delivery)
        .where(
            col(Delivery.id) == delivery_id,
            col(Delivery.user_id) == user_id,
            col(Delivery.status) == DeliveryStatus.delivered,
        )
        .values(status=DeliveryStatus.read.value, read_at=now)
    )
    item = (await s.exec(select(Delivery).where(Delivery.id == delivery_id, Delivery.user_id == user_id))).first()
    if item is None:
        await s.rollback()
        raise Problem(404, f"no message {delivery_id} in this inbox", type="not-found")
    if done.rowcount == 1:
        data = DeliveryRead(delivery_id=item.id, message_id=item.message_id, user_id=user_id, read_at=now)
        emit(s, DELIVERY_READ, data, source=SOURCE, subject=item.id)
    await s.commit()
    return _delivery(item)
