"""The grants of the token endpoint: authorization_code (with PKCE), refresh_token (rotation with reuse
detection), client_credentials and token exchange (RFC 8693); and the authorization codes the authorize flow makes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth.client_auth import AuthenticatedClient, OAuthError
from tongban_auth.config import Settings
from tongban_auth.issuance import (
    ACCESS_TOKEN_TYPE,
    IssuedEventWriter,
    TokenIssuer,
    TokenResponse,
    issued_event,
    new_opaque_token,
    record_issued,
    token_digest,
)
from tongban_auth.models import AuthCode, Client, ClientType, Grant, LoginSession, RefreshToken
from tongban_auth.revocation import revoke_grants
from tongban_auth.schemas import API_SCOPES, GrantType
from tongban_auth.token_state import TokenChecker
from tongban_kit.db import Database
from tongban_kit.outbox import utcnow
from tongban_kit.tokens import SUBJECT_JTIS

#: code_verifier: 43-128 characters of the unreserved set (RFC 7636 §4.1)
VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
#: code_challenge for S256: the base64url SHA-256 of a verifier, 43 characters
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
#: scope-token (RFC 6749 §3.3)
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
MAX_CODE_SECONDS = 60
#: how many exchanges deep a token may come from (each adds a jti to its SUBJECT_JTIS claim)
MAX_EXCHANGE_DEPTH = 5
API_SCOPE_SET = frozenset(API_SCOPES)


def invalid_grant(description: str) -> OAuthError:
    """400 invalid_grant."""
    return OAuthError("invalid_grant", description)


def parse_scope(value: str | None) -> list[str] | None:
    """The scopes of a `scope` parameter in order without repeats; None when absent; invalid_scope when malformed."""
    if value is None:
        return None
    tokens = value.split(" ")
    if not value or any(not SCOPE_TOKEN.fullmatch(t) for t in tokens):
        raise OAuthError("invalid_scope", "scope must be space-separated scope tokens")
    return list(dict.fromkeys(tokens))


def s256(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636 §4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


async def create_authorization_code(
    s: AsyncSession,
    *,
    grant: Grant,
    redirect_uri: str,
    scopes: list[str],
    code_challenge: str | None,
    code_challenge_method: str | None,
    nonce: str | None,
    settings: Settings,
) -> str:
    """Add a single-use authorization code for `grant` in the caller's transaction (the caller commits); returns it.

    Only S256 challenges are accepted; the code is 256 random bits and is stored as its SHA-256 digest.
    """
    if code_challenge is not None:
        if code_challenge_method != "S256" or not CHALLENGE.fullmatch(code_challenge):
            raise ValueError("only S256 code challenges (43 base64url characters) are accepted")
    elif code_challenge_method is not None:
        raise ValueError("code_challenge_method without code_challenge")
    code, digest = new_opaque_token()
    now = utcnow()
    s.add(
        AuthCode(
            code_digest=digest,
            grant_id=grant.id,
            client_id=grant.client_id,
            redirect_uri=redirect_uri,
            scopes=list(scopes),
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method if code_challenge else None,
            nonce=nonce,
            created_at=now,
            expires_at=now + timedelta(seconds=min(settings.code_lifetime_seconds, MAX_CODE_SECONDS)),
        )
    )
    await s.flush()
    return code


@dataclass
class TokenEndpoint:
    """Runs the grants of `POST /oauth2/token` for an authenticated client."""

    db: Database
    settings: Settings
    issuer: TokenIssuer
    checker: TokenChecker
    #: group-commits the issued events of grants that write nothing else
    events: IssuedEventWriter = field(init=False)

    def __post_init__(self) -> None:
        """Start the event writer on the service database."""
        self.events = IssuedEventWriter(self.db)

    async def handle(self, form: Mapping[str, str], caller: AuthenticatedClient) -> TokenResponse:
        """Dispatch on grant_type; raises OAuthError for every RFC 6749 §5.2 error."""
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        handler = {
            GrantType.authorization_code.value: self.authorization_code,
            GrantType.refresh_token.value: self.refresh_token,
            GrantType.client_credentials.value: self.client_credentials,
            GrantType.token_exchange.value: self.token_exchange,
        }.get(grant_type)
        if handler is None:
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
        if grant_type not in caller.client.grant_types:
            raise OAuthError("unauthorized_client", f"the client is not registered for {grant_type}")
        return await handler(form, caller.client)

    # --- authorization_code (RFC 6749 §4.1.3, RFC 7636, RFC 9700 §2.1.1, §4.2.4) ---

    async def authorization_code(self, form: Mapping[str, str], client: Client) -> TokenResponse:
        """Exchange a code (single use, PKCE-checked) for tokens; a replayed code revokes its grant."""
        code, redirect_uri, verifier = form.get("code"), form.get("redirect_uri"), form.get("code_verifier")
        if not code or redirect_uri is None:
            raise OAuthError("invalid_request", "code and redirect_uri are required")
        if len(code) > 200:
            raise invalid_grant("unknown authorization code")
        digest = token_digest(code)
        async with self.db.session() as s:
            row = await s.get(AuthCode, digest)
            if row is None or row.client_id != client.client_id:
                raise invalid_grant("unknown authorization code")
            if row.used_at is not None:
                await self._code_replayed(s, row)
            if row.expires_at <= utcnow():
                raise invalid_grant("the authorization code has expired")
            if redirect_uri != row.redirect_uri:
                raise invalid_grant("redirect_uri differs from the authorization request")
            try:
                self._check_pkce(row, client, verifier)
            except OAuthError:
                await self._spend_code(s, digest)
                raise
            marked = await s.exec(
                update(AuthCode)
                .where(col(AuthCode.code_digest) == digest, col(AuthCode.used_at).is_(None))
                .values(used_at=utcnow())
            )
            if not marked.rowcount:  # a concurrent request redeemed it first
                await self._code_replayed(s, row)
            grant = await s.get(Grant, row.grant_id)
            if grant is None or grant.revoked_at is not None or grant.expires_at <= utcnow():
                raise invalid_grant("the authorization behind this code is no longer valid")
            # entitlements may have been withdrawn since consent: ask again
            scopes, entitled = await self.issuer.person_scopes(grant.user_id, row.scopes)
            access = await self.issuer.access_token(
                client, sub=grant.user_id, scopes=scopes, grant=grant, entitled=entitled
            )
            refresh = await self._new_refresh(s, client, grant, list(row.scopes))
            id_token = None
            if "openid" in scopes:
                id_token = await self.issuer.id_token(
                    client, grant, scopes=scopes, access_token=access.token, nonce=row.nonce
                )
            record_issued(
                s,
                access,
                grant_type=GrantType.authorization_code.value,
                refresh_token_issued=refresh is not None,
                id_token_issued=id_token is not None,
            )
            await s.commit()
        return TokenResponse(access, refresh_token=refresh, id_token=id_token)

    @staticmethod
    async def _spend_code(s: AsyncSession, digest: str) -> None:
        """Use up a code that failed its PKCE check: a verifier gets one try, never a second guess."""
        await s.exec(
            update(AuthCode)
            .where(col(AuthCode.code_digest) == digest, col(AuthCode.used_at).is_(None))
            .values(used_at=utcnow())
        )
        await s.commit()

    async def _code_replayed(self, s: AsyncSession, row: AuthCode) -> None:
        grant_id = row.grant_id
        await s.rollback()
        await revoke_grants(s, [grant_id], "code_replay")
        await s.commit()
        raise invalid_grant("the authorization code was already used; tokens issued from it are revoked")

    @staticmethod
    def _check_pkce(row: AuthCode, client: Client, verifier: str | None) -> None:
        if row.code_challenge is None:
            if verifier is not None:  # RFC 9700 §4.8.2: a verifier for a code without a challenge is a downgrade
                raise invalid_grant("code_verifier sent, but the authorization request had no code_challenge")
            if client.require_pkce or client.client_type == ClientType.public:
                raise invalid_grant("this client must use PKCE")
            return
        if row.code_challenge_method != "S256":
            raise invalid_grant("only the S256 code challenge method is accepted")
        if verifier is None:
            raise invalid_grant("code_verifier is required")
        if not VERIFIER.fullmatch(verifier):
            raise invalid_grant("code_verifier must be 43-128 unreserved characters")
        if not hmac.compare_digest(s256(verifier), row.code_challenge):
            raise invalid_grant("code_verifier does not match the code_challenge")

    async def _new_refresh(self, s: AsyncSession, client: Client, grant: Grant, scopes: list[str]) -> str | None:
        """A refresh token under the grant when it has offline_access and the client may refresh (OIDC Core §11)."""
        if "offline_access" not in scopes or GrantType.refresh_token.value not in client.grant_types:
            return None
        value, digest = new_opaque_token()
        now = utcnow()
        expires = min(now + timedelta(seconds=client.refresh_token_lifetime), grant.expires_at)
        s.add(
            RefreshToken(
                token_digest=digest,
                grant_id=grant.id,
                client_id=client.client_id,
                scopes=scopes,
                created_at=now,
                expires_at=expires,
            )
        )
        return value

    # --- refresh_token (RFC 6749 §6, RFC 9700 §4.14.2) ---

    async def refresh_token(self, form: Mapping[str, str], client: Client) -> TokenResponse:
        """Rotate a refresh token; presenting one already rotated revokes the whole grant."""
        value = form.get("refresh_token")
        if not value:
            raise OAuthError("invalid_request", "refresh_token is required")
        requested = parse_scope(form.get("scope"))
        if len(value) > 200:
            raise invalid_grant("unknown refresh token")
        digest = token_digest(value)
        async with self.db.session() as s:
            row = await s.get(RefreshToken, digest)
            if row is None or row.client_id != client.client_id:
                raise invalid_grant("unknown refresh token")
            if row.revoked_at is not None:
                raise invalid_grant("the refresh token has been revoked")
            if row.rotated_at is not None:
                await self._refresh_reused(s, row)
            now = utcnow()
            if row.expires_at <= now:
                raise invalid_grant("the refresh token has expired")
            scopes = list(row.scopes)
            if requested is not None:
                wider = [sc for sc in requested if sc not in scopes]
                if wider:
                    raise OAuthError("invalid_scope", f"scopes not granted: {' '.join(wider)}")
            grant = await s.get(Grant, row.grant_id)
            if grant is None or grant.revoked_at is not None or grant.expires_at <= now:
                raise invalid_grant("the grant has been revoked or has expired")
            if grant.session_id and "offline_access" not in grant.scopes:
                session = await s.get(LoginSession, grant.session_id)
                if session is None or session.ended_at is not None or session.expires_at <= now:
                    raise invalid_grant("the sign-on session of this grant has ended")
            rotated = await s.exec(
                update(RefreshToken)
                .where(
                    col(RefreshToken.token_digest) == digest,
                    col(RefreshToken.rotated_at).is_(None),
                    col(RefreshToken.revoked_at).is_(None),
                )
                .values(rotated_at=now)
            )
            if not rotated.rowcount:  # used concurrently: the second presentation is a reuse
                await self._refresh_reused(s, row)
            # a refreshed token never regains a withdrawn entitlement: the person's entitlements are asked again
            token_scopes, entitled = await self.issuer.person_scopes(
                grant.user_id, requested if requested is not None else scopes
            )
            access = await self.issuer.access_token(
                client, sub=grant.user_id, scopes=token_scopes, grant=grant, entitled=entitled
            )
            new_value, new_digest = new_opaque_token()
            s.add(
                RefreshToken(
                    token_digest=new_digest,
                    grant_id=grant.id,
                    client_id=client.client_id,
                    scopes=scopes,
                    created_at=now,
                    expires_at=min(now + timedelta(seconds=client.refresh_token_lifetime), grant.expires_at),
                )
            )
            id_token = None
            if "openid" in token_scopes:
                id_token = await self.issuer.id_token(client, grant, scopes=token_scopes, access_token=access.token)
            record_issued(
                s,
                access,
                grant_type=GrantType.refresh_token.value,
                refresh_token_issued=True,
                id_token_issued=id_token is not None,
            )
            await s.commit()
        return TokenResponse(access, refresh_token=new_value, id_token=id_token)

    async def _refresh_reused(self, s: AsyncSession, row: RefreshToken) -> None:
        grant_id = row.grant_id
        await s.rollback()
        await revoke_grants(s, [grant_id], "refresh_reuse")
        await s.commit()
        raise invalid_grant("the refresh token was already used; the grant is revoked")

    # --- client_credentials (RFC 6749 §4.4) ---

    async def client_credentials(self, form: Mapping[str, str], client: Client) -> TokenResponse:
        """An access token for the client itself, for API scopes it is registered for (no refresh token)."""
        if client.client_type != ClientType.confidential:
            raise OAuthError("unauthorized_client", "client_credentials needs a confidential client")
        allowed = [sc for sc in client.scopes if sc in API_SCOPE_SET]
        requested = parse_scope(form.get("scope"))
        scopes = allowed if requested is None else requested
        refused = [sc for sc in scopes if sc not in allowed]
        if refused:
            raise OAuthError("invalid_scope", f"scopes not available to this client: {' '.join(refused)}")
        if not scopes:
            raise OAuthError("invalid_scope", "the client has no API scopes")
        access = await self.issuer.access_token(client, sub=client.client_id, scopes=scopes)
        await self.events.record(issued_event(access, grant_type=GrantType.client_credentials.value))
        return TokenResponse(access)

    # --- token exchange (RFC 8693) ---

    async def token_exchange(self, form: Mapping[str, str], client: Client) -> TokenResponse:
        """Exchange a user's access token for one that names this client as the actor (`act`)."""
        if client.client_type != ClientType.confidential:
            raise OAuthError("unauthorized_client", "token exchange needs a confidential client")
        subject_token, subject_type = form.get("subject_token"), form.get("subject_token_type")
        if not subject_token or not subject_type:
            raise OAuthError("invalid_request", "subject_token and subject_token_type are required")
        if subject_type != ACCESS_TOKEN_TYPE:
            raise OAuthError("invalid_request", f"subject_token_type must be {ACCESS_TOKEN_TYPE}")
        if form.get("actor_token") is not None or form.get("actor_token_type") is not None:
            raise OAuthError("invalid_request", "actor_token is not supported; the authenticated client is the actor")
        wanted_type = form.get("requested_token_type")
        if wanted_type is not None and wanted_type != ACCESS_TOKEN_TYPE:
            raise OAuthError("invalid_request", f"only {ACCESS_TOKEN_TYPE} can be issued")
        for name in ("audience", "resource"):
            target = form.get(name)
            if target is not None and target != self.settings.api_audience:
                raise OAuthError("invalid_target", f"tokens are issued only for {self.settings.api_audience}")
        requested = parse_scope(form.get("scope"))
        subject = await self.checker.active(subject_token)
        if subject is None:
            raise invalid_grant("subject_token is not a valid, unrevoked access token of this issuer")
        if subject.grant_id is None:  # client_credentials tokens name no person to act for
            raise invalid_grant("subject_token must be a token issued to a person")
        available = [sc for sc in subject.scopes if sc in client.scopes]
        wanted = requested if requested is not None else sorted(subject.scopes)
        scopes, entitled = await self.issuer.person_scopes(subject.sub, [sc for sc in wanted if sc in available])
        if not scopes:
            raise OAuthError("invalid_scope", "no requested scope is held by both the subject token and the client")
        act: dict[str, Any] = {"sub": client.client_id}
        if subject.act:
            act["act"] = subject.act
        if len(subject.subject_jtis) >= MAX_EXCHANGE_DEPTH:
            raise invalid_grant(f"a token may be exchanged at most {MAX_EXCHANGE_DEPTH} times over")
        claims = subject.claims
        session = {
            "auth_time": claims.get("auth_time"),
            "acr": claims.get("acr"),
            "amr": claims.get("amr"),
            "sid": claims.get("sid"),
            "gid": claims.get("gid"),
            # the new token dies with the one it came from (and those before it), as it does with the grant
            SUBJECT_JTIS: [*subject.subject_jtis, subject.jti],
        }
        access = await self.issuer.access_token(
            client,
            sub=subject.sub,
            scopes=scopes,
            session=session,
            act=act,
            not_after=int(subject.exp),
            entitled=entitled,
        )
        await self.events.record(issued_event(access, grant_type=GrantType.token_exchange.value))
        return TokenResponse(access, issued_token_type=ACCESS_TOKEN_TYPE)
