"""A scope is not a permission: the message service checks each caller's entitlements itself, on every request.

Replays findings 1 and 4 of the security review: a citizen whose token carries `admin` and `message:send` (as
`demo-app` used to issue) may not write templates, archive system templates, read others' messages or send to a
unit; people send only where they may address; an app's own token within its registration; references per sender.
"""

from __future__ import annotations

import secrets

import httpx
from fastapi import FastAPI

from tongban_kit.demo import demo_user_id
from tongban_kit.testing.helpers import assert_problem

from .conftest import NARROW_APP_ID, as_

TEMPLATES = "/api/v1/messages/templates"
MESSAGES = "/api/v1/messages"
CITIZEN = demo_user_id("demo-citizen")
#: the citizen's token as demo-app issued it before entitlements: every scope the app may ask for
CITIZEN_ALL = as_(CITIZEN, "openid admin message:send message:read org:write")
ADMIN = as_(demo_user_id("demo-admin"), "admin message:send")
STAFF = as_(demo_user_id("demo-staff"), "message:send")  # may address 省大数据局 (org seed send grant)
HZ_ADMIN = as_(demo_user_id("hz-admin"), "admin message:send")  # administers 杭州市
APP = as_("demo-app", "message:send")
NARROW = as_(NARROW_APP_ID, "message:send", client_id=NARROW_APP_ID)
NOTICE = {"title": "通知", "content": "内容"}


def notice_to(to: dict[str, object], **extra: object) -> dict[str, object]:
    return {"template_code": "notice.general", "to": to, "personalisation": NOTICE, **extra}


async def template_id(client: httpx.AsyncClient, code: str) -> str:
    page = (await client.get(TEMPLATES, params={"limit": 200}, headers=APP)).json()
    return str(next(t["id"] for t in page["items"] if t["code"] == code))


async def test_a_citizen_with_the_admin_scope_is_no_template_administrator(client: httpx.AsyncClient) -> None:
    notice = await template_id(client, "notice.general")
    before = (await client.get(f"{TEMPLATES}/{notice}", headers=APP)).json()
    body = {"code": f"x.{secrets.token_hex(3)}", "name": "n", "subject": "s", "body": "b"}
    r = assert_problem(await client.post(TEMPLATES, json=body, headers=CITIZEN_ALL), 403)
    assert r["missing"] == "admin:whole-tree"
    phishing = {"body": "((content)) 请点击 https://evil.example 验证身份"}
    assert_problem(await client.patch(f"{TEMPLATES}/{notice}", json=phishing, headers=CITIZEN_ALL), 403)
    assert_problem(await client.post(f"{TEMPLATES}/{notice}/archive", headers=CITIZEN_ALL), 403)
    # a delegated administrator administers a subtree, not the platform's templates
    assert_problem(await client.patch(f"{TEMPLATES}/{notice}", json=phishing, headers=HZ_ADMIN), 403)
    # an app's own token names no person
    assert_problem(await client.post(TEMPLATES, json=body, headers=as_("demo-app", "admin")), 403)
    assert (await client.get(f"{TEMPLATES}/{notice}", headers=APP)).json() == before


async def test_system_templates_are_not_changed_through_the_api(client: httpx.AsyncClient) -> None:
    for code in ("auth.otp.sms", "auth.otp.email"):
        tid = await template_id(client, code)
        r = assert_problem(await client.post(f"{TEMPLATES}/{tid}/archive", headers=ADMIN), 403)
        assert r["missing"] == "system"
        assert_problem(await client.patch(f"{TEMPLATES}/{tid}", json={"body": "((code))"}, headers=ADMIN), 403)
        assert (await client.get(f"{TEMPLATES}/{tid}", headers=APP)).json()["status"] == "active"
    made = {"code": "auth.otp.voice", "name": "n", "channel": "sms", "body": "((code))"}
    assert_problem(await client.post(TEMPLATES, json=made, headers=ADMIN), 403)
    # and nobody sends them but the services that own them (message.rpc.send)
    otp = {"template_code": "auth.otp.sms", "to": {"user_ids": [CITIZEN]}, "personalisation": {"code": 1, "minutes": 5}}
    assert_problem(await client.post(MESSAGES, json=otp, headers=APP), 403)


async def test_templates_are_plain_text(client: httpx.AsyncClient) -> None:
    for text in (
        "<script>alert(1)</script>",
        "点击<a href='x'>这里</a>",
        "打开 javascript:alert(1)",
        "<img src=x onerror=alert(1)>",
    ):
        body = {"code": f"x.{secrets.token_hex(3)}", "name": "n", "subject": "s", "body": text}
        assert assert_problem(await client.post(TEMPLATES, json=body, headers=ADMIN), 422)["type"].endswith(
            "markup-not-allowed"
        )
    notice = await template_id(client, "notice.general")
    assert_problem(await client.patch(f"{TEMPLATES}/{notice}", json={"subject": "<b>x</b>"}, headers=ADMIN), 422)
    fine = {"code": f"x.{secrets.token_hex(3)}", "name": "n", "subject": "a < b", "body": "1 < 2 且 3 > 2"}
    assert (await client.post(TEMPLATES, json=fine, headers=ADMIN)).status_code == 201


async def test_a_citizen_cannot_send_as_the_app(client: httpx.AsyncClient, org_app: FastAPI) -> None:
    province = org_app.state.seed_units["zj"]
    r = await client.post(MESSAGES, json=notice_to({"unit_id": province, "recursive": True}), headers=CITIZEN_ALL)
    assert assert_problem(r, 403)["missing"] == "send"
    assert_problem(await client.post(MESSAGES, json=notice_to({"user_ids": [CITIZEN]}), headers=CITIZEN_ALL), 403)


async def test_people_send_only_where_they_may_address(client: httpx.AsyncClient, org_app: FastAPI) -> None:
    units = org_app.state.seed_units
    ok = await client.post(MESSAGES, json=notice_to({"unit_id": units["zj-dsj"], "recursive": True}), headers=STAFF)
    assert ok.status_code == 202, ok.text  # a unit send is accepted and fanned out by the worker
    for key in ("zj", "zj-hz"):
        r = await client.post(MESSAGES, json=notice_to({"unit_id": units[key], "recursive": True}), headers=STAFF)
        assert assert_problem(r, 403)["missing"] == f"unit:{units[key]}"
    # people in the units they may address, and no one else
    colleague = demo_user_id("dsj-leader")
    assert (await client.post(MESSAGES, json=notice_to({"user_ids": [colleague]}), headers=STAFF)).status_code == 201
    r = await client.post(MESSAGES, json=notice_to({"user_ids": [colleague, CITIZEN]}), headers=STAFF)
    assert assert_problem(r, 403)["user_ids"] == [CITIZEN]
    # a delegated administrator addresses the subtree they administer
    hz = await client.post(MESSAGES, json=notice_to({"unit_id": units["zj-hz"], "recursive": True}), headers=HZ_ADMIN)
    assert hz.status_code == 202, hz.text
    assert_problem(await client.post(MESSAGES, json=notice_to({"unit_id": units["zj-dsj"]}), headers=HZ_ADMIN), 403)


async def test_a_withdrawn_send_grant_stops_working_at_once(
    client: httpx.AsyncClient, org_client: httpx.AsyncClient, org_app: FastAPI
) -> None:
    unit = org_app.state.seed_units["zj-sw"]
    person = demo_user_id("sw-staff")
    token = as_(person, "message:send")
    assert_problem(await client.post(MESSAGES, json=notice_to({"unit_id": unit}), headers=token), 403)
    dsj_admin = as_(demo_user_id("dsj-admin"), "org:read org:write admin")
    grant = {"principal": person, "unit_id": unit}
    assert_problem(await org_client.post("/api/v1/orgs/send-grants", json=grant, headers=dsj_admin), 403)
    admin = as_(demo_user_id("demo-admin"), "org:read org:write admin")
    made = await org_client.post("/api/v1/orgs/send-grants", json=grant, headers=admin)
    assert made.status_code == 201, made.text
    assert (await client.post(MESSAGES, json=notice_to({"unit_id": unit}), headers=token)).status_code == 202
    gone = await org_client.delete(f"/api/v1/orgs/send-grants/{made.json()['id']}", headers=admin)
    assert gone.status_code == 204
    assert_problem(await client.post(MESSAGES, json=notice_to({"unit_id": unit}), headers=token), 403)


async def test_an_app_sends_within_its_registration(client: httpx.AsyncClient, org_app: FastAPI) -> None:
    units = org_app.state.seed_units
    ok = await client.post(MESSAGES, json=notice_to({"unit_id": units["zj-hz"], "recursive": True}), headers=NARROW)
    assert ok.status_code == 202, ok.text
    r = await client.post(MESSAGES, json=notice_to({"unit_id": units["zj"]}), headers=NARROW)
    assert assert_problem(r, 403)["missing"] == f"unit:{units['zj']}"
    task = {
        "template_code": "staff.task.assigned",
        "to": {"unit_id": units["zj-hz"]},
        "personalisation": {"matter": "m", "deadline": "d"},
    }
    assert assert_problem(await client.post(MESSAGES, json=task, headers=NARROW), 403)["missing"] == (
        "template:staff.task.assigned"
    )
    r = await client.post(MESSAGES, json=notice_to({"user_ids": [CITIZEN]}), headers=NARROW)
    assert assert_problem(r, 403)["missing"] == "accounts"
    unknown = as_("unknown-app", "message:send", client_id="unknown-app")
    assert_problem(await client.post(MESSAGES, json=notice_to({"user_ids": [CITIZEN]}), headers=unknown), 403)


async def test_messages_and_references_belong_to_their_sender(client: httpx.AsyncClient) -> None:
    ref = f"future-{secrets.token_hex(4)}"
    colleague = demo_user_id("dsj-leader")
    # a person uses the app's future reference first …
    squatted = await client.post(MESSAGES, json=notice_to({"user_ids": [colleague]}, reference=ref), headers=STAFF)
    assert squatted.status_code == 201
    # … and the app's own message still goes out, as a new message, without showing the person's
    own = await client.post(MESSAGES, json=notice_to({"user_ids": [CITIZEN]}, reference=ref), headers=APP)
    assert own.status_code == 201 and own.json()["id"] != squatted.json()["id"] and own.json()["recipients"] == 1
    again = await client.post(MESSAGES, json=notice_to({"user_ids": [CITIZEN]}, reference=ref), headers=APP)
    assert again.status_code == 200 and again.json()["id"] == own.json()["id"]
    # each sender sees only its own messages and deliveries: not the app, not another person, not an "admin"
    for other in (APP, ADMIN, CITIZEN_ALL, as_(demo_user_id("dsj-admin"), "message:send")):
        assert_problem(await client.get(f"{MESSAGES}/{squatted.json()['id']}", headers=other), 404)
        assert_problem(await client.get(f"{MESSAGES}/{squatted.json()['id']}/deliveries", headers=other), 404)
    for other in (STAFF, ADMIN, CITIZEN_ALL):
        assert_problem(await client.get(f"{MESSAGES}/{own.json()['id']}", headers=other), 404)
    assert (await client.get(f"{MESSAGES}/{squatted.json()['id']}", headers=STAFF)).status_code == 200
    assert (await client.get(f"{MESSAGES}/{own.json()['id']}/deliveries", headers=APP)).status_code == 200


async def test_while_the_org_service_is_silent_nothing_is_granted_blindly(
    client: httpx.AsyncClient, org_app: FastAPI
) -> None:
    rpc_server = org_app.state.runtime.rpc_server
    await rpc_server.stop()  # no instance of the org service answers its RPC endpoints now
    try:
        send = await client.post(
            MESSAGES, json=notice_to({"unit_id": org_app.state.seed_units["zj-dsj"]}), headers=STAFF
        )
        assert assert_problem(send, 503)["type"].endswith("dependency-unavailable")
        assert int(send.headers["Retry-After"]) > 0
        body = {"code": f"x.{secrets.token_hex(3)}", "name": "n", "subject": "s", "body": "b"}
        write = await client.post(TEMPLATES, json=body, headers=ADMIN)
        assert assert_problem(write, 503)["type"].endswith("dependency-unavailable")
        codes = {t["code"] for t in (await client.get(TEMPLATES, params={"limit": 200}, headers=APP)).json()["items"]}
        assert body["code"] not in codes
    finally:
        await rpc_server.start()
    assert (await client.post(TEMPLATES, json=body, headers=ADMIN)).status_code == 201
