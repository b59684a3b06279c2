"""Benchmark of access-token verification (`tongban_kit.tokens.TokenVerifier`), in one process.

Mints realistic RFC 9068 access tokens with ES256 and RSA-3072 RS256 keys (the authentication service's
defaults), then times `await TokenVerifier.verify(token)` one token at a time: each token once on a cold
cache (full verification: parsing, signature, claims, revocation check) and again from the verified-token
cache. A revocation list holding 10,000 entries is checked on every verification. Prints median/p99 in
microseconds against the targets and writes the figures as JSON to bench/results/. `--compare DIR` also times
the kit in DIR (e.g. main's `services/kit/src`), alternating token by token with this one, so that both sides
see the same load.

    .venv/bin/python bench/jwt_bench.py [--tokens 5000] [--warmup 500] [--compare DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import math
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import cryptography
import joserfc
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend
from joserfc import jwt
from joserfc.jwk import KeySet
from org_bench import host_info

from tongban_kit import tokens as kit_tokens
from tongban_kit.ids import new_id
from tongban_kit.testing.tokens import TestIssuer
from tongban_kit.tokens import TokenVerifier

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
        joserfc=joserfc.__version__,
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


async def timed_pair(verifiers: tuple[Any, Any], tokens: list[str]) -> tuple[list[float], list[float]]:
    """Microseconds per `verify` of each verifier, alternating which goes first, one token at a time."""
    out: tuple[list[float], list[float]] = ([], [])
    clock = time.perf_counter_ns
    for i, token in enumerate(tokens):
        for side in (0, 1) if i % 2 == 0 else (1, 0):
            t0 = clock()
            await verifiers[side].verify(token)
            out[side].append((clock() - t0) / 1000)
    return out


def kit_tokens_from(src: Path) -> ModuleType:
    """`tongban_kit.tokens` of another source tree, loaded beside this process's kit (which stays in place)."""
    ours = {n: m for n, m in sys.modules.items() if n == "tongban_kit" or n.startswith("tongban_kit.")}
    for name in ours:
        del sys.modules[name]
    sys.path.insert(0, str(src))
    try:
        return importlib.import_module("tongban_kit.tokens")
    finally:  # the other tree's modules keep working through their own globals
        sys.path.remove(str(src))
        for name in [n for n in sys.modules if n == "tongban_kit" or n.startswith("tongban_kit.")]:
            del sys.modules[name]
        sys.modules.update(ours)


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


def make_verifier(module: Any, issuer: TestIssuer, cache_size: int) -> Any:
    """A verifier of `module` (this kit's `tongban_kit.tokens` or another tree's) with 10,000 revocations."""
    revocations = module.RevocationList()
    for _ in range(5000):
        revocations.add(jti=new_id(), grant_id=new_id(), expires_at=time.time() + 3600)
    source = module.JwksSource.from_jwks(issuer.jwks)
    return module.TokenVerifier(
        source, issuer=ISSUER, audience=AUDIENCE, revocations=revocations, cache_size=cache_size
    )


async def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run every measurement; returns the rows and details of the set-up."""
    issuer = TestIssuer(ISSUER, AUDIENCE, rsa_bits=3072)
    cache_size = args.tokens * 3 + args.warmup * 2
    verifier = make_verifier(kit_tokens, issuer, cache_size)
    other = make_verifier(kit_tokens_from(args.compare), issuer, cache_size) if args.compare else None
    warm = [realistic_token(issuer, alg, i) for alg in ("ES256", "RS256") for i in range(args.warmup)]
    tokens = {alg: [realistic_token(issuer, alg, i) for i in range(args.tokens)] for alg in ("ES256", "RS256")}
    for v in (verifier, other) if other is not None else (verifier,):
        await timed(v, warm)  # imports, first-call paths, allocator
        await timed(v, warm)
    gc.collect()
    rows = []
    for phase, target in (
        ("cold verification, {}", TARGET_COLD_US),
        ("cached verification, {} token", TARGET_CACHED_US),
    ):
        for alg in ("ES256", "RS256"):
            label = phase.format(alg)
            if other is None:
                rows.append(row(label, await timed(verifier, tokens[alg]), target))
                continue
            ours, theirs = await timed_pair((verifier, other), tokens[alg])
            rows += [row(label, ours, target), row(f"before: {label}", theirs, None)]
    rows += joserfc_rows(issuer, tokens)
    setup = {
        "tokens_per_alg": args.tokens,
        "warmup_per_alg": args.warmup,
        "token_bytes": {alg: len(tokens[alg][0]) for alg in tokens},
        "rsa_bits": 3072,
        "compared_with": str(args.compare) if args.compare else None,
        "revocation_entries": len(verifier.revocations),
        "cache_entries_at_end": len(verifier._cache),
    }
    return rows, setup


def joserfc_rows(issuer: TestIssuer, tokens: dict[str, list[str]]) -> list[dict[str, Any]]:
    """For comparison: the same tokens through joserfc's `jwt.decode` (its whole JWS path, no claim checks)."""
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
    head = f"{'operation':<44} {'n':>5} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>8}  {'target (µs)':<12} result"
    lines = [head, "-" * len(head)]
    for r in rows:
        target = "-" if r["target_us"] is None else f"≤ {r['target_us']:g}"
        lines.append(
            f"{r['operation']:<44} {r['n']:>5} {r['p50_us']:>7.1f} {r['p90_us']:>7.1f} {r['p99_us']:>7.1f} "
            f"{r['max_us']:>8.1f}  {target:<12} {r['result'] or '-'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 0 when every target is met."""
    ap = argparse.ArgumentParser(description="Benchmark of JWT access-token verification")
    ap.add_argument("--tokens", type=int, default=5000, help="distinct tokens per algorithm (timed)")
    ap.add_argument("--warmup", type=int, default=500, help="untimed tokens per algorithm first")
    ap.add_argument("--compare", type=Path, default=None, help="also time the kit in this src dir, interleaved")
    ap.add_argument("--out", type=Path, default=None, help="JSON result file (default bench/results/jwt-DATE.json)")
    args = ap.parse_args(argv)
    machine = machine_info()
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM, Python "
        f"{machine['python']}, joserfc {machine['joserfc']}, cryptography {machine['cryptography']} "
        f"({machine['openssl']}), "
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
