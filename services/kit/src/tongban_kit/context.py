"""Request context: request id and W3C trace context, carried across HTTP and NATS headers."""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass

REQUEST_ID_HEADER = "X-Request-Id"
TRACEPARENT_HEADER = "traceparent"

_TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

#: request, trace and span ids must be unique, not secret (W3C Trace Context asks for randomness, not for a
#: cryptographic generator): a PRNG seeded from the OS, reseeded in forked children, saves a system call per id
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def _hex(bits: int) -> str:
    return f"{_ids.getrandbits(bits):0{bits // 4}x}"


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A W3C trace context: trace id, parent span id and flags."""

    trace_id: str
    span_id: str
    flags: str = "01"

    @property
    def traceparent(self) -> str:
        """The `traceparent` header value."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        """A new span in the same trace."""
        return TraceContext(self.trace_id, _hex(64), self.flags)

    @classmethod
    def new(cls) -> TraceContext:
        """Start a new trace."""
        return cls(_hex(128), _hex(64))

    @classmethod
    def parse(cls, value: str | None) -> TraceContext | None:
        """Parse a `traceparent` value; None when absent or malformed (then a new trace starts)."""
        if not value:
            return None
        m = _TRACEPARENT_RE.match(value.strip().lower())
        if not m or m.group(1) == "0" * 32 or m.group(2) == "0" * 16:
            return None
        return cls(m.group(1), m.group(2), m.group(3))


request_id_var: ContextVar[str | None] = ContextVar("tongban_request_id", default=None)
trace_var: ContextVar[TraceContext | None] = ContextVar("tongban_trace", default=None)


def new_request_id() -> str:
    """A fresh request id."""
    return _hex(96)


def clean_request_id(value: str | None) -> str:
    """Accept a caller's request id if well-formed, else make one."""
    if value and _REQUEST_ID_RE.match(value):
        return value
    return new_request_id()


def current_headers() -> dict[str, str]:
    """Headers that carry the current context onward (to NATS or HTTP)."""
    out: dict[str, str] = {}
    rid = request_id_var.get()
    if rid:
        out[REQUEST_ID_HEADER] = rid
    tc = trace_var.get()
    if tc:
        out[TRACEPARENT_HEADER] = tc.child().traceparent
    return out


def inject(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the current context to an outgoing header map (without overwriting)."""
    for k, v in current_headers().items():
        headers.setdefault(k, v)
    return headers


def bind_from_headers(headers: Mapping[str, str] | None) -> tuple[str, TraceContext]:
    """Set the context from incoming headers (case-insensitive lookup); returns what was bound."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    rid = clean_request_id(lowered.get(REQUEST_ID_HEADER.lower()))
    parent = TraceContext.parse(lowered.get(TRACEPARENT_HEADER))
    tc = parent.child() if parent else TraceContext.new()
    request_id_var.set(rid)
    trace_var.set(tc)
    return rid, tc
