"""The client_credentials grant: claims, scope rules, admin units from the org service, the issued event."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi import FastAPI

from tongban_auth.config import Settings
from tongban_auth.models import ClientType
from tongban_auth.schemas import AuthMethod, GrantType
from tongban_kit.db import Database
from tongban_kit.testing.recorder import EventRecorder

from .helpers import event_about
from .oauth_support import TOKEN, App, Directory, claims_of, directory, oauth_error, post, register

SERVICE_SCOPES = ["user:read", "message:send", "admin"]


@pytest.fixture(scope="module")
async def service(auth_db: Database) -> App:
    """A back-end service client."""
    return await register(auth_db, grant_types=[GrantType.client_credentials], scopes=SERVICE_SCOPES)


async def test_token_for_the_client_itself(
    client: httpx.AsyncClient, auth_settings: Settings, service: App, event_recorder: EventRecorder
) -> None:
    r = await post(client, TOKEN, service, {"grant_type": "client_credentials", "scope": "user:read"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "user:read" and "refresh_token" not in body and "id_token" not in body
    at = claims_of(body["access_token"], (await client.get("/oauth2/jwks")).json())
    assert at["sub"] == at["client_id"] == service.client_id and at["aud"] == auth_settings.api_audience
    assert not {"gid", "sid", "auth_time", "admin_units"} & set(at)
    event = await event_about(event_recorder, "auth.token.issued.v1", service.client_id)
    assert event["data"]["jti"] == at["jti"] and event["data"]["grant_type"] == "client_credentials"
    assert not event["data"]["refresh_token_issued"]


async def test_default_scope_is_every_api_scope(client: httpx.AsyncClient, service: App) -> None:
    r = await post(client, TOKEN, service, {"grant_type": "client_credentials"})
    assert r.json()["scope"] == " ".join(SERVICE_SCOPES)


@pytest.mark.parametrize("scope", ["openid", "user:read user:write", "nonsense", "a\\b"])
async def test_scope_outside_the_clients_api_scopes(client: httpx.AsyncClient, service: App, scope: str) -> None:
    oauth_error(
        await post(client, TOKEN, service, {"grant_type": "client_credentials", "scope": scope}), 400, "invalid_scope"
    )


async def test_only_registered_confidential_clients(client: httpx.AsyncClient, auth_db: Database) -> None:
    web = await register(auth_db)
    oauth_error(await post(client, TOKEN, web, {"grant_type": "client_credentials"}), 400, "unauthorized_client")
    spa = await register(auth_db, client_type=ClientType.public, method=AuthMethod.none)
    oauth_error(await post(client, TOKEN, spa, {"grant_type": "client_credentials"}), 400, "unauthorized_client")


async def test_admin_units_from_the_org_service(
    client: httpx.AsyncClient, auth_app: FastAPI, service: App, caplog: pytest.LogCaptureFixture
) -> None:
    form = {"grant_type": "client_credentials", "scope": "admin"}
    data = Directory(admins={service.client_id: ["unit-a", "unit-b"]})
    auth_app.state.oauth.issuer.forget_failures()  # earlier tests found no org service
    async with directory(auth_app.state.runtime.bus, data):
        r = await post(client, TOKEN, service, form)
    at = claims_of(r.json()["access_token"], (await client.get("/oauth2/jwks")).json())
    assert at["admin_units"] == ["unit-a", "unit-b"] and data.calls == ["admin-scopes"]

    r = await post(client, TOKEN, service, form)  # no org service: issued without admin_units, with a warning
    assert r.status_code == 200
    at = claims_of(r.json()["access_token"], (await client.get("/oauth2/jwks")).json())
    assert "admin_units" not in at
    assert any("admin_units" in rec.getMessage() for rec in caplog.records)
    started = time.monotonic()
    r = await post(client, TOKEN, service, form)  # the silent service is not asked again for a while
    assert r.status_code == 200 and time.monotonic() - started < 0.5

    r = await post(client, TOKEN, service, {"grant_type": "client_credentials", "scope": "user:read"})
    assert "admin_units" not in claims_of(r.json()["access_token"], (await client.get("/oauth2/jwks")).json())
