"""The embedded default (`make run`) end to end: start, sign in through the gateway (OpenID Connect with PKCE,
the HTML login form), use the APIs with the tokens, stop on Ctrl-C."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from tongban_kit.demo import DEMO_PASSWORD
from tongban_kit.natsserver import free_port
from tongban_kit.testing.browser import Browser, Page, sign_in

from .devstack import start_dev_stack, stop_dev_stack

DEMO_REDIRECT_URI = "http://127.0.0.1:8765/callback"


def _call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        assert e.headers["content-type"] == "application/problem+json"
        return e.code, json.loads(e.read())


async def _sign_in_both(base: str, logs: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    async with httpx.AsyncClient(timeout=20) as http:
        admin = await sign_in(
            http,
            base,
            client_id="demo-app",
            client_secret="demo-secret",
            redirect_uri=DEMO_REDIRECT_URI,
            scope="openid profile admin org:read org:write user:read message:send",
            login="demo-admin",
            password=DEMO_PASSWORD,
        )
    async with httpx.AsyncClient(timeout=20) as http:
        # the citizen's app asks for a second factor: a text message, sent by the message service (its development
        # provider writes it to the message service's log)
        citizen = await sign_in(
            http,
            base,
            client_id="demo-spa",
            redirect_uri=DEMO_REDIRECT_URI,
            scope="openid profile user:read message:read",
            login="demo-citizen",
            password=DEMO_PASSWORD,
            acr_values="urn:tongban:acr:mfa",
            second_factor=lambda b, page: _sms_code(b, page, logs / "message.log"),
        )
    return admin, citizen


async def _sms_code(b: Browser, page: Page, message_log: Path) -> Page | str:
    sent = await b.submit(page, "/oauth2/mfa", {"op": "send", "method": "sms"})
    assert isinstance(sent, Page) and sent.status == 200 and "138****8000" in sent.text, sent.alerts
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(message_log.read_text, errors="replace")
        codes = re.findall(r"138\*{4}8000: .*?验证码为(\d{6})", text)
        if codes:
            return await b.submit(sent, "/oauth2/mfa", {"op": "verify", "method": "sms", "code": codes[-1]})
        await asyncio.sleep(0.2)
    text = await asyncio.to_thread(message_log.read_text, errors="replace")
    raise AssertionError("no text message in the message service's log:\n" + text[-2000:])


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}", "Content-Type": "application/json"}


def test_dev_stack_serves_seed_through_gateway_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    proc, lines = start_dev_stack(tmp_path / "data", port, timeout=90)
    try:
        base = f"http://127.0.0.1:{port}"
        assert any(base + "/api/v1/orgs/units" in x for x in lines)

        # the administrator and a citizen sign in through the gateway, as their apps would send them
        admin_tokens, citizen_tokens = asyncio.run(_sign_in_both(base, tmp_path / "data" / "logs"))
        ADMIN = _bearer(admin_tokens)
        payload = citizen_tokens["id_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims["acr"] == "urn:tongban:acr:mfa" and "pwd" in claims["amr"] and "mfa" in claims["amr"]

        status, problem = _call("GET", f"{base}/api/v1/orgs/units?limit=1")
        assert status == 401 and problem["status"] == 401
        status, page = _call(
            "GET", f"{base}/api/v1/orgs/units?division_code=330000&type=government&level=province", headers=ADMIN
        )
        assert status == 200 and page["items"][0]["name"] == "浙江省人民政府"
        province = page["items"][0]["id"]
        status, children = _call("GET", f"{base}/api/v1/orgs/units/{province}/children?limit=100", headers=ADMIN)
        assert {"330100000000", "331100000000"} <= {u["division_code"] for u in children["items"]}

        body = {
            "name": "端到端测试中心",
            "type": "public_institution",
            "level": "province",
            "division_code": "330000",
            "parent_id": province,
        }
        status, problem = _call("POST", f"{base}/api/v1/orgs/units", body, {"Content-Type": "application/json"})
        assert status == 401 and problem["status"] == 401
        status, unit = _call("POST", f"{base}/api/v1/orgs/units", body, ADMIN)
        assert status == 201, unit
        status, path = _call("GET", f"{base}/api/v1/orgs/units/{unit['id']}/ancestors", headers=ADMIN)
        assert [u["id"] for u in path] == [province]

        status, spec = _call("GET", f"{base}/openapi.json")
        assert "/api/v1/orgs/units/{unit_id}/subtree" in spec["paths"]
        status, ready = _call("GET", f"{base}/readyz")
        assert status == 200 and ready == {"status": "ok"}
        status, view = _call("GET", f"{base}/healthz/dependencies")  # development: on the public port
        assert status == 200 and view["upstreams"] == {"org": "ok", "user": "ok", "auth": "ok", "message": "ok"}

        status, discovery = _call("GET", f"{base}/.well-known/openid-configuration")
        assert status == 200 and discovery["jwks_uri"].endswith("/oauth2/jwks")
        status, jwks = _call("GET", f"{base}/oauth2/jwks")
        assert status == 200 and {k["alg"] for k in jwks["keys"]} == {"ES256", "RS256"}
        status, demo = _call("GET", f"{base}/api/v1/auth/clients/demo-app", headers=ADMIN)
        assert status == 200 and demo["client_type"] == "confidential" and "client_secret" not in demo
        # in development the demo app's own token (client credentials) administers apps too
        req = urllib.request.Request(
            f"{base}/oauth2/token",
            data=b"grant_type=client_credentials&scope=admin",
            headers={"Authorization": "Basic " + base64.b64encode(b"demo-app:demo-secret").decode()},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            app_token = json.loads(r.read())
        status, listed = _call("GET", f"{base}/api/v1/auth/clients", headers=_bearer(app_token))
        assert status == 200 and {"demo-app", "demo-spa"} <= {c["client_id"] for c in listed["items"]}

        status, me = _call("GET", f"{base}/api/v1/users/me", headers=_bearer(citizen_tokens))
        assert status == 200 and me["kind"] == "citizen" and me["masked"] is True
        assert me["id_number"].startswith("330106") and "*" in me["id_number"]
        status, staff = _call(
            "GET", f"{base}/api/v1/orgs/units/{province}/members?recursive=true&limit=500", headers=ADMIN
        )
        assert me["id"] not in {m["user_id"] for m in staff["items"]}
        status, users = _call("GET", f"{base}/api/v1/users?kind=staff&limit=500", headers=ADMIN)
        assert {m["user_id"] for m in staff["items"]} <= {u["id"] for u in users["items"]}, "seeded staff exist"

        # an app tells the citizen something; the citizen finds it in the inbox and opens it
        notice = {
            "template_code": "notice.general",
            "to": {"user_ids": [me["id"]]},
            "personalisation": {"title": "材料已受理", "content": "您提交的材料已受理。"},
            "reference": "e2e-1",
        }
        status, sent = _call("POST", f"{base}/api/v1/messages", notice, _bearer(citizen_tokens))
        assert status == 403 and sent["status"] == 403  # the citizen's app may read, not send
        status, sent = _call("POST", f"{base}/api/v1/messages", notice, ADMIN)
        assert status == 201 and sent["recipients"] == 1, sent
        status, inbox = _call("GET", f"{base}/api/v1/messages/inbox?unread=true", headers=_bearer(citizen_tokens))
        item = next(i for i in inbox["items"] if i["message_id"] == sent["id"])
        assert status == 200 and item["subject"] == "材料已受理" and inbox["unread"] >= 1
        status, opened = _call(
            "POST", f"{base}/api/v1/messages/inbox/{item['id']}/read", headers=_bearer(citizen_tokens)
        )
        assert status == 200 and opened["status"] == "read"
    finally:
        rc = stop_dev_stack(proc)
    assert rc == 0
    assert (tmp_path / "data" / "org.db").exists()
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "data")], capture_output=True, text=True).stdout
    assert leftovers.strip() == "", "NATS stopped"
    direct = [x.split()[-1] for x in lines if "(direct)" in x]
    assert direct, lines
    for url in [*direct, base]:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=2)
        except urllib.error.URLError:
            continue
        raise AssertionError(f"{url} still answers after Ctrl-C")
