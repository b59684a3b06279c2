"""SCIM error bodies: every failure of a /scim/v2 route answers `urn:...:Error` as application/scim+json."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from scim2_models import Error, SCIMException
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tongban_kit.problems import Problem

SCIM_JSON = "application/scim+json"
log = logging.getLogger(__name__)


class ScimJSONResponse(JSONResponse):
    """A JSON response with the SCIM media type."""

    media_type = SCIM_JSON

    def render(self, content: Any) -> bytes:
        """Serialise with orjson (non-ASCII kept)."""
        return orjson.dumps(content)


class ScimError(SCIMException):
    """A SCIM error with any HTTP status (404, 405, 412, 415, ...) and optional headers."""

    def __init__(self, status: int, detail: str, scim_type: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(detail=detail)
        self.status = status
        self.scim_type = scim_type
        self.headers = headers or {}


def _problem_type(p: Problem) -> str:
    return (p.type or "").rsplit("/", 1)[-1]


def from_problem(p: Problem) -> ScimError:
    """The SCIM form of a problem raised by the account operations (same status; no 422 in SCIM)."""
    detail = p.detail or p.title or str(p.status)
    kind = _problem_type(p)
    if p.status == 409 and kind == "conflict":
        return ScimError(409, detail, "uniqueness", p.headers)
    if p.status == 422 or kind in ("validation-error", "invalid-text"):
        return ScimError(400, detail, "invalidValue", p.headers)
    if p.status == 400:
        return ScimError(400, detail, "invalidValue", p.headers)
    return ScimError(p.status, detail, "", p.headers)


def from_validation(errors: list[Any]) -> ScimError:
    """The SCIM form of pydantic errors (scim2-models' own keep their scimType)."""
    if not errors:
        return ScimError(400, "the request is not valid", "invalidValue")
    first = Error.from_validation_error(errors[0])
    detail = first.detail or "the request is not valid"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return ScimError(int(first.status or 400), detail, first.scim_type or "invalidValue")


def to_scim(exc: Exception) -> ScimError:
    """Any exception of a SCIM route as a SCIM error."""
    if isinstance(exc, ScimError):
        return exc
    if isinstance(exc, SCIMException):
        return ScimError(exc.status, exc.detail, exc.scim_type)
    if isinstance(exc, Problem):
        return from_problem(exc)
    if isinstance(exc, RequestValidationError):
        errors = list(exc.errors())
        where = ".".join(str(p) for p in errors[0].get("loc", ())) if errors else ""
        msg = str(errors[0].get("msg", "")) if errors else "not valid"
        return ScimError(400, f"{where}: {msg}" if where else msg, "invalidValue")
    if isinstance(exc, ValidationError):
        return from_validation(list(exc.errors()))
    if isinstance(exc, HTTPException):
        return ScimError(exc.status_code, str(exc.detail), "", dict(exc.headers or {}))
    if isinstance(exc, UnicodeEncodeError):
        return ScimError(400, "the request contains text that is not valid Unicode", "invalidValue")
    log.exception("unhandled error in a SCIM route")
    return ScimError(500, "an unexpected error occurred; quote the request id when reporting it")


def error_body(err: ScimError) -> dict[str, Any]:
    """The RFC 7644 §3.12 error document (status as a string)."""
    return Error(status=err.status, scim_type=err.scim_type or None, detail=err.detail).model_dump()


def error_response(exc: Exception) -> Response:
    """The SCIM error response of an exception."""
    err = to_scim(exc)
    return ScimJSONResponse(error_body(err), status_code=err.status, headers=err.headers or None)


class ScimRoute(APIRoute):
    """A route whose errors (auth, validation, problems, SCIM exceptions) answer as SCIM errors."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler: dependencies and body parsing fail inside it too."""
        handler = super().get_route_handler()

        async def scim_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return error_response(exc)

        return scim_handler
