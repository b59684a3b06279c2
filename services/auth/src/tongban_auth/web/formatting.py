"""Formatting helpers for the templates: local time in Asia/Shanghai, grouped secrets, safe links, QR codes."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import segno

from tongban_auth.web.i18n import Locale

EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _shanghai() -> tzinfo:
    """Asia/Shanghai; China has kept UTC+8 without daylight saving since 1991, the fallback without tz data."""
    try:
        return ZoneInfo("Asia/Shanghai")
    except ZoneInfoNotFoundError:
        return timezone(timedelta(hours=8), "CST")


LOCAL_TZ = _shanghai()


def to_local(value: datetime | str) -> datetime:
    """A datetime (naive ones are UTC) or ISO 8601 text, in Asia/Shanghai time."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(LOCAL_TZ)


def format_datetime(value: datetime | str | None, locale: Locale) -> str:
    """Local date and time: `2025年3月4日 14:05` in Chinese, `4 Mar 2025, 14:05` in English; empty for None."""
    if value is None or value == "":
        return ""
    local = to_local(value)
    if locale == "zh-CN":
        return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"
    return f"{local.day} {EN_MONTHS[local.month - 1]} {local.year}, {local:%H:%M}"


def iso_datetime(value: datetime | str | None) -> str:
    """The machine-readable form for `<time datetime>`: ISO 8601 with the +08:00 offset; empty for None."""
    if value is None or value == "":
        return ""
    return to_local(value).isoformat(timespec="minutes")


def group(text: str, size: int = 4) -> str:
    """Split a secret into space-separated groups for reading aloud or typing (`JBSW Y3DP EHPK 3PXP`)."""
    compact = "".join(text.split())
    return " ".join(compact[i : i + size] for i in range(0, len(compact), size))


def safe_href(url: str | None) -> str | None:
    """The URL when it is an absolute http(s) link with a host, else None (never a `javascript:` or data URL)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc or any(c in url for c in "\r\n\t "):
        return None
    return url


def qr_svg(uri: str, *, label: str = "QR code") -> str:
    """Inline SVG markup of a QR code for `uri` (dark on white, with a quiet zone), for the TOTP setup page."""
    code = segno.make(uri, error="m", micro=False)
    out = io.BytesIO()
    code.save(
        out,
        kind="svg",
        scale=4,
        border=4,
        dark="#000",
        light="#fff",
        xmldecl=False,
        svgns=True,
        svgclass="qr",
        lineclass=None,
        title=label,
        nl=False,
    )
    markup = out.getvalue().decode("utf-8")
    return markup.replace("<svg ", '<svg role="img" focusable="false" ', 1)
