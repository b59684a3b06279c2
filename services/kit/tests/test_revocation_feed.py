"""The revocation feed against a real NATS JetStream: live events, replay on start, lost consumers, restarts."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tongban_kit.events import CloudEvent, publish_event
from tongban_kit.nats import Bus, StreamSpec, connect
from tongban_kit.natsserver import LocalNatsServer
from tongban_kit.revocations import REVOKED_SUBJECT, RevocationFeed
from tongban_kit.testing.helpers import eventually
from tongban_kit.testing.proxy import TcpProxy
from tongban_kit.testing.tokens import TestIssuer
from tongban_kit.tokens import InvalidToken, JwksSource, RevocationList, TokenVerifier

#: the authentication service's stream, as it declares it
AUTH_STREAM = StreamSpec("AUTH_EVENTS", ("auth.*.*.v1",), "Events of the authentication service")
#: how soon after NATS is back a revocation issued meanwhile is enforced (README: operations)
RECONNECT_PROMISE_SECONDS = 5.0


def revoked_event(*, jti: str | None = None, grant_id: str | None = None, minutes: float = 10) -> CloudEvent:
    return CloudEvent(
        source="/tongban/auth",
        type=REVOKED_SUBJECT,
        subject=jti or grant_id,
        data={
            "jti": jti,
            "grant_id": grant_id,
            "client_id": "demo-app",
            "sub": "user-1",
            "reason": "revoked",
            "expires_at": (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat(),
        },
    )


@pytest.fixture
async def bus(nats_url: str, nats_namespace: str) -> AsyncIterator[Bus]:
    """A bus in this run's namespace (so the recorder checks every event against its contract)."""
    b = await connect(nats_url, name="revocation-test", namespace=nats_namespace)
    await b.ensure_stream(AUTH_STREAM)
    yield b
    await b.close()


async def test_live_revocations_reach_the_verifier(bus: Bus) -> None:
    issuer = TestIssuer()
    revocations = RevocationList()
    verifier = TokenVerifier(
        JwksSource.from_jwks(issuer.jwks), issuer=issuer.issuer, audience="tongban-api", revocations=revocations
    )
    feed = RevocationFeed(bus, revocations, replay_seconds=0.5)
    assert await feed.start(wait=5)
    try:
        token, grant_token = issuer.mint(), issuer.mint(gid="grant-" + secrets.token_hex(4))
        vt, gt = await verifier.verify(token), await verifier.verify(grant_token)  # both cached now
        await publish_event(bus, revoked_event(jti=vt.jti))
        await publish_event(bus, revoked_event(grant_id=gt.grant_id))

        async def applied() -> bool | None:
            return True if revocations.is_revoked(vt.jti) and revocations.is_revoked(None, gt.grant_id) else None

        await eventually(applied, what="revocations applied")
        for t in (token, grant_token):
            with pytest.raises(InvalidToken) as info:
                await verifier.verify(t)
            assert info.value.reason == "revoked"
    finally:
        await feed.stop()


async def _true(cond: bool) -> bool | None:
    return True if cond else None


async def test_new_feed_replays_the_revocations_still_in_force(bus: Bus) -> None:
    old_jti = "old-" + secrets.token_hex(4)
    await publish_event(bus, revoked_event(jti=old_jti))
    await asyncio.sleep(1.5)
    jti, grant = "recent-" + secrets.token_hex(4), "grant-" + secrets.token_hex(4)
    await publish_event(bus, revoked_event(jti=jti))
    await publish_event(bus, revoked_event(grant_id=grant))
    await publish_event(bus, revoked_event(jti="lapsed-" + jti, minutes=-5))  # already over: nothing to deny

    revocations = RevocationList()
    feed = RevocationFeed(bus, revocations, replay_seconds=1.0)  # starts after the old event
    try:
        assert await feed.start(wait=5), "the replay reaches the end of the stream"
        assert revocations.is_revoked(jti) and revocations.is_revoked(None, grant)
        assert not revocations.is_revoked("lapsed-" + jti)
        assert not revocations.is_revoked(old_jti), "outside the replay window"
        assert feed.applied == 3
    finally:
        await feed.stop()

    everything = RevocationList()
    full = RevocationFeed(bus, everything)  # the default window (one hour) covers both
    try:
        assert await full.start(wait=5)
        assert everything.is_revoked(old_jti) and everything.is_revoked(jti)
    finally:
        await full.stop()


async def test_feed_recreates_a_lost_consumer(bus: Bus) -> None:
    revocations = RevocationList()
    feed = RevocationFeed(bus, revocations, replay_seconds=0.1, check_seconds=0.5, retry_seconds=0.2)
    assert await feed.start(wait=5)
    try:
        stream = bus.stream_name(AUTH_STREAM.name)
        await publish_event(bus, revoked_event(jti="before-loss"))
        await eventually(lambda: _true(revocations.is_revoked("before-loss")))
        applied = feed.applied
        for info in await bus.js.consumers_info(stream):
            if info.name.startswith("revocations_"):
                await bus.js.delete_consumer(stream, info.name)
        await publish_event(bus, revoked_event(jti="after-loss"))
        await eventually(lambda: _true(revocations.is_revoked("after-loss")), timeout=10, what="recovery")
        assert feed.applied == applied + 1, "resumed after the last applied event: nothing twice, nothing lost"
    finally:
        await feed.stop()
    remaining = [i.name for i in await bus.js.consumers_info(stream) if i.name.startswith("revocations_")]
    assert remaining == [], "stop removes the ephemeral consumer"


async def test_feed_waits_for_the_stream_and_survives_a_server_restart(tmp_path: Path) -> None:
    server = LocalNatsServer(tmp_path / "js").start()
    bus = await connect(server.url, name="revocation-restart", namespace="rv" + secrets.token_hex(3))
    revocations = RevocationList()
    feed = RevocationFeed(bus, revocations, check_seconds=0.5, retry_seconds=0.2, poll_seconds=0.3)
    try:
        assert not await feed.start(wait=0.5), "no stream yet: the feed keeps trying"
        await bus.ensure_stream(AUTH_STREAM)
        await publish_event(bus, revoked_event(jti="first"))
        await eventually(lambda: _true(revocations.is_revoked("first")), timeout=10)
        server.stop()
        await asyncio.sleep(0.5)
        server.start()  # same port and store; the in-memory consumer is gone
        await eventually(lambda: _true(bus.nc.is_connected), timeout=10, what="reconnect")
        await publish_event(bus, revoked_event(jti="second"))
        await eventually(lambda: _true(revocations.is_revoked("second")), timeout=15, what="after restart")
        # a malformed revocation is skipped, the feed goes on (published here: the run's recorder would object)
        await bus.js.publish(bus.subject(REVOKED_SUBJECT), b'{"not": "an event"}')
        await publish_event(bus, revoked_event(jti="after-junk"))
        await eventually(lambda: _true(revocations.is_revoked("after-junk")), what="event after junk")
        assert feed.applied == 3
    finally:
        await feed.stop()
        await bus.close()
        server.stop()


async def _busy_loop(until: float) -> None:
    """Hold the event loop now and then, as a process does under load (a long request, a GC pause)."""
    rng = random.Random(7)
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        await asyncio.sleep(rng.uniform(0.02, 0.2))
        time.sleep(rng.uniform(0.02, 0.2))  # noqa: ASYNC251 - holding the loop is the point


async def _feed_consumers(bus: Bus, *, besides: frozenset[str] = frozenset()) -> list[str]:
    """The revocation consumers on the run's auth stream, leaving out `besides`: those that were there before the
    feed under test started (other services of the run follow revocations too, and a stopped feed's consumer
    lingers until the server removes it as inactive)."""
    stream = bus.stream_name(AUTH_STREAM.name)
    names = {i.name for i in await bus.js.consumers_info(stream) if i.name.startswith("revocations_")}
    return sorted(names - besides)


async def test_a_busy_quiet_feed_keeps_its_one_consumer(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    revocations = RevocationList()
    # short polls: many poll deadlines fall while the loop is held, which is when nats-py's fetch may raise the
    # builtin TimeoutError (str() empty) that the feed took for a failure and restarted on
    others = frozenset(await _feed_consumers(bus))
    feed = RevocationFeed(bus, revocations, replay_seconds=0.1, poll_seconds=0.25)
    assert await feed.start(wait=5)
    try:
        before = await _feed_consumers(bus, besides=others)
        assert len(before) == 1
        with caplog.at_level(logging.INFO, logger="tongban_kit.revocations"):
            await _busy_loop(asyncio.get_running_loop().time() + 12)  # ~50 short polls
        restarts = [r.getMessage() for r in caplog.records if "restarts" in r.getMessage()]
        assert restarts == [], "nothing failed, so nothing restarts"
        # the same consumer all along: still there, and no other made by this feed (other feeds of the run may make
        # theirs meanwhile, so the stream's list is not compared whole)
        assert before[0] in await _feed_consumers(bus), "the same consumer all along"
        assert feed.consumers_created == 1, "the same consumer all along"
        await publish_event(bus, revoked_event(jti="after-quiet"))
        await eventually(lambda: _true(revocations.is_revoked("after-quiet")), timeout=5, what="still following")
    finally:
        await feed.stop()


async def test_a_revocation_during_a_reconnect_is_enforced_in_seconds(bus: Bus, nats_url: str) -> None:
    """The service's NATS connection goes dead, unnoticed at first (the server still delivers into it); auth revokes
    a token then; once the connection is re-established the token is refused within the promised time."""
    proxy = await TcpProxy.to_url(nats_url).start()
    cut_off = await connect(proxy.url("nats"), name="revocation-reconnect", namespace=bus.namespace)
    issuer = TestIssuer()
    revocations = RevocationList()
    verifier = TokenVerifier(
        JwksSource.from_jwks(issuer.jwks), issuer=issuer.issuer, audience="tongban-api", revocations=revocations
    )
    others = frozenset(await _feed_consumers(bus))
    feed = RevocationFeed(cut_off, revocations, replay_seconds=0.1, poll_seconds=5)  # a pull always waiting
    try:
        assert await feed.start(wait=5)
        token = issuer.mint()
        jti = (await verifier.verify(token)).jti
        await asyncio.sleep(0.5)
        proxy.hold()
        await publish_event(bus, revoked_event(jti=jti))  # the auth service is still connected
        await asyncio.sleep(0.5)  # the server delivers to the waiting pull: lost on the way
        await proxy.cut()
        await eventually(lambda: _true(not cut_off.nc.is_connected), what="the connection breaks")
        await asyncio.sleep(1.0)
        await proxy.restore()
        await eventually(lambda: _true(cut_off.nc.is_connected), timeout=10, what="reconnect")
        reconnected = asyncio.get_running_loop().time()

        async def refused() -> bool | None:
            try:
                await verifier.verify(token)
            except InvalidToken as exc:
                return exc.reason == "revoked" or None
            return None

        await eventually(refused, timeout=RECONNECT_PROMISE_SECONDS, what="the revocation enforced")
        assert asyncio.get_running_loop().time() - reconnected < RECONNECT_PROMISE_SECONDS
        mine = await _feed_consumers(cut_off, besides=others)
        assert len(mine) == 1, "the feed replaced its consumer, it did not add one"
    finally:
        await feed.stop()
        await cut_off.close()
        await proxy.cut()
