"""wrk as the load generator of the benchmarks: a C program in its own process, driven by a Lua script that
cycles through pre-built requests and prints its figures as one JSON line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class WrkRequest(NamedTuple):
    """One pre-built request: method, path (with query), headers and body."""

    method: str
    path: str
    headers: dict[str, str]
    body: str = ""


#: wrk script: cycles through pre-built requests; `done` prints one JSON line with the figures
WRK_LUA = r"""
local specs = SPECS
local built = {}
local n = 0
local i = 0

init = function(args)
  for k, s in ipairs(specs) do
    local body = nil
    if s[4] ~= "" then body = s[4] end
    built[k] = wrk.format(s[1], s[2], s[3], body)
  end
  n = #built
end

request = function()
  i = i % n + 1
  return built[i]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "status_errors": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"p999_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def wrk_script(requests: list[WrkRequest]) -> str:
    """The wrk Lua script cycling through `requests`."""
    rows = []
    for r in requests:
        headers = "{" + ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in r.headers.items()) + "}"
        rows.append(f"{{{_lua_string(r.method)}, {_lua_string(r.path)}, {headers}, {_lua_string(r.body)}}}")
    return WRK_LUA.replace("SPECS", "{\n" + ",\n".join(rows) + "\n}")


@dataclass
class LoadResult:
    """What one wrk run measured."""

    key: str
    label: str
    connections: int
    seconds: float
    figures: dict[str, Any]
    targets: dict[str, float] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return float(self.figures["requests"]) / (self.figures["duration_us"] / 1e6)

    @property
    def errors(self) -> int:
        """Non-2xx answers, connection errors and timeouts."""
        f = self.figures
        return int(f["status_errors"] + f["connect_errors"] + f["read_errors"] + f["write_errors"] + f["timeouts"])

    def ms(self, name: str) -> float:
        """A latency figure in milliseconds (`p50`, `p90`, `p99`, `p999`, `max`, `mean`)."""
        return float(self.figures[f"{name}_us"]) / 1000

    def passed(self) -> bool | None:
        """Whether every target is met (and no request failed); None without targets."""
        if not self.targets:
            return None
        ok = self.errors == 0
        if "per_s" in self.targets:
            ok = ok and self.rate >= self.targets["per_s"]
        if "p99_ms" in self.targets:
            ok = ok and self.ms("p99") <= self.targets["p99_ms"]
        return ok

    def as_json(self) -> dict[str, Any]:
        """The JSON record."""
        return {
            "key": self.key,
            "operation": self.label,
            "connections": self.connections,
            "seconds": self.seconds,
            "requests": self.figures["requests"],
            "per_second": round(self.rate, 1),
            "errors": self.errors,
            **{f"{k}_ms": round(self.ms(k), 3) for k in ("p50", "p90", "p99", "p999", "max", "mean")},
            "targets": self.targets,
            "pass": self.passed(),
            **self.detail,
        }


def run_wrk(
    port: int,
    requests: list[WrkRequest],
    *,
    key: str,
    label: str,
    connections: int,
    seconds: float,
    threads: int = 1,
    targets: dict[str, float] | None = None,
    quiet: bool = False,
) -> LoadResult:
    """Drive 127.0.0.1:`port` with wrk for `seconds` at `connections` open connections."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(wrk_script(requests))
        script = f.name
    try:
        cmd = [
            "wrk",
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            script,
            f"http://127.0.0.1:{port}",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        os.unlink(script)
    match = re.search(r"^WRKJSON (\{.*\})$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no figures:\n{out}")
    result = LoadResult(key, label, connections, seconds, json.loads(match.group(1)), targets or {})
    if not quiet:
        print(
            f"  {label:<52} {result.rate:>8,.0f}/s  p50 {result.ms('p50'):6.2f}  p99 {result.ms('p99'):6.2f}  "
            f"max {result.ms('max'):7.2f} ms  errors {result.errors}",
            flush=True,
        )
    return result


def require_wrk() -> bool:
    """True when wrk is installed; else says how to get it."""
    if shutil.which("wrk") is None:
        print("wrk is needed (Debian: apt-get install wrk)", file=sys.stderr)
        return False
    return True


def wrk_version() -> str | None:
    """`wrk --version`'s first line, or None when wrk is not installed."""
    try:
        return subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    except (OSError, subprocess.SubprocessError):
        return None
