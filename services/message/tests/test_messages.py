"""Templates, sending (people and organisation units), the inbox and read state, through the HTTP API."""

from __future__ import annotations

import secrets

import httpx
from fastapi import FastAPI

from tongban_kit.demo import demo_user_id
from tongban_kit.testing.helpers import assert_problem, eventually
from tongban_kit.testing.recorder import EventRecorder

from .conftest import as_

TEMPLATES = "/api/v1/messages/templates"
MESSAGES = "/api/v1/messages"
ADMIN = as_(demo_user_id("demo-admin"), "admin message:send")
APP = as_("demo-app", "message:send")  # the app's own token (client credentials)
OTHER_APP = as_("other-app", "message:send", client_id="other-app")
CITIZEN = demo_user_id("demo-citizen")


def reader(user_id: str) -> dict[str, str]:
    return as_(user_id, "openid message:read")


async def make_template(client: httpx.AsyncClient, **extra: str) -> dict[str, object]:
    body = {
        "code": f"test.{secrets.token_hex(4)}",
        "name": "办结通知",
        "subject": "((matter))已办结",
        "body": "((name))您好，您申请的“((matter))”已办结。",
        **extra,
    }
    r = await client.post(TEMPLATES, json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    made: dict[str, object] = r.json()
    return made


async def test_templates_are_written_by_administrators_and_versioned(client: httpx.AsyncClient) -> None:
    t = await make_template(client)
    assert t["placeholders"] == ["matter", "name"] and t["version"] == 1 and t["status"] == "active"
    assert_problem(await client.post(TEMPLATES, json={**t, "code": t["code"]}, headers=ADMIN), 409)
    assert_problem(
        await client.post(TEMPLATES, json={"code": "x.y", "name": "n", "subject": "s", "body": "b"}, headers=APP), 403
    )
    assert_problem(
        await client.post(
            TEMPLATES, json={"code": "Bad Code", "name": "n", "subject": "s", "body": "b"}, headers=ADMIN
        ),
        422,
    )
    got = (await client.get(f"{TEMPLATES}/{t['id']}", headers=APP)).json()
    assert got == t
    same = await client.patch(f"{TEMPLATES}/{t['id']}", json={"name": "办结通知"}, headers=ADMIN)
    assert same.json()["version"] == 1  # nothing changed
    changed = await client.patch(f"{TEMPLATES}/{t['id']}", json={"body": "((matter))：已办结。"}, headers=ADMIN)
    assert changed.json()["version"] == 2 and changed.json()["placeholders"] == ["matter"]
    listed = (await client.get(TEMPLATES, params={"limit": 200}, headers=APP)).json()["items"]
    assert t["code"] in [x["code"] for x in listed] and "notice.general" in [x["code"] for x in listed]
    assert_problem(await client.get(f"{TEMPLATES}/nope", headers=APP), 404)
    assert_problem(await client.get(TEMPLATES), 401)


async def test_a_message_reaches_the_inbox_rendered_and_is_read_once(
    client: httpx.AsyncClient, event_recorder: EventRecorder
) -> None:
    t = await make_template(client)
    body = {
        "template_id": t["id"],
        "to": {"user_ids": [CITIZEN, CITIZEN, demo_user_id("demo-citizen2")]},
        "personalisation": {"matter": "企业开办", "name": "张三"},
    }
    r = await client.post(MESSAGES, json=body, headers=APP)
    assert r.status_code == 201, r.text
    sent = r.json()
    assert sent["recipients"] == 2 and sent["read"] == 0 and sent["template_version"] == 1

    inbox = (await client.get(f"{MESSAGES}/inbox", headers=reader(CITIZEN))).json()
    item = next(i for i in inbox["items"] if i["message_id"] == sent["id"])
    assert item["subject"] == "企业开办已办结" and item["body"] == "张三您好，您申请的“企业开办”已办结。"
    assert item["status"] == "delivered" and inbox["unread"] >= 1
    unread_before = inbox["unread"]

    first = await client.post(f"{MESSAGES}/inbox/{item['id']}/read", headers=reader(CITIZEN))
    assert first.status_code == 200 and first.json()["status"] == "read" and first.json()["read_at"]
    again = await client.post(f"{MESSAGES}/inbox/{item['id']}/read", headers=reader(CITIZEN))
    assert again.json()["read_at"] == first.json()["read_at"]
    after = (await client.get(f"{MESSAGES}/inbox", params={"unread": "true"}, headers=reader(CITIZEN))).json()
    assert after["unread"] == unread_before - 1 and item["id"] not in [i["id"] for i in after["items"]]
    # someone else's item is not there for them; the sender sees one read
    assert_problem(await client.post(f"{MESSAGES}/inbox/{item['id']}/read", headers=reader("someone")), 404)
    status = (await client.get(f"{MESSAGES}/{sent['id']}", headers=APP)).json()
    assert status["read"] == 1 and status["recipients"] == 2
    assert_problem(await client.get(f"{MESSAGES}/{sent['id']}", headers=OTHER_APP), 404)

    async def events() -> bool | None:
        seen = {e["type"] for e in event_recorder.events() if e.get("subject") in (sent["id"], item["id"])}
        return True if {"message.message.sent.v1", "message.delivery.read.v1"} <= seen else None

    await eventually(events, what="the sent and read events")
    reads = [e for e in event_recorder.events("message.delivery.read.v1") if e.get("subject") == item["id"]]
    assert len(reads) == 1 and reads[0]["data"]["user_id"] == CITIZEN


async def test_missing_personalisation_and_archived_templates_are_refused(client: httpx.AsyncClient) -> None:
    t = await make_template(client)
    r = await client.post(
        MESSAGES,
        json={"template_id": t["id"], "to": {"user_ids": [CITIZEN]}, "personalisation": {"matter": "x"}},
        headers=APP,
    )
    assert assert_problem(r, 400)["missing"] == ["name"]
    assert_problem(await client.post(MESSAGES, json={"template_code": t["code"], "to": {}}, headers=APP), 400)
    assert_problem(
        await client.post(MESSAGES, json={"to": {"user_ids": [CITIZEN]}}, headers=APP), 400
    )  # no template named
    archived = await client.post(f"{TEMPLATES}/{t['id']}/archive", headers=ADMIN)
    assert archived.json()["status"] == "archived"
    body = {"template_code": t["code"], "to": {"user_ids": [CITIZEN]}, "personalisation": {"matter": "x", "name": "y"}}
    assert_problem(await client.post(MESSAGES, json=body, headers=APP), 409)
    await client.post(f"{TEMPLATES}/{t['id']}/restore", headers=ADMIN)
    assert (await client.post(MESSAGES, json=body, headers=APP)).status_code == 201


async def test_a_reference_makes_retries_safe(client: httpx.AsyncClient) -> None:
    t = await make_template(client)
    ref = f"case-{secrets.token_hex(4)}"
    body = {
        "template_id": t["id"],
        "to": {"user_ids": [CITIZEN]},
        "personalisation": {"matter": "新生儿出生", "name": "李四"},
        "reference": ref,
    }
    first = await client.post(MESSAGES, json=body, headers=APP)
    retry = await client.post(MESSAGES, json=body, headers=APP)
    assert (first.status_code, retry.status_code) == (201, 200) and first.json()["id"] == retry.json()["id"]
    inbox = (await client.get(f"{MESSAGES}/inbox", params={"limit": 200}, headers=reader(CITIZEN))).json()
    assert [i["message_id"] for i in inbox["items"]].count(first.json()["id"]) == 1
    other = await make_template(client)
    assert_problem(await client.post(MESSAGES, json={**body, "template_id": other["id"]}, headers=APP), 409)
    # references are per sending app
    assert (await client.post(MESSAGES, json=body, headers=OTHER_APP)).status_code == 201


async def test_a_unit_and_its_subtree_get_one_message_each(
    client: httpx.AsyncClient, org_client: httpx.AsyncClient, org_app: FastAPI
) -> None:
    unit = org_app.state.seed_units["zj-hz"]
    members = await org_client.get(
        f"/api/v1/orgs/units/{unit}/members",
        params={"recursive": "true", "limit": 500},
        headers=as_(demo_user_id("demo-admin"), "org:read"),
    )
    expected = {m["user_id"] for m in members.json()["items"]}
    assert expected
    body = {
        "template_code": "staff.task.assigned",
        "to": {"unit_id": unit, "recursive": True},
        "personalisation": {"matter": "企业开办 · 税务登记", "deadline": "2026年12月1日"},
    }
    r = await client.post(MESSAGES, json=body, headers=APP)
    assert r.status_code == 202, r.text  # a unit's members: fanned out by the worker

    async def sent() -> dict[str, object] | None:
        got: dict[str, object] = (await client.get(r.headers["location"], headers=APP)).json()
        return got if got["status"] == "sent" else None

    assert (await eventually(sent, what="the fan-out"))["recipients"] == len(expected)
    someone = sorted(expected)[0]
    inbox = (await client.get(f"{MESSAGES}/inbox", headers=reader(someone))).json()
    assert any(i["message_id"] == r.json()["id"] and "税务登记" in i["subject"] for i in inbox["items"])
    missing = {**body, "to": {"unit_id": "00000000-0000-0000-0000-000000000000"}}
    assert_problem(await client.post(MESSAGES, json=missing, headers=APP), 404)


async def test_only_people_have_inboxes_and_pages_follow_cursors(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"{MESSAGES}/inbox", headers=as_("demo-app", "message:read")), 403)
    assert_problem(await client.get(f"{MESSAGES}/inbox", headers=APP), 403)  # no message:read
    user = f"reader-{secrets.token_hex(3)}"
    t = await make_template(client)
    for n in range(5):
        body = {
            "template_id": t["id"],
            "to": {"user_ids": [user]},
            "personalisation": {"matter": f"事项{n}", "name": "王五"},
        }
        assert (await client.post(MESSAGES, json=body, headers=APP)).status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"{MESSAGES}/inbox", params=params, headers=reader(user))).json()
        seen += [i["subject"] for i in page["items"]]
        assert page["unread"] == 5
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"事项{n}已办结" for n in reversed(range(5))]  # newest first
    assert_problem(await client.get(f"{MESSAGES}/inbox", params={"cursor": "!!"}, headers=reader(user)), 400)


async def test_oversized_input_is_a_4xx_problem(client: httpx.AsyncClient) -> None:
    t = await make_template(client)
    long_id = {"template_id": t["id"], "to": {"user_ids": ["x" * 65]}, "personalisation": {"matter": "m", "name": "n"}}
    assert_problem(await client.post(MESSAGES, json=long_id, headers=APP), 422)
    empty_id = {**long_id, "to": {"user_ids": [""]}}
    assert_problem(await client.post(MESSAGES, json=empty_id, headers=APP), 422)
    huge = {**long_id, "to": {"user_ids": [CITIZEN]}, "personalisation": {"matter": "长" * 600, "name": "n"}}
    assert "subject" in assert_problem(await client.post(MESSAGES, json=huge, headers=APP), 400)["detail"]
