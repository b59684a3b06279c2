"""JSON log lines, written once per event-loop turn (warnings and lines outside a loop at once)."""

from __future__ import annotations

import asyncio
import io
import logging

import orjson

from tongban_kit.context import request_id_var
from tongban_kit.logging import JsonFormatter, TurnBufferedHandler


def make_logger() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = TurnBufferedHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger(f"tongban.test.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


async def test_lines_of_one_loop_turn_are_written_together_at_its_end() -> None:
    logger, stream = make_logger()
    token = request_id_var.set("rid-1")
    try:
        logger.info("first", extra={"route": "/x"})
        logger.info("second")
        assert stream.getvalue() == ""  # still this turn
        await asyncio.sleep(0)
        got = lines(stream)
    finally:
        request_id_var.reset(token)
    assert [g["message"] for g in got] == ["first", "second"]
    assert got[0]["route"] == "/x" and got[0]["request_id"] == "rid-1" and got[0]["service"] == "test"
    assert str(got[0]["time"]).endswith("Z") and len(str(got[0]["time"])) == 24


async def test_warnings_are_written_at_once_with_what_came_before() -> None:
    logger, stream = make_logger()
    logger.info("context")
    logger.warning("trouble")
    assert [g["message"] for g in lines(stream)] == ["context", "trouble"]


def test_outside_an_event_loop_lines_are_written_at_once() -> None:
    logger, stream = make_logger()
    logger.info("starting")
    assert [g["message"] for g in lines(stream)] == ["starting"]
