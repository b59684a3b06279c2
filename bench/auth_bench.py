"""Throughput benchmark of the authentication service against PostgreSQL and NATS, with a peer for comparison.

Creates a throw-away PostgreSQL database, registers confidential clients through the client registry, starts the
real service process (`python -m tongban_auth serve`: uvicorn, one worker process, uvloop and httptools,
`LOG_LEVEL=WARNING`) and drives it with wrk (a C load generator in its own process, one thread) at a fixed
number of connections:

- client_credentials at the token endpoint (client_secret_basic, ES256 RFC 9068 JWT, `auth.token.issued.v1`
  written through the outbox in the same transaction);
- the same against node-oidc-provider (one Node.js process, in-memory, ES256 JWT access tokens through a resource
  indicator) when it is installed, side by side in the same run, and the ratio;
- introspection (RFC 7662) of tokens the service issued;

then, with the service stopped, Argon2id password verification (the service's `passwords.verify_password`, on
its thread pool) at a fixed concurrency while a probe measures the event loop's lag.

    .venv/bin/python bench/auth_bench.py [--duration 20] [--connections 32] [--peer-dir DIR] [--logins 300]

Environment: TONGBAN_BENCH_DATABASE_URL (admin URL of the PostgreSQL server, default
postgresql://postgres@127.0.0.1:5432/postgres), TONGBAN_BENCH_NATS_URL (default nats://127.0.0.1:4222) and
TONGBAN_BENCH_OIDC_PROVIDER_DIR (a directory where `npm install oidc-provider@9` was run).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import json
import logging
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import orjson
from org_bench import DEFAULT_NATS, Service, delete_streams, machine_info, percentile, run_async, with_database
from wrk import LoadResult, WrkRequest, require_wrk, run_wrk, wrk_version

from tongban_auth.contract import CONTRACT
from tongban_kit.natsserver import free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
SERVE_FLAG = "--serve-service"
SCOPE = "org:read user:read"
TOKEN_ISSUED = "auth.token.issued.v1"
#: targets: tokens/s and p99 (ms) at the measured concurrency; introspections/s; password logins/s per core
TARGET_TOKENS_PER_S = 1500.0
TARGET_TOKEN_P99_MS = 50.0
TARGET_INTROSPECT_PER_S = 2000.0
TARGET_LOGINS_PER_CORE = 30.0

# -------------------------------------------------------------------------------------- clients


def basic(client_id: str, secret: str) -> str:
    """An RFC 6749 §2.3.1 Basic Authorization value (id and secret form-urlencoded first)."""
    raw = f"{urlencode({'a': client_id})[2:]}:{urlencode({'a': secret})[2:]}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


async def register_clients(service_url: str, n: int) -> list[tuple[str, str]]:
    """Register `n` confidential client_credentials clients through the client registry; (id, secret) pairs."""
    from tongban_auth import clients
    from tongban_auth.models import ClientType
    from tongban_auth.schemas import AuthMethod, ClientCreate, GrantType
    from tongban_kit.db import Database

    db = Database(service_url)
    out: list[tuple[str, str]] = []
    try:
        for i in range(n):
            body = ClientCreate(
                client_id=f"bench-{i:03d}",
                name=f"benchmark client {i}",
                client_type=ClientType.confidential,
                token_endpoint_auth_method=AuthMethod.client_secret_basic,
                grant_types=[GrantType.client_credentials],
                scopes=SCOPE.split(),
            )
            async with db.session() as s:
                made = await clients.register(s, body, actor="bench", loopback_allowed=True)
            assert made.client_secret is not None
            out.append((str(made.client_id), made.client_secret))
    finally:
        await db.dispose()
    return out


def post_form(port: int, path: str, authorization: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """One form POST; the status and the JSON answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            path,
            body=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": authorization},
        )
        resp = conn.getresponse()
        return resp.status, orjson.loads(resp.read() or b"{}")
    finally:
        conn.close()


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWT (not verified: only to check the shape of what was issued)."""
    head, body, _ = token.split(".")
    return (
        orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))),
        orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))),
    )


def check_token_answer(status: int, answer: dict[str, Any], who: str) -> dict[str, Any]:
    """Fail unless the answer is a Bearer ES256 JWT access token; its header and claims."""
    if status != 200 or answer.get("token_type", "").lower() != "bearer":
        raise RuntimeError(f"{who}: token endpoint answered {status}: {answer}")
    header, claims = jwt_parts(answer["access_token"])
    if header.get("alg") != "ES256" or header.get("typ") != "at+jwt":
        raise RuntimeError(f"{who}: the access token is not an ES256 at+jwt: {header}")
    return {"header": header, "claims": claims, "bytes": len(answer["access_token"])}


async def outbox_count(pg_url: str, event_type: str) -> int:
    """Outbox rows of one event type."""
    conn = await asyncpg.connect(pg_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM kit_outbox WHERE type = $1", event_type))
    finally:
        await conn.close()


# ----------------------------------------------------------------------------------------- peer

#: node-oidc-provider: one process, in-memory adapter, the benchmark's clients, ES256 JWT access tokens
PEER_JS = r"""
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PEER_PORT);
const clients = JSON.parse(process.env.PEER_CLIENTS);
const scope = process.env.PEER_SCOPE;
const audience = 'urn:tongban:api';
const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'peer-es256', alg: 'ES256', use: 'sig' };

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: clients.map(([client_id, client_secret]) => ({
    client_id, client_secret, grant_types: ['client_credentials'], redirect_uris: [], response_types: [],
    token_endpoint_auth_method: 'client_secret_basic', id_token_signed_response_alg: 'ES256', scope,
  })),
  jwks: { keys: [jwk] },
  scopes: scope.split(' '),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope, audience, accessTokenTTL: 600, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
provider.listen(port, '127.0.0.1', () => console.log(`peer listening on ${port}`));
"""


class Peer:
    """node-oidc-provider in a Node.js process of its own."""

    def __init__(self, package_dir: Path, clients: list[tuple[str, str]]) -> None:
        self.port = free_port()
        self.dir = package_dir
        self.script = package_dir / "tongban-bench-peer.mjs"
        self.script.write_text(PEER_JS, encoding="utf-8")
        self.log = tempfile.NamedTemporaryFile(prefix="peer-bench-", suffix=".log", delete=False)  # noqa: SIM115
        env = dict(os.environ, PEER_PORT=str(self.port), PEER_CLIENTS=json.dumps(clients), PEER_SCOPE=SCOPE)
        env["NODE_ENV"] = "production"
        self.proc = subprocess.Popen(
            ["node", str(self.script)], cwd=package_dir, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the discovery document answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the peer exited with {self.proc.returncode}:\n{self.output()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/.well-known/openid-configuration")
                ok = conn.getresponse().status == 200
                conn.close()
                if ok:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the peer was not ready within {timeout}s:\n{self.output()}")

    def version(self) -> str:
        """The installed oidc-provider version."""
        meta = self.dir / "node_modules" / "oidc-provider" / "package.json"
        return str(json.loads(meta.read_text())["version"])

    def output(self) -> str:
        """What the peer printed."""
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; removes the script and the log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        for path in (Path(self.log.name), self.script):
            with contextlib.suppress(OSError):
                path.unlink()


# ------------------------------------------------------------------------------------- passwords


@dataclass
class LoginFigures:
    """Argon2id verification throughput and event-loop lag."""

    hash_params: dict[str, int]
    single_thread_ms: list[float]
    logins: int
    concurrency: int
    pool_threads: int
    seconds: float
    login_ms: list[float]
    lag_idle_ms: list[float]
    lag_busy_ms: list[float]


async def _lag_probe(stop: asyncio.Event, interval: float = 0.005) -> list[float]:
    """How late (ms) a task that sleeps `interval` seconds wakes up, until `stop` is set."""
    lags: list[float] = []
    clock = time.perf_counter
    while not stop.is_set():
        t0 = clock()
        await asyncio.sleep(interval)
        lags.append(max(0.0, (clock() - t0 - interval) * 1000))
    return lags


async def measure_logins(n: int, concurrency: int, sequential: int) -> LoginFigures:
    """Sequential Argon2id verifications on one thread, then `n` logins `concurrency` at a time through
    `passwords.verify_password` (the service's bounded thread pool) with the loop-lag probe running."""
    from tongban_auth import passwords

    password = "Qiantang-River-2026!"
    stored = passwords.HASHER.hash(passwords.normalise(password))
    params = {
        "memory_kib": passwords.HASHER.memory_cost,
        "time_cost": passwords.HASHER.time_cost,
        "parallelism": passwords.HASHER.parallelism,
    }
    single: list[float] = []
    for _ in range(sequential):
        t0 = time.perf_counter()
        passwords.HASHER.verify(stored, password)
        single.append((time.perf_counter() - t0) * 1000)

    stop = asyncio.Event()
    probe = asyncio.create_task(_lag_probe(stop))
    await asyncio.sleep(2.0)  # the idle loop first
    stop.set()
    lag_idle = await probe

    gate = asyncio.Semaphore(concurrency)
    login_ms: list[float] = []

    async def login(i: int) -> None:
        async with gate:
            t0 = time.perf_counter()
            wrong = i % 10 == 9  # one attempt in ten with a wrong password: the same cost
            ok = await passwords.verify_password(stored, password + ("x" if wrong else ""))
            login_ms.append((time.perf_counter() - t0) * 1000)
            if ok == wrong:
                raise RuntimeError("password verification gave the wrong answer")

    stop = asyncio.Event()
    probe = asyncio.create_task(_lag_probe(stop))
    t0 = time.perf_counter()
    await asyncio.gather(*(login(i) for i in range(n)))
    seconds = time.perf_counter() - t0
    stop.set()
    lag_busy = await probe
    return LoginFigures(
        params,
        single,
        n,
        concurrency,
        passwords._POOL._max_workers,
        seconds,
        login_ms,
        lag_idle,
        lag_busy,
    )


def lag_stats(values: list[float]) -> dict[str, float]:
    """p50/p99/max of lag samples (ms)."""
    s = sorted(values)
    return {
        "n": len(s),
        "p50_ms": round(percentile(s, 50), 3),
        "p99_ms": round(percentile(s, 99), 3),
        "max_ms": round(s[-1], 3),
    }


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description="Benchmark of the Tongban authentication service")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of each timed load run")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of untimed load before each timed run")
    ap.add_argument("--connections", type=int, default=32, help="concurrent connections (the targets' concurrency)")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--clients", type=int, default=50, help="registered clients the requests cycle through")
    ap.add_argument("--tokens", type=int, default=500, help="distinct tokens the introspection requests cycle through")
    ap.add_argument("--logins", type=int, default=300, help="password logins (0 skips them)")
    ap.add_argument("--login-concurrency", type=int, default=32, help="logins in flight at once")
    ap.add_argument(
        "--pg",
        default=os.environ.get("TONGBAN_BENCH_DATABASE_URL", DEFAULT_PG),
        help="admin URL of the PostgreSQL server (env TONGBAN_BENCH_DATABASE_URL)",
    )
    ap.add_argument(
        "--nats",
        default=os.environ.get("TONGBAN_BENCH_NATS_URL", DEFAULT_NATS),
        help="NATS URL, JetStream enabled (env TONGBAN_BENCH_NATS_URL)",
    )
    ap.add_argument(
        "--peer-dir",
        type=Path,
        default=Path(os.environ["TONGBAN_BENCH_OIDC_PROVIDER_DIR"])
        if os.environ.get("TONGBAN_BENCH_OIDC_PROVIDER_DIR")
        else None,
        help="directory with node_modules/oidc-provider (env TONGBAN_BENCH_OIDC_PROVIDER_DIR); absent: no peer",
    )
    ap.add_argument("--keep-db", action="store_true", help="keep the benchmark database afterwards")
    ap.add_argument("--out", type=Path, default=None, help="JSON result file (default bench/results/auth-DATE.json)")
    args = ap.parse_args(argv)
    if args.connections < 1 or args.clients < 1 or args.tokens < 1:
        ap.error("--connections, --clients and --tokens must be positive")
    return args


def tool_versions(peer_dir: Path | None) -> dict[str, Any]:
    """Versions of the load generator, the server stack and the peer."""
    import argon2
    import fastapi
    import uvicorn

    out: dict[str, Any] = {"uvicorn": uvicorn.__version__, "fastapi": fastapi.__version__}
    out["argon2_cffi"] = getattr(argon2, "__version__", "?")
    out["wrk"] = wrk_version()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    if peer_dir is not None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            meta = peer_dir / "node_modules" / "oidc-provider" / "package.json"
            out["oidc_provider"] = json.loads(meta.read_text())["version"]
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 0 when every target is met."""
    args = parse_args(argv)
    logging.getLogger("tongban_kit.nats").setLevel(logging.ERROR)
    if not require_wrk():
        return 2
    suffix = secrets.token_hex(4)
    db_name = f"tongban_bench_auth_{suffix}"
    namespace = f"bench{suffix}"
    admin_url = args.pg
    bench_pg = with_database(admin_url, db_name, "postgresql")
    service_url = with_database(admin_url, db_name, "postgresql+asyncpg")

    print("auth service benchmark")
    machine = machine_info(admin_url) | tool_versions(args.peer_dir)
    for k, v in machine.items():
        print(f"  {k:<18} {v}")

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{db_name}"'))
    print(f"\ndatabase {db_name} created")
    results: list[LoadResult] = []
    extra: dict[str, Any] = {}
    service: Service | None = None
    peer: Peer | None = None
    try:
        from tongban_auth.__main__ import MIGRATIONS
        from tongban_kit.db import run_migrations

        run_migrations(MIGRATIONS, service_url)
        registered = asyncio.run(register_clients(service_url, args.clients))
        print(f"{len(registered)} clients registered")
        service = Service(
            service_url,
            args.nats,
            namespace,
            name="auth",
            script=Path(__file__).resolve(),
            extra_env={"TONGBAN_AUTH_OTP_CHANNEL": "none", "TONGBAN_AUTH_LOG_JSON": "false"},
        )
        service.wait_ready()
        print(f"service up on port {service.port} (one uvicorn worker, NATS namespace {namespace})")
        if args.peer_dir is not None:
            peer = Peer(args.peer_dir, registered)
            peer.wait_ready()
            print(f"peer node-oidc-provider {peer.version()} up on port {peer.port}")
        print()
        run_load(args, service, peer, registered, bench_pg, results, extra)
    except BaseException:
        if service is not None:
            state = "running" if service.proc.poll() is None else f"exited with {service.proc.returncode}"
            print(f"\nservice {state}; its last output:\n{service.log_tail()}", file=sys.stderr)
        if peer is not None:
            print(f"\npeer output:\n{peer.output()}", file=sys.stderr)
        raise
    finally:
        if peer is not None:
            peer.stop()
        if service is not None:
            service.stop()
            with contextlib.suppress(Exception):
                run_async(lambda: delete_streams(args.nats, namespace, CONTRACT.streams))
        if args.keep_db:
            print(f"\nkept database {db_name}")
        else:
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))

    logins: dict[str, Any] | None = None
    if args.logins:
        print("\npassword logins (service stopped; Argon2id through passwords.verify_password):")
        figures = run_async(lambda: measure_logins(args.logins, args.login_concurrency, 50))
        logins = login_report(figures)

    with contextlib.suppress(OSError):
        machine["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    verdicts = [r.passed() for r in results if r.passed() is not None]
    if logins is not None:
        verdicts.append(logins["pass"])
    all_pass = all(verdicts)
    print()
    for r in results:
        p = r.passed()
        if p is not None:
            print(f"  {r.label:<52} {'PASS' if p else 'FAIL'}  ({describe_targets(r.targets)})")
    if logins is not None:
        print(
            f"  {'password logins per core':<52} {'PASS' if logins['pass'] else 'FAIL'}  "
            f"({logins['logins_per_second_per_core']:.1f}/s per core, target ≥ {TARGET_LOGINS_PER_CORE:g})"
        )
    print(
        f"\n{'all targets met' if all_pass else 'some targets missed'} "
        f"({sum(bool(v) for v in verdicts)}/{len(verdicts)} PASS)"
    )
    report = {
        "benchmark": "auth",
        "command": " ".join(["bench/auth_bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine,
        "code": code_state(),
        "setup": {
            "server": "python -m tongban_auth serve: uvicorn, 1 worker process, uvloop, httptools, LOG_LEVEL=WARNING",
            "load_generator": f"wrk, {args.threads} thread(s), same machine",
            "connections": args.connections,
            "duration_seconds": args.duration,
            "warmup_seconds": args.warmup,
            "clients": args.clients,
            "introspected_tokens": args.tokens,
            "scope": SCOPE,
        },
        "results": [r.as_json() for r in results],
        **extra,
        "password_logins": logins,
        "all_pass": all_pass,
    }
    out = args.out or RESULTS / f"auth-{datetime.now(UTC):%Y-%m-%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {out}")
    return 0 if all_pass else 1


def describe_targets(t: dict[str, float]) -> str:
    """The targets of a load result as text."""
    parts = []
    if "per_s" in t:
        parts.append(f"≥ {t['per_s']:,.0f}/s")
    if "p99_ms" in t:
        parts.append(f"p99 ≤ {t['p99_ms']:g} ms")
    return ", ".join(parts) + ", no errors"


def run_load(
    args: argparse.Namespace,
    service: Service,
    peer: Peer | None,
    registered: list[tuple[str, str]],
    bench_pg: str,
    results: list[LoadResult],
    extra: dict[str, Any],
) -> None:
    """client_credentials (service and peer, interleaved), then introspection."""
    body = urlencode({"grant_type": "client_credentials", "scope": SCOPE})
    specs = [form_request("/oauth2/token", basic(cid, secret), body) for cid, secret in registered]
    cid, secret = registered[0]
    shape = check_token_answer(*post_form(service.port, "/oauth2/token", basic(cid, secret), dict_of(body)), "tongban")
    extra["token_shape"] = {"tongban": {"bytes": shape["bytes"], "header": shape["header"]}}
    if peer is not None:
        peer_shape = check_token_answer(
            *post_form(peer.port, "/token", basic(cid, secret), dict_of(body)), "node-oidc-provider"
        )
        extra["token_shape"]["peer"] = {"bytes": peer_shape["bytes"], "header": peer_shape["header"]}
    load = {"connections": args.connections, "threads": args.threads}

    print(f"client_credentials ({args.connections} connections, {args.duration:g} s each after {args.warmup:g} s):")
    run_wrk(service.port, specs, key="warmup", label="warm-up (not recorded)", seconds=args.warmup, **load)
    time.sleep(0.5)  # the warm-up's last requests finish
    before = run_async(lambda: outbox_count(bench_pg, TOKEN_ISSUED))
    ours = run_wrk(
        service.port,
        specs,
        key="client_credentials",
        label="tongban: client_credentials (ES256 JWT + event)",
        seconds=args.duration,
        targets={"per_s": TARGET_TOKENS_PER_S, "p99_ms": TARGET_TOKEN_P99_MS},
        **load,
    )
    time.sleep(0.5)
    events = run_async(lambda: outbox_count(bench_pg, TOKEN_ISSUED)) - before
    answered = ours.figures["requests"] - ours.figures["status_errors"]
    # every answered token has its event row; requests still in flight when wrk stopped may add up to one each
    if not answered <= events <= answered + args.connections:
        raise RuntimeError(f"{answered} tokens answered but {events} {TOKEN_ISSUED} rows written")
    ours.detail["issued_events_written"] = events
    results.append(ours)
    if peer is not None:
        peer_specs = [s._replace(path="/token") for s in specs]
        run_wrk(peer.port, peer_specs, key="warmup", label="peer warm-up (not recorded)", seconds=args.warmup, **load)
        theirs = run_wrk(
            peer.port,
            peer_specs,
            key="client_credentials_peer",
            label="node-oidc-provider: client_credentials (ES256 JWT)",
            seconds=args.duration,
            **load,
        )
        results.append(theirs)
        # a second pair, in the other order, so neither side always runs on a warmer machine
        theirs2 = run_wrk(
            peer.port,
            peer_specs,
            key="client_credentials_peer_2",
            label="node-oidc-provider: client_credentials, 2nd run",
            seconds=args.duration,
            **load,
        )
        ours2 = run_wrk(
            service.port,
            specs,
            key="client_credentials_2",
            label="tongban: client_credentials, 2nd run",
            seconds=args.duration,
            **load,
        )
        results.extend([theirs2, ours2])
        ratio = (ours.rate + ours2.rate) / (theirs.rate + theirs2.rate)
        extra["peer_ratio"] = {
            "tongban_per_s": round((ours.rate + ours2.rate) / 2, 1),
            "peer_per_s": round((theirs.rate + theirs2.rate) / 2, 1),
            "ratio": round(ratio, 3),
            "tongban_p99_ms": [round(ours.ms("p99"), 2), round(ours2.ms("p99"), 2)],
            "peer_p99_ms": [round(theirs.ms("p99"), 2), round(theirs2.ms("p99"), 2)],
        }
        print(f"  ratio tongban / node-oidc-provider (mean of two runs each): {ratio:.2f}")

    # introspection of tokens the service issued, by a confidential client
    tokens: list[str] = []
    for i in range(args.tokens):
        cid_i, secret_i = registered[i % len(registered)]
        status, answer = post_form(service.port, "/oauth2/token", basic(cid_i, secret_i), dict_of(body))
        check_token_answer(status, answer, "tongban")
        tokens.append(answer["access_token"])
    status, answer = post_form(service.port, "/oauth2/introspect", basic(cid, secret), {"token": tokens[0]})
    if status != 200 or answer.get("active") is not True:
        raise RuntimeError(f"introspection answered {status}: {answer}")
    auth = basic(cid, secret)
    ispecs = [
        form_request("/oauth2/introspect", auth, urlencode({"token": t, "token_type_hint": "access_token"}))
        for t in tokens
    ]
    print(f"introspection ({len(tokens)} distinct tokens):")
    run_wrk(service.port, ispecs, key="warmup", label="warm-up (not recorded)", seconds=args.warmup, **load)
    results.append(
        run_wrk(
            service.port,
            ispecs,
            key="introspection",
            label="tongban: introspection (RFC 7662)",
            seconds=args.duration,
            targets={"per_s": TARGET_INTROSPECT_PER_S},
            **load,
        )
    )


def form_request(path: str, authorization: str, body: str) -> WrkRequest:
    """A form POST with an Authorization header, for wrk."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": authorization}
    return WrkRequest("POST", path, headers, body)


def dict_of(form: str) -> dict[str, str]:
    """A form body back into a dict."""
    from urllib.parse import parse_qsl

    return dict(parse_qsl(form))


def login_report(f: LoginFigures) -> dict[str, Any]:
    """The password-login figures as JSON, printed as they are made."""
    cores = os.cpu_count() or 1
    single = sorted(f.single_thread_ms)
    per_thread = 1000 / statistics.median(single)
    rate = f.logins / f.seconds
    used = min(cores, f.pool_threads)
    per_core = rate / used
    idle, busy = lag_stats(f.lag_idle_ms), lag_stats(f.lag_busy_ms)
    logins = sorted(f.login_ms)
    print(
        f"  Argon2id {f.hash_params}: one verification {statistics.median(single):.1f} ms "
        f"on one thread = {per_thread:.1f}/s per core"
    )
    print(
        f"  {f.logins} logins, {f.concurrency} at a time on {f.pool_threads} pool threads: {rate:.1f}/s "
        f"= {per_core:.1f}/s per core; login latency p50 {percentile(logins, 50):.0f} ms, "
        f"p99 {percentile(logins, 99):.0f} ms"
    )
    print(
        f"  event-loop lag (5 ms sleeps): idle p50 {idle['p50_ms']:.2f} / p99 {idle['p99_ms']:.2f} ms; "
        f"during logins p50 {busy['p50_ms']:.2f} / p99 {busy['p99_ms']:.2f} / max {busy['max_ms']:.2f} ms"
    )
    return {
        "argon2id": f.hash_params,
        "single_thread_verify_ms": {
            "n": len(single),
            "p50": round(percentile(single, 50), 2),
            "p99": round(percentile(single, 99), 2),
        },
        "single_thread_verifications_per_second": round(per_thread, 1),
        "logins": f.logins,
        "concurrency": f.concurrency,
        "pool_threads": f.pool_threads,
        "cores": cores,
        "seconds": round(f.seconds, 2),
        "logins_per_second": round(rate, 1),
        "logins_per_second_per_core": round(per_core, 1),
        "login_latency_ms": {"p50": round(percentile(logins, 50), 1), "p99": round(percentile(logins, 99), 1)},
        "loop_lag_idle": idle,
        "loop_lag_during_logins": busy,
        "target_per_core": TARGET_LOGINS_PER_CORE,
        "pass": per_core >= TARGET_LOGINS_PER_CORE,
    }


def code_state() -> dict[str, Any]:
    """The commit measured and whether the auth service or the kit had uncommitted changes."""
    out: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "services/auth/src", "services/kit/src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        out["uncommitted_changes"] = [line[3:] for line in changed]
    return out


if __name__ == "__main__":
    if sys.argv[1:] == [SERVE_FLAG]:
        from tongban_auth.__main__ import main as service_main

        sys.exit(service_main(["serve"]))
    sys.exit(main())
