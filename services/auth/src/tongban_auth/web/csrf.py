"""CSRF protection for the HTML forms: a random per-browser cookie and an HMAC of it in every form."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from tongban_kit.problems import Problem
from tongban_kit.secrets import b64url, derive_key

#: the form field that carries the token
FIELD = "csrf"
COOKIE = "tongban_csrf"
#: HKDF label of the token key: independent of every other key derived from the key-encryption key
KEY_LABEL = b"tongban-auth/web/csrf-token/v1"
#: what `browser_key` derives from the browser secret: a stable id of the browser that is not the secret itself
BROWSER_LABEL = b"browser-key:"
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}", re.ASCII)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}", re.ASCII)


class CsrfError(Problem):
    """A form post without a valid CSRF token; answered with a 403 error page (problem+json without `install`)."""

    def __init__(self, reason: str, message_key: str = "error.csrf.message") -> None:
        """Describe what was wrong (missing cookie, missing or wrong token) and the page message to show."""
        super().__init__(403, reason, type="csrf-failed", title="Form check failed")
        self.reason = reason
        self.message_key = message_key


def cookie_name(secure: bool) -> str:
    """`__Host-tongban_csrf` on https (no sibling domain can plant it), `tongban_csrf` on plain http."""
    return f"__Host-{COOKIE}" if secure else COOKIE


def new_cookie_value() -> str:
    """A fresh browser secret: 32 random bytes, base64url."""
    return b64url(secrets.token_bytes(32))


def valid_cookie_value(value: str | None) -> bool:
    """Whether a cookie holds a browser secret of the expected form."""
    return bool(value) and _COOKIE_VALUE.fullmatch(value or "") is not None


class CsrfSigner:
    """Derives the form token of a browser secret, and checks one in constant time (old keys still accepted)."""

    def __init__(self, secret: str, old_secrets: Sequence[str] = ()) -> None:
        """Derive the token key from the key-encryption key (and from the earlier ones, for checking)."""
        self._key = derive_key(secret, KEY_LABEL)
        self._keys = [self._key, *(derive_key(old, KEY_LABEL) for old in old_secrets)]

    @staticmethod
    def _mac(key: bytes, cookie_value: str) -> str:
        return b64url(hmac.new(key, cookie_value.encode("ascii"), hashlib.sha256).digest())

    def token(self, cookie_value: str) -> str:
        """The form token that belongs to a browser secret."""
        return self._mac(self._key, cookie_value)

    def browser_key(self, cookie_value: str) -> str:
        """A stable identifier of the browser (distinct from its form token), to bind sealed state to it."""
        return self._mac(self._key, BROWSER_LABEL.decode("ascii") + cookie_value)

    def check(self, cookie_value: str | None, token: Any) -> None:
        """Raise CsrfError unless `token` is the token of `cookie_value`."""
        if not valid_cookie_value(cookie_value):
            raise CsrfError(
                "the form check cookie is missing; allow cookies for this site and try again", "error.csrf.cookie"
            )
        if not isinstance(token, str) or not token:
            raise CsrfError("the form carries no check token")
        if not _TOKEN.fullmatch(token):
            raise CsrfError("the form check token is malformed")
        assert cookie_value is not None
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(self._mac(key, cookie_value), token)
        if not matched:
            raise CsrfError("the form check token does not belong to this browser")


def form_token(form: Mapping[str, Any] | str | None) -> Any:
    """The token field of a form (the first value when repeated), or the token itself when given as text."""
    if form is None or isinstance(form, str):
        return form
    getlist = getattr(form, "getlist", None)
    if callable(getlist):
        values = getlist(FIELD)
        return values[0] if values else None
    return form.get(FIELD)
