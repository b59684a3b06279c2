"""Logout: checking `id_token_hint` (RP-initiated logout 1.0) and telling clients over the back channel
(Back-Channel Logout 1.0) when a session ends.

Back-channel notices are sent by a durable consumer of this service's own `auth.session.ended.v1` events, so a
notice survives a restart and is retried (with backoff) while a client is unreachable; a client may therefore
receive a notice more than once, which the specification allows for.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth import keys
from tongban_auth.config import Settings
from tongban_auth.contract import SessionEnded
from tongban_auth.models import Client, Grant
from tongban_auth.tokens import Signer
from tongban_kit.events import CloudEvent
from tongban_kit.outbound import OutboundBlocked, OutboundClient

log = logging.getLogger(__name__)
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_SECONDS = 120


async def read_id_token_hint(s: AsyncSession, token: str, settings: Settings) -> dict[str, Any] | None:
    """The claims of an ID token this server signed (it may have expired), or None when it is not one."""
    if len(token) > 8192 or token.count(".") != 2:
        return None
    published = await keys.published(s)
    try:
        key_set = KeySet.import_key_set({"keys": [dict(r.public_jwk) for r in published]})
        decoded = jwt.decode(token, key_set, algorithms=list(settings.signing_algs))
    except (JoseError, ValueError, TypeError):
        return None
    if decoded.header.get("typ", "JWT") != "JWT":  # an access or logout token is no ID token
        return None
    claims = dict(decoded.claims)
    if claims.get("iss") != settings.issuer or not isinstance(claims.get("sub"), str):
        return None
    aud = claims.get("aud")
    if isinstance(aud, list):
        claims["aud"] = aud[0] if len(aud) == 1 else None
    if not isinstance(claims.get("aud"), str):
        return None
    return claims


async def logout_token(signer: Signer, settings: Settings, *, client_id: str, sub: str, sid: str) -> str:
    """A signed logout token (typ `logout+jwt`) for one client."""
    now = int(time.time())
    claims = {
        "iss": settings.issuer,
        "aud": client_id,
        "sub": sub,
        "sid": sid,
        "iat": now,
        "exp": now + LOGOUT_TOKEN_SECONDS,
        "jti": secrets.token_urlsafe(16),
        "events": {BACKCHANNEL_EVENT: {}},
    }
    return await signer.sign(claims, typ="logout+jwt")


async def notify_clients(
    s: AsyncSession, signer: Signer, settings: Settings, ended: SessionEnded, *, http: OutboundClient
) -> list[str]:
    """POST a logout token to every client with a back-channel URI that had a grant in the session.

    Calls go through the guarded client: a URI naming an internal host is never called (logged, not retried).
    Returns the client ids notified; raises when any notice failed, so the event is delivered again later.
    """
    if not ended.grant_ids:
        return []
    client_ids = (await s.exec(select(Grant.client_id).where(col(Grant.id).in_(ended.grant_ids)))).all()
    clients = (
        await s.exec(
            select(Client).where(
                col(Client.client_id).in_(set(client_ids)), col(Client.backchannel_logout_uri).is_not(None)
            )
        )
    ).all()

    async def send(client: Client) -> str | None:
        assert client.backchannel_logout_uri is not None
        token = await logout_token(signer, settings, client_id=client.client_id, sub=ended.user_id, sid=ended.sid)
        try:
            resp = await http.request("POST", client.backchannel_logout_uri, data={"logout_token": token})
        except OutboundBlocked as exc:  # an internal host (registered before the guard): never, so no retry either
            log.warning("back-channel logout not sent", extra={"client_id": client.client_id, "reason": str(exc)})
            return None
        if resp.status not in (200, 204):
            raise RuntimeError(f"{client.client_id} answered {resp.status}")
        return client.client_id

    results = await asyncio.gather(*(send(c) for c in clients), return_exceptions=True)
    failed = [f"{c.client_id}: {r}" for c, r in zip(clients, results, strict=True) if isinstance(r, BaseException)]
    if failed:
        log.warning("back-channel logout failed", extra={"sid": ended.sid, "failed": failed})
        raise RuntimeError("back-channel logout failed for " + "; ".join(failed))
    return [r for r in results if isinstance(r, str)]


def consumer_handler(signer: Signer, settings: Settings) -> Any:
    """The handler of the back-channel logout consumer.

    Each event gets its own guarded HTTP client, closed when the event is handled: sessions end rarely, and
    nothing is left open when the service stops.
    """

    async def handle(s: AsyncSession, event: CloudEvent) -> None:
        ended = SessionEnded.model_validate(event.data)
        http = OutboundClient(settings.outbound_policy)
        try:
            await notify_clients(s, signer, settings, ended, http=http)
        finally:
            await http.close()

    return handle
