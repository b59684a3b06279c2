"""SSRF through app-supplied URIs: back-channel logout and JWKS URIs naming internal hosts are refused when an app
registers (the registry API and RFC 7591) and again when the service would call them (no request leaves).

This module's service runs as deployed outside development: no loopback calls, https only.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web as aioweb
from fastapi import FastAPI

import tongban_auth.__main__
from tongban_auth import logout
from tongban_auth.config import Settings
from tongban_auth.contract import SessionEnded
from tongban_auth.schemas import AuthMethod, GrantType
from tongban_kit.db import Database, run_migrations
from tongban_kit.outbound import OutboundClient
from tongban_kit.testing.helpers import DEMO_ADMIN_SETTINGS

from .helpers import ADMIN, CLIENTS
from .oauth_support import TOKEN, assertion, make_grant, new_key, public_jwks, register

#: the finding's URIs and the other address forms that reach the host itself, its network or the platform
INTERNAL_URIS = [
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "https://10.0.0.1:4222/",  # private
    "https://172.16.0.1/",
    "https://192.168.1.1/",
    "https://100.64.0.1/",  # shared address space (CGNAT)
    "https://127.0.0.1:4222/",  # loopback
    "https://[::1]/",
    "https://0.0.0.0/",  # unspecified
    "https://[::]/",
    "https://224.0.0.1/",  # multicast
    "https://240.0.0.1/",  # reserved
    "https://[fe80::1]/",  # link-local IPv6
    "https://[fc00::1]/",  # unique local IPv6
    "https://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "https://[::ffff:a9fe:a9fe]/",
    "https://[64:ff9b::a9fe:a9fe]/",  # NAT64 embedding
    "https://[2002:7f00:1::1]/",  # 6to4 embedding
    "https://0x7f000001/",  # integer, hex and octal forms of 127.0.0.1
    "https://2130706433/",
    "https://0177.0.0.1/",
    "https://127.1/",
    "https://nats:4222/",  # the deployment's service names
    "https://postgres/",
    "https://localhost/",
    "https://auth.tongban.svc.cluster.local/",
    "https://metadata.google.internal/",
    "http://app.example.gov.cn/backchannel",  # plain http outside development
]


@pytest.fixture(scope="module")
async def auth_settings(pg_database_url: str, nats_url: str, nats_namespace: str) -> Settings:
    """The service as deployed: the outbound guard without the loopback allowance of the other test modules."""
    settings = Settings(
        environment="test",
        **DEMO_ADMIN_SETTINGS,
        cursor_secret=secrets.token_urlsafe(32),
        database_url=pg_database_url,
        nats_url=nats_url,
        nats_namespace=nats_namespace,
        key_encryption_key=secrets.token_urlsafe(32),
        rsa_key_bits=2048,
        log_json=False,
        log_level="WARNING",
    )
    assert not settings.outbound_policy.allow_loopback
    await asyncio.to_thread(run_migrations, tongban_auth.__main__.MIGRATIONS, pg_database_url)
    return settings


@pytest.fixture
async def app_server() -> AsyncIterator[tuple[str, list[str]]]:
    """An app's server on the loopback interface: serves a JWK Set and a back-channel endpoint, logs each request."""
    seen: list[str] = []

    async def record(request: aioweb.Request) -> aioweb.Response:
        seen.append(f"{request.method} {request.path}")
        return aioweb.json_response(public_jwks(new_key()))

    app = aioweb.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = aioweb.AppRunner(app)
    await runner.setup()
    site = aioweb.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def web_app(**extra: Any) -> dict[str, Any]:
    """A confidential web app for the registry API."""
    return {
        "name": "回调测试",
        "redirect_uris": ["https://app.example.gov.cn/callback"],
        "grant_types": ["authorization_code"],
        "scopes": ["openid"],
        **extra,
    }


@pytest.mark.parametrize("uri", INTERNAL_URIS)
async def test_the_registry_refuses_uris_it_would_call_on_internal_hosts(client: httpx.AsyncClient, uri: str) -> None:
    r = await client.post(CLIENTS, json=web_app(backchannel_logout_uri=uri), headers=ADMIN)
    assert r.status_code == 422, (uri, r.text)
    assert r.json()["errors"][0]["location"] == "body.backchannel_logout_uri"
    jwt_app = web_app(token_endpoint_auth_method="private_key_jwt", jwks_uri=uri)
    r = await client.post(CLIENTS, json=jwt_app, headers=ADMIN)
    assert r.status_code == 422, (uri, r.text)
    assert r.json()["errors"][0]["location"] == "body.jwks_uri"
    # a patch cannot bring one in either
    made = await client.post(CLIENTS, json=web_app(), headers=ADMIN)
    assert made.status_code == 201, made.text
    r = await client.patch(f"{CLIENTS}/{made.json()['client_id']}", json={"backchannel_logout_uri": uri}, headers=ADMIN)
    assert r.status_code == 422, (uri, r.text)


async def test_dynamic_registration_refuses_them_as_invalid_client_metadata(client: httpx.AsyncClient) -> None:
    made = await client.post(
        "/api/v1/auth/registration-tokens", json={"scopes": ["openid"], "max_uses": 5}, headers=ADMIN
    )
    auth = {"Authorization": f"Bearer {made.json()['token']}"}
    meta = {"redirect_uris": ["https://app.example.gov.cn/cb"], "scope": "openid"}
    for uri in INTERNAL_URIS:
        for extra in (
            {"backchannel_logout_uri": uri},
            {"jwks_uri": uri, "token_endpoint_auth_method": "private_key_jwt"},
        ):
            r = await client.post("/oauth2/register", json={**meta, **extra}, headers=auth)
            assert r.status_code == 400, (extra, r.text)
            assert r.json()["error"] == "invalid_client_metadata", (extra, r.text)
    ok = {**meta, "backchannel_logout_uri": "https://app.example.gov.cn/backchannel"}
    assert (await client.post("/oauth2/register", json=ok, headers=auth)).status_code == 201


async def test_a_stored_jwks_uri_on_loopback_is_never_fetched(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings, app_server: tuple[str, list[str]]
) -> None:
    url, seen = app_server
    key = new_key()
    # registered before the guard existed (the helper registers with loopback allowed)
    app = await register(
        auth_db,
        method=AuthMethod.private_key_jwt,
        grant_types=[GrantType.client_credentials],
        scopes=["user:read"],
        jwks_uri=f"{url}/jwks",
    )
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion(key, app.client_id, auth_settings.issuer + TOKEN),
    }
    r = await client.post(TOKEN, data=form)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    await asyncio.sleep(0.2)
    assert seen == []


async def test_a_stored_backchannel_uri_on_loopback_gets_no_logout_token(
    auth_app: FastAPI, auth_db: Database, auth_settings: Settings, app_server: tuple[str, list[str]]
) -> None:
    url, seen = app_server
    app = await register(auth_db, backchannel_logout_uri=f"{url}/backchannel")
    grant, _ = await make_grant(auth_db, auth_settings, app, session_id="sid-guard")
    ended = SessionEnded(sid="sid-guard", user_id=grant.user_id, reason="logout", grant_ids=[grant.id])
    http = OutboundClient(auth_settings.outbound_policy)
    try:
        async with auth_db.session() as s:
            assert await logout.notify_clients(s, auth_app.state.signer, auth_settings, ended, http=http) == []
    finally:
        await http.close()
    assert seen == []
    # the same call reaches the app where loopback is allowed (development): the guard is what stopped it
    allowed = auth_settings.model_copy(update={"outbound_allow_loopback": True})
    http = OutboundClient(allowed.outbound_policy)
    try:
        async with auth_db.session() as s:
            assert await logout.notify_clients(s, auth_app.state.signer, allowed, ended, http=http) == [app.client_id]
    finally:
        await http.close()
    assert seen == ["POST /backchannel"]
