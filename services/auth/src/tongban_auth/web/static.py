"""The pages' static assets at `/oauth2/static/{path}`: loaded from the package once, served by content-hashed name."""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tongban_kit.problems import Problem

PREFIX = "/oauth2/static"
IMMUTABLE = "public, max-age=31536000, immutable"
#: unhashed names may change under the same URL: revalidate every time
REVALIDATE = "no-cache"
TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/vnd.microsoft.icon",
    ".txt": "text/plain; charset=utf-8",
}
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9]+)?", re.ASCII)

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Asset:
    """One static file: its bytes, content type and content hash."""

    name: str
    body: bytes
    content_type: str
    digest: str

    @property
    def hashed_name(self) -> str:
        """`name.<hash>.ext`: the URL that may be cached for ever."""
        stem, dot, ext = self.name.rpartition(".")
        return f"{stem}.{self.digest}{dot}{ext}" if dot else f"{self.name}.{self.digest}"

    @property
    def etag(self) -> str:
        """A strong entity tag from the content hash."""
        return f'"{self.digest}"'


@cache
def assets() -> dict[str, tuple[Asset, bool]]:
    """URL file name → (asset, hashed?) for every file of the package's `static/` folder, plain and hashed."""
    out: dict[str, tuple[Asset, bool]] = {}
    for entry in resources.files("tongban_auth.web").joinpath("static").iterdir():
        if not entry.is_file() or not _NAME.fullmatch(entry.name):
            continue
        body = entry.read_bytes()
        suffix = "." + entry.name.rpartition(".")[2] if "." in entry.name else ""
        content_type = TYPES.get(suffix) or mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
        asset = Asset(entry.name, body, content_type, hashlib.sha256(body).hexdigest()[:16])
        out[entry.name] = (asset, False)
        out[asset.hashed_name] = (asset, True)
    return out


def static_path(name: str, base_path: str = "") -> str:
    """The path of an asset's hashed URL, below `base_path` (the issuer's path, when it has one)."""
    found = assets().get(name)
    if found is None or found[1]:
        raise KeyError(f"no static asset {name!r}")
    return f"{base_path}{PREFIX}/{found[0].hashed_name}"


@router.api_route(PREFIX + "/{path:path}", methods=["GET", "HEAD"])
async def static_file(path: str, request: Request) -> Response:
    """Serve one asset; hashed names are immutable, anything not in the package is a 404 problem."""
    found = assets().get(path)
    if found is None:
        raise Problem(404, f"no static file {path!r}", type="not-found")
    asset, hashed = found
    headers = {
        "Cache-Control": IMMUTABLE if hashed else REVALIDATE,
        "ETag": asset.etag,
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    if asset.etag in {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else asset.body
    headers["Content-Length"] = str(len(asset.body))
    return Response(body, media_type=asset.content_type, headers=headers)
