"""Structured JSON logging with the request id and trace id of the current context."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, TextIO

import orjson

from tongban_kit.context import request_id_var, trace_var

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service, request id, trace, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    _second = -1
    _stamp = ""

    def _time(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # strftime once per second, not per line
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self._time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
        }
        rid = request_id_var.get()
        if rid:
            out["request_id"] = rid
        tc = trace_var.get()
        if tc:
            out["trace_id"] = tc.trace_id
            out["span_id"] = tc.span_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TurnBufferedHandler(logging.StreamHandler[TextIO]):
    """Writes the lines logged during one turn of the running event loop in one write, at the end of that turn.

    A busy service logs a line per request; writing each on its own costs a system call per line. Lines logged
    outside an event loop (threads, start-up) and every warning or error are written at once, so what explains a
    crash is never held back; at worst the info lines of the current loop turn (well under a millisecond) are
    lost if the process is killed.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)
        if record.levelno >= logging.WARNING:
            self.flush()
            return
        if not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is pending."""
        self.acquire()
        try:
            self._scheduled = False
            if self._pending:
                data = "\n".join(self._pending) + "\n"
                self._pending.clear()
                self.stream.write(data)
                self.stream.flush()
        except Exception:
            self._pending.clear()
        finally:
            self.release()


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    """Configure the root logger once for a service process."""
    handler = TurnBufferedHandler(sys.stderr)
    if json:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
