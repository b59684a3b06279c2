"""Building and signing tokens: RFC 9068 access tokens, OIDC ID tokens, opaque refresh tokens, the issued event."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth.config import Settings
from tongban_auth.contract import TOKEN_ISSUED, TokenIssued
from tongban_auth.entitlements import Entitlements, narrow
from tongban_auth.models import Client, Grant
from tongban_auth.tokens import Signer
from tongban_auth.userinfo import user_claims
from tongban_kit.db import Database
from tongban_kit.events import CloudEvent, make_event
from tongban_kit.ids import new_id
from tongban_kit.outbox import add_event, add_events
from tongban_kit.rpc import RpcClient, RpcError
from tongban_org.contract import (
    RPC_ADMIN_SCOPES,
    RPC_ENTITLEMENTS,
    AdminScopesReply,
    AdminScopesRequest,
    EntitlementsReply,
    EntitlementsRequest,
)

log = logging.getLogger(__name__)

SOURCE = "/tongban/auth"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
#: the longest access-token lifetime a client may register (schemas.ClientFields.access_token_lifetime)
MAX_ACCESS_TOKEN_SECONDS = 600
#: `admin_units` value for platform administrators, who administer every unit
ALL_UNITS = "*"
#: after a service failed to answer, tokens are issued without asking it again for this long
RPC_BACKOFF_SECONDS = 5.0


def token_digest(value: str) -> str:
    """Hex SHA-256 of an opaque token or code: the only form in which they are stored."""
    return hashlib.sha256(value.encode()).hexdigest()


def new_opaque_token() -> tuple[str, str]:
    """A fresh 256-bit opaque token (base64url) and its digest."""
    value = secrets.token_urlsafe(32)
    return value, token_digest(value)


def at_hash(access_token: str) -> str:
    """OIDC `at_hash`: the left half of the SHA-256 of the token (ES256 and RS256 both hash with SHA-256)."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def epoch(at: datetime) -> int:
    """Seconds since the epoch of a timestamp."""
    return int(at.timestamp())


@dataclass
class AccessToken:
    """A signed access token and the claims it carries."""

    token: str
    claims: dict[str, Any]

    @property
    def jti(self) -> str:
        """Its id."""
        return str(self.claims["jti"])

    @property
    def exp(self) -> int:
        """Its expiry (epoch seconds)."""
        return int(self.claims["exp"])

    @property
    def scope(self) -> str:
        """Its space-separated scopes."""
        return str(self.claims["scope"])


@dataclass
class TokenResponse:
    """What the token endpoint answers (RFC 6749 §5.1, OIDC Core §3.1.3.3, RFC 8693 §2.2.1)."""

    access: AccessToken
    refresh_token: str | None = None
    id_token: str | None = None
    issued_token_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        out: dict[str, Any] = {
            "access_token": self.access.token,
            "token_type": "Bearer",
            "expires_in": max(0, self.access.exp - int(time.time())),
            "scope": self.access.scope,
        }
        if self.issued_token_type:
            out["issued_token_type"] = self.issued_token_type
        if self.refresh_token:
            out["refresh_token"] = self.refresh_token
        if self.id_token:
            out["id_token"] = self.id_token
        out.update(self.extra)
        return out


class TokenIssuer:
    """Signs tokens with the service's active key; reads user claims and admin units over RPC."""

    def __init__(
        self, signer: Signer, settings: Settings, rpc: Callable[[], RpcClient | None], *, rpc_timeout: float = 1.0
    ) -> None:
        """Bind to the signer and settings; `rpc` returns the running service's RPC client (None before start)."""
        self.signer, self.settings, self._rpc, self.rpc_timeout = signer, settings, rpc, rpc_timeout
        self._silent_until: dict[str, float] = {}

    def _rpc_for(self, service: str) -> RpcClient | None:
        """The RPC client, unless `service` failed to answer moments ago (so an outage does not slow every token)."""
        if time.monotonic() < self._silent_until.get(service, 0.0):
            return None
        return self._rpc()

    def forget_failures(self) -> None:
        """Ask every service again from now on (e.g. once it is known to be back)."""
        self._silent_until.clear()

    def _failed(self, service: str) -> None:
        self._silent_until[service] = time.monotonic() + RPC_BACKOFF_SECONDS

    async def access_token(
        self,
        client: Client,
        *,
        sub: str,
        scopes: Iterable[str],
        grant: Grant | None = None,
        session: dict[str, Any] | None = None,
        act: dict[str, Any] | None = None,
        not_after: int | None = None,
        entitled: Entitlements | None = None,
    ) -> AccessToken:
        """Sign an RFC 9068 access token for `sub`; user-session claims come from `grant` (or `session`).

        `entitled` (a person's entitlements, already applied to `scopes`) gives the `admin_units` claim without
        asking the org service again.
        """
        scope_list = list(dict.fromkeys(scopes))
        now = int(time.time())
        exp = now + min(client.access_token_lifetime, MAX_ACCESS_TOKEN_SECONDS)
        if not_after is not None:
            exp = min(exp, not_after)
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "sub": sub,
            "aud": self.settings.api_audience,
            "client_id": client.client_id,
            "scope": " ".join(scope_list),
            "jti": new_id(),
            "iat": now,
            "exp": exp,
        }
        if grant is not None:
            claims.update(auth_time=epoch(grant.auth_time), acr=grant.acr, amr=list(grant.amr), gid=grant.id)
            if grant.session_id:
                claims["sid"] = grant.session_id
        if session:
            claims.update({k: v for k, v in session.items() if v is not None})
        if act is not None:
            claims["act"] = act
        if "admin" in scope_list and entitled is not None:
            claims["admin_units"] = [ALL_UNITS] if entitled.admin_all else list(entitled.admin_units)
        elif "admin" in scope_list:
            units = await self.admin_units(sub)
            if units is not None:
                claims["admin_units"] = units
        return AccessToken(await self.signer.sign(claims, typ="at+jwt"), claims)

    async def entitlements(self, principal: str) -> Entitlements | None:
        """A person's entitlements from the org service; None when it is silent (then none are granted)."""
        rpc = self._rpc_for("org")
        if rpc is None:
            log.warning("entitlements unknown: the org service is not answering; granting none")
            return None
        try:
            reply = await rpc.call(
                RPC_ENTITLEMENTS, EntitlementsRequest(principal=principal), EntitlementsReply, timeout=self.rpc_timeout
            )
        except RpcError as exc:
            self._failed("org")
            log.warning("entitlements unknown: the org service did not answer (%s); granting none", exc)
            return None
        return Entitlements.of(reply)

    async def person_scopes(self, principal: str, scopes: Iterable[str]) -> tuple[list[str], Entitlements | None]:
        """The scopes of `scopes` a person is entitled to, and their entitlements (asked only when it matters)."""
        wanted = list(scopes)
        if narrow(wanted, None) == wanted:  # nothing entitlement-bearing asked: no need to ask the org service
            return wanted, None
        entitled = await self.entitlements(principal)
        return narrow(wanted, entitled), entitled

    async def admin_units(self, principal: str) -> list[str] | None:
        """Roots of the org subtrees `principal` administers (`["*"]`: all), or None when the org service is silent."""
        rpc = self._rpc_for("org")
        if rpc is None:
            log.warning("issuing without admin_units: the org service is not answering")
            return None
        try:
            reply = await rpc.call(
                RPC_ADMIN_SCOPES, AdminScopesRequest(principal=principal), AdminScopesReply, timeout=self.rpc_timeout
            )
        except RpcError as exc:
            self._failed("org")
            log.warning("issuing without admin_units: the org service did not answer (%s)", exc)
            return None
        return [ALL_UNITS] if reply.all else list(reply.unit_ids)

    async def id_token(
        self, client: Client, grant: Grant, *, scopes: Iterable[str], access_token: str, nonce: str | None = None
    ) -> str:
        """Sign an ID token for the grant's user with the claims its scopes allow (OIDC Core §2, §5.4)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "sub": grant.user_id,
            "aud": client.client_id,
            "azp": client.client_id,
            "iat": now,
            "exp": now + client.id_token_lifetime,
            "auth_time": epoch(grant.auth_time),
            "acr": grant.acr,
            "amr": list(grant.amr),
            "at_hash": at_hash(access_token),
        }
        if grant.session_id:
            claims["sid"] = grant.session_id
        if nonce:
            claims["nonce"] = nonce
        wanted = set(scopes) & {"profile", "email", "phone"}
        rpc = self._rpc_for("user") if wanted else None
        if rpc is not None:
            try:
                claims.update(await user_claims(rpc, grant.user_id, wanted, timeout=self.rpc_timeout))
            except RpcError as exc:  # the claims stay available at the userinfo endpoint
                self._failed("user")
                log.warning("ID token without profile claims: the user service did not answer (%s)", exc)
        return await self.signer.sign(claims, typ="JWT")


def record_issued(
    s: AsyncSession,
    access: AccessToken,
    *,
    grant_type: str,
    refresh_token_issued: bool = False,
    id_token_issued: bool = False,
) -> None:
    """Write auth.token.issued.v1 in the caller's transaction (never a token value)."""
    add_event(
        s,
        issued_event(
            access, grant_type=grant_type, refresh_token_issued=refresh_token_issued, id_token_issued=id_token_issued
        ),
    )


def issued_event(
    access: AccessToken, *, grant_type: str, refresh_token_issued: bool = False, id_token_issued: bool = False
) -> CloudEvent:
    """The auth.token.issued.v1 event of an access token (never a token value)."""
    claims = access.claims
    act = claims.get("act")
    data = TokenIssued(
        jti=access.jti,
        client_id=str(claims["client_id"]),
        sub=str(claims["sub"]),
        grant_type=grant_type,
        scope=access.scope,
        grant_id=claims.get("gid"),
        refresh_token_issued=refresh_token_issued,
        id_token_issued=id_token_issued,
        actor=act.get("sub") if isinstance(act, dict) else None,
        expires_at=datetime.fromtimestamp(access.exp, UTC),
    )
    return make_event(TOKEN_ISSUED, data, source=SOURCE, subject=str(claims["sub"]))


class IssuedEventWriter:
    """Group commit of auth.token.issued.v1 rows for grants that write nothing else (client credentials, exchange).

    `record` queues the event and returns once the transaction holding its row has committed, so a token is never
    answered before its event is durable. One writer task per process commits whatever queued up while the
    previous commit was in flight, in one transaction with one bulk insert: under load many requests share a
    commit; a lone request is committed at once, alone, without waiting for company.
    """

    def __init__(self, db: Database, *, max_batch: int = 500) -> None:
        """Bind to the service database; at most `max_batch` rows go into one transaction."""
        self.db, self.max_batch = db, max_batch
        self._queue: list[tuple[CloudEvent, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def record(self, event: CloudEvent) -> None:
        """Write `event` to the outbox; returns after its transaction committed, raises if it failed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((event, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="auth-issued-events")
        await asyncio.shield(done)

    async def _run(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                async with self.db.session() as s:
                    await add_events(s, [event for event, _ in batch])
                    await s.commit()
            except BaseException as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc if isinstance(exc, Exception) else RuntimeError("writer stopped"))
                if not isinstance(exc, Exception):
                    raise
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
