"""Brute force through the login form: wrong passwords answer 401, then 429 with the time to wait shown; the right
password during the delay is refused without being checked. (Its own module: a fresh throttle table.)
"""

from __future__ import annotations

import re

from tongban_kit.demo import demo_user_id
from tongban_kit.testing.browser import Page
from tongban_kit.testing.helpers import eventually
from tongban_kit.testing.recorder import EventRecorder

from .conftest import Stack
from .flow_support import PASSWORD, App, RelyingParty, browser, rp

__all__ = ["rp"]


async def test_wrong_passwords_then_a_delay_that_even_the_right_password_waits_for(
    stack: Stack, rp: RelyingParty, event_recorder: EventRecorder
) -> None:
    client, b = browser(rp)
    client.headers["accept-language"] = "en"
    user = "demo-enterprise"
    async with client:
        page = await b.open(App(stack, rp).url())
        statuses = []
        for _ in range(stack.settings.throttle_free_failures + 1):
            page = await b.submit(page, "/oauth2/login", {"login": user, "password": "wrong-password"})
            assert isinstance(page, Page)
            statuses.append(page.status)
            assert page.alerts and "retry" not in page.text.lower()
        assert statuses == [401] * (stack.settings.throttle_free_failures + 1)

        page = await b.submit(page, "/oauth2/login", {"login": user, "password": "wrong-password"})
        assert isinstance(page, Page) and page.status == 429
        assert re.search(r"try again in \d+ seconds", page.text), page.alerts
        # the login name stays filled in
        assert f'value="{user}"' in page.text

        # the right password now: refused, without a check (the failure is recorded as throttled)
        page = await b.submit(page, "/oauth2/login", {"login": user, "password": PASSWORD})
        assert isinstance(page, Page) and page.status == 429
        assert re.search(r"try again in \d+ seconds", page.text)
        r = await client.post(
            f"{stack.issuer}/oauth2/login", data={**page.form("/oauth2/login").fields, "login": user, "password": "x"}
        )
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0

    async def throttled() -> list[dict[str, object]] | None:
        found = [
            e
            for e in event_recorder.events("auth.login.failed.v1")
            if e["data"]["user_id"] == demo_user_id(user) and e["data"]["reason"] == "throttled"
        ]
        return found if len(found) >= 3 else None

    seen = await eventually(throttled, what="throttled login failures")
    assert all(e["data"]["method"] == "pwd" for e in seen)
