"""Login throttling that the attacker pays for and the owner does not, through the sign-in forms over HTTP.

The auth service runs as it is launched (`forwarding_options`), believing `X-Forwarded-For` from the loopback as
from the gateway; each browser sends the address the gateway would have seen. Delays are short (at most 8 s).
(Its own module: a fresh throttle table.)
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from tongban_auth.models import Throttle
from tongban_kit.demo import demo_user_id
from tongban_kit.settings import forwarding_options
from tongban_kit.testing.browser import Browser, Page
from tongban_kit.testing.serve import serve

from .conftest import Stack
from .flow_support import PASSWORD, App, RelyingParty, approve, browser, has_form, login, rp

__all__ = ["rp"]

MAX_DELAY = 8
ATTACKER = "198.51.100.66"


@pytest.fixture(scope="module")
def auth_overrides() -> dict[str, Any]:
    """Three free failures, delays up to 8 s; the gateway reaches the service over the loopback."""
    return {"throttle_free_failures": 3, "throttle_max_delay_seconds": MAX_DELAY, "forwarded_allow_ips": "127.0.0.1"}


def browser_at(party: RelyingParty, address: str) -> tuple[httpx.AsyncClient, Browser]:
    """A fresh browser whose requests the gateway saw coming from `address`."""
    client, b = browser(party)
    client.headers.update({"x-forwarded-for": address, "accept-language": "en"})
    return client, b


async def login_page(stack: Stack, party: RelyingParty, b: Browser, app: App | None = None) -> Page:
    """The login form of a new authorization request (asking to sign in again if the browser has a session)."""
    page = await b.open((app or App(stack, party)).url(prompt="login"))
    assert isinstance(page, Page) and has_form(page, "/oauth2/login"), page
    return page


async def finish(stack: Stack, b: Browser, app: App, page: Page | str) -> dict[str, Any]:
    """Approve the consent page if shown, then redeem the code."""
    if has_form(page, "/oauth2/consent"):
        page = await approve(b, page)
    return await app.redeem(page)


async def sign_in(stack: Stack, party: RelyingParty, b: Browser, user: str) -> Page | str:
    """Submit the right password on a fresh login form; the page or redirect that follows."""
    return await login(b, await login_page(stack, party, b), user)


async def step_up(stack: Stack, b: Browser, page: Page | str) -> Page | str:
    """Pass the second-factor page with a one-time code sent by SMS or email."""
    assert isinstance(page, Page) and page.status == 200 and has_form(page, "/oauth2/mfa"), page
    method = page.form("/oauth2/mfa").fields.get("method")
    assert method in ("sms", "email"), page.form("/oauth2/mfa").fields
    page = await b.submit(page, "/oauth2/mfa", {"op": "send", "method": method})
    assert isinstance(page, Page) and page.status == 200, page.alerts
    code = stack.auth.state.otp_outbox[-1]["code"]
    return await b.submit(page, "/oauth2/mfa", {"op": "verify", "method": method, "code": code})


async def fail_when_free(b: Browser, page: Page, user: str) -> Page:
    """One wrong password, submitted as soon as the address may try again (a 401, never a 429)."""
    while True:
        page_or = await b.submit(page, "/oauth2/login", {"login": user, "password": "Wrong-Password-1"})
        assert isinstance(page_or, Page)
        page = page_or
        if page.status == 401:
            return page
        assert page.status == 429, page.alerts
        wait = re.search(r"try again in (\d+) seconds", page.text)
        assert wait, page.alerts
        await asyncio.sleep(int(wait.group(1)))


async def refused(b: Browser, page: Page, login_name: str, password: str = "Wrong-Password-1") -> Page:
    """Submit until refused with a 429 (a loaded machine may let a short delay pass between two submits; each
    answer then counts and the delay doubles); fails when three submits in a row are checked."""
    for _ in range(3):
        answer = await b.submit(page, "/oauth2/login", {"login": login_name, "password": password})
        assert isinstance(answer, Page) and answer.status in (401, 429), answer
        if answer.status == 429:
            assert "try again in" in answer.text
            return answer
        page = answer
    raise AssertionError(f"{login_name}: never refused")


async def throttle_keys(stack: Stack, part: str) -> set[str]:
    """Throttle keys that contain `part`."""
    async with stack.auth.state.runtime.db.read_session() as s:
        return set((await s.exec(select(Throttle.key).where(col(Throttle.key).contains(part)))).all())


async def test_one_wrong_password_each_time_the_delay_ends_does_not_keep_the_owner_out(
    stack: Stack, rp: RelyingParty
) -> None:
    user = "demo-citizen"
    (oc, owner), (nc, newcomer), (ac, attacker) = (
        browser_at(rp, "203.0.113.10"),
        browser_at(rp, "203.0.113.11"),
        browser_at(rp, ATTACKER),
    )
    async with oc, nc, ac:
        app = App(stack, rp)
        await finish(stack, owner, app, await login(owner, await login_page(stack, rp, owner, app), user))
        assert oc.cookies.get(stack.settings.device_cookie), "no device cookie after signing in"

        page = await login_page(stack, rp, attacker)
        for _ in range(stack.settings.throttle_free_failures):
            page = await fail_when_free(attacker, page, user)
        for round in range(3):  # the attacker fails again each time the delay ends (2 s, 4 s, 8 s)
            page = await fail_when_free(attacker, page, user)
            if round == 2:
                # a browser that never signed in: the right password asks for a one-time code, not a 429
                app = App(stack, rp)
                page_or = await login(newcomer, await login_page(stack, rp, newcomer, app), user)
                assert isinstance(page_or, Page) and page_or.status == 200, page_or
                assert has_form(page_or, "/oauth2/mfa") and "trying to sign in" in page_or.text, page_or.text
                assert (await finish(stack, newcomer, app, await step_up(stack, newcomer, page_or)))["access_token"]
            # the browser that signed in before: straight in
            app = App(stack, rp)
            done = await login(owner, await login_page(stack, rp, owner, app), user)
            assert isinstance(done, str), f"the owner's browser was refused: {done}"
            await finish(stack, owner, app, done)


async def test_thirty_failures_from_an_address_do_not_block_other_accounts_there(
    stack: Stack, rp: RelyingParty
) -> None:
    office = "198.51.100.30"
    (sc, sprayer), (cc, colleague), (kc, known) = browser_at(rp, office), browser_at(rp, office), browser_at(rp, office)
    async with sc, cc, kc:
        app = App(stack, rp)
        await finish(stack, known, app, await login(known, await login_page(stack, rp, known, app), "hz-staff"))

        page = await login_page(stack, rp, sprayer)
        names = [f"nobody-{uuid.uuid4().hex[:8]}" for _ in range(10 * stack.settings.throttle_free_failures + 3)]
        for name in names:
            page = await fail_when_free(sprayer, page, name)
        await refused(sprayer, page, names[-1])  # past the address's limit the spray is refused

        # a colleague behind the same address, never signed in here: the right password and a one-time code
        page = await fail_when_free(sprayer, page, f"nobody-{uuid.uuid4().hex[:8]}")
        app = App(stack, rp)
        page_or = await login(colleague, await login_page(stack, rp, colleague, app), "demo-citizen2")
        assert isinstance(page_or, Page) and has_form(page_or, "/oauth2/mfa"), page_or
        assert (await finish(stack, colleague, app, await step_up(stack, colleague, page_or)))["access_token"]

        # one who signed in from this browser before: straight in, while the spray goes on
        await fail_when_free(sprayer, page, f"nobody-{uuid.uuid4().hex[:8]}")
        app = App(stack, rp)
        done = await login(known, await login_page(stack, rp, known, app), "hz-staff")
        assert isinstance(done, str), f"a known browser was refused: {done}"
        await finish(stack, known, app, done)


async def owner_signs_in(stack: Stack, party: RelyingParty, b: Browser, user: str) -> None:
    """The right password from a browser with a device cookie for the account: straight in, no second factor."""
    app = App(stack, party)
    done = await login(b, await login_page(stack, party, b, app), user)
    assert isinstance(done, str) or (isinstance(done, Page) and has_form(done, "/oauth2/consent")), done
    assert (await finish(stack, b, app, done))["access_token"]


async def test_a_spray_from_one_address_is_refused_past_its_limit_even_for_a_right_password(
    stack: Stack, rp: RelyingParty
) -> None:
    victim = "demo-enterprise"  # no second factor: no authenticator, no mobile, no email
    network = "2001:db8:30:30"
    (oc, owner), (sc, sprayer), (cc, colleague) = (
        browser_at(rp, "203.0.113.90"),
        browser_at(rp, f"{network}::1"),
        browser_at(rp, f"{network}::c011"),
    )
    async with oc, sc, cc:
        await owner_signs_in(stack, rp, owner, victim)
        page = await login_page(stack, rp, sprayer)
        for n in range(10 * stack.settings.throttle_free_failures + 1):
            sc.headers["x-forwarded-for"] = f"{network}::{n + 100:x}"  # a new address of the /64 each time
            page = await fail_when_free(sprayer, page, f"nobody-{uuid.uuid4().hex[:8]}")
        page = await refused(sprayer, page, f"nobody-{uuid.uuid4().hex[:8]}")
        # the right password of an account without a second factor: refused unchecked, like any other name
        hit = await refused(sprayer, page, victim, PASSWORD)
        other = await refused(sprayer, hit, f"nobody-{uuid.uuid4().hex[:8]}", PASSWORD)
        assert hit.alerts and re.sub(r"\d+", "N", str(hit.alerts)) == re.sub(r"\d+", "N", str(other.alerts))
        assert await throttle_keys(stack, f"ip:{network}::/64") and not await throttle_keys(stack, f"{network}::1")

        # the owner's browser, which signed in before: straight in, while the spray goes on
        await owner_signs_in(stack, rp, owner, victim)
        # an account with a second factor, from the sprayed /64: the right password and a one-time code
        await fail_when_free(sprayer, page, f"nobody-{uuid.uuid4().hex[:8]}")
        app = App(stack, rp)
        page_or = await login(colleague, await login_page(stack, rp, colleague, app), "sw-staff")
        assert isinstance(page_or, Page) and has_form(page_or, "/oauth2/mfa"), page_or
        assert (await finish(stack, colleague, app, await step_up(stack, colleague, page_or)))["access_token"]


async def test_guessing_an_account_from_many_addresses_is_refused_past_its_limit(
    stack: Stack, rp: RelyingParty
) -> None:
    victim = "demo-enterprise"  # no second factor
    network = "2001:db8:41:41"
    addresses = ["198.51.100.141", "198.51.100.142", f"{network}::1", f"{network}::2", f"{network}::3"]
    oc, owner = browser_at(rp, "203.0.113.91")
    async with oc:
        await owner_signs_in(stack, rp, owner, victim)
        for n, address in enumerate(addresses):  # 3 free failures, then delays of 2 s and 4 s
            client, b = browser_at(rp, address)
            async with client:
                page = await fail_when_free(b, await login_page(stack, rp, b), victim)
                assert page.status == 401, n
        for address in (f"{network}::4", "198.51.100.143", "2001:db8:41:42::1"):
            # a browser without a device cookie, wherever it is: the right password is refused unchecked
            client, b = browser_at(rp, address)
            async with client:
                await refused(b, await login_page(stack, rp, b), victim, PASSWORD)
        # the owner's browser: straight in, during the attack
        await owner_signs_in(stack, rp, owner, victim)
    pairs = await throttle_keys(stack, "pair:acct:")
    assert {k for k in pairs if network in k} == {f"pair:acct:{demo_user_id(victim)}@{network}::/64"}


async def test_forwarded_for_counts_only_from_a_trusted_proxy(stack: Stack, rp: RelyingParty) -> None:
    name = f"spoof-{uuid.uuid4().hex[:8]}"
    untrusted = stack.settings.model_copy(update={"forwarded_allow_ips": "192.0.2.1"})
    async with serve(stack.auth, lifespan="off", **forwarding_options(untrusted)) as direct:
        client, b = browser(rp)
        client.headers["accept-language"] = "en"
        async with client:
            page: Page | str = await b.open(App(stack, rp).url().replace(stack.issuer, direct))
            for n in range(stack.settings.throttle_free_failures + 1):
                client.headers["x-forwarded-for"] = f"192.0.2.{100 + n}"  # a new address each time: ignored
                assert isinstance(page, Page)
                page = await b.submit(page, "/oauth2/login", {"login": name, "password": "Wrong-Password-1"})
                assert isinstance(page, Page) and page.status == 401
            client.headers["x-forwarded-for"] = "192.0.2.199"
            await refused(b, page, name)
    assert await throttle_keys(stack, name) == {f"login:{name}", f"pair:login:{name}@127.0.0.1"}
    assert not await throttle_keys(stack, "192.0.2.")

    # from the trusted proxy the address it appended is the client's
    client, b = browser_at(rp, "192.0.2.200, 203.0.113.50")
    async with client:
        page = await login_page(stack, rp, b)
        await b.submit(page, "/oauth2/login", {"login": name + "-x", "password": "Wrong-Password-1"})
    assert await throttle_keys(stack, name + "-x") == {f"login:{name}-x", f"pair:login:{name}-x@203.0.113.50"}
    assert await throttle_keys(stack, "ip:203.0.113.50") and not await throttle_keys(stack, "192.0.2.200")


async def test_the_attacker_stays_throttled(stack: Stack, rp: RelyingParty) -> None:
    user = "demo-citizen3"
    (ac, attacker), (nc, next_door), (oc, owner) = (
        browser_at(rp, "198.51.100.77"),
        browser_at(rp, "198.51.100.77"),
        browser_at(rp, "203.0.113.77"),
    )
    async with ac, nc, oc:
        page = await login_page(stack, rp, attacker)
        for _ in range(stack.settings.throttle_free_failures + 2):  # 3 free, then delays of 2 s and 4 s
            page = await fail_when_free(attacker, page, user)
        # the right password from the attacker's address is refused unchecked, from any browser there
        await refused(attacker, page, user, PASSWORD)
        await refused(next_door, await login_page(stack, rp, next_door), user, PASSWORD)
        # the owner signs in elsewhere (with a second factor while the account is contested) ...
        app = App(stack, rp)
        page_or = await login(owner, await login_page(stack, rp, owner, app), user)
        await finish(stack, owner, app, page_or if isinstance(page_or, str) else await step_up(stack, owner, page_or))
        # ... which frees the owner only: the attacker's count goes on, its next failure delays it the longest
        page = await fail_when_free(attacker, page, user)
        again = await refused(attacker, page, user)
        wait = re.search(r"try again in (\d+) seconds", again.text)
        assert wait and int(wait.group(1)) > 4, again.alerts
