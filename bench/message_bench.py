"""Send latency of the message service under a steady stream of sends to a large organisation unit.

Creates throw-away databases for the org and message services, gives one seeded unit `--members` members, starts
both services as child processes (`python -m tongban_<name> serve`, the message service asking the org service
for the unit's members over NATS RPC, as in production), then sends `--rate` messages a second to that unit for
`--seconds` seconds, open loop (each send starts on schedule whatever the earlier ones are doing), and reports
the send latency p50/p99/max by answer, and, for accepted sends (202), how long until every delivery was written.

    .venv/bin/python bench/message_bench.py [--members 2001] [--rate 20] [--seconds 10]

Environment: TONGBAN_BENCH_PG_URL and TONGBAN_BENCH_NATS_URL, as for org_bench.py. A request that takes longer
than `--timeout` (the gateway's upstream timeout, 30 s) counts as a 504.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from org_bench import (
    AUTH_STREAM,
    DEFAULT_NATS,
    DEFAULT_PG,
    RESULTS,
    BenchIssuer,
    Service,
    delete_streams,
    ensure_auth_stream,
    host_info,
    percentile,
    with_database,
)

from tongban_kit.db import Database, run_migrations
from tongban_kit.ids import new_id
from tongban_kit.outbox import utcnow

SERVE_ORG = "--serve-org"
SERVE_MESSAGE = "--serve-message"
UNIT = "zj-dsj"


async def prepare(org_url: str, message_url: str, members: int) -> str:
    """Seed the org directory and the message templates; give the unit `members` members; the unit's id."""
    from sqlalchemy import func, insert, select

    from tongban_message.seed import seed as seed_templates
    from tongban_org.models import Membership
    from tongban_org.seed import seed as seed_org

    org_db, message_db = Database(org_url), Database(message_url)
    try:
        unit = (await seed_org(org_db))[UNIT]
        await seed_templates(message_db)
        async with org_db.session() as s:
            have = await s.scalar(select(func.count()).select_from(Membership).where(Membership.unit_id == unit))
            rows = [
                {"id": new_id(), "user_id": f"bench-{i:05d}", "unit_id": unit, "title": None, "is_primary": False}
                | {"is_leader": False, "sort_order": 0, "created_at": utcnow()}
                for i in range(members - int(have or 0))
            ]
            await (await s.connection()).execute(insert(Membership), rows)
            await s.commit()
        return unit
    finally:
        await org_db.dispose()
        await message_db.dispose()


async def load(port: int, headers: dict[str, str], unit: str, args: argparse.Namespace) -> dict[str, Any]:
    """Send open loop at `args.rate` per second; latencies by status, and fan-out completion of accepted ones."""
    base = f"http://127.0.0.1:{port}"
    results: list[tuple[int, float, dict[str, Any]]] = []
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=args.timeout, limits=limits) as client:

        async def one(n: int) -> None:
            body = {
                "template_code": "notice.general",
                "to": {"unit_id": unit},
                "personalisation": {"title": f"通知{n}", "content": "基准测试"},
                "reference": f"bench-{n}",
            }
            start = time.perf_counter()
            try:  # the whole exchange within the timeout, as the gateway counts it
                r = await asyncio.wait_for(client.post("/api/v1/messages", json=body), args.timeout)
                status, answer = r.status_code, (r.json() if r.content else {})
            except (TimeoutError, httpx.TimeoutException):
                status, answer = 504, {}
            except httpx.HTTPError as exc:
                status, answer = 599, {"error": str(exc)}
            results.append((status, (time.perf_counter() - start) * 1000, answer))

        tasks = []
        t0 = time.perf_counter()
        for n in range(int(args.rate * args.seconds)):
            await asyncio.sleep(max(0.0, t0 + n / args.rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0

        accepted = [a for s, _, a in results if s == 202]
        fanned: list[float] = []
        deadline = time.monotonic() + 300
        for a in accepted:  # wait for each fan-out; time from accepted to sent
            while time.monotonic() < deadline:
                got = (await client.get(f"/api/v1/messages/{a['id']}")).json()
                if got["status"] != "queued":
                    if got["status"] == "sent":
                        created = datetime.fromisoformat(got["created_at"])
                        fanned.append((datetime.fromisoformat(got["sent_at"]) - created).total_seconds() * 1000)
                    break
                await asyncio.sleep(0.2)

    by_status: dict[str, Any] = {}
    for status in sorted({s for s, _, _ in results}):
        ms = sorted(t for s, t, _ in results if s == status)
        kinds = sorted({str(a.get("type", "")).rsplit("/", 1)[-1] for s, _, a in results if s == status} - {""})
        by_status[str(status)] = summary(ms) | ({"problems": kinds} if kinds else {})
    everything = sorted(t for _, t, _ in results)
    return {
        "sends": len(results),
        "wall_seconds": round(wall, 1),
        "all": summary(everything),
        "by_status": by_status,
        "fanout_ms": summary(sorted(fanned)),
        "recipients": next((a.get("recipients") for _, _, a in results if a.get("recipients")), None),
    }


async def committed(url: str) -> dict[str, int]:
    """Messages in the database by status once the service has stopped: what the senders' requests wrote."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        has_status = await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_name = 'message_message' AND column_name = 'status'"
        )
        column = "status" if has_status else "'sent'"
        rows = await conn.fetch(f"SELECT {column} AS status, count(*) AS n FROM message_message GROUP BY 1")
        return {r["status"]: r["n"] for r in rows}
    finally:
        await conn.close()


def summary(ms: list[float]) -> dict[str, float | int]:
    """n, p50, p99 and max of sorted milliseconds."""
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 1),
        "p99": round(percentile(ms, 99), 1),
        "max": round(ms[-1], 1),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=2001, help="members of the unit sent to")
    p.add_argument("--rate", type=float, default=20.0, help="sends per second")
    p.add_argument("--seconds", type=float, default=10.0, help="how long to send")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before a send counts as a 504")
    p.add_argument("--pg", default=os.environ.get("TONGBAN_BENCH_PG_URL", DEFAULT_PG))
    p.add_argument("--nats", default=os.environ.get("TONGBAN_BENCH_NATS_URL", DEFAULT_NATS))
    p.add_argument("--label", default="", help="a name for this run in the results (e.g. main, fanout)")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("tongban_kit.nats").setLevel(logging.ERROR)
    suffix = secrets.token_hex(4)
    names = {"org": f"tongban_bench_msgorg_{suffix}", "message": f"tongban_bench_msg_{suffix}"}
    urls = {k: with_database(args.pg, v, "postgresql+asyncpg") for k, v in names.items()}
    namespace = f"bench{suffix}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(args.pg)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    machine = host_info()
    for name in names.values():
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    services: list[Service] = []
    issuer = BenchIssuer()
    try:
        from tongban_message.__main__ import MIGRATIONS as MESSAGE_MIGRATIONS
        from tongban_org.__main__ import MIGRATIONS as ORG_MIGRATIONS

        run_migrations(ORG_MIGRATIONS, urls["org"])
        run_migrations(MESSAGE_MIGRATIONS, urls["message"])
        unit = asyncio.run(prepare(urls["org"], urls["message"], args.members))
        asyncio.run(ensure_auth_stream(args.nats, namespace))
        script = Path(__file__).resolve()
        for name, flag in (("org", SERVE_ORG), ("message", SERVE_MESSAGE)):
            service = Service(
                urls[name], args.nats, namespace, name=name, script=script, flag=flag, extra_env=issuer.env(name)
            )
            services.append(service)
            service.wait_ready()
        headers = issuer.headers("message:send", sub="demo-app", client_id="demo-app")
        print(f"sending {args.rate:g}/s for {args.seconds:g} s to a unit of {args.members:,} members")
        result = asyncio.run(load(services[1].port, headers, unit, args))
        for service in reversed(services):
            service.stop()  # lets requests still in flight finish
        result["committed"] = asyncio.run(committed(urls["message"]))
    finally:
        for service in reversed(services):
            service.stop()
        issuer.close()
        from tongban_message.contract import CONTRACT as MESSAGE
        from tongban_org.contract import CONTRACT as ORG

        asyncio.run(delete_streams(args.nats, namespace, [*ORG.streams, *MESSAGE.streams, AUTH_STREAM]))
        for name in names.values():
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    result |= {"label": args.label, "members": args.members, "rate": args.rate, "seconds": args.seconds}
    result["machine"] = machine | {"load_avg_at_end": [round(x, 2) for x in os.getloadavg()]}
    shown = ("all", "by_status", "fanout_ms", "committed", "wall_seconds", "machine")
    print(json.dumps({k: result[k] for k in shown}, ensure_ascii=False, indent=1))
    out = args.out or RESULTS / f"message-{args.label or 'run'}-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == [SERVE_ORG]:
        from tongban_org.__main__ import main as org_main

        sys.exit(org_main(["serve"]))
    if sys.argv[1:] == [SERVE_MESSAGE]:
        from tongban_message.__main__ import main as message_main

        sys.exit(message_main(["serve"]))
    sys.exit(main())
