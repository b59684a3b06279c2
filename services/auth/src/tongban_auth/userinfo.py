"""Claims about the signed-in person by scope (OIDC Core §5.4), read from the user service over RPC."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from tongban_kit.rpc import RpcClient
from tongban_user.contract import (
    RPC_CONTACTS,
    RPC_GET_USERS,
    ContactsReply,
    ContactsRequest,
    GetUsersRequest,
    UsersReply,
)

#: mainland mobile numbers as the user service stores them, turned into E.164 for `phone_number`
_CN_MOBILE = re.compile(r"1\d{10}")


def phone_e164(mobile: str) -> str:
    """A mobile number in E.164 form as OIDC recommends (mainland numbers get +86; others stay as stored)."""
    return "+86" + mobile if _CN_MOBILE.fullmatch(mobile) else mobile


async def user_claims(rpc: RpcClient, user_id: str, scopes: Iterable[str], *, timeout: float = 2.0) -> dict[str, Any]:
    """The profile (`name`, `preferred_username`), `email`/`email_verified` and `phone_number` claims the scopes allow.

    Raises `RpcError` when the user service does not answer; an unknown user yields no claims.
    """
    wanted = set(scopes)
    claims: dict[str, Any] = {}
    if "profile" in wanted:
        users = await rpc.call(RPC_GET_USERS, GetUsersRequest(ids=[user_id]), UsersReply, timeout=timeout)
        if users.users:
            user = users.users[0]
            claims["name"] = user.name
            if user.username:
                claims["preferred_username"] = user.username
    if wanted & {"email", "phone"}:
        # unmasked contacts: the person asked for them to be shared with this client (consented scopes)
        reply = await rpc.call(RPC_CONTACTS, ContactsRequest(ids=[user_id]), ContactsReply, timeout=timeout)
        contact = next((c for c in reply.contacts if c.id == user_id), None)
        if contact is not None:
            if "email" in wanted and contact.email:
                claims["email"] = contact.email
                claims["email_verified"] = False  # the user service does not record verification yet
            if "phone" in wanted and contact.mobile:
                claims["phone_number"] = phone_e164(contact.mobile)
    return claims
