"""The rate limiter's Redis client: RESP parsing, and a real Redis (pipelining, scripts, databases, failures)."""

from __future__ import annotations

import asyncio
import os
import secrets

import pytest

from tongban_gateway.resp import _INCOMPLETE, Redis, ReplyError, Script, StoreError, encode, parse

REDIS_URL = os.environ.get("TONGBAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")  # the conftest's redis_url


def test_encode_is_an_array_of_bulk_strings() -> None:
    assert encode("SET", "k", 1) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n"
    assert encode(b"\xff") == b"*1\r\n$1\r\n\xff\r\n"


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"+PONG\r\n", "PONG"),
        (b":42\r\n", 42),
        (b"$5\r\nhe\r\nl\r\n", b"he\r\nl"),
        (b"$-1\r\n", None),
        (b"*2\r\n:1\r\n$3\r\n0.5\r\n", [1, b"0.5"]),
        (b"*-1\r\n", None),
        (b"*0\r\n", []),
    ],
)
def test_parse_replies(raw: bytes, value: object) -> None:
    assert parse(raw) == (value, len(raw))
    for cut in range(len(raw)):  # any prefix is incomplete, never misread
        assert parse(raw[:cut])[0] is _INCOMPLETE


def test_error_replies_and_garbage() -> None:
    error, end = parse(b"-NOSCRIPT No matching script\r\n")
    assert isinstance(error, ReplyError) and str(error).startswith("NOSCRIPT") and end == 30
    with pytest.raises(StoreError):
        parse(b"?what\r\n")


@pytest.fixture
async def redis() -> Redis:
    client = Redis(REDIS_URL, timeout=2.0)
    try:
        if await client.execute("PING") != "PONG":
            pytest.skip("no Redis")
    except StoreError:
        pytest.skip("no Redis at " + REDIS_URL)
    return client


async def test_concurrent_commands_pipeline_on_one_connection_in_order(redis: Redis) -> None:
    key = f"tongban-test:resp:{secrets.token_hex(4)}"
    try:
        replies = await asyncio.gather(*(redis.execute("INCR", key) for _ in range(200)))
        assert sorted(replies) == list(range(1, 201)) and replies == list(range(1, 201))
        assert isinstance(await redis.execute("HGET", key, "x"), ReplyError)  # WRONGTYPE comes back as a value
    finally:
        await redis.execute("DEL", key)
        await redis.close()


async def test_scripts_load_themselves_and_report_their_errors(redis: Redis) -> None:
    unique = secrets.token_hex(4)
    script = Script(redis, f"-- {unique}\nreturn {{tonumber(ARGV[1]) + 1, KEYS[1]}}")
    try:
        assert await script(["k"], [41]) == [42, b"k"]  # first call: EVALSHA misses, EVAL loads it
        assert await script(["k"], [1]) == [2, b"k"]  # then by its SHA
        failing = Script(redis, f"-- {unique}\nreturn redis.call('NOSUCHCOMMAND')")
        with pytest.raises(ReplyError):
            await failing([], [])
    finally:
        await redis.close()


async def test_the_database_of_the_url_is_selected(redis: Redis) -> None:
    await redis.close()
    key = f"tongban-test:resp:{secrets.token_hex(4)}"
    base = REDIS_URL.rsplit("/", 1)[0]
    db0, db5 = Redis(base + "/0", timeout=2.0), Redis(base + "/5", timeout=2.0)
    try:
        await db5.execute("SET", key, "five")
        assert await db0.execute("GET", key) is None
        assert await db5.execute("GET", key) == b"five"
    finally:
        await db5.execute("DEL", key)
        await db0.close()
        await db5.close()


async def test_a_broken_connection_fails_its_commands_then_reconnects(redis: Redis) -> None:
    assert await redis.execute("PING") == "PONG"
    assert redis._conn is not None
    redis._conn.close()
    await asyncio.sleep(0.01)
    assert await redis.execute("PING") == "PONG"  # a new connection
    await redis.close()


async def test_unreachable_and_silent_servers_are_store_errors() -> None:
    with pytest.raises(StoreError, match="no connection"):
        await Redis("redis://127.0.0.1:9/0", timeout=0.5).execute("PING")

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client hangs up

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Redis(f"redis://127.0.0.1:{port}", timeout=0.2)
    try:
        with pytest.raises(StoreError, match="in time"):
            await client.execute("PING")
    finally:
        await client.close()
        server.close()


def test_only_redis_urls() -> None:
    with pytest.raises(ValueError, match="redis://"):
        Redis("http://127.0.0.1:6379", timeout=1.0)
