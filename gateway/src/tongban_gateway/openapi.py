"""The aggregated OpenAPI document of the routed services, and a small self-contained /docs page."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from typing import Any

import orjson
from starlette.responses import HTMLResponse

from tongban_gateway import __version__
from tongban_gateway.config import Settings
from tongban_gateway.routes import RouteTable
from tongban_gateway.upstreams import Upstreams

log = logging.getLogger(__name__)

#: seconds a complete document is reused; a partial one (some service down) is retried sooner
CACHE_SECONDS = 30.0
PARTIAL_CACHE_SECONDS = 5.0


class OpenApiAggregator:
    """Fetches each routed service's /openapi.json and merges paths, components and tags into one."""

    def __init__(self, upstreams: Upstreams, table: RouteTable, settings: Settings) -> None:
        self.upstreams = upstreams
        self.table = table
        self.settings = settings
        self._body: bytes | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def document(self) -> bytes:
        """The merged document as JSON, rebuilt when the cached one expires."""
        if self._body is not None and time.monotonic() < self._expires:
            return self._body
        async with self._lock:
            if self._body is None or time.monotonic() >= self._expires:
                doc = await self.build()
                ttl = PARTIAL_CACHE_SECONDS if doc.get("x-unavailable") else CACHE_SECONDS
                self._body = orjson.dumps(doc)
                self._expires = time.monotonic() + ttl
            return self._body

    async def build(self) -> dict[str, Any]:
        """Fetch and merge now; services that do not answer are listed under `x-unavailable`."""
        names = sorted(self.table.upstreams)
        docs = await asyncio.gather(*(self.upstreams.fetch_json(n, "/openapi.json") for n in names))
        merged: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {
                "title": "Tongban API",
                "version": __version__,
                "description": "The public operations of the Tongban services, through the gateway.",
            },
            "servers": [{"url": self.settings.public_url}],
            "paths": {},
            "components": {},
            "tags": [],
        }
        unavailable: list[str] = []
        for name, doc in zip(names, docs, strict=True):
            if isinstance(doc, dict) and isinstance(doc.get("paths"), dict):
                self._merge(merged, name, doc)
            else:
                unavailable.append(name)
        if unavailable:
            merged["x-unavailable"] = unavailable
        return merged

    def _merge(self, into: dict[str, Any], name: str, doc: dict[str, Any]) -> None:
        for path, item in doc["paths"].items():
            route = self.table.match(path)
            if route is not None and route.upstream == name:  # only what the gateway actually routes there
                into["paths"][path] = item
        for section, entries in (doc.get("components") or {}).items():
            target = into["components"].setdefault(section, {})
            for key, value in (entries or {}).items():
                if key in target and target[key] != value:
                    log.warning(
                        "openapi component conflict; first definition kept",
                        extra={"upstream": name, "component": f"{section}/{key}"},
                    )
                    continue
                target[key] = value
        used = {
            t
            for item in into["paths"].values()
            if isinstance(item, dict)
            for op in item.values()
            if isinstance(op, dict)
            for t in op.get("tags") or ()
        }
        known = {t.get("name") for t in into["tags"]}
        for tag in doc.get("tags") or []:
            if isinstance(tag, dict) and tag.get("name") in used and tag.get("name") not in known:
                into["tags"].append(tag)
                known.add(tag.get("name"))


_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h2{margin-top:2rem;border-bottom:1px solid #ddd}.op{margin:.3rem 0}summary{cursor:pointer}
.m{display:inline-block;width:4.5rem;font:bold 12px monospace;text-transform:uppercase}
.p{font-family:monospace}.d{margin:.2rem 0 .6rem 5rem;color:#555;white-space:pre-wrap}.warn{color:#a40}
"""

_SCRIPT = """
const el = (tag, cls, text) => { const e = document.createElement(tag);
  if (cls) e.className = cls; if (text) e.textContent = text; return e; };
fetch("./openapi.json").then(r => r.json()).then(doc => {
  const status = document.getElementById("status"), root = document.getElementById("ops"), groups = {};
  status.textContent = (doc.info && doc.info.description) || "";
  const missing = doc["x-unavailable"];
  if (missing) root.append(el("p", "warn", "Not available now: " + missing.join(", ")));
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      if (!["get","put","post","delete","patch","head","options"].includes(method)) continue;
      const tag = (op.tags && op.tags[0]) || "other";
      (groups[tag] = groups[tag] || []).push([method, path, op]);
    }
  }
  for (const [tag, ops] of Object.entries(groups)) {
    root.append(el("h2", "", tag));
    for (const [method, path, op] of ops) {
      const d = el("details", "op"), s = el("summary");
      s.append(el("span", "m", method), el("span", "p", path), " " + (op.summary || ""));
      const params = (op.parameters || [])
        .map(p => p.name + " (" + p.in + (p.required ? ", required" : "") + ")");
      const lines = [op.description || "", params.length ? "Parameters: " + params.join(", ") : "",
                     "Responses: " + Object.keys(op.responses || {}).join(", ")];
      d.append(s, el("div", "d", lines.filter(Boolean).join("\\n")));
      root.append(d);
    }
  }
}).catch(err => {
  document.getElementById("status").textContent = "Could not load the API description: " + err;
});
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Tongban API</title>'
    f'<style>{_STYLE}</style></head><body><h1>Tongban API</h1><p id="status">Loading…</p>'
    '<p><a href="./openapi.json">openapi.json</a></p><div id="ops"></div>'
    f"<script>{_SCRIPT}</script></body></html>"
)
_CSP = (
    f"default-src 'none'; script-src {_sha256(_SCRIPT)}; style-src {_sha256(_STYLE)}; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def docs_page() -> HTMLResponse:
    """The /docs page: lists the operations of /openapi.json, no external assets."""
    return HTMLResponse(_PAGE, headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"})
