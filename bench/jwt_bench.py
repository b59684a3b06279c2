"""Benchmark of access-token verification (`tongban_kit.tokens.TokenVerifier`), in one process.

Mints realistic RFC 9068 access tokens with ES256 and RSA-3072 RS256 keys (the authentication service's
defaults), then times `await TokenVerifier.verify(token)` one token at a time: each token once on a cold
cache (full verification: parsing, signature, claims, revocation check) and again from the verified-token
cache. A revocation list holding 10,000 entries is checked on every verification. Prints median/p99 in
microseconds against the targets and writes the figures as JSON to bench/results/.

    .venv/bin/python bench/jwt_bench.py [--tokens 5000] [--warmup 500] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cryptography
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend
from org_bench import host_info

from tongban_kit.ids import new_id
from tongban_kit.testing.tokens import TestIssuer
from tongban_kit.tokens import JwksSource, RevocationList, TokenVerifier

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ISSUER = "http://127.0.0.1:8000"
AUDIENCE = "tongban-api"
#: targets in microseconds, on the median and on p99
TARGET_COLD_US = 250.0
TARGET_CACHED_US = 20.0


def machine_info() -> dict[str, Any]:
    """The host (`host_info`) and the crypto library the figures come from."""
    info = host_info()
    load = info.pop("load_avg_at_start")
    info.update(
        cryptography=cryptography.__version__,
        openssl=openssl_backend.openssl_version_text(),
        load_avg_at_start=load,
    )
    return info


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def realistic_token(issuer: TestIssuer, alg: str, i: int) -> str:
    """An access token shaped like the authentication service's: a staff member with delegated admin units."""
    now = int(time.time())
    return issuer.mint(
        alg,
        sub=new_id(),
        client_id="demo-app",
        scope="openid profile org:read org:write user:read user:pii message:send",
        jti=new_id(),
        iat=now,
        exp=now + 600,
        auth_time=now - 30 - i % 600,
        acr="urn:tongban:acr:mfa",
        amr=["pwd", "otp"],
        sid=new_id(),
        gid=new_id(),
        admin_units=[new_id() for _ in range(3)],
    )


async def timed(verifier: TokenVerifier, tokens: list[str]) -> list[float]:
    """Microseconds per `verify`, one token at a time."""
    out = []
    clock = time.perf_counter_ns
    for token in tokens:
        t0 = clock()
        await verifier.verify(token)
        out.append((clock() - t0) / 1000)
    return out


def row(label: str, samples: list[float], target: float | None) -> dict[str, Any]:
    """Summary of one measured operation."""
    s = sorted(samples)
    p50, p99 = percentile(s, 50), percentile(s, 99)
    verdict = None if target is None else (p50 <= target and p99 <= target)
    return {
        "operation": label,
        "n": len(s),
        "p50_us": round(p50, 1),
        "p90_us": round(percentile(s, 90), 1),
        "p99_us": round(p99, 1),
        "mean_us": round(statistics.fmean(s), 1),
        "min_us": round(s[0], 1),
        "max_us": round(s[-1], 1),
        "target_us": target,
        "result": None if verdict is None else ("PASS" if verdict else "FAIL"),
    }


async def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run every measurement; returns the rows and details of the set-up."""
    issuer = TestIssuer(ISSUER, AUDIENCE, rsa_bits=3072)
    revocations = RevocationList()
    for _ in range(5000):
        revocations.add(jti=new_id(), grant_id=new_id(), expires_at=time.time() + 3600)
    verifier = TokenVerifier(
        JwksSource.from_jwks(issuer.jwks),
        issuer=ISSUER,
        audience=AUDIENCE,
        revocations=revocations,
        cache_size=args.tokens * 3 + args.warmup * 2,
    )
    warm = [realistic_token(issuer, alg, i) for alg in ("ES256", "RS256") for i in range(args.warmup)]
    tokens = {alg: [realistic_token(issuer, alg, i) for i in range(args.tokens)] for alg in ("ES256", "RS256")}
    await timed(verifier, warm)  # imports, first-call paths, allocator
    await timed(verifier, warm)
    gc.collect()
    rows = []
    for alg in ("ES256", "RS256"):
        rows.append(row(f"cold verification, {alg}", await timed(verifier, tokens[alg]), TARGET_COLD_US))
    for alg in ("ES256", "RS256"):
        rows.append(row(f"cached verification, {alg} token", await timed(verifier, tokens[alg]), TARGET_CACHED_US))
    rows += joserfc_rows(issuer, tokens)
    setup = {
        "tokens_per_alg": args.tokens,
        "warmup_per_alg": args.warmup,
        "token_bytes": {alg: len(tokens[alg][0]) for alg in tokens},
        "rsa_bits": 3072,
        "revocation_entries": len(revocations),
        "cache_entries_at_end": len(verifier._cache),
    }
    return rows, setup


def joserfc_rows(issuer: TestIssuer, tokens: dict[str, list[str]]) -> list[dict[str, Any]]:
    """For comparison: the same tokens through joserfc's `jwt.decode` (signature and parsing only), if installed."""
    try:
        import joserfc
        from joserfc import jwt
        from joserfc.jwk import KeySet
    except ImportError:
        return []
    jwks: Any = issuer.jwks
    keys = KeySet.import_key_set(jwks)
    rows = []
    clock = time.perf_counter_ns
    for alg in ("ES256", "RS256"):
        for token in tokens[alg][:50]:
            jwt.decode(token, keys, algorithms=[alg])
        samples = []
        for token in tokens[alg]:
            t0 = clock()
            jwt.decode(token, keys, algorithms=[alg])
            samples.append((clock() - t0) / 1000)
        rows.append(row(f"info: joserfc {joserfc.__version__} decode, {alg}", samples, None))
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    """The results as a text table."""
    head = f"{'operation':<36} {'n':>5} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>8}  {'target (µs)':<12} result"
    lines = [head, "-" * len(head)]
    for r in rows:
        target = "-" if r["target_us"] is None else f"≤ {r['target_us']:g}"
        lines.append(
            f"{r['operation']:<36} {r['n']:>5} {r['p50_us']:>7.1f} {r['p90_us']:>7.1f} {r['p99_us']:>7.1f} "
            f"{r['max_us']:>8.1f}  {target:<12} {r['result'] or '-'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 0 when every target is met."""
    ap = argparse.ArgumentParser(description="Benchmark of JWT access-token verification")
    ap.add_argument("--tokens", type=int, default=5000, help="distinct tokens per algorithm (timed)")
    ap.add_argument("--warmup", type=int, default=500, help="untimed tokens per algorithm first")
    ap.add_argument("--out", type=Path, default=None, help="JSON result file (default bench/results/jwt-DATE.json)")
    args = ap.parse_args(argv)
    machine = machine_info()
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM, Python "
        f"{machine['python']}, cryptography {machine['cryptography']} ({machine['openssl']}), "
        f"load {machine['load_avg_at_start']}"
    )
    rows, setup = asyncio.run(measure(args))
    machine["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(render(rows))
    ok = all(r["result"] != "FAIL" for r in rows)
    out = args.out or RESULTS / f"jwt-{datetime.now(UTC).date().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "jwt",
        "command": "bench/jwt_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine,
        "setup": setup,
        "targets_us": {"cold": TARGET_COLD_US, "cached": TARGET_CACHED_US, "applies_to": ["p50", "p99"]},
        "results": rows,
        "all_targets_met": ok,
    }
    out.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
