"""The client registry: register, read, patch, rotate secrets, disable and enable.

Client secrets are 256 random bits, so a plain SHA-256 digest (`sha256:<hex>`) keeps them as safe as a slow
password hash would, at a fraction of the cost on the token endpoint's hot path. Argon2id hashes written by
earlier versions still verify, and are replaced by the digest on the next successful use.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import ValidationError
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth.contract import (
    CLIENT_DISABLED,
    CLIENT_ENABLED,
    CLIENT_REGISTERED,
    CLIENT_SECRET_ROTATED,
    CLIENT_UPDATED,
    ClientRegistered,
    ClientSecretRotated,
    ClientStatusChanged,
    ClientUpdated,
)
from tongban_auth.models import Client, ClientStatus, ClientType
from tongban_auth.schemas import (
    SECRET_METHODS,
    AuthMethod,
    ClientCreate,
    ClientCreated,
    ClientFields,
    ClientPublic,
    ClientUpdate,
    SecretRotated,
)
from tongban_kit.db import on_commit
from tongban_kit.ids import new_id
from tongban_kit.outbound import OutboundPolicy, OutboundRefused, check_url
from tongban_kit.outbox import emit, utcnow
from tongban_kit.pagination import Page, decode_cursor, page_of
from tongban_kit.problems import Problem

SOURCE = "/tongban/auth"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: verifies secrets stored as Argon2id hashes by earlier versions (OWASP minimum parameters)
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16, type=Type.ID)
DIGEST_PREFIX = "sha256:"
FIELDS = tuple(ClientFields.model_fields)
#: called with a client id once a transaction that changed the client commits (caches drop their copy)
_change_listeners: list[Callable[[str], None]] = []


def on_client_change(listener: Callable[[str], None]) -> Callable[[], None]:
    """Call `listener(client_id)` after every committed change of a client in this process; returns an undo."""
    _change_listeners.append(listener)
    return lambda: _change_listeners.remove(listener) if listener in _change_listeners else None


def _changed(s: AsyncSession, client_id: str) -> None:
    def notify() -> None:
        for listener in list(_change_listeners):
            listener(client_id)

    on_commit(s, notify)


def new_secret() -> str:
    """A fresh client secret: 256 random bits, base64url."""
    return secrets.token_urlsafe(32)


def secret_digest(secret: str) -> str:
    """The stored form of a client secret: `sha256:` and the hex SHA-256 digest."""
    return DIGEST_PREFIX + hashlib.sha256(secret.encode()).hexdigest()


async def hash_secret(secret: str) -> str:
    """The stored form of a new or rotated secret (see `secret_digest`)."""
    return secret_digest(secret)


def needs_upgrade(client: Client) -> bool:
    """Whether the stored secret is in an older form (Argon2id) that should be replaced by the digest."""
    return bool(client.secret_hash) and not str(client.secret_hash).startswith(DIGEST_PREFIX)


async def verify_secret(client: Client, secret: str) -> bool:
    """Whether `secret` is the client's current secret (constant-time for digests; Argon2id off the event loop)."""
    stored = client.secret_hash
    if not stored:
        return False
    if stored.startswith(DIGEST_PREFIX):
        return hmac.compare_digest(stored.encode(), secret_digest(secret).encode())
    try:
        return await asyncio.to_thread(HASHER.verify, stored, secret)
    except (VerificationError, InvalidHashError):
        return False


async def upgrade_secret(s: AsyncSession, client: Client, secret: str) -> bool:
    """Replace an Argon2id hash by the digest of the secret that just verified; False if it changed meanwhile."""
    old = client.secret_hash
    if old is None or not needs_upgrade(client):
        return False
    res = await s.exec(
        sql_update(Client)
        .where(col(Client.client_id) == client.client_id, col(Client.secret_hash) == old)
        .values(secret_hash=secret_digest(secret))
    )
    _changed(s, client.client_id)
    await s.commit()
    return bool(res.rowcount)


def to_public(c: Client) -> ClientPublic:
    """The API view of a client."""
    # the row holds enum columns as the strings the database gave back; ClientPublic validates them just below
    row = c.model_dump(exclude={"secret_hash", "created_by"}, warnings=False)
    return ClientPublic.model_validate({**row, "has_secret": c.secret_hash is not None})


def _problem_from(exc: ValidationError) -> Problem:
    errors = [
        {
            "location": ".".join(str(p) for p in ("body", *e.get("loc", ()))),
            "message": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]
    return Problem(
        422, "the request is not valid; see errors", type="validation-error", title="Validation failed", errors=errors
    )


def check_loopback(fields: ClientFields, loopback_allowed: bool) -> None:
    """Plain-http URIs are accepted only for loopback hosts, and only where settings allow them."""
    errors = []
    for name in ("redirect_uris", "post_logout_redirect_uris", "backchannel_logout_uri", "jwks_uri"):
        value = getattr(fields, name)
        for i, uri in enumerate(value if isinstance(value, list) else [value] if value else []):
            parts = urlsplit(uri)
            if parts.scheme == "http" and not (loopback_allowed and parts.hostname in LOOPBACK_HOSTS):
                where = f"body.{name}.{i}" if isinstance(value, list) else f"body.{name}"
                errors.append({"location": where, "message": f"{uri!r} must use https", "type": "value_error"})
    if errors:
        raise Problem(
            422,
            "the request is not valid; see errors",
            type="validation-error",
            title="Validation failed",
            errors=errors,
        )


def outbound_refusals(fields: ClientFields, policy: OutboundPolicy) -> list[dict[str, str]]:
    """Why URIs this server calls (back-channel logout, JWKS) fail the outbound guard (internal hosts and such)."""
    errors = []
    for name in ("backchannel_logout_uri", "jwks_uri"):
        uri = getattr(fields, name)
        try:
            if uri is not None:
                check_url(uri, policy)
        except OutboundRefused as exc:
            errors.append(
                {"location": f"body.{name}", "message": f"{uri!r} is not called: {exc}", "type": "value_error"}
            )
    return errors


def check_outbound(fields: ClientFields, policy: OutboundPolicy) -> None:
    """A 422 problem when a URI this server would call fails the outbound guard."""
    errors = outbound_refusals(fields, policy)
    if errors:
        raise Problem(
            422,
            "the request is not valid; see errors",
            type="validation-error",
            title="Validation failed",
            errors=errors,
        )


async def register(
    s: AsyncSession,
    body: ClientCreate,
    *,
    actor: str | None,
    loopback_allowed: bool,
    secret: str | None = None,
    outbound: OutboundPolicy | None = None,
) -> ClientCreated:
    """Register a client; confidential clients with a secret method get a secret, returned this once.

    `outbound` is the policy of calls to the client's URIs (default: the strictest).
    """
    check_loopback(body, loopback_allowed)
    check_outbound(body, outbound or OutboundPolicy())
    method = body.token_endpoint_auth_method or AuthMethod.none
    plain = (secret or new_secret()) if method in SECRET_METHODS else None
    now = utcnow()
    client = Client(
        **body.model_dump(include=set(FIELDS), mode="json"),
        client_id=body.client_id or new_id(),
        client_type=body.client_type,
        token_endpoint_auth_method=method.value,
        require_pkce=True if body.client_type == ClientType.public else body.require_pkce,
        secret_hash=await hash_secret(plain) if plain else None,
        secret_rotated_at=now if plain else None,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    s.add(client)
    try:
        await s.flush()
    except IntegrityError:
        await s.rollback()
        raise Problem(409, f"client {client.client_id} already exists", type="conflict") from None
    public = to_public(client)
    emit(s, CLIENT_REGISTERED, ClientRegistered(client=public, actor=actor), source=SOURCE, subject=client.client_id)
    _changed(s, client.client_id)
    await s.commit()
    return ClientCreated(**public.model_dump(), client_secret=plain)


async def get(s: AsyncSession, client_id: str, *, lock: bool = False) -> Client:
    """A client by id; 404 when unknown."""
    stmt = select(Client).where(Client.client_id == client_id)
    if lock:
        stmt = stmt.with_for_update()
    client = (await s.exec(stmt)).first()
    if client is None:
        raise Problem(404, f"no client {client_id}", type="not-found")
    return client


def web_origin(uri: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URI (default port left out), lower-case; None for other schemes."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


async def web_origins(s: AsyncSession) -> list[str]:
    """The origins of the active clients' redirect URIs: the browser apps that may call the APIs cross-origin."""
    rows = await s.exec(select(Client.redirect_uris).where(Client.status == ClientStatus.active))
    found = {origin for uris in rows.all() for uri in uris or () if (origin := web_origin(uri)) is not None}
    return sorted(found)


async def search(
    s: AsyncSession, *, limit: int, cursor: str | None, status: ClientStatus | None, owner_unit_id: str | None
) -> Page[ClientPublic]:
    """Clients ordered by id, one page."""
    after = decode_cursor(cursor)
    stmt = select(Client).order_by(col(Client.client_id)).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(col(Client.client_id) > str(after.get("id", "")))
    if status is not None:
        stmt = stmt.where(Client.status == status)
    if owner_unit_id is not None:
        stmt = stmt.where(Client.owner_unit_id == owner_unit_id)
    rows = [to_public(c) for c in (await s.exec(stmt)).all()]
    return page_of(rows, limit, lambda c: {"id": c.client_id})


async def update(
    s: AsyncSession,
    client_id: str,
    patch: ClientUpdate,
    *,
    actor: str | None,
    loopback_allowed: bool,
    outbound: OutboundPolicy | None = None,
) -> ClientPublic:
    """Merge `patch` into the client and validate the result as a whole."""
    client = await get(s, client_id, lock=True)
    given = patch.model_dump(exclude_unset=True, mode="json")
    current: dict[str, Any] = client.model_dump(include=set(FIELDS), mode="json")
    merged = {**current, **given}
    try:
        checked = ClientCreate.model_validate(
            {
                **merged,
                "client_type": client.client_type,
                "token_endpoint_auth_method": client.token_endpoint_auth_method,
                "require_pkce": given.get("require_pkce", client.require_pkce),
            }
        )
    except ValidationError as exc:
        raise _problem_from(exc) from None
    check_loopback(checked, loopback_allowed)
    check_outbound(checked, outbound or OutboundPolicy())
    new_values = checked.model_dump(include=set(FIELDS), mode="json")
    changed = sorted(k for k in FIELDS if new_values[k] != current[k])
    if checked.require_pkce != client.require_pkce:
        changed.append("require_pkce")
        client.require_pkce = checked.require_pkce
    if not changed:
        return to_public(client)
    for k in changed:
        if k in new_values:
            setattr(client, k, new_values[k])
    client.version += 1
    client.updated_at = utcnow()
    s.add(client)
    await s.flush()
    public = to_public(client)
    emit(
        s, CLIENT_UPDATED, ClientUpdated(client=public, changed=changed, actor=actor), source=SOURCE, subject=client_id
    )
    _changed(s, client_id)
    await s.commit()
    return public


async def rotate_secret(s: AsyncSession, client_id: str, *, actor: str | None) -> SecretRotated:
    """Replace the client's secret; the new one is returned this once, the old one stops working."""
    client = await get(s, client_id, lock=True)
    if client.token_endpoint_auth_method not in SECRET_METHODS:
        raise Problem(
            409,
            f"client {client_id} authenticates with {client.token_endpoint_auth_method}, not a secret",
            type="no-secret",
        )
    plain = new_secret()
    now = utcnow()
    client.secret_hash = await hash_secret(plain)
    client.secret_rotated_at = now
    client.updated_at = now
    client.version += 1
    s.add(client)
    data = ClientSecretRotated(client_id=client_id, secret_rotated_at=now, actor=actor)
    emit(s, CLIENT_SECRET_ROTATED, data, source=SOURCE, subject=client_id)
    _changed(s, client_id)
    await s.commit()
    return SecretRotated(client_id=client_id, client_secret=plain, secret_rotated_at=now)


async def set_status(s: AsyncSession, client_id: str, status: ClientStatus, *, actor: str | None) -> ClientPublic:
    """Disable or enable a client (no event when nothing changes)."""
    client = await get(s, client_id, lock=True)
    if client.status != status:
        client.status = status
        client.updated_at = utcnow()
        client.version += 1
        s.add(client)
        spec = CLIENT_DISABLED if status == ClientStatus.disabled else CLIENT_ENABLED
        data = ClientStatusChanged(client_id=client_id, status=status, actor=actor)
        emit(s, spec, data, source=SOURCE, subject=client_id)
        _changed(s, client_id)
        await s.commit()
    return to_public(client)
