"""RFC 9457 problem details for every 4xx/5xx, including validation errors."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from tongban_kit.context import request_id_var

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://tongban.dev/problems/"
log = logging.getLogger(__name__)


class ProblemDetail(BaseModel):
    """The RFC 9457 body; extension members are allowed."""

    model_config = ConfigDict(extra="allow")

    type: str = Field("about:blank", description="URI reference identifying the problem type")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None


class Problem(Exception):
    """Raise to answer with a problem+json response."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        type: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title or str(status))
        self.status = status
        self.detail = detail
        self.type = type
        self.title = title
        self.headers = headers
        self.extensions = extensions

    def body(self, instance: str | None = None) -> dict[str, Any]:
        """The problem document."""
        return problem_body(
            self.status, self.detail, type=self.type, title=self.title, instance=instance, **self.extensions
        )


def problem_body(
    status: int,
    detail: str | None = None,
    *,
    type: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    """Build a problem document; `type` is a slug under the project's problem base or a full URI."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    if type and "://" not in type and type != "about:blank":
        type = PROBLEM_BASE + type
    body: dict[str, Any] = {"type": type or "about:blank", "title": title or phrase, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    rid = request_id_var.get()
    if rid:
        body["request_id"] = rid
    body.update(extensions)
    return body


def problem_response(
    status: int, detail: str | None = None, *, headers: dict[str, str] | None = None, **kw: Any
) -> Response:
    """A problem+json response."""
    return JSONResponse(
        problem_body(status, detail, **kw), status_code=status, headers=headers, media_type=PROBLEM_JSON
    )


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


async def _problem_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return JSONResponse(
        exc.body(request.url.path), status_code=exc.status, headers=exc.headers, media_type=PROBLEM_JSON
    )


def _allowed_methods(request: Request) -> str:
    """Every method any route serves at this path (Starlette reports only the first route's)."""
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


async def _http_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no resource at {request.url.path}"
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
    return problem_response(exc.status_code, detail, headers=headers or None, instance=request.url.path)


async def _validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"location": _loc(e.get("loc", ())), "message": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    return problem_response(
        422,
        "the request is not valid; see errors",
        type="validation-error",
        title="Validation failed",
        instance=request.url.path,
        errors=errors,
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """The 500 of an unexpected error (logged with its traceback; the answer names only the request id)."""
    if isinstance(exc, UnicodeEncodeError):  # e.g. lone surrogates from JSON escapes reaching the database driver
        return problem_response(
            400, "the request contains text that is not valid Unicode", type="invalid-text", instance=request.url.path
        )
    log.exception("unhandled error", extra={"path": request.url.path})
    return problem_response(
        500, "an unexpected error occurred; quote the request id when reporting it", instance=request.url.path
    )


def install_problem_handlers(app: Starlette) -> None:
    """Make every error answer problem+json."""
    app.add_exception_handler(Problem, _problem_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(Exception, unexpected_error)


#: OpenAPI `responses` entry to document problem answers on routes
def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses documenting problem+json for the given statuses."""
    out: dict[int | str, dict[str, Any]] = {}
    for s in statuses:
        out[s] = {
            "description": HTTPStatus(s).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}},
        }
    return out
