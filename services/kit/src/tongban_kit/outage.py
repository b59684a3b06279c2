"""Database outages: which errors mean the database cannot be reached (503, not 500) and one log line per outage."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType

import asyncpg
from sqlalchemy import exc as sa_exc
from starlette.requests import Request
from starlette.responses import Response

from tongban_kit.problems import problem_response, unexpected_error

log = logging.getLogger(__name__)

#: seconds a client is asked to wait before retrying while the database is unavailable
RETRY_AFTER_SECONDS = 5
#: SQLSTATEs of a server that cannot be reached or will not serve this database (connection exception 08…,
#: operator intervention 57P…: shut down, starting up, dropped; too many connections; not accepting connections;
#: no such database; authentication refused)
_UNAVAILABLE_STATES = ("08", "57P", "53300", "55000", "3D000", "28")
_SQLITE_UNAVAILABLE = ("unable to open", "database is locked", "disk i/o error", "readonly database")
_DRIVERS = ("asyncpg", "sqlalchemy", "aiosqlite")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__, getattr(e, "orig", None)]


def _raised_in_driver(tb: TracebackType | None) -> bool:
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith(_DRIVERS):
            return True
        tb = tb.tb_next
    return False


def database_unavailable(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) says the database cannot be reached, not that a statement is wrong."""
    for e in _chain(exc):
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, sa_exc.TimeoutError | sa_exc.DisconnectionError):  # no pooled connection came free
            return True
        if isinstance(e, asyncpg.PostgresError) and str(getattr(e, "sqlstate", "")).startswith(_UNAVAILABLE_STATES):
            return True
        if isinstance(e, asyncpg.ConnectionDoesNotExistError):
            return True
        if isinstance(e, sqlite3.OperationalError) and str(e).lower().startswith(_SQLITE_UNAVAILABLE):
            return True
        if isinstance(e, OSError) and _raised_in_driver(e.__traceback__):  # refused, reset, no route, timeout
            return True
    return False


class OutageLog:
    """Logs when a dependency becomes unavailable and when it is back: one line each, however many requests fail."""

    def __init__(self, name: str) -> None:
        self.name = name
        #: monotonic time the current outage began, None while available
        self.since: float | None = None
        #: requests (and background attempts) refused during the current outage
        self.refused = 0

    def failed(self, exc: BaseException) -> None:
        """A request or a background job found the dependency unavailable."""
        self.refused += 1
        if self.since is None:
            self.since = time.monotonic()
            log.error(
                "%s unavailable: %s: %s",
                self.name,
                type(exc).__name__,
                str(exc).split("\n", 1)[0][:300],
                extra={"dependency": self.name, "error": type(exc).__name__},
            )

    def recovered(self) -> None:
        """The dependency answered again."""
        if self.since is None:
            return
        seconds = time.monotonic() - self.since
        log.warning(
            "%s available again after %.1f s; %d attempts refused meanwhile",
            self.name,
            seconds,
            self.refused,
            extra={"dependency": self.name, "outage_seconds": round(seconds, 1), "refused": self.refused},
        )
        self.since, self.refused = None, 0


def unavailable_response(request: Request, what: str = "the database") -> Response:
    """503 problem+json `dependency-unavailable` with Retry-After."""
    return problem_response(
        503,
        f"{what} is unavailable; retry later",
        type="dependency-unavailable",
        instance=request.url.path,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def database_error_handler(outage: OutageLog) -> Callable[[Request, Exception], Awaitable[Response]]:
    """An exception handler for database and network errors: 503 when the database is unreachable, else 500."""

    async def handle(request: Request, exc: Exception) -> Response:
        if database_unavailable(exc):
            outage.failed(exc)
            return unavailable_response(request)
        return await unexpected_error(request, exc)

    return handle


#: exception types whose handler decides between 503 and 500 (a subclass of none of them is a plain 500)
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.SQLAlchemyError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    sqlite3.Error,
)
