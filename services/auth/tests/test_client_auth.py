"""Client authentication: secrets (Basic and post), private_key_jwt (jwks and jwks_uri), public clients, failures."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
from aiohttp import web as aioweb
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import OctKey
from sqlalchemy import update
from sqlmodel import col

from tongban_auth import clients
from tongban_auth.client_auth import ClientCache
from tongban_auth.config import Settings
from tongban_auth.models import Client, ClientStatus, ClientType
from tongban_auth.schemas import AuthMethod, GrantType
from tongban_kit.db import Database

from .helpers import ADMIN, CLIENTS
from .oauth_support import INTROSPECT, TOKEN, App, assertion, new_key, oauth_error, post, public_jwks, register

CC = {"grant_type": "client_credentials"}
SCOPES = ["user:read"]


async def _service(db: Database, method: AuthMethod = AuthMethod.client_secret_basic, **kw: Any) -> App:
    return await register(db, method=method, grant_types=[GrantType.client_credentials], scopes=SCOPES, **kw)


def _unauthorized(r: httpx.Response) -> dict[str, Any]:
    body = oauth_error(r, 401, "invalid_client")
    assert r.headers["www-authenticate"] == 'Basic realm="tongban"'
    return body


async def test_basic_credentials_are_form_urlencoded(client: httpx.AsyncClient, auth_db: Database) -> None:
    secret = "s3cr3t+/:% 通办"
    app = await _service(auth_db, secret=secret)
    raw = f"{quote_plus(app.client_id)}:{quote_plus(secret)}".encode()
    header = {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    r = await client.post(TOKEN, data=CC, headers=header)
    assert r.status_code == 200, r.text
    _unauthorized(await client.post(TOKEN, data=CC, headers={"Authorization": "Basic !!"}))
    _unauthorized(await client.post(TOKEN, data=CC, auth=httpx.BasicAuth(app.client_id, secret + "x")))


async def test_secret_post_and_method_binding(client: httpx.AsyncClient, auth_db: Database) -> None:
    post_app = await _service(auth_db, AuthMethod.client_secret_post)
    assert (await post(client, TOKEN, post_app, CC)).status_code == 200
    # the registered method is the only one accepted
    basic_try = await client.post(TOKEN, data=CC, auth=httpx.BasicAuth(post_app.client_id, str(post_app.secret)))
    assert "client_secret_post" in _unauthorized(basic_try)["error_description"]
    basic_app = await _service(auth_db)
    form = {**CC, "client_id": basic_app.client_id, "client_secret": str(basic_app.secret)}
    _unauthorized(await client.post(TOKEN, data=form))
    # two methods at once
    both = await client.post(
        TOKEN, data={**CC, "client_secret": "x"}, auth=httpx.BasicAuth(basic_app.client_id, str(basic_app.secret))
    )
    oauth_error(both, 400, "invalid_request")


async def test_unknown_client_and_no_credentials(client: httpx.AsyncClient) -> None:
    _unauthorized(await client.post(TOKEN, data=CC, auth=httpx.BasicAuth("nobody", "secret")))
    _unauthorized(await client.post(TOKEN, data=CC))


async def test_public_clients_identify_confidential_ones_must_authenticate(
    client: httpx.AsyncClient, auth_db: Database
) -> None:
    spa = await register(auth_db, client_type=ClientType.public, method=AuthMethod.none)
    r = await post(client, TOKEN, spa, {"grant_type": "refresh_token", "refresh_token": "x"})
    oauth_error(r, 400, "invalid_grant")  # got past client authentication
    web = await register(auth_db)
    _unauthorized(await client.post(TOKEN, data={"grant_type": "refresh_token", "client_id": web.client_id}))
    assert "confidential" in _unauthorized(await post(client, INTROSPECT, spa, {"token": "x"}))["error_description"]


async def test_disabled_and_rotated_clients_stop_at_once(client: httpx.AsyncClient, auth_db: Database) -> None:
    app = await _service(auth_db)
    assert (await post(client, TOKEN, app, CC)).status_code == 200  # now cached
    assert (await client.post(f"{CLIENTS}/{app.client_id}/disable", headers=ADMIN)).status_code == 200
    assert "disabled" in _unauthorized(await post(client, TOKEN, app, CC))["error_description"]
    assert (await client.post(f"{CLIENTS}/{app.client_id}/enable", headers=ADMIN)).status_code == 200
    assert (await post(client, TOKEN, app, CC)).status_code == 200
    rotated = (await client.post(f"{CLIENTS}/{app.client_id}/rotate-secret", headers=ADMIN)).json()
    _unauthorized(await post(client, TOKEN, app, CC))
    assert (await post(client, TOKEN, App(app.client_id, rotated["client_secret"]), CC)).status_code == 200


async def test_cache_sees_other_replicas_changes_within_its_ttl(auth_db: Database) -> None:
    app = await _service(auth_db)
    now = [0.0]
    cache = ClientCache(auth_db, ttl=5.0, clock=lambda: now[0])
    row = await cache.get(app.client_id)
    assert row is not None and row.status == ClientStatus.active
    async with auth_db.session() as s:  # another replica disables it: no event reaches this cache
        await s.exec(update(Client).where(col(Client.client_id) == app.client_id).values(status="disabled"))
        await s.commit()
    now[0] = 4.9
    assert (await cache.get(app.client_id)).status == ClientStatus.active  # type: ignore[union-attr]
    now[0] = 5.1
    assert (await cache.get(app.client_id)).status == ClientStatus.disabled  # type: ignore[union-attr]
    assert await cache.get("no-such-client") is None


async def test_new_secrets_are_digests_and_argon2_hashes_upgrade(
    client: httpx.AsyncClient, auth_db: Database, auth_app: FastAPI
) -> None:
    app = await _service(auth_db)
    async with auth_db.session() as s:
        row = await s.get(Client, app.client_id)
        assert row is not None and row.secret_hash == clients.secret_digest(str(app.secret))
        assert row.secret_hash.startswith("sha256:") and len(row.secret_hash) == 7 + 64
        legacy = clients.HASHER.hash(str(app.secret))
        await s.exec(update(Client).where(col(Client.client_id) == app.client_id).values(secret_hash=legacy))
        await s.commit()
    auth_app.state.oauth.cache.invalidate(app.client_id)
    assert (await post(client, TOKEN, app, CC)).status_code == 200
    async with auth_db.session() as s:
        row = await s.get(Client, app.client_id)
        assert row is not None and row.secret_hash == clients.secret_digest(str(app.secret))
    assert (await post(client, TOKEN, app, CC)).status_code == 200


# --- private_key_jwt ---


@pytest.fixture(scope="module")
async def signed(auth_db: Database) -> App:
    """A client with a registered JWK Set."""
    key = new_key()
    app = await _service(auth_db, AuthMethod.private_key_jwt, jwks=public_jwks(key))
    app.key = key
    return app


async def _with_assertion(client: httpx.AsyncClient, app: App, value: str, path: str = TOKEN) -> httpx.Response:
    form = {
        **CC,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": value,
    }
    if path != TOKEN:
        form = {"token": "x", **{k: v for k, v in form.items() if k != "grant_type"}}
    return await client.post(path, data=form)


async def test_private_key_jwt(client: httpx.AsyncClient, auth_settings: Settings, signed: App) -> None:
    assert signed.key is not None
    for aud in (auth_settings.issuer + TOKEN, auth_settings.issuer, [auth_settings.issuer, "https://else.example"]):
        r = await _with_assertion(client, signed, assertion(signed.key, signed.client_id, aud))  # type: ignore[arg-type]
        assert r.status_code == 200, r.text
    r = await _with_assertion(
        client, signed, assertion(signed.key, signed.client_id, auth_settings.issuer + INTROSPECT), INTROSPECT
    )
    assert r.status_code == 200 and r.json() == {"active": False}


async def test_assertion_replay(client: httpx.AsyncClient, auth_settings: Settings, signed: App) -> None:
    assert signed.key is not None
    once = assertion(signed.key, signed.client_id, auth_settings.issuer + TOKEN)
    assert (await _with_assertion(client, signed, once)).status_code == 200
    assert "replay" in _unauthorized(await _with_assertion(client, signed, once))["error_description"]


def _unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    def seg(v: dict[str, Any]) -> str:
        import json

        return base64.urlsafe_b64encode(json.dumps(v).encode()).rstrip(b"=").decode()

    return f"{seg(header)}.{seg(claims)}."


async def test_bad_assertions(client: httpx.AsyncClient, auth_settings: Settings, signed: App) -> None:
    assert signed.key is not None
    aud, cid, now = auth_settings.issuer + TOKEN, signed.client_id, int(time.time())
    cases = {
        "wrong aud": assertion(signed.key, cid, "https://elsewhere.example/token"),
        "expired": assertion(signed.key, cid, aud, exp=now - 120, iat=now - 180),
        "too long": assertion(signed.key, cid, aud, exp=now + 3600),
        "no exp": assertion(signed.key, cid, aud, exp=None),
        "no jti": assertion(signed.key, cid, aud, jti=None),
        "iss is not sub": assertion(signed.key, cid, aud, sub="someone-else"),
        "other key": assertion(new_key(), cid, aud),
        "alg none": _unsigned({"iss": cid, "sub": cid, "aud": aud, "exp": now + 60, "jti": "j1"}, {"alg": "none"}),
        "HS256": jwt.encode(
            {"alg": "HS256"},
            {"iss": cid, "sub": cid, "aud": aud, "exp": now + 60, "jti": "j2"},
            OctKey.import_key(b"k" * 32),
            algorithms=["HS256"],
        ),
        "garbage": "a.b.c",
    }
    for name, value in cases.items():
        r = await _with_assertion(client, signed, value)
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", (name, r.text)
    r = await client.post(
        TOKEN, data={**CC, "client_assertion_type": "urn:other", "client_assertion": assertion(signed.key, cid, aud)}
    )
    _unauthorized(r)


@pytest.fixture
async def jwks_server() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A JWK Set served over HTTP on the loopback interface."""
    doc: dict[str, Any] = {"keys": []}

    async def serve(_: aioweb.Request) -> aioweb.Response:
        return aioweb.json_response(doc, headers={"Cache-Control": "max-age=60"})

    app = aioweb.Application()
    app.router.add_get("/jwks", serve)
    runner = aioweb.AppRunner(app)
    await runner.setup()
    site = aioweb.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/jwks", doc
    finally:
        await runner.cleanup()


async def test_private_key_jwt_with_jwks_uri(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, jwks_server: tuple[str, dict[str, Any]]
) -> None:
    uri, doc = jwks_server
    key = new_key()
    doc["keys"] = public_jwks(key)["keys"]
    app = await _service(auth_db, AuthMethod.private_key_jwt, jwks_uri=uri)
    r = await _with_assertion(client, app, assertion(key, app.client_id, auth_settings.issuer + TOKEN))
    assert r.status_code == 200, r.text
    stranger = new_key()
    _unauthorized(await _with_assertion(client, app, assertion(stranger, app.client_id, auth_settings.issuer)))
