"""Client authentication at the token, introspection and revocation endpoints (RFC 6749 §2.3, RFC 7523).

Methods: `client_secret_basic`, `client_secret_post`, `private_key_jwt` and `none` (public clients); a client must
use the method it registered. Clients are cached in-process for `CLIENT_CACHE_SECONDS`: a change made by this process
drops the cached copy at commit, a change made by another replica (disable, secret rotation) takes effect here
within that time.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth import clients
from tongban_auth.config import Settings
from tongban_auth.models import Client, ClientStatus, ClientType, UsedAssertion
from tongban_auth.schemas import SECRET_METHODS, AuthMethod
from tongban_kit.db import Database
from tongban_kit.jwks import JwksSource, VerificationKey, load_jwks
from tongban_kit.outbound import OutboundClient
from tongban_kit.outbox import utcnow

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: asymmetric algorithms accepted for client assertions (`none` and HMAC are never accepted)
ASSERTION_ALGS = frozenset({"ES256", "RS256"})
#: an assertion may be valid for at most this long ahead
MAX_ASSERTION_SECONDS = 300
CLIENT_CACHE_SECONDS = 5.0
BASIC_CHALLENGE = 'Basic realm="tongban"'
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class OAuthError(Exception):
    """An error answered in the RFC 6749 §5.2 JSON format (`error`, `error_description`)."""

    def __init__(
        self, error: str, description: str | None = None, *, status: int = 400, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error, self.description, self.status = error, description, status
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The JSON error response (never cached)."""
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return JSONResponse(body, status_code=self.status, headers={**NO_STORE, **self.headers})


def invalid_client(description: str) -> OAuthError:
    """401 invalid_client with a Basic challenge (RFC 6749 §5.2; RFC 9110 requires a challenge on 401)."""
    return OAuthError("invalid_client", description, status=401, headers={"WWW-Authenticate": BASIC_CHALLENGE})


@dataclass(frozen=True)
class AuthenticatedClient:
    """A client that proved who it is, and how."""

    client: Client
    method: str

    @property
    def client_id(self) -> str:
        """The client's id."""
        return self.client.client_id


class ClientCache:
    """Client rows by id (also "no such client"), kept `ttl` seconds; drop entries with `invalidate`."""

    def __init__(
        self,
        db: Database,
        *,
        ttl: float = CLIENT_CACHE_SECONDS,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Bind to the service database."""
        self.db, self.ttl, self.size, self._clock = db, ttl, size, clock
        self._rows: dict[str, tuple[Client | None, float]] = {}

    async def get(self, client_id: str) -> Client | None:
        """The client (a shared, read-only copy), or None when unknown."""
        hit = self._rows.get(client_id)
        now = self._clock()
        if hit is not None and hit[1] > now:
            return hit[0]
        async with self.db.read_session() as s:
            row = await s.get(Client, client_id)
        if len(self._rows) >= self.size:
            self._rows.pop(next(iter(self._rows)))
        self._rows[client_id] = (row, now + self.ttl)
        return row

    def invalidate(self, client_id: str) -> None:
        """Forget one client (it changed)."""
        self._rows.pop(client_id, None)

    def clear(self) -> None:
        """Forget every client."""
        self._rows.clear()


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _basic_credentials(authorization: str) -> tuple[str, str]:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise invalid_client("the Authorization header must use the Basic scheme")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_client("the Basic credentials are not valid base64") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise invalid_client("the Basic credentials lack a ':'")
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined
    return unquote_plus(client_id), unquote_plus(secret)


def verify_signature(alg: str, key: VerificationKey, signing_input: bytes, signature: bytes) -> bool:
    """Whether a JWS signature (ES256 raw r||s, or RS256) verifies with the key, which must be for `alg`."""
    return key.alg == alg and key.verifies(signing_input, signature)


def _static_keys(jwks: Mapping[str, Any]) -> dict[str, VerificationKey]:
    """Keys of a registered JWK Set; keys without a kid get a positional one so they can still be tried."""
    listed = [dict(k, kid=k.get("kid") or f"#{i}") for i, k in enumerate(jwks.get("keys", [])) if isinstance(k, dict)]
    try:
        return load_jwks({"keys": listed})
    except ValueError:
        return {}


class ClientAuthenticator:
    """Authenticates the client of a back-channel request with the method it registered."""

    def __init__(self, db: Database, settings: Settings, cache: ClientCache) -> None:
        """Bind to the database, settings and client cache; clients' `jwks_uri` are fetched by the guarded client."""
        self.db, self.settings, self.cache = db, settings, cache
        self.outbound = OutboundClient(settings.outbound_policy)
        self._sources: dict[str, JwksSource] = {}
        self._next_purge = 0.0

    async def close(self) -> None:
        """Close the HTTP session used for clients' `jwks_uri`."""
        self._sources.clear()
        await self.outbound.close()

    async def authenticate(
        self, form: Mapping[str, str], authorization: str | None, *, endpoint_url: str
    ) -> AuthenticatedClient:
        """The authenticated client of a request, or OAuthError invalid_client (401) / invalid_request (400)."""
        assertion = form.get("client_assertion")
        secret_in_form = form.get("client_secret")
        form_id = form.get("client_id")
        if authorization:
            if assertion is not None or secret_in_form is not None:
                raise OAuthError("invalid_request", "use only one client authentication method")
            client_id, secret = _basic_credentials(authorization)
            if form_id is not None and form_id != client_id:
                raise invalid_client("client_id does not match the Basic credentials")
            client = await self._client(client_id, AuthMethod.client_secret_basic)
            return AuthenticatedClient(await self._check_secret(client, secret), AuthMethod.client_secret_basic)
        if assertion is not None:
            if secret_in_form is not None:
                raise OAuthError("invalid_request", "use only one client authentication method")
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise invalid_client(f"client_assertion_type must be {ASSERTION_TYPE}")
            client = await self._private_key_jwt(assertion, form_id, endpoint_url)
            return AuthenticatedClient(client, AuthMethod.private_key_jwt)
        if not form_id:
            raise invalid_client("client authentication is required")
        if secret_in_form is not None:
            client = await self._client(form_id, AuthMethod.client_secret_post)
            return AuthenticatedClient(await self._check_secret(client, secret_in_form), AuthMethod.client_secret_post)
        client = await self._client(form_id, AuthMethod.none)
        if client.client_type != ClientType.public:
            raise invalid_client("confidential clients must authenticate")
        return AuthenticatedClient(client, AuthMethod.none)

    async def _client(self, client_id: str, method: AuthMethod) -> Client:
        usable = 0 < len(client_id) <= 100 and "\x00" not in client_id
        client = await self.cache.get(client_id) if usable else None
        if client is None:
            raise invalid_client("unknown client or bad credentials")
        if client.status != ClientStatus.active:
            raise invalid_client("the client is disabled")
        if client.token_endpoint_auth_method != method.value:
            raise invalid_client(f"the client must authenticate with {client.token_endpoint_auth_method}")
        return client

    async def _check_secret(self, client: Client, secret: str) -> Client:
        if client.token_endpoint_auth_method not in SECRET_METHODS or not await clients.verify_secret(client, secret):
            raise invalid_client("unknown client or bad credentials")
        if clients.needs_upgrade(client):
            async with self.db.session() as s:
                await clients.upgrade_secret(s, client, secret)
        return client

    async def _private_key_jwt(self, assertion: str, form_id: str | None, endpoint_url: str) -> Client:
        if len(assertion) > 8192 or not _COMPACT_JWS.fullmatch(assertion):
            raise invalid_client("client_assertion is not a compact JWS")
        h64, p64, s64 = assertion.split(".")
        try:
            header, claims = orjson.loads(_b64url(h64)), orjson.loads(_b64url(p64))
            signature = _b64url(s64)
        except (binascii.Error, ValueError):
            raise invalid_client("client_assertion is not a valid JWT") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise invalid_client("client_assertion is not a valid JWT")
        alg = header.get("alg")
        if alg not in ASSERTION_ALGS:
            raise invalid_client(f"client_assertion algorithm {alg!r} is not accepted; use one of ES256, RS256")
        if "crit" in header:
            raise invalid_client("client_assertion has critical header parameters")
        iss, sub = claims.get("iss"), claims.get("sub")
        if not isinstance(iss, str) or iss != sub or (form_id is not None and form_id != iss):
            raise invalid_client("client_assertion iss and sub must both be the client_id")
        client = await self._client(iss, AuthMethod.private_key_jwt)
        signing_input = f"{h64}.{p64}".encode("ascii")
        keys = await self._keys(client, header.get("kid"), str(alg))
        if not any(verify_signature(str(alg), k, signing_input, signature) for k in keys):
            raise invalid_client("client_assertion signature does not verify with the client's registered keys")
        exp = self._check_claims(claims, endpoint_url)
        await self._use_once(client.client_id, str(claims["jti"]), exp)
        return client

    async def _keys(self, client: Client, kid: Any, alg: str) -> list[VerificationKey]:
        if client.jwks is not None:
            found = _static_keys(client.jwks)
            candidates = [found[kid]] if isinstance(kid, str) and kid in found else list(found.values())
        elif client.jwks_uri:
            source = self._sources.get(client.jwks_uri)
            if source is None:
                source = JwksSource(client.jwks_uri, min_refetch_seconds=10.0, client=self.outbound)
                self._sources[client.jwks_uri] = source
            if isinstance(kid, str):
                one = await source.key(kid)
                candidates = [one] if one is not None else []
            else:
                if not source.kids:
                    await source.refresh()
                candidates = [k for kid_ in source.kids if (k := source.get(kid_, allow_stale=True)) is not None]
        else:
            candidates = []
        return [k for k in candidates if k.alg == alg]

    def _check_claims(self, claims: dict[str, Any], endpoint_url: str) -> datetime:
        now = time.time()
        skew = self.settings.clock_skew_seconds
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        accepted = {self.settings.issuer, self.settings.issuer + "/oauth2/token", endpoint_url}
        if not accepted & {a for a in audiences if isinstance(a, str)}:
            raise invalid_client("client_assertion aud must name the token endpoint or the issuer")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise invalid_client("client_assertion needs exp")
        if exp <= now - skew:
            raise invalid_client("client_assertion has expired")
        if exp > now + MAX_ASSERTION_SECONDS + skew:
            raise invalid_client(f"client_assertion may be valid for at most {MAX_ASSERTION_SECONDS} s")
        for name in ("iat", "nbf"):
            value = claims.get(name)
            if value is not None and (not isinstance(value, int | float) or value > now + skew):
                raise invalid_client(f"client_assertion {name} is in the future")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= 200 or "\x00" in jti:
            raise invalid_client("client_assertion needs a jti (at most 200 characters)")
        return datetime.fromtimestamp(float(exp) + skew, UTC)

    async def _use_once(self, client_id: str, jti: str, expires_at: datetime) -> None:
        """Record the assertion's jti; a second use is a replay (the row stays until the assertion expires)."""
        async with self.db.session() as s:
            if time.monotonic() >= self._next_purge:
                self._next_purge = time.monotonic() + 60.0
                await s.exec(delete(UsedAssertion).where(col(UsedAssertion.expires_at) < utcnow()))
            s.add(UsedAssertion(jti=jti, client_id=client_id, expires_at=expires_at))
            try:
                await s.commit()
            except IntegrityError:
                await s.rollback()
                raise invalid_client("client_assertion was already used (jti replay)") from None


async def authenticate_client(
    request: Request, s: AsyncSession, form: Mapping[str, list[str]], settings: Settings
) -> Client | Response:
    """Authenticate the client of another back-channel endpoint (e.g. PAR) with the service's authenticator.

    `form` holds every value of each parameter; returns the client, or the RFC 6749 §5.2 error response.
    `s` is accepted for the caller's convenience; clients are read through the shared cache.
    """
    authenticator: ClientAuthenticator = request.app.state.client_authenticator
    single: dict[str, str] = {}
    for name, values in form.items():
        if len(values) != 1:
            return OAuthError("invalid_request", f"parameter {name} must be given once").response()
        single[name] = values[0]
    path = request.url.path
    try:
        caller = await authenticator.authenticate(
            single, request.headers.get("authorization"), endpoint_url=settings.issuer + path
        )
    except OAuthError as exc:
        return exc.response()
    return caller.client
