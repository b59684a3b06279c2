"""Performance benchmark of the organisation service against PostgreSQL and NATS.

Creates a throw-away PostgreSQL database, loads a synthetic administrative tree (province → cities →
counties → townships → villages) and memberships with COPY, starts the real service process
(`python -m tongban_org serve`), then measures each operation sequentially (one request at a time) and
prints p50/p90/p99/max against the targets. The same figures are written as JSON to bench/results/.

    .venv/bin/python bench/org_bench.py [--units 100000] [--memberships 200000] [--requests 2000]
                                        [--import-rows 10000] [--import-runs 3] [--keep-db]

Environment: TONGBAN_BENCH_PG_URL (admin URL of the PostgreSQL server, default
postgresql://postgres@127.0.0.1:5432/postgres) and TONGBAN_BENCH_NATS_URL (default nats://127.0.0.1:4222).

Requests carry RFC 9068 access tokens of a test issuer (`BenchIssuer`) whose JWK Set the service fetches over
HTTP, as it would fetch the auth service's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import logging
import math
import os
import platform
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import orjson

from tongban_kit import codes
from tongban_kit.demo import demo_user_id
from tongban_kit.ids import new_id
from tongban_kit.nats import StreamSpec
from tongban_kit.natsserver import free_port
from tongban_kit.testing.tokens import JwksServer, TestIssuer
from tongban_org.contract import CONTRACT

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_NATS = "nats://127.0.0.1:4222"
ADMIN = "demo-admin"
#: the account id of the bootstrap administrator of the demo seeds: the `sub` of the benchmark's tokens
ADMIN_ID = demo_user_id(ADMIN)
#: the stream of the auth service's events, which the services' revocation feeds follow
AUTH_STREAM = StreamSpec("AUTH_EVENTS", ("auth.*.*.v1",), "Events of the authentication service")
SERVE_FLAG = "--serve-service"
PREFIX = "/api/v1/orgs/units"

#: the eleven prefecture-level cities of Zhejiang (GB/T 2260 codes 3301..3311)
CITIES = ("杭州", "宁波", "温州", "嘉兴", "湖州", "绍兴", "金华", "衢州", "舟山", "台州", "丽水")
SYLLABLES = "东西南北安平青山云龙金石桥溪河湖塘港新和兴福宁清泉丰华茶竹桃梅松柏岭坑林田园阳光明"
TITLES = ("主任", "副主任", "科长", "科员", "处长", "副处长", "书记", "村委委员", "网格员", None)
#: counties keep codes 01..89; the import benchmark adds counties 90..99
MAX_SEEDED_COUNTIES = 89
VILLAGES_PER_TOWNSHIP = 66


# --------------------------------------------------------------------------------------------- data


@dataclass
class UnitRow:
    """One unit as loaded into org_unit."""

    id: str
    parent_id: str | None
    path: str
    depth: int
    name: str
    type: str
    level: str
    division_code: str
    credit_code: str | None
    sort_order: int


@dataclass
class Dataset:
    """What was loaded, and the ids the measurements use."""

    units: list[UnitRow]
    memberships: int
    city_id: str
    city_name: str
    city_descendants: int
    city_members: int
    province: UnitRow
    cities: list[UnitRow]
    seconds: dict[str, float] = field(default_factory=dict)


def _split(total: int, parts: int) -> list[int]:
    """`total` split into `parts` near-equal non-negative integers."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _name(rng: random.Random, suffixes: tuple[str, ...]) -> str:
    return rng.choice(SYLLABLES) + rng.choice(SYLLABLES) + rng.choice(suffixes)


class _CreditCodes:
    """Valid, unique unified social credit codes for government bodies (机关: authority 1, kind 1)."""

    def __init__(self, start: int) -> None:
        self.n = start

    def next(self, division_code: str) -> str:
        self.n += 1
        return codes.make_credit_code("1", "1", division_code[:6], f"{self.n:08d}")


def city_plan(descendants: int) -> list[list[int]]:
    """Counties of a city with `descendants` units below it: per county, the villages of each township."""
    n_counties = max(1, min(MAX_SEEDED_COUNTIES, round(descendants / 1000)))
    plan: list[list[int]] = []
    for budget in _split(descendants - n_counties, n_counties):
        n_townships = max(1, min(999, round(budget / (VILLAGES_PER_TOWNSHIP + 1))))
        villages = _split(max(0, budget - n_townships), n_townships)
        if max(villages) > 999:
            raise ValueError("too many villages per township; use fewer units")
        plan.append(villages)
    return plan


def build_tree(n_units: int, target_descendants: int, rng: random.Random) -> tuple[list[UnitRow], int]:
    """The units of one province, breadth first (parents before children, as an import would create them).

    The first city gets `target_descendants` descendants, the other ten share the rest. Returns the units
    and the number of descendants of the first city.
    """
    rest = n_units - 1 - len(CITIES) - target_descendants
    if rest < 10 * 3:
        raise ValueError(f"--units {n_units} is too small for a tree of 11 cities")
    sizes = [target_descendants, *_split(rest, len(CITIES) - 1)]
    credit = _CreditCodes(0)
    province_code = "330000000000"
    pid = new_id()
    province = UnitRow(
        pid,
        None,
        f"/{pid}/",
        0,
        "浙江省",
        "government",
        "province",
        province_code,
        credit.next(province_code),
        0,
    )
    units: list[UnitRow] = [province]
    # level by level: (parent row, children specs) → rows
    frontier: list[tuple[UnitRow, Any]] = []
    for c, (city, size) in enumerate(zip(CITIES, sizes, strict=True), start=1):
        uid = new_id()
        code = f"33{c:02d}00000000"
        row = UnitRow(
            uid,
            pid,
            f"{province.path}{uid}/",
            1,
            f"{city}市",
            "government",
            "city",
            code,
            credit.next(code),
            c,
        )
        units.append(row)
        frontier.append((row, city_plan(size)))
    counties: list[tuple[UnitRow, list[int]]] = []
    for city_row, plan in frontier:
        for k, villages in enumerate(plan, start=1):
            uid = new_id()
            code = city_row.division_code[:4] + f"{k:02d}000000"
            row = UnitRow(
                uid,
                city_row.id,
                f"{city_row.path}{uid}/",
                2,
                _name(rng, ("区", "县", "市")),
                "government",
                "county",
                code,
                credit.next(code),
                k,
            )
            units.append(row)
            counties.append((row, villages))
    townships: list[tuple[UnitRow, int]] = []
    for county_row, villages in counties:
        for t, n_villages in enumerate(villages, start=1):
            uid = new_id()
            code = county_row.division_code[:6] + f"{t:03d}000"
            row = UnitRow(
                uid,
                county_row.id,
                f"{county_row.path}{uid}/",
                3,
                _name(rng, ("镇", "乡", "街道")),
                "government",
                "township",
                code,
                credit.next(code),
                t,
            )
            units.append(row)
            townships.append((row, n_villages))
    for township_row, n_villages in townships:
        for v in range(1, n_villages + 1):
            uid = new_id()
            code = township_row.division_code[:9] + f"{v:03d}"
            units.append(
                UnitRow(
                    uid,
                    township_row.id,
                    f"{township_row.path}{uid}/",
                    4,
                    _name(rng, ("村", "社区")),
                    "community",
                    "village",
                    code,
                    None,
                    v,
                )
            )
    assert len(units) == n_units, (len(units), n_units)
    return units, target_descendants


#: relative number of posts per unit by level (a city government employs more people than a village)
LEVEL_WEIGHT = {"province": 500, "city": 200, "county": 50, "township": 12, "village": 1}


def build_memberships(units: list[UnitRow], n: int, rng: random.Random, now: datetime) -> Iterator[tuple[Any, ...]]:
    """Membership records (title, is_primary, is_leader, sort_order, id, user_id, unit_id, created_at).

    About 80 % of the users hold one post, the others a second one in another unit; the rows are
    shuffled before ids are assigned so that id order (creation order) is independent of the tree.
    """
    weights = [LEVEL_WEIGHT[u.level] for u in units]
    placed = rng.choices(range(len(units)), weights=weights, k=n)
    n_users = max(1, int(n * 0.8))
    pairs: set[tuple[int, int]] = set()
    rows: list[tuple[int, int, bool]] = []
    for i, unit_ix in enumerate(placed):
        user = i if i < n_users else rng.randrange(n_users)
        while (user, unit_ix) in pairs:
            unit_ix = rng.randrange(len(units))
        pairs.add((user, unit_ix))
        rows.append((user, unit_ix, i < n_users))
    rng.shuffle(rows)
    for user, unit_ix, primary in rows:
        yield (
            rng.choice(TITLES),
            primary,
            rng.random() < 0.05,
            0,
            new_id(),
            f"u{user:07d}",
            units[unit_ix].id,
            now,
        )


UNIT_COLUMNS = (
    "id",
    "parent_id",
    "path",
    "depth",
    "name",
    "short_name",
    "type",
    "level",
    "division_code",
    "credit_code",
    "tags",
    "sort_order",
    "status",
    "dissolved_at",
    "created_at",
    "updated_at",
)
MEMBERSHIP_COLUMNS = (
    "title",
    "is_primary",
    "is_leader",
    "sort_order",
    "id",
    "user_id",
    "unit_id",
    "created_at",
)


async def seed(pg_url: str, n_units: int, n_members: int, rng: random.Random) -> Dataset:
    """Generate and COPY the tree and the memberships, then VACUUM ANALYZE."""
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    target = 10_000 if n_units >= 50_000 else max(10, n_units // 10)
    units, city_descendants = build_tree(n_units, target, rng)
    now = datetime.now(UTC)
    unit_records = [
        (
            u.id,
            u.parent_id,
            u.path,
            u.depth,
            u.name,
            None,
            u.type,
            u.level,
            u.division_code,
            u.credit_code,
            "[]",
            u.sort_order,
            "active",
            None,
            now,
            now,
        )
        for u in units
    ]
    member_records = list(build_memberships(units, n_members, rng, now))
    seconds["generate"] = time.perf_counter() - t0
    conn = await asyncpg.connect(pg_url)
    try:
        t0 = time.perf_counter()
        await conn.copy_records_to_table("org_unit", records=unit_records, columns=UNIT_COLUMNS)
        seconds["copy_units"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await conn.copy_records_to_table("org_membership", records=member_records, columns=MEMBERSHIP_COLUMNS)
        seconds["copy_memberships"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) org_unit")
        await conn.execute("VACUUM (ANALYZE) org_membership")
        seconds["vacuum_analyze"] = time.perf_counter() - t0
        city = units[1]
        city_members = await conn.fetchval(
            "SELECT count(*) FROM org_membership m JOIN org_unit u ON u.id = m.unit_id WHERE u.path LIKE $1",
            city.path + "%",
        )
    finally:
        await conn.close()
    return Dataset(
        units=units,
        memberships=n_members,
        city_id=city.id,
        city_name=city.name,
        city_descendants=city_descendants,
        city_members=int(city_members),
        province=units[0],
        cities=units[1 : 1 + len(CITIES)],
        seconds=seconds,
    )


def import_rows(city: UnitRow, county_number: int, n_rows: int, credit_start: int) -> list[dict[str, Any]]:
    """A JSON import of one new county under `city`: the county, its townships and their villages."""
    rng = random.Random(county_number)
    credit = _CreditCodes(credit_start)
    county_code = city.division_code[:4] + f"{county_number:02d}000000"
    rows: list[dict[str, Any]] = [
        {
            "ref": "county",
            "parent_id": city.id,
            "name": _name(rng, ("区", "县")),
            "type": "government",
            "level": "county",
            "division_code": county_code,
            "credit_code": credit.next(county_code),
            "sort_order": county_number,
        }
    ]
    n_townships = max(1, min(999, round((n_rows - 1) / (VILLAGES_PER_TOWNSHIP + 1))))
    villages = _split(max(0, n_rows - 1 - n_townships), n_townships)
    for t in range(1, n_townships + 1):
        code = county_code[:6] + f"{t:03d}000"
        rows.append(
            {
                "ref": f"t{t}",
                "parent_ref": "county",
                "name": _name(rng, ("镇", "乡", "街道")),
                "type": "government",
                "level": "township",
                "division_code": code,
                "credit_code": credit.next(code),
                "tags": ["基层治理"],
                "sort_order": t,
            }
        )
    for t, n_villages in enumerate(villages, start=1):
        for v in range(1, n_villages + 1):
            rows.append(
                {
                    "parent_ref": f"t{t}",
                    "name": _name(rng, ("村", "社区")),
                    "type": "community",
                    "level": "village",
                    "division_code": county_code[:6] + f"{t:03d}{v:03d}",
                    "sort_order": v,
                }
            )
    return rows[:n_rows]


# ------------------------------------------------------------------------------------------ service


class BenchIssuer:
    """Stands in for the auth service: a TestIssuer whose JWK Set is served over HTTP from a thread.

    The benchmarked service fetches the JWK Set from `jwks_url` and verifies every request's token exactly as it
    verifies the auth service's (ES256 signature, RFC 9068 header and claims, revocation list). Each benchmark
    mints one token per caller and sends it on every request, as a client reuses its token until it expires, so
    the service verifies it once and then answers from its verified-token cache (`jwt_bench.py` measures both).
    """

    def __init__(self) -> None:
        self.issuer = TestIssuer()
        self.jwks = JwksServer(self.issuer)
        self.jwks_url = self.jwks.url

    def env(self, name: str) -> dict[str, str]:
        """The settings that make service `name` accept this issuer's tokens."""
        prefix = f"TONGBAN_{name.upper()}_"
        return {f"{prefix}OIDC_ISSUER": self.issuer.issuer, f"{prefix}OIDC_JWKS_URL": self.jwks_url}

    def headers(self, scopes: str, *, sub: str = ADMIN_ID, client_id: str = "demo-app") -> dict[str, str]:
        """An `Authorization` header with an ES256 token for `sub`, valid for two hours."""
        now = int(time.time())
        token = self.issuer.mint(sub=sub, client_id=client_id, scope=scopes, iat=now, exp=now + 7200)
        return {"Authorization": f"Bearer {token}"}

    def close(self) -> None:
        """Stop serving the JWK Set."""
        self.jwks.close()


async def ensure_auth_stream(nats_url: str, namespace: str) -> None:
    """Declare the auth service's event stream in the namespace, so the revocation feed catches up at start."""
    from tongban_kit.nats import connect

    bus = await connect(nats_url, name="bench-auth-stream", namespace=namespace)
    try:
        await bus.ensure_stream(AUTH_STREAM)
    finally:
        await bus.close()


def stop_process(proc: subprocess.Popen[Any], sig: int, wait: float) -> None:
    """Send `sig`, then SIGKILL when the process has not exited after `wait` seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Service:
    """A Tongban service as a child process (`python -m tongban_<name> serve`)."""

    def __init__(
        self,
        db_url: str,
        nats_url: str,
        namespace: str,
        *,
        name: str = "org",
        script: Path | None = None,
        extra_env: dict[str, str] | None = None,
        flag: str = SERVE_FLAG,
    ) -> None:
        self.port = free_port()
        self.namespace = namespace
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-bench-", suffix=".log", delete=False)  # noqa: SIM115
        prefix = f"TONGBAN_{name.upper()}_"
        env = dict(os.environ)
        env.update(
            {
                f"{prefix}DATABASE_URL": db_url,
                f"{prefix}NATS_URL": nats_url,
                f"{prefix}NATS_NAMESPACE": namespace,
                f"{prefix}PORT": str(self.port),
                f"{prefix}HOST": "127.0.0.1",
                f"{prefix}LOG_LEVEL": "WARNING",
                **(extra_env or {}),
            }
        )
        # `<bench script> --serve-service` runs `python -m tongban_<name> serve` (the same entry point) under
        # a command line of its own, so that scripts stopping "tongban_<name> serve" by name leave it alone
        self.proc = subprocess.Popen(
            [sys.executable, str(script or Path(__file__).resolve()), flag],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until /readyz answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the service was not ready within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        """The last lines of the service's output."""
        try:
            return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s; removes the log file."""
        stop_process(self.proc, signal.SIGTERM, 15)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


class Http:
    """One keep-alive HTTP/1.1 connection (http.client: the least client-side overhead)."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        #: sent with every request (e.g. the Authorization header)
        self.headers = dict(headers or {})

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        self.conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def get(self, path: str) -> bytes:
        status, data = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {data[:500]!r}")
        return data

    def close(self) -> None:
        self.conn.close()


# -------------------------------------------------------------------------------------- measuring


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Result:
    """Latencies of one operation and its targets (milliseconds)."""

    key: str
    label: str
    samples_ms: list[float]
    targets: dict[str, float]
    detail: dict[str, Any] = field(default_factory=dict)

    def stats(self) -> dict[str, float]:
        s = sorted(self.samples_ms)
        return {
            "n": len(s),
            "mean_ms": sum(s) / len(s),
            "min_ms": s[0],
            "p50_ms": percentile(s, 50),
            "p90_ms": percentile(s, 90),
            "p99_ms": percentile(s, 99),
            "max_ms": s[-1],
        }

    def passed(self) -> bool | None:
        if not self.targets:
            return None
        st = self.stats()
        return all(st[k] <= v for k, v in self.targets.items())

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "operation": self.label,
            **{k: round(v, 3) if isinstance(v, float) else v for k, v in self.stats().items()},
            "targets": self.targets,
            "pass": self.passed(),
            **self.detail,
        }


def measure_http(client: Http, paths: list[str], n: int, warmup: int) -> tuple[list[float], int]:
    """Latencies (ms) of `n` sequential GETs cycling through `paths`, after `warmup` untimed ones."""
    for i in range(warmup):
        client.get(paths[i % len(paths)])
    samples: list[float] = []
    size = 0
    clock = time.perf_counter
    headers = client.headers
    for i in range(n):
        path = paths[i % len(paths)]
        t0 = clock()
        client.conn.request("GET", path, headers=headers)
        resp = client.conn.getresponse()
        data = resp.read()
        samples.append((clock() - t0) * 1000)
        if resp.status != 200:
            raise RuntimeError(f"GET {path} answered {resp.status}: {data[:500]!r}")
        size = len(data)
    return samples, size


async def measure_rpc(nats_url: str, namespace: str, ids: list[str], n: int, warmup: int) -> list[float]:
    """Latencies (ms) of `org.rpc.units.get` with one id through the kit's RpcClient."""
    from tongban_kit.nats import connect
    from tongban_kit.rpc import RpcClient
    from tongban_org.contract import RPC_GET_UNITS, GetUnitsRequest, UnitsReply

    bus = await connect(nats_url, name="org-bench", namespace=namespace)
    try:
        client = RpcClient(bus)
        for i in range(warmup):
            await client.call(RPC_GET_UNITS, GetUnitsRequest(ids=[ids[i % len(ids)]]), UnitsReply)
        samples: list[float] = []
        clock = time.perf_counter
        for i in range(n):
            req = GetUnitsRequest(ids=[ids[i % len(ids)]])
            t0 = clock()
            reply = await client.call(RPC_GET_UNITS, req, UnitsReply)
            samples.append((clock() - t0) * 1000)
            if len(reply.units) != 1:
                raise RuntimeError(f"units-get returned {len(reply.units)} units for one id")
        return samples
    finally:
        await bus.close()


async def delete_streams(nats_url: str, namespace: str, streams: Sequence[StreamSpec]) -> None:
    """Remove the JetStream streams declared under the benchmark's namespace."""
    from tongban_kit.nats import connect

    bus = await connect(nats_url, name="bench-cleanup", namespace=namespace)
    try:
        await bus.delete_streams(list(streams))
    finally:
        await bus.close()


async def outbox_backlog(pg_url: str) -> int:
    """Outbox rows not yet published."""
    conn = await asyncpg.connect(pg_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM kit_outbox WHERE sent_at IS NULL"))
    finally:
        await conn.close()


def run_async(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine on uvloop when available (as the service does)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro_fn())
    return uvloop.run(coro_fn())


# ----------------------------------------------------------------------------------------- report


def host_info() -> dict[str, Any]:
    """CPU, memory, OS, Python and load of the machine the figures come from."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    load = None
    with contextlib.suppress(OSError):
        load = [round(x, 2) for x in os.getloadavg()]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": ram_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_avg_at_start": load,
    }


def machine_info(pg_url: str) -> dict[str, Any]:
    """The host (`host_info`) and the PostgreSQL server the figures come from."""

    async def pg() -> dict[str, str]:
        conn = await asyncpg.connect(pg_url)
        try:
            out = {"postgresql": await conn.fetchval("SHOW server_version")}
            for name in ("shared_buffers", "work_mem", "jit", "lc_collate"):
                out[f"pg_{name}"] = await conn.fetchval(f"SHOW {name}")
            return out
        finally:
            await conn.close()

    info = host_info()
    info.update(asyncio.run(pg()))
    return info


def fmt_ms(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def fmt_targets(t: dict[str, float]) -> str:
    if not t:
        return "-"
    names = {"p50_ms": "p50", "p99_ms": "p99", "max_ms": "each"}
    return ", ".join(f"{names.get(k, k)}≤{v:g}" for k, v in t.items())


def render(results: list[Result]) -> str:
    head = f"{'operation':<44} {'n':>5} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}  {'target (ms)':<18} result"
    lines = [head, "-" * len(head)]
    for r in results:
        st = r.stats()
        ok = r.passed()
        verdict = "-" if ok is None else ("PASS" if ok else "FAIL")
        lines.append(
            f"{r.label:<44} {st['n']:>5} {fmt_ms(st['p50_ms']):>7} {fmt_ms(st['p90_ms']):>7} "
            f"{fmt_ms(st['p99_ms']):>7} {fmt_ms(st['max_ms']):>7}  {fmt_targets(r.targets):<18} {verdict}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- main


def with_database(url: str, name: str, scheme: str | None = None) -> str:
    parts = urlsplit(url)
    return urlunsplit((scheme or parts.scheme, parts.netloc, "/" + quote(name), parts.query, ""))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Benchmark of the Tongban organisation service")
    ap.add_argument("--units", type=int, default=100_000, help="units in the synthetic tree")
    ap.add_argument("--memberships", type=int, default=200_000, help="memberships spread over the units")
    ap.add_argument("--requests", type=int, default=2000, help="timed requests per read operation")
    ap.add_argument("--warmup", type=int, default=None, help="untimed requests first (default requests/10)")
    ap.add_argument("--import-rows", type=int, default=10_000, help="units per bulk import")
    ap.add_argument("--import-runs", type=int, default=3, help="bulk imports timed (each adds a county)")
    ap.add_argument(
        "--pg",
        default=os.environ.get("TONGBAN_BENCH_PG_URL", DEFAULT_PG),
        help="admin URL of the PostgreSQL server (env TONGBAN_BENCH_PG_URL)",
    )
    ap.add_argument(
        "--nats",
        default=os.environ.get("TONGBAN_BENCH_NATS_URL", DEFAULT_NATS),
        help="NATS URL, JetStream enabled (env TONGBAN_BENCH_NATS_URL)",
    )
    ap.add_argument("--seed", type=int, default=20261126, help="random seed of the synthetic data")
    ap.add_argument("--keep-db", action="store_true", help="keep the benchmark database afterwards")
    ap.add_argument("--out", type=Path, default=None, help="JSON result file (default bench/results/org-DATE.json)")
    args = ap.parse_args(argv)
    if args.warmup is None:
        args.warmup = max(20, args.requests // 10)
    if args.units < 1000:
        ap.error("--units must be at least 1000")
    if not 2 <= args.import_rows <= 50_000:
        ap.error("--import-rows must be between 2 and 50000")
    if not 0 <= args.import_runs <= 10:
        ap.error("--import-runs must be between 0 and 10")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # the kit logs "nats disconnected" when a connection is closed on purpose
    logging.getLogger("tongban_kit.nats").setLevel(logging.ERROR)
    rng = random.Random(args.seed)
    suffix = secrets.token_hex(4)
    db_name = f"tongban_bench_org_{suffix}"
    namespace = f"bench{suffix}"
    admin_url = args.pg
    bench_pg = with_database(admin_url, db_name, "postgresql")
    service_url = with_database(admin_url, db_name, "postgresql+asyncpg")

    print("org service benchmark")
    machine = machine_info(admin_url)
    for k, v in machine.items():
        print(f"  {k:<18} {v}")

    async def create_db() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{db_name}"')
        finally:
            await conn.close()

    async def drop_db() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create_db())
    print(f"\ndatabase {db_name} created")
    service: Service | None = None
    issuer: BenchIssuer | None = None
    try:
        from tongban_kit.db import run_migrations
        from tongban_org.__main__ import MIGRATIONS

        t0 = time.perf_counter()
        run_migrations(MIGRATIONS, service_url)
        migrate_s = time.perf_counter() - t0
        print(f"migrations applied in {migrate_s:.1f} s")
        data = asyncio.run(seed(bench_pg, args.units, args.memberships, rng))
        data.seconds["migrate"] = migrate_s
        print(
            f"loaded {len(data.units):,} units and {data.memberships:,} memberships "
            + "("
            + ", ".join(f"{k} {v:.1f} s" for k, v in data.seconds.items())
            + ")"
        )
        print(
            f"measured city: {data.city_name} ({data.city_id}) with {data.city_descendants:,} descendants "
            f"and {data.city_members:,} members in its subtree"
        )

        issuer = BenchIssuer()
        run_async(lambda: ensure_auth_stream(args.nats, namespace))
        service = Service(service_url, args.nats, namespace, extra_env=issuer.env("org"))
        service.wait_ready()
        print(f"service up on port {service.port} (NATS namespace {namespace})\n")
        results = run_measurements(args, data, service, issuer)
        import_result, drains = run_imports(args, data, service, bench_pg, issuer)
        if import_result is not None:
            results.append(import_result)
    except BaseException:
        if service is not None:
            state = "running" if service.proc.poll() is None else f"exited with {service.proc.returncode}"
            print(f"\nservice {state}; its last output:\n{service.log_tail()}", file=sys.stderr)
        raise
    finally:
        if service is not None:
            service.stop()
        if issuer is not None:
            issuer.close()
            with contextlib.suppress(Exception):
                run_async(lambda: delete_streams(args.nats, namespace, [*CONTRACT.streams, AUTH_STREAM]))
        if args.keep_db:
            print(f"\nkept database {db_name}")
        else:
            asyncio.run(drop_db())

    with contextlib.suppress(OSError):
        machine["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print("\n" + render(results))
    verdicts = [r.passed() for r in results if r.passed() is not None]
    all_pass = all(verdicts)
    print(
        f"\n{'all targets met' if all_pass else 'some targets missed'} "
        f"({sum(bool(v) for v in verdicts)}/{len(verdicts)} PASS)"
    )
    report = {
        "benchmark": "org",
        "command": " ".join(["bench/org_bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine,
        "dataset": {
            "units": len(data.units),
            "memberships": data.memberships,
            "depth_levels": 5,
            "cities": len(CITIES),
            "measured_city": data.city_name,
            "measured_city_descendants": data.city_descendants,
            "measured_city_members": data.city_members,
            "load_seconds": {k: round(v, 2) for k, v in data.seconds.items()},
        },
        "settings": {
            "requests": args.requests,
            "warmup": args.warmup,
            "concurrency": 1,
            "import_rows": args.import_rows,
            "import_runs": args.import_runs,
            "seed": args.seed,
        },
        "results": [r.as_json() for r in results],
        "outbox_drain_seconds": drains,
        "all_pass": all_pass,
    }
    out = args.out or RESULTS / f"org-{datetime.now(UTC):%Y-%m-%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {out}")
    return 0 if all_pass else 1


def run_measurements(args: argparse.Namespace, data: Dataset, service: Service, issuer: BenchIssuer) -> list[Result]:
    """The read operations, one after the other, each with its own warm-up, with an `org:read` token."""
    n, warmup = args.requests, args.warmup
    rng = random.Random(args.seed + 1)
    client = Http(service.port, issuer.headers("org:read"))
    city = data.city_id
    results: list[Result] = []

    def run(key: str, label: str, paths: list[str], targets: dict[str, float], **detail: Any) -> None:
        samples, size = measure_http(client, paths, n, warmup)
        r = Result(key, label, samples, targets, {"response_bytes": size, **detail})
        results.append(r)
        st = r.stats()
        print(f"  {label:<44} p50 {fmt_ms(st['p50_ms']):>6} ms  p99 {fmt_ms(st['p99_ms']):>6} ms")

    try:
        leaves = [u.id for u in data.units if u.depth == 4]
        some_units = [u.id for u in rng.sample(data.units, min(1000, len(data.units)))]
        # the cursor of a page in the middle of the city's subtree
        page_no = max(2, data.city_descendants // 500 // 2)
        cursor = None
        for _ in range(page_no - 1):
            page = orjson.loads(
                client.get(f"{PREFIX}/{city}/subtree?limit=500" + (f"&cursor={cursor}" if cursor else ""))
            )
            cursor = page["next_cursor"]
            if not cursor:
                break
        first = orjson.loads(client.get(f"{PREFIX}/{city}/subtree?limit=500"))
        count = orjson.loads(client.get(f"{PREFIX}/{city}/subtree/count"))["count"]
        if len(first["items"]) != 500 or count != data.city_descendants:
            raise RuntimeError(f"unexpected subtree answer: {len(first['items'])} items, count {count}")

        print("measuring (sequential, one request at a time):")
        run("healthz", "baseline: GET /healthz (no database)", ["/healthz"], {})
        run("unit_get", "baseline: GET unit by id", [f"{PREFIX}/{u}" for u in some_units], {})
        run(
            "subtree_page_first",
            "(a) subtree page 1, limit 500",
            [f"{PREFIX}/{city}/subtree?limit=500"],
            {"p99_ms": 20},
        )
        if cursor:
            run(
                "subtree_page_later",
                f"(a) subtree page {page_no}, limit 500 (cursor)",
                [f"{PREFIX}/{city}/subtree?limit=500&cursor={cursor}"],
                {"p99_ms": 20},
                page=page_no,
            )
        run("subtree_count", "(b) subtree count", [f"{PREFIX}/{city}/subtree/count"], {"p99_ms": 20})
        run(
            "ancestors",
            "(c) ancestors of a village (depth 4)",
            [f"{PREFIX}/{u}/ancestors" for u in rng.sample(leaves, min(500, len(leaves)))],
            {"p99_ms": 20},
        )
        run(
            "members_recursive",
            "(d) recursive members, limit 100",
            [f"{PREFIX}/{city}/members?recursive=true&limit=100"],
            {"p99_ms": 30},
        )
        # not a target: the same listing for a smaller subtree (a county of the last city, ~1 % of members)
        county = next(u for u in data.units if u.depth == 2 and u.parent_id == data.cities[-1].id)
        run(
            "members_recursive_county",
            "info: county recursive members, limit 100",
            [f"{PREFIX}/{county.id}/members?recursive=true&limit=100"],
            {},
            county_descendants=sum(1 for u in data.units if u.path.startswith(county.path)) - 1,
        )
    finally:
        client.close()

    # the replica's unit cache is warm for units read before (the common case: a hot set of units is asked for
    # again and again); the first read of a unit goes to the database and is measured separately
    samples = run_async(lambda: measure_rpc(args.nats, service.namespace, some_units, n, len(some_units)))
    r = Result("rpc_units_get", "(e) RPC org.rpc.units.get, one id (NATS)", samples, {"p50_ms": 1, "p99_ms": 3})
    results.append(r)
    warm = set(some_units)
    cold_ids = [u.id for u in data.units if u.id not in warm][: min(n, 2000)]
    cold = run_async(lambda: measure_rpc(args.nats, service.namespace, cold_ids, len(cold_ids), 0))
    results.append(Result("rpc_units_get_cold", "info: RPC units.get, first read of each unit", cold, {}))
    for r in results[-2:]:
        st = r.stats()
        print(f"  {r.label:<44} p50 {fmt_ms(st['p50_ms']):>6} ms  p99 {fmt_ms(st['p99_ms']):>6} ms")
    return results


def run_imports(
    args: argparse.Namespace, data: Dataset, service: Service, bench_pg: str, issuer: BenchIssuer
) -> tuple[Result | None, list[float]]:
    """Bulk imports of `--import-rows` units, each a new county, as the bootstrap administrator.

    Waits for the outbox to drain between runs.
    """
    if args.import_runs == 0:
        return None, []
    client = Http(service.port, issuer.headers("org:read org:write admin"))
    samples: list[float] = []
    drains: list[float] = []
    size = 0
    try:
        for run_no in range(args.import_runs):
            # never under the measured city (the first), so its figures stay comparable after a run
            city = data.cities[1 + run_no % (len(data.cities) - 1)]
            rows = import_rows(city, 90 + run_no, args.import_rows, 90_000_000 + run_no * 100_000)
            body = orjson.dumps({"units": rows})
            size = len(body)
            headers = {"Content-Type": "application/json"}
            t0 = time.perf_counter()
            status, answer = client.request("POST", f"{PREFIX}/import", body=body, headers=headers)
            elapsed = (time.perf_counter() - t0) * 1000
            if status != 201:
                raise RuntimeError(f"import answered {status}: {answer[:1000]!r}")
            created = orjson.loads(answer)["created"]
            if created != len(rows):
                raise RuntimeError(f"import created {created} of {len(rows)} units")
            samples.append(elapsed)
            t0 = time.perf_counter()
            while run_async(lambda: outbox_backlog(bench_pg)) > 0:
                if time.perf_counter() - t0 > 300:
                    raise TimeoutError("the outbox did not drain within 300 s")
                time.sleep(0.2)
            drains.append(round(time.perf_counter() - t0, 2))
            print(
                f"  (f) bulk import run {run_no + 1}: {len(rows):,} units in {elapsed / 1000:.2f} s "
                f"(outbox drained {drains[-1]:.1f} s later)"
            )
    finally:
        client.close()
    label = f"(f) bulk import of {args.import_rows:,} units"
    return (
        Result("bulk_import", label, samples, {"max_ms": 5000}, {"request_bytes": size, "rows": args.import_rows}),
        drains,
    )


if __name__ == "__main__":
    if sys.argv[1:] == [SERVE_FLAG]:
        from tongban_org.__main__ import main as service_main

        sys.exit(service_main(["serve"]))
    sys.exit(main())
