"""Message catalogues and locale negotiation for the sign-in pages (zh-CN first, English second)."""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any, Literal, cast

Locale = Literal["zh-CN", "en"]
LOCALES: tuple[Locale, ...] = ("zh-CN", "en")
DEFAULT_LOCALE: Locale = "zh-CN"
LANG_COOKIE = "tongban_lang"
#: the form or query parameter of OpenID Connect that names preferred languages, best first
UI_LOCALES = "ui_locales"

_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_Q = re.compile(r"q=([01](?:\.\d{0,3})?)", re.IGNORECASE)


def load_catalogue(locale: Locale) -> dict[str, str]:
    """The flat key → message map of a locale, read from the package's `i18n/<locale>.json`."""
    text = resources.files("tongban_auth.web").joinpath("i18n", f"{locale}.json").read_text(encoding="utf-8")
    data = json.loads(text)
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"catalogue {locale} must be a flat JSON object of strings")
    return cast(dict[str, str], data)


def placeholders(message: str) -> set[str]:
    """The `{name}` placeholders a message expects."""
    return {field for _, field, _, _ in string.Formatter().parse(message) if field}


def match_tag(tag: str) -> Locale | None:
    """The supported locale a BCP 47 language tag asks for, if any (`zh`, `zh-Hans-CN`, `zh-TW` → zh-CN)."""
    tag = tag.strip()
    if not _TAG.fullmatch(tag):
        return None
    primary = tag.split("-", 1)[0].lower()
    if primary == "zh":
        return "zh-CN"
    if primary == "en":
        return "en"
    return None


def from_ui_locales(value: str | None) -> Locale | None:
    """The first supported locale of an OIDC `ui_locales` value (space-separated tags, best first)."""
    for tag in (value or "").split()[:20]:
        found = match_tag(tag)
        if found:
            return found
    return None


def from_cookie(value: str | None) -> Locale | None:
    """The locale a `tongban_lang` cookie names, when it names one exactly."""
    for locale in LOCALES:
        if value == locale:
            return locale
    return None


def from_accept_language(header: str | None) -> Locale | None:
    """The supported locale an `Accept-Language` header prefers most (q-values honoured, ties by order)."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate((header or "").split(",")[:40]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params:
            q = _Q.search(params)
            if not q:
                continue
            quality = min(float(q.group(1)), 1.0)
        if quality > 0 and tag.strip():
            ranked.append((-quality, index, tag.strip()))
    for _, _, tag in sorted(ranked):
        found = match_tag(tag)
        if found:
            return found
    return None


def negotiate(
    ui_locales: str | None = None, cookie: str | None = None, accept_language: str | None = None
) -> tuple[Locale, bool]:
    """The locale for a page and whether it came from an explicit `ui_locales` choice."""
    chosen = from_ui_locales(ui_locales)
    if chosen:
        return chosen, True
    return from_cookie(cookie) or from_accept_language(accept_language) or DEFAULT_LOCALE, False


class Translator:
    """Looks messages up in one locale's catalogue; a missing key is a programming error and raises KeyError."""

    def __init__(self, locale: Locale, messages: Mapping[str, str]) -> None:
        """Bind a locale to its catalogue."""
        self.locale = locale
        self._messages = messages

    def __call__(self, key: str, **params: Any) -> str:
        """The message for `key`, with `{name}` placeholders filled from `params` (the page escapes the result)."""
        try:
            message = self._messages[key]
        except KeyError:
            raise KeyError(f"no message {key!r} in the {self.locale} catalogue") from None
        return message.format(**params) if params else message

    def retry_after(self, seconds: int) -> str:
        """The "try again in N seconds/minutes" sentence, rounded up to whole minutes from two minutes on."""
        seconds = max(int(seconds), 1)
        if seconds < 120:
            return self("common.retry_after_seconds", seconds=seconds)
        return self("common.retry_after_minutes", minutes=math.ceil(seconds / 60))

    def scope(self, name: str) -> str:
        """The person-readable description of an OAuth scope (`scope.<name>`), or a generic one if it has none."""
        key = f"scope.{name}"
        return self(key) if key in self._messages else self("scope.unknown")

    def keys(self) -> Iterable[str]:
        """Every key of the catalogue."""
        return self._messages.keys()
