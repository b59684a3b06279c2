"""Large sends: accepted (202) and fanned out by a worker; refused with Retry-After while too many wait; a worker
killed between batches is resumed by another without writing anything twice."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, insert
from sqlmodel import select

from tongban_kit.app import Runtime
from tongban_kit.demo import demo_user_id
from tongban_kit.ids import new_id
from tongban_kit.outbox import utcnow
from tongban_kit.testing.helpers import assert_problem, eventually
from tongban_kit.testing.recorder import EventRecorder
from tongban_message.contract import RPC_SEND, SendRequest
from tongban_message.fanout import FanoutWorker
from tongban_message.models import Delivery, Message, MessagePublic
from tongban_org.models import Membership

from .conftest import as_

MESSAGES = "/api/v1/messages"
APP = as_("demo-app", "message:send")
QUEUE_LIMIT = 3
BATCH = 100
CLAIM_SECONDS = 2.0


@pytest.fixture(scope="module")
def message_settings() -> dict[str, Any]:
    """Small batches, a short queue and short claims, so each behaviour shows with a few hundred members."""
    return {"fanout_batch": BATCH, "fanout_queue_limit": QUEUE_LIMIT, "fanout_claim_seconds": CLAIM_SECONDS}


async def add_members(org_app: FastAPI, unit_key: str, n: int) -> tuple[str, list[str]]:
    """Give a seeded unit `n` new members (straight into the org service's database); their ids."""
    unit = org_app.state.seed_units[unit_key]
    prefix = f"fan-{secrets.token_hex(3)}"
    users = [f"{prefix}-{i:04d}" for i in range(n)]
    rows = [
        {"id": new_id(), "user_id": u, "unit_id": unit, "title": None, "is_primary": False, "is_leader": False}
        | {"sort_order": 0, "created_at": utcnow()}
        for u in users
    ]
    async with org_app.state.runtime.db.session() as s:
        await (await s.connection()).execute(insert(Membership), rows)
        await s.commit()
    return unit, users


def to_unit(unit: str, **extra: Any) -> dict[str, Any]:
    return {
        "template_code": "notice.general",
        "to": {"unit_id": unit},
        "personalisation": {"title": "停电通知", "content": "今晚检修"},
        **extra,
    }


@asynccontextmanager
async def worker_paused(app: FastAPI) -> AsyncIterator[None]:
    """Stop this replica's fan-out worker for the block (as if it were busy elsewhere), then start it again."""
    rt: Runtime = app.state.runtime
    task = next(t for t in rt.background if t.get_name() == "message-fanout" and not t.done())
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    try:
        yield
    finally:
        assert rt.rpc is not None
        rt.background.append(asyncio.create_task(app.state.fanout.run(rt.rpc), name="message-fanout"))


async def settled(client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        got: dict[str, Any] = (await client.get(location, headers=APP)).json()
        return got if got["status"] != "queued" else None

    return await eventually(done, timeout=30, what="the fan-out finished")


async def deliveries_of(app: FastAPI, message_id: str) -> list[str]:
    async with app.state.runtime.db.session() as s:
        rows = await s.exec(select(Delivery.user_id).where(Delivery.message_id == message_id))
        return list(rows.all())


def sent_events(recorder: EventRecorder, message_id: str, kind: str = "sent") -> list[dict[str, Any]]:
    return [e for e in recorder.events(f"message.message.{kind}.v1") if e.get("subject") == message_id]


async def test_a_unit_send_is_accepted_and_reaches_every_member_once(
    client: httpx.AsyncClient, org_app: FastAPI, message_app: FastAPI, event_recorder: EventRecorder
) -> None:
    unit, users = await add_members(org_app, "zj-jyt", 250)
    ref = f"fan-{secrets.token_hex(4)}"
    r = await client.post(MESSAGES, json=to_unit(unit, reference=ref), headers=APP)
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["status"] == "queued" and r.headers["location"] == f"{MESSAGES}/{accepted['id']}"
    replay = await client.post(MESSAGES, json=to_unit(unit, reference=ref), headers=APP)
    assert replay.status_code in (200, 202) and replay.json()["id"] == accepted["id"]

    done = await settled(client, r.headers["location"])
    assert done["status"] == "sent" and done["sent_at"] and done["recipients"] >= 250
    assert done["delivered"] == done["recipients"]
    written = await deliveries_of(message_app, accepted["id"])
    assert set(users) <= set(written) and len(written) == len(set(written)) == done["recipients"]
    for someone in (users[0], users[137], users[-1]):
        inbox = (await client.get(f"{MESSAGES}/inbox", headers=as_(someone, "message:read"))).json()
        assert [i["message_id"] for i in inbox["items"]].count(accepted["id"]) == 1
        assert next(i for i in inbox["items"] if i["message_id"] == accepted["id"])["subject"] == "停电通知"
    again = await client.post(MESSAGES, json=to_unit(unit, reference=ref), headers=APP)
    assert again.status_code == 200 and again.json()["id"] == accepted["id"]  # settled: an ordinary replay

    async def one_event() -> list[dict[str, Any]] | None:
        return sent_events(event_recorder, accepted["id"]) or None

    events = await eventually(one_event, what="message.message.sent.v1")
    assert len(events) == 1 and events[0]["data"]["recipients"] == done["recipients"]
    assert events[0]["data"]["reference"] == ref


async def test_listed_people_stay_synchronous_and_the_rpc_answers_at_once(
    client: httpx.AsyncClient, message_app: FastAPI
) -> None:
    citizen = demo_user_id("demo-citizen")
    body = {"template_code": "notice.general", "to": {"user_ids": [citizen]}}
    body["personalisation"] = {"title": "t", "content": "c"}
    r = await client.post(MESSAGES, json=body, headers=APP)
    assert r.status_code == 201 and r.json()["status"] == "sent" and r.json()["delivered"] == 1
    many = {**body, "to": {"user_ids": [f"p-{secrets.token_hex(3)}-{i}" for i in range(101)]}}
    queued = await client.post(MESSAGES, json=many, headers=APP)
    assert queued.status_code == 202 and (await settled(client, queued.headers["location"]))["delivered"] == 101
    rpc = message_app.state.runtime.rpc
    request = SendRequest.model_validate({**body, "sender": "auth"})
    reply = await rpc.call(RPC_SEND, request, MessagePublic, timeout=5)
    assert reply.status == "sent" and reply.delivered == 1


async def test_a_text_message_to_a_unit_asks_the_user_directory_per_batch(
    client: httpx.AsyncClient, org_app: FastAPI, event_recorder: EventRecorder
) -> None:
    unit, users = await add_members(org_app, "zj-mzt", 130)  # none of them has a mobile number on record
    made = await client.post(
        "/api/v1/messages/templates",
        json={"code": f"test.sms.{secrets.token_hex(4)}", "name": "通知", "channel": "sms", "body": "((text))"},
        headers=as_(demo_user_id("demo-admin"), "admin message:send"),
    )
    body = {"template_id": made.json()["id"], "to": {"unit_id": unit}, "personalisation": {"text": "明日停水"}}
    r = await client.post(MESSAGES, json=body, headers=APP)
    assert r.status_code == 202, r.text
    done = await settled(client, r.headers["location"])
    assert done["status"] == "sent" and done["failed"] == done["recipients"] >= 130

    async def failures() -> list[dict[str, Any]] | None:
        every = event_recorder.events("message.delivery.failed.v1")
        found = [e for e in every if e["data"]["message_id"] == done["id"]]
        return found if len(found) >= done["recipients"] else None

    found = await eventually(failures, what="a delivery.failed.v1 per recipient")
    assert len(found) == done["recipients"] and set(users) <= {e["data"]["user_id"] for e in found}


async def test_an_unknown_unit_is_refused_and_an_oversized_one_fails_with_its_event(
    client: httpx.AsyncClient, org_app: FastAPI, event_recorder: EventRecorder
) -> None:
    missing = to_unit("00000000-0000-0000-0000-000000000000")
    assert_problem(await client.post(MESSAGES, json=missing, headers=APP), 404)
    unit, _ = await add_members(org_app, "zj-sft", 501)  # the module's service reaches at most 500
    r = await client.post(MESSAGES, json=to_unit(unit), headers=APP)
    assert r.status_code == 202, r.text
    failed = await settled(client, r.headers["location"])
    assert failed["status"] == "failed" and "500" in failed["error"] and failed["delivered"] == 0

    async def event() -> list[dict[str, Any]] | None:
        return sent_events(event_recorder, failed["id"], "failed") or None

    assert "500" in (await eventually(event, what="message.message.failed.v1"))[0]["data"]["error"]


async def test_a_full_queue_refuses_with_retry_after_and_writes_nothing(
    client: httpx.AsyncClient, org_app: FastAPI, message_app: FastAPI
) -> None:
    unit, _ = await add_members(org_app, "zj-czt", 120)
    refs = [f"busy-{secrets.token_hex(4)}" for _ in range(QUEUE_LIMIT + 1)]
    async with worker_paused(message_app):
        accepted = []
        for ref in refs[:QUEUE_LIMIT]:
            r = await client.post(MESSAGES, json=to_unit(unit, reference=ref), headers=APP)
            assert r.status_code == 202, r.text
            accepted.append(r.headers["location"])
        refused = await client.post(MESSAGES, json=to_unit(unit, reference=refs[-1]), headers=APP)
        problem = assert_problem(refused, 503)
        assert problem["type"].endswith("/overloaded") and int(refused.headers["retry-after"]) > 0
        async with message_app.state.runtime.db.session() as s:
            rows = await s.exec(select(func.count()).select_from(Message).where(Message.reference == refs[-1]))
            assert rows.one() == 0
        # a replay of an accepted send still answers its message, full queue or not
        replay = await client.post(MESSAGES, json=to_unit(unit, reference=refs[0]), headers=APP)
        assert replay.status_code == 202 and replay.headers["location"] == accepted[0]
    for location in accepted:
        assert (await settled(client, location))["delivered"] == 120
    retried = await client.post(MESSAGES, json=to_unit(unit, reference=refs[-1]), headers=APP)
    assert retried.status_code == 202 and (await settled(client, retried.headers["location"]))["delivered"] == 120


CRASHING_WORKER = """
import asyncio, sys
from tongban_kit.db import Database
from tongban_kit.nats import connect
from tongban_kit.rpc import RpcClient
from tongban_message.config import Settings
from tongban_message.dispatcher import Dispatcher
from tongban_message.fanout import FanoutWorker


class Stalls(FanoutWorker):
    '''Writes two batches, then stalls until killed.'''

    written = 0

    async def write_batch(self, *args, **kwargs):
        ok = await super().write_batch(*args, **kwargs)
        self.written += 1
        print(f"batch {self.written}", flush=True)
        if self.written == 2:
            await asyncio.sleep(3600)
        return ok


async def main(url, nats_url, namespace):
    settings = Settings(
        environment="test", cursor_secret="c" * 32, database_url=url, nats_url=nats_url, nats_namespace=namespace,
        fanout_batch=100, fanout_claim_seconds=2.0, log_json=False, log_level="WARNING",
    )
    db = Database(url)
    bus = await connect(nats_url, name="message-doomed", namespace=namespace)
    worker = Stalls(db, settings, Dispatcher(db, {}, settings))
    while not await worker.round(RpcClient(bus)):
        await asyncio.sleep(0.05)


asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_worker_killed_between_batches_is_resumed_exactly_once(
    client: httpx.AsyncClient, org_app: FastAPI, message_app: FastAPI, event_recorder: EventRecorder
) -> None:
    unit, users = await add_members(org_app, "zj-zrzyt", 350)
    settings = message_app.state.runtime.settings
    async with worker_paused(message_app):
        r = await client.post(MESSAGES, json=to_unit(unit), headers=APP)
        assert r.status_code == 202, r.text
        message_id = r.json()["id"]
        args = [settings.database_url, settings.nats_url, settings.nats_namespace]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CRASHING_WORKER, *args, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert proc.stdout is not None
            lines = [(await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip() for _ in range(2)]
            assert lines == ["batch 1", "batch 2"]
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
        halfway: dict[str, Any] = (await client.get(f"{MESSAGES}/{message_id}", headers=APP)).json()
        assert halfway["status"] == "queued" and halfway["delivered"] == 2 * BATCH
    # this replica's worker takes the message over once the dead worker's claim runs out
    done = await settled(client, r.headers["location"])
    assert done["status"] == "sent" and done["delivered"] == done["recipients"] >= 350
    written = await deliveries_of(message_app, message_id)
    assert set(users) <= set(written) and len(written) == len(set(written)) == done["recipients"]
    async with message_app.state.runtime.db.session() as s:
        message = await s.get(Message, message_id)
        assert message is not None and message.fanout_attempts == 2 and message.claim is None

    async def event() -> list[dict[str, Any]] | None:
        return sent_events(event_recorder, message_id) or None

    await eventually(event, what="message.message.sent.v1")
    await asyncio.sleep(0.5)
    assert len(sent_events(event_recorder, message_id)) == 1


async def test_a_worker_whose_claim_was_taken_over_writes_nothing(
    client: httpx.AsyncClient, org_app: FastAPI, message_app: FastAPI
) -> None:
    unit, _ = await add_members(org_app, "zj-jst", 120)
    rt: Runtime = message_app.state.runtime
    assert rt.rpc is not None
    async with worker_paused(message_app):
        r = await client.post(MESSAGES, json=to_unit(unit), headers=APP)
        assert r.status_code == 202, r.text
        slow = FanoutWorker(rt.db, rt.settings, message_app.state.dispatcher)
        stalled = await slow._claim()  # claims, then stalls past its claim
        assert stalled is not None and stalled.id == r.json()["id"]
        await asyncio.sleep(CLAIM_SECONDS + 0.2)
        assert await FanoutWorker(rt.db, rt.settings, message_app.state.dispatcher).round(rt.rpc)
        done: dict[str, Any] = (await client.get(r.headers["location"], headers=APP)).json()
        assert done["status"] == "sent" and done["delivered"] == done["recipients"] >= 120
        # the stalled worker wakes up: its claim is gone, so it neither writes nor marks anything
        assert not await slow.write_batch(stalled, ["someone-new"], {}, total=1)
        await slow.fan_out(stalled, rt.rpc)
    assert "someone-new" not in await deliveries_of(message_app, stalled.id)
    again: dict[str, Any] = (await client.get(r.headers["location"], headers=APP)).json()
    assert again == done
