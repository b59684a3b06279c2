"""Identifiers: time-ordered UUIDv7 strings."""

from __future__ import annotations

import os
import threading
import time
import uuid

from starlette.convertors import Convertor, register_url_convertor

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def uuid7() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit ms timestamp, monotonic within a process."""
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _seq += 1
            if _seq > 0xFFF:
                ms += 1
                _seq = 0
        else:
            _seq = int.from_bytes(os.urandom(2), "big") & 0x3FF
        _last_ms = ms
        seq = _seq
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand
    return uuid.UUID(int=value)


def new_id() -> str:
    """A new id as a lowercase UUID string."""
    return str(uuid7())


UID_REGEX = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
#: a JSON Schema / pydantic pattern for ids
UID_PATTERN = f"^{UID_REGEX}$"


class UidConvertor(Convertor[str]):
    """Path convertor `{name:uid}`: matches only UUID-shaped ids, so literal siblings like `/import` win."""

    regex = UID_REGEX

    def convert(self, value: str) -> str:
        return value.lower()

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("uid", UidConvertor())
