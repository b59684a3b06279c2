"""The gateway's cost: the same trivial upstream called directly, through the gateway and through nginx.

Starts a trivial upstream (a FastAPI app answering a small JSON document, uvicorn with uvloop and httptools, one
process), the real gateway (`python -m tongban_gateway`: one process, verifying an ES256 RFC 9068 access token and
its scope on every request, following revocations over NATS) and nginx (one worker, keep-alive pool to the
upstream) side by side, then drives each with wrk (a C load generator in its own process):

- concurrency 1: the latency the gateway adds (p50 and p99, gateway minus direct);
- concurrency 32: throughput, in rounds whose order rotates so no side always runs on a warmer machine; the
  figures are the medians of the rounds, and the ratio is gateway / direct;
- the gateway's resident memory (RSS now and its peak) after the load.

When Redis answers, a second gateway with rate limits on (a token bucket per client in Redis, high enough never to
refuse) runs in the same rounds, so the cost of the shared limit shows too.

    .venv/bin/python bench/gateway_bench.py [--seconds 10] [--rounds 4] [--connections 32]

Needs wrk (Debian: `apt-get install wrk`), NATS with JetStream, and nginx for the reference row (optional).
Environment: TONGBAN_BENCH_NATS_URL (default nats://127.0.0.1:4222), TONGBAN_BENCH_REDIS_URL (default
redis://127.0.0.1:6379/15).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from org_bench import (
    AUTH_STREAM,
    DEFAULT_NATS,
    BenchIssuer,
    Service,
    delete_streams,
    ensure_auth_stream,
    host_info,
    run_async,
    stop_process,
)
from wrk import LoadResult, WrkRequest, require_wrk, run_wrk, wrk_version

from tongban_kit.natsserver import free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
UPSTREAM_FLAG = "--serve-upstream"
GATEWAY_FLAG = "--serve-gateway"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
PATH = "/api/v1/bench/items"
SCOPE = "bench:read"
#: targets: share of direct throughput at 32 connections; latency added at 1 connection (ms); RSS (MiB)
TARGET_RATIO = 0.60
TARGET_ADDED_P50_MS = 1.0
TARGET_ADDED_P99_MS = 3.0
TARGET_RSS_MIB = 150.0


# ------------------------------------------------------------------------------------------ upstream


def serve_upstream() -> None:
    """The trivial upstream: a small JSON document per item, no database, no token check."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI(openapi_url="/openapi.json", docs_url=None, redoc_url=None)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(PATH + "/{item_id}")
    async def item(item_id: int) -> dict[str, Any]:
        return {"id": item_id, "name": f"item {item_id}", "unit": "杭州市市场监督管理局", "active": True}

    port = int(os.environ["TONGBAN_UPSTREAM_PORT"])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


# -------------------------------------------------------------------------------------------- nginx


class Nginx:
    """nginx as a reverse proxy in front of the upstream: one worker, a keep-alive pool, no access log."""

    def __init__(self, upstream_port: int) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="nginx-bench-"))
        conf = f"""
worker_processes 1;
error_log {self.dir}/error.log warn;
pid {self.dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    upstream bench {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"""
        (self.dir / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port, self.proc)

    def stop(self) -> None:
        """Stop nginx (SIGQUIT: graceful) and remove its directory."""
        stop_process(self.proc, signal.SIGQUIT, 10)
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Block until something accepts connections on 127.0.0.1:`port`."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the process exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")


def nginx_version() -> str | None:
    """nginx's version line, or None when it is not installed."""
    try:
        out = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stderr or out.stdout).strip().removeprefix("nginx version: ")


# ------------------------------------------------------------------------------------------ gateway


def gateway_env(
    issuer: BenchIssuer, upstream_port: int, routes_file: Path, nats_url: str, namespace: str, redis_url: str
) -> dict[str, str]:
    """The gateway's settings: one upstream, the bench route table, the issuer's keys, NATS and (maybe) Redis."""
    return {
        "TONGBAN_GATEWAY_UPSTREAMS": json.dumps({"bench": [f"http://127.0.0.1:{upstream_port}"]}),
        "TONGBAN_GATEWAY_ROUTES_FILE": str(routes_file),
        "TONGBAN_GATEWAY_OIDC_ISSUER": issuer.issuer.issuer,
        "TONGBAN_GATEWAY_OIDC_JWKS_URL": issuer.jwks_url,
        "TONGBAN_GATEWAY_REDIS_URL": redis_url,
        "TONGBAN_GATEWAY_RATE_LIMITS": "true" if redis_url else "false",
        "TONGBAN_GATEWAY_RATE_LIMIT_NAMESPACE": f"bench:{namespace}",
        # as deployed: a JSON access-log line per request (to the runner's log file)
        "TONGBAN_GATEWAY_LOG_LEVEL": "INFO",
    }


def route_table() -> dict[str, Any]:
    """One protected route; its bucket is large enough never to refuse (the check is what is measured)."""
    return {
        "routes": [
            {
                "prefix": "/api/v1/bench",
                "upstream": "bench",
                "scopes": {"GET": [SCOPE], "*": ["bench:write"]},
                "rate_limit": {"per_second": 1_000_000, "burst": 1_000_000},
            }
        ]
    }


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, MiB."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def redis_answers(url: str) -> bool:
    """True when Redis answers a PING (through the gateway's own client)."""
    from tongban_gateway.resp import Redis, StoreError

    async def ping() -> bool:
        client = Redis(url, timeout=1.0)
        try:
            return await client.execute("PING") == "PONG"
        except StoreError:
            return False
        finally:
            await client.close()

    return bool(run_async(ping))


def check_answer(port: int, request: WrkRequest, who: str) -> None:
    """One request must answer 200 with the upstream's document."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(request.method, request.path, headers=request.headers)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200 or b'"name"' not in body:
        raise RuntimeError(f"{who} answered {resp.status}: {body[:300]!r}")


def check_refusal(port: int) -> None:
    """Without a token the gateway must refuse (so the measured path really checks tokens)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", PATH + "/1")
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    if resp.status != 401:
        raise RuntimeError(f"the gateway answered {resp.status} to a request without a token")


# ------------------------------------------------------------------------------------------ measuring


def median(values: list[float]) -> float:
    """The median."""
    return float(statistics.median(values))


def summarise(runs: list[LoadResult]) -> dict[str, Any]:
    """Medians over rounds of one side, plus every run."""
    return {
        "per_second": round(median([r.rate for r in runs]), 1),
        "p50_ms": round(median([r.ms("p50") for r in runs]), 3),
        "p99_ms": round(median([r.ms("p99") for r in runs]), 3),
        "errors": sum(r.errors for r in runs),
        "runs": [r.as_json() for r in runs],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of each timed run (default 10)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of untimed load per side first (default 3)")
    p.add_argument("--rounds", type=int, default=4, help="rounds at --connections (default 4; medians)")
    p.add_argument("--connections", type=int, default=32, help="concurrency of the throughput runs (default 32)")
    p.add_argument("--tokens", type=int, default=64, help="distinct clients' tokens cycled through (default 64)")
    p.add_argument("--nats", default=os.environ.get("TONGBAN_BENCH_NATS_URL", DEFAULT_NATS))
    p.add_argument("--redis", default=os.environ.get("TONGBAN_BENCH_REDIS_URL", DEFAULT_REDIS))
    p.add_argument("--no-nginx", action="store_true", help="skip the nginx reference")
    p.add_argument("--out", type=Path, default=None, help="JSON results (default bench/results/gateway-<date>.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 0 when every target is met."""
    args = parse_args(argv)
    logging.getLogger("tongban_kit.nats").setLevel(logging.ERROR)
    if not require_wrk():
        return 2
    use_nginx = not args.no_nginx and shutil.which("nginx") is not None
    use_redis = redis_answers(args.redis)
    namespace = f"bench{secrets.token_hex(4)}"

    import fastapi
    import uvicorn

    machine = host_info() | {
        "wrk": wrk_version(),
        "nginx": nginx_version() if use_nginx else None,
        "uvicorn": uvicorn.__version__,
        "fastapi": fastapi.__version__,
    }
    print("gateway benchmark")
    for k, v in machine.items():
        print(f"  {k:<18} {v}")

    run_async(lambda: ensure_auth_stream(args.nats, namespace))
    issuer = BenchIssuer()
    tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    routes_file = tmp / "routes.yaml"
    routes_file.write_text(yaml.safe_dump(route_table()))
    script = Path(__file__).resolve()
    procs: list[Service] = []
    nginx: Nginx | None = None
    try:
        # the runner gives each process a free port in TONGBAN_<NAME>_PORT; the upstream reads its own there
        upstream = Service("", args.nats, namespace, name="upstream", script=script, flag=UPSTREAM_FLAG)
        procs.append(upstream)
        upstream.wait_ready()
        sides: dict[str, int] = {"direct": upstream.port}
        labels = {"direct": "direct to the upstream"}
        gateways: dict[str, Service] = {}
        variants = [("gateway", "")] + ([("gateway_rl", args.redis)] if use_redis else [])
        for key, redis_url in variants:
            env = gateway_env(issuer, upstream.port, routes_file, args.nats, namespace, redis_url)
            gw = Service("", args.nats, namespace, name="gateway", script=script, flag=GATEWAY_FLAG, extra_env=env)
            procs.append(gw)
            gw.wait_ready()
            gateways[key] = gw
            sides[key] = gw.port
        labels["gateway"] = "through the gateway (token + scope)"
        labels["gateway_rl"] = "through the gateway (token + scope + Redis limit)"
        if use_nginx:
            nginx = Nginx(upstream.port)
            sides["nginx"] = nginx.port
            labels["nginx"] = "through nginx (reference)"

        requests = [
            WrkRequest("GET", f"{PATH}/{i}", {**issuer.headers(SCOPE, sub=f"bench-{i}", client_id=f"app-{i}")})
            for i in range(args.tokens)
        ]
        for key, port in sides.items():
            check_answer(port, requests[0], labels[key])
        for key in gateways:
            check_refusal(sides[key])

        print(f"warm-up ({args.warmup:g} s each, not recorded)")
        for key, port in sides.items():
            run_wrk(
                port,
                requests,
                key="warmup",
                label=labels[key],
                connections=args.connections,
                seconds=args.warmup,
                quiet=True,
            )

        print(f"latency at 1 connection ({args.seconds:g} s each):")
        single = {
            key: run_wrk(port, requests, key=f"{key}_c1", label=labels[key], connections=1, seconds=args.seconds)
            for key, port in sides.items()
        }

        print(f"throughput at {args.connections} connections, {args.rounds} rounds of {args.seconds:g} s:")
        order = list(sides)
        rounds: dict[str, list[LoadResult]] = {k: [] for k in sides}
        for r in range(args.rounds):
            turn = order[r % len(order) :] + order[: r % len(order)]
            for key in turn:
                rounds[key].append(
                    run_wrk(
                        sides[key],
                        requests,
                        key=f"{key}_c{args.connections}_{r + 1}",
                        label=f"{labels[key]}, round {r + 1}",
                        connections=args.connections,
                        seconds=args.seconds,
                    )
                )
        memory = {key: rss_mib(gw.proc.pid) for key, gw in gateways.items()}
    finally:
        for p in reversed(procs):
            p.stop()
        if nginx is not None:
            nginx.stop()
        issuer.close()
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(Exception):
            run_async(lambda: delete_streams(args.nats, namespace, [AUTH_STREAM]))

    report = build_report(args, machine, labels, single, rounds, memory)
    print(render(report))
    out = args.out or RESULTS / f"gateway-{datetime.now(UTC).date().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    print(f"results written to {out}")
    return 0 if report["pass"] else 1


def build_report(
    args: argparse.Namespace,
    machine: dict[str, Any],
    labels: dict[str, str],
    single: dict[str, LoadResult],
    rounds: dict[str, list[LoadResult]],
    memory: dict[str, tuple[float, float]],
) -> dict[str, Any]:
    """Figures, ratios and targets as one JSON document."""
    direct = single["direct"]
    throughput = {k: summarise(v) for k, v in rounds.items()}
    base = throughput["direct"]["per_second"]
    checks: list[dict[str, Any]] = []
    for key in (k for k in ("gateway", "gateway_rl") if k in single):
        added_p50 = single[key].ms("p50") - direct.ms("p50")
        added_p99 = single[key].ms("p99") - direct.ms("p99")
        ratio = throughput[key]["per_second"] / base
        rss, peak = memory[key]
        # the throughput target is set for token verification; the shared rate limit's cost is reported beside it
        scored = key == "gateway"
        checks += [
            {
                "what": f"{labels[key]}: share of direct throughput at c{args.connections}",
                "value": round(ratio, 3),
                "target": f">= {TARGET_RATIO}" if scored else None,
                "pass": ratio >= TARGET_RATIO if scored else None,
            },
            {
                "what": f"{labels[key]}: p50 added at c1 (ms)",
                "value": round(added_p50, 3),
                "target": f"<= {TARGET_ADDED_P50_MS}",
                "pass": added_p50 <= TARGET_ADDED_P50_MS,
            },
            {
                "what": f"{labels[key]}: p99 added at c1 (ms)",
                "value": round(added_p99, 3),
                "target": f"<= {TARGET_ADDED_P99_MS}",
                "pass": added_p99 <= TARGET_ADDED_P99_MS,
            },
            {
                "what": f"{labels[key]}: peak RSS (MiB)",
                "value": round(peak, 1),
                "rss_after_load": round(rss, 1),
                "target": f"<= {TARGET_RSS_MIB:g}",
                "pass": peak <= TARGET_RSS_MIB,
            },
        ]
    if "nginx" in throughput:
        ratio = throughput["nginx"]["per_second"] / base
        checks.append(
            {
                "what": f"reference: nginx share of direct throughput at c{args.connections}",
                "value": round(ratio, 3),
                "target": None,
                "pass": None,
            }
        )
    errors = sum(t["errors"] for t in throughput.values()) + sum(r.errors for r in single.values())
    ok = errors == 0 and all(c["pass"] for c in checks if c["pass"] is not None)
    return {
        "benchmark": "gateway",
        "command": "bench/gateway_bench.py " + " ".join(sys.argv[1:]),
        "machine": machine | {"load_avg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "settings": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "connections": args.connections,
            "tokens": args.tokens,
        },
        "labels": labels,
        "latency_c1": {k: v.as_json() for k, v in single.items()},
        "throughput": throughput,
        "checks": checks,
        "errors": errors,
        "pass": ok,
    }


def render(report: dict[str, Any]) -> str:
    """The report as text tables."""
    labels = report["labels"]
    lines = [
        "",
        "| side | c1 p50 ms | c1 p99 ms | c32 req/s (median) | c32 p50 ms | c32 p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, c1 in report["latency_c1"].items():
        t = report["throughput"][key]
        lines.append(
            f"| {labels[key]} | {c1['p50_ms']:.2f} | {c1['p99_ms']:.2f} | {t['per_second']:,.0f} | "
            f"{t['p50_ms']:.2f} | {t['p99_ms']:.2f} |"
        )
    lines += ["", "| check | value | target | result |", "|---|---:|---|---|"]
    for c in report["checks"]:
        result = "–" if c["pass"] is None else ("PASS" if c["pass"] else "FAIL")
        lines.append(f"| {c['what']} | {c['value']} | {c['target'] or '–'} | {result} |")
    lines.append(f"\nerrors: {report['errors']}; overall: {'PASS' if report['pass'] else 'FAIL'}")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == [UPSTREAM_FLAG]:
        serve_upstream()
    elif sys.argv[1:] == [GATEWAY_FLAG]:
        from tongban_gateway.__main__ import main as gateway_main

        gateway_main()
    else:
        sys.exit(main())
