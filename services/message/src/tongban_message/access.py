"""Who may do what in the message service, checked on every request (a scope is not a permission).

Template writes: whole-tree administrators only, asked of the org service (not read from the token); system
templates (`auth.otp.*`) are never changed through the API. Sends: a person's token reaches only the subtrees
the org service says they may address (administered subtrees and send grants); an app's own token reaches what
its registration in the auth service allows (units, templates, people by account id). Nothing is cached, so a
withdrawn grant stops working at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth.contract import RPC_CLIENT_ALLOWANCES, AllowancesReply, AllowancesRequest
from tongban_kit.bearer import Principal
from tongban_kit.problems import Problem
from tongban_kit.rpc import RpcClient, RpcError, RpcSpec
from tongban_message import templates
from tongban_message.models import MessageCreate, Template
from tongban_message.seed import SYSTEM_TEMPLATES
from tongban_org.contract import (
    RPC_ADDRESS_CHECK,
    RPC_ENTITLEMENTS,
    AddressCheckReply,
    AddressCheckRequest,
    EntitlementsReply,
    EntitlementsRequest,
)

#: codes other services rely on (one-time codes); the prefix is reserved for them
SYSTEM_CODES = frozenset(code for code, *_ in SYSTEM_TEMPLATES)
SYSTEM_PREFIX = "auth."
#: markup and script links have no place in plain-text templates (inbox, SMS, email are shown as text)
#: (a tag starts where `<` meets a letter, `/`, `!` or `?`, as HTML parsers read it; "a < b" stays text)
MARKUP = re.compile(r"<(?:/?[A-Za-z]|[!?])|(?:java|vb)script\s*:|data\s*:\s*text/html", re.IGNORECASE)
ALL = "*"
R = TypeVar("R", bound=BaseModel)


def is_system(code: str) -> bool:
    """Whether a template code is (or would be) a system template."""
    return code in SYSTEM_CODES or code.startswith(SYSTEM_PREFIX)


def is_person(token: Principal) -> bool:
    """A token issued for a signed-in person (a client's own token has `sub` = its client id)."""
    return token.sub != token.client_id


def refuse(detail: str, *, missing: str) -> Problem:
    """403 naming the entitlement that is missing."""
    return Problem(403, detail, type="not-entitled", missing=missing)


async def _ask(rpc: RpcClient, spec: RpcSpec, request: BaseModel, reply: type[R], timeout: float, what: str) -> R:
    try:
        return await rpc.call(spec, request, reply, timeout=timeout)
    except RpcError as exc:
        raise Problem(
            503, f"the {what} did not answer; try again", type="dependency-unavailable", headers={"Retry-After": "2"}
        ) from exc


async def entitlements(rpc: RpcClient, principal: str, timeout: float) -> EntitlementsReply:
    """A person's entitlements from the org service (503 when it is silent: nothing is granted blindly)."""
    request = EntitlementsRequest(principal=principal)
    return await _ask(rpc, RPC_ENTITLEMENTS, request, EntitlementsReply, timeout, "org service")


async def require_template_admin(token: Principal, rpc: RpcClient, timeout: float) -> str:
    """The person writing templates, if the org service says they administer the whole tree; else 403."""
    if not is_person(token):
        raise refuse("templates are managed by a person who administers the whole tree", missing="person")
    ent = await entitlements(rpc, token.sub, timeout)
    if not ent.admin_all:
        raise refuse("only administrators of the whole tree manage templates", missing="admin:whole-tree")
    return token.sub


def check_plain_text(*texts: str | None) -> None:
    """422 for markup (HTML tags, script links) in a template's text."""
    if any(t is not None and MARKUP.search(t) for t in texts):
        raise Problem(
            422,
            "templates are plain text: markup (HTML tags) and script links are not allowed",
            type="markup-not-allowed",
        )


def require_changeable(code: str) -> None:
    """403 for system templates: other services rely on their text and state."""
    if is_system(code):
        raise refuse(f"{code} is a system template; it cannot be created, changed or archived", missing="system")


@dataclass(frozen=True)
class Reach:
    """Where a sender may send: roots of subtrees (`*`: all), template codes (None: any non-system), people."""

    roots: list[str]
    templates: list[str] | None
    to_accounts: bool
    #: people named by account id must be members of `roots` (a person's token) or anyone (an app's)
    accounts_in_roots: bool


async def reach_of(token: Principal, rpc: RpcClient, timeout: float) -> Reach:
    """What the caller may address: a person by their sending rights, an app by its registration."""
    if is_person(token):
        ent = await entitlements(rpc, token.sub, timeout)
        roots = [ALL] if ent.send_all else list(ent.send_units)
        if not roots:
            raise refuse("you have no right to send messages (no send grant, no administered unit)", missing="send")
        return Reach(roots=roots, templates=None, to_accounts=True, accounts_in_roots=True)
    reply = await _ask(
        rpc,
        RPC_CLIENT_ALLOWANCES,
        AllowancesRequest(client_id=token.client_id),
        AllowancesReply,
        timeout,
        "auth service",
    )
    if not reply.found or not reply.active or "message:send" not in reply.scopes:
        raise refuse("this app is not registered to send messages", missing="client:message:send")
    templates_ = None if ALL in reply.message_templates else list(reply.message_templates)
    return Reach(
        roots=list(reply.message_units),
        templates=templates_,
        to_accounts=reply.message_to_accounts,
        accounts_in_roots=False,
    )


async def _template_of(s: AsyncSession, body: MessageCreate) -> Template | None:
    if body.template_id is not None:
        return await templates.get(s, body.template_id)
    if body.template_code is not None:
        return await templates.by_code(s, body.template_code)
    return None  # the send itself answers 400


async def require_send(s: AsyncSession, body: MessageCreate, token: Principal, rpc: RpcClient, timeout: float) -> None:
    """403 unless the caller may send this template to these recipients."""
    reach = await reach_of(token, rpc, timeout)
    template = await _template_of(s, body)
    if template is not None:
        if is_system(template.code):
            raise refuse(f"{template.code} is sent only by the services that own it", missing="system")
        if reach.templates is not None and template.code not in reach.templates:
            raise refuse(f"this app may not send template {template.code}", missing=f"template:{template.code}")
    to = body.to
    users = list(dict.fromkeys(u.strip() for u in to.user_ids if u.strip()))
    if users and not reach.to_accounts:
        raise refuse("this app may not send to people by account id", missing="accounts")
    check_users = users if reach.accounts_in_roots else []
    if to.unit_id is None and not check_users:
        return
    if ALL in reach.roots:
        return
    request = AddressCheckRequest(roots=reach.roots, unit_id=to.unit_id, user_ids=check_users)
    reply = await _ask(rpc, RPC_ADDRESS_CHECK, request, AddressCheckReply, timeout, "org service")
    if reply.unit_inside is False:
        raise refuse(f"you may not address unit {to.unit_id}", missing=f"unit:{to.unit_id}")
    if reply.users_outside:
        raise Problem(
            403,
            "you may not address people outside the units you may send to",
            type="not-entitled",
            missing="accounts",
            user_ids=reply.users_outside[:20],
        )
