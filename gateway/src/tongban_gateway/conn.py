"""Client connections: header, body, idle and send timeouts, head size limits and connection caps (after nginx).

uvicorn's httptools protocol times out idle keep-alive connections only: a client that connects and sends
nothing, or sends a head or a body byte by byte, holds its connection forever, and httptools buffers a header of
any size. This protocol enforces what nginx does by default (`client_header_timeout`, `client_body_timeout`,
`send_timeout`, `large_client_header_buffers`, `limit_conn` as `caps` decides) and answers refusals with
problem+json before closing.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from tongban_gateway.caps import MAX_LINGERING, REFUSALS, ConnectionCaps, Hold
from tongban_gateway.config import Settings
from tongban_gateway.metrics import GatewayMetrics
from tongban_kit.problems import PROBLEM_JSON, problem_body

#: seconds a refused connection still reads (and discards) so the client sees the answer rather than a reset
LINGER_SECONDS = 2.0
#: Retry-After of the 503 when a connection cap is reached
BUSY_RETRY_SECONDS = 1


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client connection may take."""

    header_timeout: float
    busy_header_timeout: float  # for new heads while the process's connection cap is near
    body_timeout: float
    send_timeout: float
    max_request_line: int
    max_header_line: int
    max_head: int

    @classmethod
    def of(cls, s: Settings) -> Limits:
        """The limits the gateway's settings give."""
        return cls(
            s.header_timeout_seconds,
            min(s.busy_header_timeout_seconds, s.header_timeout_seconds),
            s.body_timeout_seconds,
            s.send_timeout_seconds,
            s.max_request_line_bytes,
            s.max_header_line_bytes,
            s.max_header_bytes,
        )


class _Refused(Exception):
    """Raised in a parser callback: the request is answered with `status` and the connection closed."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines and head limits; `guarded_protocol` binds the settings.

    One timer per connection watches one deadline: the head's (from the connection or the head's first byte until
    the head is complete; it does not move while bytes trickle in) or the body's (moved by every piece received).
    """

    limits: ClassVar[Limits]
    caps: ClassVar[ConnectionCaps]
    metrics: ClassVar[GatewayMetrics | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # the next bytes belong to a request head
        self._head_bytes = 0
        self._heads = 0  # heads completed, to tell whether a head ended inside a piece of data
        self._deadline: float | None = None
        self._body_phase = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._send_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._hold: Hold | None = None  # its place under the caps (none: management port, or given back)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        admitted = self.caps.admit(
            local_port=self.server[1] if self.server else None, peer=self.client[0] if self.client else None
        )
        if isinstance(admitted, str):
            self._refuse(503, admitted, REFUSALS[admitted], retry_after=BUSY_RETRY_SECONDS)
            return
        self._hold = admitted
        self._expect(self._head_timeout(), body=False)  # a client that connects and says nothing

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._timer, self._send_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._send_timer = None
        self._deadline = None
        self._release()
        super().connection_lost(exc)

    def _release(self) -> None:
        """Give the connection's place under the caps back (once)."""
        if self._hold is not None:
            self.caps.release(self._hold)
            self._hold = None

    def _head_timeout(self) -> float:
        """Short for public connections while the cap is near: idle and slow clients give way first."""
        busy = self._hold is not None and self.caps.busy
        return self.limits.busy_header_timeout if busy else self.limits.header_timeout

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and drop until closed
        self._unset_keepalive_if_required()
        if self._in_head:
            if self._deadline is None:
                self._expect(self._head_timeout(), body=False)
            room = self.limits.max_head - self._head_bytes
            if len(data) > room:
                heads = self._heads
                # the head may end inside the part that fits; what follows is body or the next request
                if not self._feed(data[: max(room, 0)]):
                    return
                if self._heads == heads:
                    self._refuse_head()
                    return
                data = data[max(room, 0) :]
            else:
                self._head_bytes += len(data)
        if self._feed(data) and not self._in_head:
            self._expect(self.limits.body_timeout, body=True)  # inside a body: the next piece is due in time

    def _feed(self, data: bytes) -> bool:
        """Parse `data`; False when the connection was answered and is closing."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self._release()  # the connection moves to another protocol: this one hears no connection_lost
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError as exc:
            refusal = exc.__context__
            if isinstance(refusal, _Refused):
                self._refuse(refusal.status, refusal.reason, refusal.detail)
            else:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return False
        return True

    def _refuse_head(self) -> None:
        if len(getattr(self, "url", b"")) >= self.limits.max_request_line or not self.headers:
            self._refuse(414, "request_line_too_long", f"the request line exceeds {self.limits.max_request_line} bytes")
        else:
            self._refuse(431, "header_too_large", f"the request head exceeds {self.limits.max_head} bytes")

    # parser callbacks
    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_request_line:
            raise _Refused(
                414, "request_line_too_long", f"the request line exceeds {self.limits.max_request_line} bytes"
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) + 2 > self.limits.max_header_line:
            raise _Refused(431, "header_too_large", f"a header line exceeds {self.limits.max_header_line} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads += 1
        self._deadline = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._deadline = None  # the answer is the app's; the idle wait after it is uvicorn's keep-alive timeout
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete and self.timeout_keep_alive_task is None:
            # answered before the body was in (a refusal): the idle wait starts now, uvicorn armed none
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    # deadlines
    def _expect(self, seconds: float, *, body: bool) -> None:
        self._deadline = self.loop.time() + seconds
        self._body_phase = body
        if self._timer is not None and self._timer_at > self._deadline:
            self._timer.cancel()  # set for a longer wait (head and body timeouts may differ)
            self._timer = None
        if self._timer is None:
            self._timer = self.loop.call_later(seconds, self._check)
            self._timer_at = self._deadline

    def _check(self) -> None:
        self._timer = None
        if self._deadline is None or self.transport.is_closing():
            return
        left = self._deadline - self.loop.time()
        if left <= 0 and (self.flow.read_paused or (self.cycle is not None and self.cycle.waiting_for_100_continue)):
            # not the client's fault: the gateway stopped reading (upstream slow to take the body) or owes a 100
            left = self.limits.body_timeout if self._body_phase else self.limits.header_timeout
            self._deadline = self.loop.time() + left
        if left > 0:
            self._timer = self.loop.call_later(left, self._check)
            self._timer_at = self._deadline
        elif self._body_phase:
            self._refuse(408, "body_timeout", "the request body did not arrive in time")
        else:
            self._refuse(408, "header_timeout", "the request head did not arrive in time")

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.limits.send_timeout, self._send_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_timed_out(self) -> None:
        self._send_timer = None
        self._count("send_timeout")
        self.transport.abort()  # the client reads nothing: closing gracefully would wait on it forever

    # answers
    def _refuse(self, status: int, reason: str, detail: str, *, retry_after: int | None = None) -> None:
        """Answer `status` (unless an answer is under way), stop parsing, close after a short linger."""
        self._refused = True
        self._deadline = None
        self._release()  # answered and closing: its short linger must not keep a new client out
        self._count(reason)
        cycle = self.cycle
        if cycle is None or not cycle.response_started or cycle.response_complete:
            self.transport.write(_answer(status, reason, detail, retry_after))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive sees a disconnect, its sends are dropped
            cycle.message_event.set()
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the client reads the answer, then EOF
        if self.caps.lingering >= MAX_LINGERING:
            self.transport.abort()  # a flood of refusals: no file is kept for an answer, or the process runs out
            return
        self.caps.lingering += 1
        self.loop.call_later(LINGER_SECONDS, self._linger_over)

    def _linger_over(self) -> None:
        """End a refused connection's linger."""
        self.caps.lingering -= 1
        self.transport.abort()

    def _count(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.connections_closed.labels(reason).inc()


def _answer(status: int, reason: str, detail: str, retry_after: int | None) -> bytes:
    body = json.dumps(problem_body(status, detail, type=reason.replace("_", "-"))).encode()
    head = [
        STATUS_LINE[status],
        b"content-type: " + PROBLEM_JSON.encode() + b"\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n",
    ]
    if retry_after is not None:
        head.append(b"retry-after: %d\r\n" % retry_after)
    return b"".join([*head, b"\r\n", body])


def guarded_protocol(settings: Settings, metrics: GatewayMetrics | None = None) -> type[GuardedProtocol]:
    """The protocol class for uvicorn (`http=`), bound to these settings."""
    bound = {"limits": Limits.of(settings), "caps": ConnectionCaps(settings), "metrics": metrics}
    return type("GatewayHttpProtocol", (GuardedProtocol,), bound)
