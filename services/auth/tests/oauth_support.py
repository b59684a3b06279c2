"""Helpers for the token-endpoint tests: clients, grants with codes, PKCE, form posts and RPC stand-ins."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey
from pydantic import BaseModel

from tongban_auth import clients
from tongban_auth.config import Settings
from tongban_auth.grants import create_authorization_code
from tongban_auth.models import ClientType, Grant
from tongban_auth.schemas import AuthMethod, ClientCreate, GrantType
from tongban_kit.db import Database
from tongban_kit.ids import new_id
from tongban_kit.jwks import load_jwks
from tongban_kit.nats import Bus
from tongban_kit.outbound import OutboundPolicy
from tongban_kit.outbox import utcnow
from tongban_kit.rpc import RpcServer
from tongban_org.contract import (
    RPC_ADMIN_SCOPES,
    RPC_ENTITLEMENTS,
    AdminScopesReply,
    AdminScopesRequest,
    EntitlementsReply,
    EntitlementsRequest,
)
from tongban_user.contract import (
    RPC_CONTACTS,
    RPC_GET_USERS,
    Contact,
    ContactsReply,
    ContactsRequest,
    GetUsersRequest,
    UsersReply,
)
from tongban_user.models import UserPublic

TOKEN = "/oauth2/token"
INTROSPECT = "/oauth2/introspect"
REVOKE = "/oauth2/revoke"
USERINFO = "/oauth2/userinfo"
REDIRECT = "https://app.example.gov.cn/callback"
WEB_SCOPES = ["openid", "profile", "email", "phone", "offline_access", "user:read", "message:read", "admin"]


@dataclass
class App:
    """A registered test client and how it authenticates."""

    client_id: str
    secret: str | None = None
    method: str = "client_secret_basic"
    key: ECKey | None = None

    def auth(self) -> httpx.Auth:
        """Basic credentials when the client uses client_secret_basic (else no authentication)."""
        if self.method == "client_secret_basic" and self.secret is not None:
            return httpx.BasicAuth(self.client_id, self.secret)
        return httpx.Auth()

    def form(self, settings: Settings | None = None, aud: str | None = None) -> dict[str, str]:
        """Body parameters that authenticate the client (all methods except Basic)."""
        if self.method == "client_secret_post":
            return {"client_id": self.client_id, "client_secret": str(self.secret)}
        if self.method == "none":
            return {"client_id": self.client_id}
        if self.method == "private_key_jwt":
            assert self.key is not None and settings is not None
            return {
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion(self.key, self.client_id, aud or settings.issuer + TOKEN),
            }
        return {}


def assertion(key: ECKey, client_id: str, aud: str, **claims: Any) -> str:
    """A private_key_jwt client assertion (ES256) valid for a minute."""
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + 60,
    }
    body.update(claims)
    header = {"alg": "ES256", "kid": key.kid or key.thumbprint()}
    return jwt.encode(header, {k: v for k, v in body.items() if v is not None}, key, algorithms=["ES256"])


def new_key() -> ECKey:
    """A client's P-256 signing key with a kid."""
    key = ECKey.generate_key("P-256", private=True)
    key.ensure_kid()
    return key


def public_jwks(key: ECKey) -> dict[str, Any]:
    """The JWK Set to register for a key."""
    return {"keys": [{**key.as_dict(private=False), "alg": "ES256", "use": "sig"}]}


async def register(
    db: Database,
    *,
    client_type: ClientType = ClientType.confidential,
    method: AuthMethod = AuthMethod.client_secret_basic,
    grant_types: list[GrantType] | None = None,
    scopes: list[str] | None = None,
    jwks: dict[str, Any] | None = None,
    jwks_uri: str | None = None,
    secret: str | None = None,
    **extra: Any,
) -> App:
    """Register a client straight through the registry (loopback http allowed); returns its credentials."""
    grants = grant_types or [GrantType.authorization_code, GrantType.refresh_token]
    body = ClientCreate(
        client_id="t-" + secrets.token_hex(6),
        name="测试应用",
        client_type=client_type,
        token_endpoint_auth_method=method,
        grant_types=grants,
        scopes=scopes or WEB_SCOPES,
        redirect_uris=[REDIRECT] if GrantType.authorization_code in grants else [],
        jwks=jwks,
        jwks_uri=jwks_uri,
        **extra,
    )
    async with db.session() as s:
        made = await clients.register(
            s, body, actor="test", loopback_allowed=True, secret=secret, outbound=OutboundPolicy(allow_loopback=True)
        )
    return App(made.client_id, made.client_secret, method.value)


def pkce() -> tuple[str, str]:
    """A code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


async def make_grant(
    db: Database,
    settings: Settings,
    app: App,
    *,
    scopes: list[str] | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    challenge: str | None = None,
    nonce: str | None = "n-0S6_WzA2Mj",
) -> tuple[Grant, str]:
    """A grant as the authorize flow makes it, with its authorization code."""
    scopes = scopes or ["openid", "offline_access", "user:read"]
    now = utcnow()
    grant = Grant(
        id=new_id(),
        client_id=app.client_id,
        user_id=user_id or new_id(),
        session_id=session_id,
        scopes=scopes,
        auth_time=now - timedelta(seconds=5),
        amr=["pwd"],
        acr=settings.acr_password,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.grant_max_seconds),
    )
    async with db.session() as s:
        s.add(grant)
        code = await create_authorization_code(
            s,
            grant=grant,
            redirect_uri=REDIRECT,
            scopes=scopes,
            code_challenge=challenge,
            code_challenge_method="S256" if challenge else None,
            nonce=nonce,
            settings=settings,
        )
        await s.commit()
    return grant, code


async def post(
    client: httpx.AsyncClient, path: str, app: App, data: dict[str, str], settings: Settings | None = None
) -> httpx.Response:
    """Post a form to a back-channel endpoint, authenticated as `app`."""
    aud = settings.issuer + path if settings is not None else None
    return await client.post(path, data={**app.form(settings, aud), **data}, auth=app.auth())


async def redeem(
    client: httpx.AsyncClient, app: App, code: str, verifier: str | None, settings: Settings | None = None
) -> httpx.Response:
    """Exchange a code at the token endpoint."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    if verifier is not None:
        data["code_verifier"] = verifier
    return await post(client, TOKEN, app, data, settings)


def oauth_error(r: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """Check an RFC 6749 §5.2 error answer."""
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["error"] == error, body
    assert r.headers["cache-control"] == "no-store"
    return body


def claims_of(token: str, db_keys: dict[str, Any]) -> dict[str, Any]:
    """The verified claims of a token signed by the service (checked against its published JWK Set)."""
    from joserfc.jwk import KeySet

    return dict(jwt.decode(token, KeySet.import_key_set(db_keys)).claims)  # type: ignore[arg-type]


def kids(jwks: dict[str, Any]) -> set[str]:
    """The kids of a JWK Set (sanity check that it is loadable)."""
    return set(load_jwks(jwks))


@dataclass
class Directory:
    """What the user and org stand-ins answer, and what they were asked."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    admins: dict[str, list[str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)


def user_public(user_id: str, name: str, username: str | None) -> UserPublic:
    """A masked account as users-get returns it."""
    now = utcnow()
    return UserPublic.model_validate(
        {
            "id": user_id,
            "kind": "citizen",
            "name": name,
            "username": username,
            "mobile": "138****0000",
            "status": "active",
            "masked": True,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
    )


@asynccontextmanager
async def directory(bus: Bus, data: Directory, *, org: bool = True) -> AsyncIterator[Directory]:
    """Serve users-get and contacts-list (and admin-scopes, entitlements) on the real NATS, as the user and org services
    would."""

    async def get_users(req: GetUsersRequest) -> BaseModel:
        data.calls.append("users-get")
        found = [data.users[i] for i in req.ids if i in data.users]
        return UsersReply(users=[user_public(u["id"], u["name"], u.get("username")) for u in found])

    async def contacts(req: ContactsRequest) -> BaseModel:
        data.calls.append("contacts-list")
        found = [data.users[i] for i in req.ids if i in data.users]
        return ContactsReply(
            contacts=[
                Contact(id=u["id"], name=u["name"], mobile=u.get("mobile"), email=u.get("email"), status="active")
                for u in found
            ]
        )

    async def admin_scopes(req: AdminScopesRequest) -> BaseModel:
        data.calls.append("admin-scopes")
        return AdminScopesReply(all=False, unit_ids=data.admins.get(req.principal, []))

    async def entitlements(req: EntitlementsRequest) -> BaseModel:
        data.calls.append("entitlements")
        units = data.admins.get(req.principal, [])
        return EntitlementsReply(
            admin_all=False, admin_units=units, send_all=False, send_units=units, member_units=units
        )

    servers = [RpcServer(bus, "user", "0.0.0")]
    servers[0].add(RPC_GET_USERS, get_users)
    servers[0].add(RPC_CONTACTS, contacts)
    if org:
        servers.append(RpcServer(bus, "org", "0.0.0"))
        servers[1].add(RPC_ADMIN_SCOPES, admin_scopes)
        servers[1].add(RPC_ENTITLEMENTS, entitlements)
    for srv in servers:
        await srv.start()
    try:
        yield data
    finally:
        for srv in servers:
            await srv.stop()
