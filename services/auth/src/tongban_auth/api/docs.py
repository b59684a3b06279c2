"""OpenAPI descriptions of the answers that are not JSON models: sign-in pages, redirects and OAuth errors."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from tongban_kit.problems import problem_responses

_HTML = {"text/html": {"schema": {"type": "string", "description": "a server-rendered page (zh-CN or English)"}}}
_OAUTH_ERROR = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "description": "RFC 6749 §5.2 error code, e.g. invalid_request"},
                "error_description": {"type": "string"},
            },
        }
    }
}
_SEE_OTHER = {
    "description": "See Other: on to the next page, or back to the app's redirect URI with a code or an error",
    "headers": {"Location": {"schema": {"type": "string", "format": "uri-reference"}}},
}


def page_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A page endpoint's answers: 303 redirects and pages (the form again with an error, or an error page)."""
    out: dict[int | str, dict[str, Any]] = {303: _SEE_OTHER}
    for status in statuses:
        out[status] = {"description": HTTPStatus(status).phrase + " (a page)", "content": _HTML}
    return out


def oauth_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """RFC 6749 JSON error answers (`invalid_client` comes with 401 and `WWW-Authenticate`)."""
    return {status: {"description": HTTPStatus(status).phrase, "content": _OAUTH_ERROR} for status in statuses}


#: what a sign-in page endpoint may answer: a page (the form again with its error, or an error page) or a redirect
PAGE_ANSWERS = page_responses(200, 400, 401, 403, 404, 429)

__all__ = ["PAGE_ANSWERS", "oauth_error_responses", "page_responses", "problem_responses"]
