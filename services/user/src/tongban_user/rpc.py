"""RPC handlers for other services (NATS Services API)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlmodel import col, select

from tongban_kit.app import Runtime
from tongban_kit.rpc import RpcBadRequest, RpcNotFound
from tongban_user import identity
from tongban_user.accounts import login_condition, operators_of, to_public
from tongban_user.contract import (
    Contact,
    ContactsReply,
    ContactsRequest,
    GetUsersRequest,
    LookupReply,
    LookupRequest,
    UsersReply,
)
from tongban_user.crypto import PiiCipher
from tongban_user.models import Kind, Status, UserAccount


def handlers(rt: Runtime, cipher: PiiCipher) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    """Handlers by endpoint name, bound to the runtime's database."""
    db = rt.db

    async def get_users(req: GetUsersRequest) -> UsersReply:
        async with db.read_session() as s:
            rows = (await s.exec(select(UserAccount).where(col(UserAccount.id).in_(req.ids)))).all()
            ops = await operators_of(s, [u.id for u in rows if u.kind == Kind.legal_person])
        by_id = {u.id: u for u in rows}
        return UsersReply(users=[to_public(by_id[i], ops.get(i, [])) for i in dict.fromkeys(req.ids) if i in by_id])

    async def lookup(req: LookupRequest) -> LookupReply:
        stmt = select(UserAccount).where(col(UserAccount.status) != Status.deleted)
        if req.login is not None:
            stmt = stmt.where(login_condition(req.login))
        elif req.id_number is not None:
            try:
                number = identity.normalise_id_number(req.id_number)
            except ValueError as exc:
                raise RpcBadRequest(f"id_number: {exc}") from exc
            stmt = stmt.where(col(UserAccount.id_number_hash) == cipher.lookup_hash(number))
        else:
            stmt = stmt.where(col(UserAccount.credit_code) == str(req.credit_code).upper())
        if req.kind is not None:
            stmt = stmt.where(col(UserAccount.kind) == req.kind)
        async with db.read_session() as s:
            rows = (await s.exec(stmt.limit(2))).all()
            if not rows:
                raise RpcNotFound("no account matches")
            if len(rows) > 1:
                raise RpcBadRequest("more than one account matches; give the kind")
            ops = await operators_of(s, [rows[0].id]) if rows[0].kind == Kind.legal_person else {}
        return LookupReply(user=to_public(rows[0], ops.get(rows[0].id, [])))

    async def contacts(req: ContactsRequest) -> ContactsReply:
        async with db.read_session() as s:
            rows = (await s.exec(select(UserAccount).where(col(UserAccount.id).in_(req.ids)))).all()
        return ContactsReply(
            contacts=[Contact(id=u.id, name=u.name, mobile=u.mobile, email=u.email, status=u.status) for u in rows]
        )

    return {"users-get": get_users, "users-lookup": lookup, "contacts-list": contacts}
