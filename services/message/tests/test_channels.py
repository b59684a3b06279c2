"""SMS and email: contacts from the user service, the dispatcher, providers (log, a real SMTP server), retries,
per-recipient failures and their events."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tongban_kit.demo import demo_user_id
from tongban_kit.testing.helpers import assert_problem, eventually
from tongban_kit.testing.recorder import EventRecorder
from tongban_message.providers import LogProvider, mask_address

from .conftest import MailServer, as_

TEMPLATES = "/api/v1/messages/templates"
MESSAGES = "/api/v1/messages"
ADMIN = as_(demo_user_id("demo-admin"), "admin message:send")
APP = as_("demo-app", "message:send")
CITIZEN = demo_user_id("demo-citizen")  # mobile 13800138000, demo-citizen@example.com


async def template(client: httpx.AsyncClient, channel: str, **extra: str) -> dict[str, Any]:
    body = {
        "code": f"test.{channel}.{secrets.token_hex(4)}",
        "name": "验证码",
        "channel": channel,
        "subject": "【通办】((matter))" if channel == "email" else "",
        "body": "您的((matter))验证码为((code))，5分钟内有效。",
        **extra,
    }
    r = await client.post(TEMPLATES, json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


async def settled(client: httpx.AsyncClient, message_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        status: dict[str, Any] = (await client.get(f"{MESSAGES}/{message_id}", headers=APP)).json()
        return status if status["queued"] == 0 else None

    return await eventually(done, timeout=15, what="every delivery settled")


async def test_sms_goes_to_the_mobile_on_record_and_unknown_people_fail_alone(
    client: httpx.AsyncClient, message_app: FastAPI, event_recorder: EventRecorder
) -> None:
    t = await template(client, "sms")
    assert_problem(
        await client.post(TEMPLATES, json={**t, "code": "x.email", "channel": "email", "subject": ""}, headers=ADMIN),
        422,
    )
    body = {
        "template_id": t["id"],
        "to": {"user_ids": [CITIZEN, "no-such-person"]},
        "personalisation": {"matter": "登录", "code": "482913"},
    }
    r = await client.post(MESSAGES, json=body, headers=APP)
    assert r.status_code == 201, r.text
    sent = r.json()
    assert sent["recipients"] == 2 and sent["failed"] == 1 and sent["queued"] == 1
    status = await settled(client, sent["id"])
    assert (status["delivered"], status["failed"]) == (1, 1)

    provider = message_app.state.providers["sms"]
    assert isinstance(provider, LogProvider)
    item = next(x for x in provider.sent if "482913" in x.body)
    assert item.address == "13800138000" and item.body == "您的登录验证码为482913，5分钟内有效。"

    page = (await client.get(f"{MESSAGES}/{sent['id']}/deliveries", headers=APP)).json()
    by_user = {d["user_id"]: d for d in page["items"]}
    assert by_user[CITIZEN]["status"] == "delivered" and by_user[CITIZEN]["address"] == "138****8000"
    assert by_user[CITIZEN]["attempts"] == 1 and by_user[CITIZEN]["delivered_at"]
    assert (
        by_user["no-such-person"]["status"] == "failed"
        and "no mobile number" in by_user["no-such-person"]["last_error"]
    )
    # SMS are not inbox items
    inbox = (await client.get(f"{MESSAGES}/inbox", params={"limit": 200}, headers=as_(CITIZEN, "message:read"))).json()
    assert sent["id"] not in {i["message_id"] for i in inbox["items"]}

    async def events() -> bool | None:
        types = [e["type"] for e in event_recorder.events() if (e.get("data") or {}).get("message_id") == sent["id"]]
        return (
            True
            if sorted(types)
            == [
                "message.delivery.delivered.v1",
                "message.delivery.failed.v1",
                "message.message.sent.v1",
            ]
            else None
        )

    await eventually(events, what="sent, delivered and failed events")


async def test_email_goes_through_smtp_and_is_retried_while_the_server_refuses(
    client: httpx.AsyncClient, mail_server: MailServer
) -> None:
    t = await template(client, "email")
    staff = demo_user_id("demo-staff")
    mail_server.refuse_next = 2  # "451 try again later" twice, then accepted
    body = {
        "template_id": t["id"],
        "to": {"user_ids": [staff]},
        "personalisation": {"matter": "注册", "code": "771204"},
    }
    r = await client.post(MESSAGES, json=body, headers=APP)
    assert r.status_code == 201, r.text
    status = await settled(client, r.json()["id"])
    assert status["delivered"] == 1
    page = (await client.get(f"{MESSAGES}/{r.json()['id']}/deliveries", headers=APP)).json()
    assert page["items"][0]["attempts"] == 3 and page["items"][0]["address"] == "d***@zj.gov.example"
    mail = next(m for m in mail_server.received if "771204" in m.get_content())
    assert mail["To"] == "demo-staff@zj.gov.example" and mail["Subject"] == "【通办】注册"
    assert mail.get_content().strip() == "您的注册验证码为771204，5分钟内有效。"


async def test_a_refusing_server_fails_the_delivery_after_its_attempts(
    client: httpx.AsyncClient, mail_server: MailServer, message_app: FastAPI
) -> None:
    t = await template(client, "email")
    mail_server.refuse_next = 100
    try:
        body = {"template_id": t["id"], "to": {"user_ids": [CITIZEN]}, "personalisation": {"matter": "x", "code": "1"}}
        r = await client.post(MESSAGES, json=body, headers=APP)
        status = await settled(client, r.json()["id"])
    finally:
        mail_server.refuse_next = 0
    assert status["failed"] == 1
    page = (await client.get(f"{MESSAGES}/{r.json()['id']}/deliveries", headers=APP)).json()
    attempts = message_app.state.runtime.settings.delivery_max_attempts
    assert page["items"][0]["attempts"] == attempts and "451" in page["items"][0]["last_error"]


async def test_a_channel_without_provider_is_refused(client: httpx.AsyncClient, message_app: FastAPI) -> None:
    t = await template(client, "sms")
    providers = message_app.state.dispatcher.providers
    sms = providers.pop("sms")
    try:
        body = {"template_id": t["id"], "to": {"user_ids": [CITIZEN]}, "personalisation": {"matter": "x", "code": "1"}}
        assert_problem(await client.post(MESSAGES, json=body, headers=APP), 422)
    finally:
        providers["sms"] = sms


def test_addresses_are_masked() -> None:
    assert mask_address("13800138000") == "138****8000"
    assert mask_address("zhang.san@example.gov.cn") == "z***@example.gov.cn"
    assert mask_address("12") == "***"


async def test_the_auth_service_sends_one_time_codes_through_this_service(message_app: FastAPI) -> None:
    from tongban_auth.otp import DeliveryFailed, MessageDeliverer

    deliverer = MessageDeliverer(lambda: message_app.state.runtime.rpc)  # as the auth service builds it
    reference = f"otp-{secrets.token_hex(4)}"
    await deliverer.deliver(
        channel="sms", destination="13800138000", code="305118", expires_in=300, user_id=CITIZEN, reference=reference
    )
    provider = message_app.state.providers["sms"]

    async def sent() -> bool | None:
        return True if any("305118" in x.body for x in provider.sent) else None

    await eventually(sent, what="the code handed to the SMS provider")
    item = next(x for x in provider.sent if "305118" in x.body)
    assert item.address == "13800138000" and item.body == "【通办】您的验证码为305118，5分钟内有效。请勿告诉他人。"
    # a retry with the same reference sends nothing twice
    await deliverer.deliver(
        channel="sms", destination="13800138000", code="305118", expires_in=300, user_id=CITIZEN, reference=reference
    )
    assert sum("305118" in x.body for x in provider.sent) == 1
    with pytest.raises(DeliveryFailed):
        await deliverer.deliver(
            channel="sms", destination="x", code="1", expires_in=300, user_id="nobody", reference="otp-nobody"
        )


async def test_settled_deliveries_forget_their_address_after_the_retention(
    client: httpx.AsyncClient, message_app: FastAPI
) -> None:
    from datetime import timedelta

    from tongban_kit.outbox import utcnow
    from tongban_message.dispatcher import forget_addresses

    t = await template(client, "sms")
    body = {"template_id": t["id"], "to": {"user_ids": [CITIZEN]}, "personalisation": {"matter": "x", "code": "9"}}
    sent = (await client.post(MESSAGES, json=body, headers=APP)).json()
    await settled(client, sent["id"])
    db = message_app.state.runtime.db
    assert await forget_addresses(db, older_than=timedelta(days=7)) == 0  # too recent
    assert await forget_addresses(db, older_than=timedelta(days=7), now=utcnow() + timedelta(days=8)) >= 1
    page = (await client.get(f"{MESSAGES}/{sent['id']}/deliveries", headers=APP)).json()
    assert page["items"][0]["address"] is None and page["items"][0]["status"] == "delivered"


def test_an_smtp_login_needs_its_password_outside_development() -> None:
    from pydantic import ValidationError

    from tongban_message.config import Settings

    with pytest.raises(ValidationError, match="smtp_password"):
        Settings(environment="prod", cursor_secret="c" * 32, email_provider="smtp", smtp_username="tongban")
    Settings(
        environment="prod",
        cursor_secret="c" * 32,
        email_provider="smtp",
        smtp_username="tongban",
        smtp_password="s3cret-enough",
    )
    Settings(environment="dev", email_provider="smtp", smtp_username="tongban")
