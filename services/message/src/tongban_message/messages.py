"""Sending a template to its recipients (their inboxes, or queued as SMS or email for the dispatcher), the
sender's view of a message, and the recipient's inbox."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel
from sqlalchemy import func, insert
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_kit.ids import new_id
from tongban_kit.outbox import emit, utcnow
from tongban_kit.pagination import Page, decode_cursor, encode_cursor, page_of
from tongban_kit.problems import Problem
from tongban_kit.rpc import RpcClient, RpcError, RpcNotFound
from tongban_message import templates
from tongban_message.config import Settings
from tongban_message.contract import (
    DELIVERY_FAILED,
    DELIVERY_READ,
    MESSAGE_SENT,
    DeliveryOutcome,
    DeliveryRead,
    MessageSent,
)
from tongban_message.dispatcher import Dispatcher
from tongban_message.models import (
    Channel,
    Delivery,
    DeliveryPublic,
    DeliveryStatus,
    DeliveryStatusPublic,
    InboxPage,
    Message,
    MessageCreate,
    MessagePublic,
    MessageStatus,
    Recipients,
    Template,
    TemplateStatus,
)
from tongban_message.providers import mask_address
from tongban_org.contract import (
    RPC_GET_UNITS,
    RPC_MEMBERS,
    GetUnitsRequest,
    ListMembersRequest,
    UnitsReply,
)
from tongban_user.contract import RPC_CONTACTS, ContactsReply, ContactsRequest

SOURCE = "/tongban/message"
#: members asked of the org service per call when a message goes to a unit
MEMBER_PAGE = 500


class _Member(BaseModel):
    user_id: str


class _MemberIds(BaseModel):
    """The part of org.rpc.members.list's reply a send needs (parsing whole memberships costs ~0.1 ms each)."""

    items: list[_Member]
    next_cursor: str | None = None


@dataclass(frozen=True)
class Sender:
    """Who sends: the app (client id) and, when a person uses it, that person."""

    client_id: str
    sub: str | None

    def owns(self, message: Message) -> bool:
        """Whether this sender sent `message` (the same app and the same person, or the app's own token again)."""
        return message.sender_client_id == self.client_id and message.sender_sub == self.sub


async def recipients_of(to: Recipients, rpc: RpcClient, *, limit: int, timeout: float) -> list[str]:
    """The distinct account ids a message goes to, in order: the listed ones, then the unit's members."""
    found: dict[str, None] = dict.fromkeys(u.strip() for u in to.user_ids if u.strip())
    if to.unit_id is not None:
        cursor: str | None = None
        while True:
            request = ListMembersRequest(unit_id=to.unit_id, recursive=to.recursive, limit=MEMBER_PAGE, cursor=cursor)
            try:
                page = await rpc.call(RPC_MEMBERS, request, _MemberIds, timeout=timeout)
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


#: accounts whose contacts are asked per RPC call
CONTACTS_PAGE = 1000


async def addresses_of(users: list[str], channel: Channel, rpc: RpcClient, *, timeout: float) -> dict[str, str | None]:
    """Each recipient's mobile number (SMS) or email address (email), from the user service; None where there is
    none to use (unknown or inactive account, or no such contact)."""
    found: dict[str, str | None] = dict.fromkeys(users)
    for start in range(0, len(users), CONTACTS_PAGE):
        chunk = users[start : start + CONTACTS_PAGE]
        try:
            reply = await rpc.call(RPC_CONTACTS, ContactsRequest(ids=chunk), ContactsReply, timeout=timeout)
        except RpcError as exc:
            raise Problem(503, "the user directory did not answer; try again", type="unavailable") from exc
        for c in reply.contacts:
            if c.status == "active":
                found[c.id] = c.mobile if channel == Channel.sms else c.email
    return found


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
    # references are the sender's own: another person of the same app (or the app itself) never collides
    same_sub = col(Message.sender_sub).is_(None) if sender.sub is None else col(Message.sender_sub) == sender.sub
    stmt = select(Message).where(Message.sender_client_id == sender.client_id, same_sub, Message.reference == reference)
    return (await s.exec(stmt)).first()


async def _replayed(s: AsyncSession, existing: Message, template: Template) -> MessagePublic:
    if existing.template_id != template.id:
        raise Problem(409, "this reference was used for another message of this sender", type="reference-conflict")
    return to_public(existing, await _counts(s, existing.id))


async def _counts(s: AsyncSession, message_id: str) -> dict[str, int]:
    counted = await s.exec(
        select(Delivery.status, func.count()).where(Delivery.message_id == message_id).group_by(Delivery.status)
    )
    return {str(status): int(n) for status, n in counted.all()}


@dataclass(frozen=True)
class FanoutPolicy:
    """Which sends are accepted for the fan-out worker rather than made at once, and how many may wait."""

    sync_max: int
    queue_limit: int
    retry_after: int

    def applies(self, to: Recipients) -> bool:
        """A unit's members, or more listed people than a request should write while its caller waits."""
        return to.unit_id is not None or len({u.strip() for u in to.user_ids}) > self.sync_max


def delivery_rows(
    message_id: str,
    users: list[str],
    channel: Channel,
    subject: str,
    text: str,
    addresses: dict[str, str | None],
) -> tuple[list[dict[str, object]], list[DeliveryOutcome]]:
    """One delivery row per recipient (SMS and email queued to their address, or failed without one), and the
    failures to announce."""
    now = utcnow()
    rows = []
    failed: list[DeliveryOutcome] = []
    for user_id in users:
        row: dict[str, object] = {
            "id": new_id(),
            "message_id": message_id,
            "user_id": user_id,
            "channel": channel.value,
            "subject": subject,
            "body": text,
            "status": DeliveryStatus.delivered.value,
            "created_at": now,
            "address": None,
            "attempts": 0,
            "next_attempt_at": None,
            "last_error": None,
        }
        if channel != Channel.inbox:
            address = addresses.get(user_id)
            if address:
                row.update(status=DeliveryStatus.queued.value, address=address, next_attempt_at=now)
            else:
                what = "mobile number" if channel == Channel.sms else "email address"
                error = f"the person has no {what} on record (or the account is not active)"
                row.update(status=DeliveryStatus.failed.value, last_error=error)
                failed.append(
                    DeliveryOutcome(
                        delivery_id=str(row["id"]),
                        message_id=message_id,
                        user_id=user_id,
                        channel=channel.value,
                        attempts=0,
                        error=error,
                    )
                )
        rows.append(row)
    return rows, failed


def sent_event(message: Message, template_code: str) -> MessageSent:
    """The payload of message.message.sent.v1."""
    return MessageSent(
        message_id=message.id,
        template_id=message.template_id,
        template_code=template_code,
        template_version=message.template_version,
        channel=message.channel,
        sender_client_id=message.sender_client_id,
        recipients=message.recipients,
        reference=message.reference,
    )


async def send(
    s: AsyncSession,
    body: MessageCreate,
    sender: Sender,
    rpc: RpcClient,
    *,
    limit: int,
    timeout: float,
    channels: frozenset[Channel] = frozenset({Channel.inbox}),
    fanout: FanoutPolicy | None = None,
) -> tuple[MessagePublic, bool]:
    """Render the template for every recipient and deliver it (inbox) or queue it (SMS, email), with the events,
    in one transaction; or, where `fanout` applies, accept it for the fan-out worker (status queued). `channels`
    are the ones this deployment offers.

    Returns the message and whether it is new (False: the same reference was sent before; nothing is sent again).
    """
    template = await _template(s, body)
    existing = await _existing(s, sender, body.reference)
    if existing is not None:
        return await _replayed(s, existing, template), False
    if template.status != TemplateStatus.active:
        raise Problem(409, f"template {template.code} is archived", type="template-archived")
    channel = Channel(template.channel)
    if channel not in channels:
        raise Problem(
            422,
            f"this deployment sends no {channel} (no provider is configured)",
            type="channel-unavailable",
            channel=channel,
        )
    templates.check_personalisation(template, body.personalisation)
    subject = templates.render_subject(template, body.personalisation)
    text = templates.render(template.body, body.personalisation)
    if fanout is not None and fanout.applies(body.to):
        return await _accept(s, body, sender, template, subject, text, rpc, fanout, timeout=timeout)
    users = await recipients_of(body.to, rpc, limit=limit, timeout=timeout)
    addresses = await addresses_of(users, channel, rpc, timeout=timeout) if channel != Channel.inbox else {}
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
        sent_at=now,
    )
    s.add(message)
    rows, failed = delivery_rows(message.id, users, channel, subject, text, addresses)
    try:
        await s.flush()
        conn = await s.connection()  # one executemany for every recipient, no ORM objects
        await conn.execute(insert(Delivery), rows)
        emit(s, MESSAGE_SENT, sent_event(message, template.code), source=SOURCE, subject=message.id)
        for outcome in failed:
            emit(s, DELIVERY_FAILED, outcome, source=SOURCE, subject=outcome.delivery_id)
        await s.commit()
    except IntegrityError as exc:  # the same reference, sent at the same moment by a retry
        return await _replay_after_race(s, sender, body, template, exc), False
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["status"])] = counts.get(str(row["status"]), 0) + 1
    return to_public(message, counts), True


async def _replay_after_race(
    s: AsyncSession, sender: Sender, body: MessageCreate, template: Template, exc: IntegrityError
) -> MessagePublic:
    await s.rollback()
    again = await _existing(s, sender, body.reference)
    if again is None:
        raise exc
    return await _replayed(s, again, template)


async def _check_unit(unit_id: str, rpc: RpcClient, *, timeout: float) -> None:
    """404 for a unit the directory does not know (one cheap call; its members are resolved by the worker)."""
    try:
        reply = await rpc.call(RPC_GET_UNITS, GetUnitsRequest(ids=[unit_id]), UnitsReply, timeout=timeout)
    except RpcError as exc:
        raise Problem(503, "the organisation directory did not answer; try again", type="unavailable") from exc
    if not reply.units:
        raise Problem(404, f"no unit {unit_id}", type="not-found")


async def _accept(
    s: AsyncSession,
    body: MessageCreate,
    sender: Sender,
    template: Template,
    subject: str,
    text: str,
    rpc: RpcClient,
    fanout: FanoutPolicy,
    *,
    timeout: float,
) -> tuple[MessagePublic, bool]:
    """Queue a large send for the fan-out worker; refused (503, nothing written) while too many wait already."""
    # the queue first: a refusal must stay cheap when the org service is the one under load
    waiting = select(Message.id).where(Message.status == MessageStatus.queued).limit(fanout.queue_limit)
    if int(await s.scalar(select(func.count()).select_from(waiting.subquery())) or 0) >= fanout.queue_limit:
        raise Problem(
            503,
            "too many large sends are waiting to be fanned out; try again later",
            type="overloaded",
            headers={"Retry-After": str(fanout.retry_after)},
        )
    message = Message(
        id=new_id(),
        template_id=template.id,
        template_version=template.version,
        channel=template.channel,
        sender_client_id=sender.client_id,
        sender_sub=sender.sub,
        reference=body.reference,
        personalisation=dict(body.personalisation),
        recipients=0,
        created_at=utcnow(),
        status=MessageStatus.queued.value,
        audience=body.to.model_dump(mode="json"),
        subject=subject,
        body=text,
    )
    if body.to.unit_id is not None:
        await s.rollback()  # no connection held while the org service answers (it may be the one under load)
        await _check_unit(body.to.unit_id, rpc, timeout=timeout)
    s.add(message)
    try:
        await s.commit()
    except IntegrityError as exc:  # the same reference, sent at the same moment by a retry
        return await _replay_after_race(s, sender, body, template, exc), False
    return to_public(message), True


async def send_and_dispatch(
    s: AsyncSession,
    body: MessageCreate,
    sender: Sender,
    rpc: RpcClient,
    settings: Settings,
    dispatcher: Dispatcher,
    wake_fanout: Callable[[], None] | None = None,
) -> tuple[MessagePublic, bool]:
    """`send` with this deployment's limits and channels; wakes the dispatcher when SMS or email were queued, and
    the fan-out worker when a large send was accepted."""
    message, new = await send(
        s,
        body,
        sender,
        rpc,
        limit=settings.max_recipients,
        timeout=settings.rpc_timeout_seconds,
        channels=dispatcher.channels,
        fanout=FanoutPolicy(
            sync_max=settings.sync_max_recipients,
            queue_limit=settings.fanout_queue_limit,
            retry_after=settings.fanout_retry_after_seconds,
        ),
    )
    if new and message.status == MessageStatus.queued and wake_fanout is not None:
        wake_fanout()
    elif new and message.queued:
        dispatcher.wake()
    return message, new


def to_public(m: Message, counts: dict[str, int] | None = None) -> MessagePublic:
    """The sender's view of a message, with its deliveries counted by state (read ones count as delivered too)."""
    c = counts or {}
    read = c.get(DeliveryStatus.read, 0)
    return MessagePublic.model_validate(
        {
            **m.model_dump(warnings=False),
            "read": read,
            "delivered": c.get(DeliveryStatus.delivered, 0) + read,
            "queued": c.get(DeliveryStatus.queued, 0),
            "failed": c.get(DeliveryStatus.failed, 0),
        }
    )


async def get_message(s: AsyncSession, message_id: str, sender: Sender) -> MessagePublic:
    """A message with how many recipients opened it; only its sender (the app and the person using it) sees it."""
    message = await s.get(Message, message_id)
    if message is None or not sender.owns(message):
        raise Problem(404, f"no message {message_id}", type="not-found")
    return to_public(message, await _counts(s, message_id))


async def deliveries(
    s: AsyncSession, message_id: str, sender: Sender, *, limit: int, cursor: str | None
) -> Page[DeliveryStatusPublic]:
    """A message's deliveries, one per recipient, addresses masked; only its sender sees them."""
    await get_message(s, message_id, sender)
    after = decode_cursor(cursor)
    stmt = select(Delivery).where(Delivery.message_id == message_id).order_by(col(Delivery.id)).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(col(Delivery.id) > str(after.get("id", "")))
    rows = [
        DeliveryStatusPublic.model_validate(
            {**d.model_dump(warnings=False), "address": mask_address(d.address) if d.address else None}
        )
        for d in (await s.exec(stmt)).all()
    ]
    return page_of(rows, limit, lambda d: {"id": d.id})


def _delivery(d: Delivery) -> DeliveryPublic:
    return DeliveryPublic.model_validate(d.model_dump(warnings=False))


async def inbox(s: AsyncSession, user_id: str, *, limit: int, cursor: str | None, unread: bool) -> InboxPage:
    """A person's inbox, newest first (ids are time-ordered)."""
    after = decode_cursor(cursor)
    stmt = (
        select(Delivery)
        .where(Delivery.user_id == user_id, Delivery.channel == Channel.inbox)
        .order_by(col(Delivery.id).desc())
        .limit(limit + 1)
    )
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
        .where(
            Delivery.user_id == user_id, Delivery.channel == Channel.inbox, Delivery.status == DeliveryStatus.delivered
        )
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
            col(Delivery.channel) == Channel.inbox,
            col(Delivery.status) == DeliveryStatus.delivered,
        )
        .values(status=DeliveryStatus.read.value, read_at=now)
    )
    mine = (Delivery.id == delivery_id, Delivery.user_id == user_id, Delivery.channel == Channel.inbox)
    item = (await s.exec(select(Delivery).where(*mine))).first()
    if item is None:
        await s.rollback()
        raise Problem(404, f"no message {delivery_id} in this inbox", type="not-found")
    if done.rowcount == 1:
        data = DeliveryRead(delivery_id=item.id, message_id=item.message_id, user_id=user_id, read_at=now)
        emit(s, DELIVERY_READ, data, source=SOURCE, subject=item.id)
    await s.commit()
    return _delivery(item)
