"""Settings base and trace context."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from tongban_kit.context import TraceContext, bind_from_headers, clean_request_id, current_headers
from tongban_kit.pagination import CursorCodec
from tongban_kit.problems import Problem
from tongban_kit.settings import ServiceSettings, forwarding_options
from tongban_kit.testing.serve import serve


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TONGBAN_DEMO_", extra="ignore")
    secret_fields: ClassVar[tuple[str, ...]] = ("signing_key",)
    signing_key: str = "changethis"


def test_default_secret_allowed_in_dev_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DemoSettings().signing_key == "changethis"
    monkeypatch.setenv("TONGBAN_DEMO_ENVIRONMENT", "prod")
    with pytest.raises(ValidationError, match="signing_key"):
        DemoSettings()
    for weak in ("short", "user-pii-encryption-dev-key"):
        monkeypatch.setenv("TONGBAN_DEMO_SIGNING_KEY", weak)
        with pytest.raises(ValidationError, match="signing_key"):
            DemoSettings()
    monkeypatch.setenv("TONGBAN_DEMO_SIGNING_KEY", "a-real-long-random-secret")
    assert DemoSettings().environment == "prod"
    with pytest.raises(ValidationError, match="nats_password"):
        DemoSettings(nats_user="demo", nats_password="org-nats-dev-password")
    assert DemoSettings(nats_user="demo", nats_password="0123456789abcdef0123").nats_user == "demo"


class PagingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TONGBAN_PAGING_", extra="ignore")
    secret_fields: ClassVar[tuple[str, ...]] = ("cursor_secret",)


def test_a_service_that_pages_needs_its_own_cursor_secret_outside_dev() -> None:
    dev = PagingSettings()
    codec = CursorCodec.for_service(dev.cursor_secret, "paging", dev=dev.is_dev)
    assert codec.decode(codec.encode({"id": "a"})) == {"id": "a"}
    for weak in ("", "org-cursor-dev-secret", "short"):
        with pytest.raises(ValidationError, match="cursor_secret"):
            PagingSettings(environment="prod", cursor_secret=weak)
    prod = PagingSettings(environment="prod", cursor_secret="a-real-long-random-secret")
    with pytest.raises(Problem, match="cursor"):  # a development cursor means nothing to a production key
        CursorCodec.for_service(prod.cursor_secret, "paging", dev=False).decode(codec.encode({"id": "a"}))
    with pytest.raises(RuntimeError, match="cursor_secret"):  # never a fallback key outside development
        CursorCodec.for_service("", "paging", dev=False).encode({"id": "a"})


def test_env_prefix_and_namespace_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGBAN_DEMO_PORT", "9123")
    assert DemoSettings().port == 9123
    with pytest.raises(ValidationError, match="nats_namespace"):
        DemoSettings(nats_namespace="bad.name")


def test_traceparent_parse_and_child() -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    tc = TraceContext.parse(tp)
    assert tc is not None and tc.traceparent == tp
    child = tc.child()
    assert child.trace_id == tc.trace_id and child.span_id != tc.span_id
    for bad in ("", "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", tp.replace("00-", "zz-", 1)):
        assert TraceContext.parse(bad) is None


def test_bind_from_headers_continues_trace() -> None:
    rid, tc = bind_from_headers({"X-Request-Id": "req-1", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"})
    assert rid == "req-1" and tc.trace_id == "a" * 32
    out = current_headers()
    assert out["X-Request-Id"] == "req-1"
    assert out["traceparent"].startswith("00-" + "a" * 32)
    assert clean_request_id("bad id with spaces") != "bad id with spaces"


async def test_forwarded_for_is_believed_only_from_the_configured_proxies() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        host = (scope.get("client") or ("", 0))[0]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": host.encode()})

    spoofed = {"x-forwarded-for": "203.0.113.7"}
    seen = {}
    for trusted in ("", "192.0.2.1", "127.0.0.1", "10.0.0.0/8, 127.0.0.0/8"):
        options = forwarding_options(DemoSettings(forwarded_allow_ips=trusted))
        async with serve(app, lifespan="off", **options) as url, httpx.AsyncClient() as client:
            seen[trusted] = (await client.get(url, headers=spoofed)).text
    assert seen == {
        "": "127.0.0.1",
        "192.0.2.1": "127.0.0.1",
        "127.0.0.1": "203.0.113.7",
        "10.0.0.0/8, 127.0.0.0/8": "203.0.113.7",
    }
    assert forwarding_options(DemoSettings()) == {"proxy_headers": False, "forwarded_allow_ips": None}
