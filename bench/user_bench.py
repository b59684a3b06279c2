"""Performance benchmark of the user service against PostgreSQL and NATS.

Creates a throw-away PostgreSQL database, loads a synthetic population (citizens with encrypted identity
numbers, staff, legal persons) with COPY, starts the real service process (`python -m tongban_user serve`),
then measures each operation sequentially (one request at a time) and prints p50/p90/p99/max against the
targets. The same figures are written as JSON to bench/results/.

    .venv/bin/python bench/user_bench.py [--users 1000000] [--requests 2000]
                                         [--import-rows 20000] [--import-runs 3] [--keep-db]

Environment: TONGBAN_BENCH_PG_URL (admin URL of the PostgreSQL server, default
postgresql://postgres@127.0.0.1:5432/postgres) and TONGBAN_BENCH_NATS_URL (default nats://127.0.0.1:4222).
The measuring helpers (HTTP client, percentiles, result table, machine report) are shared with org_bench.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import orjson
from org_bench import (
    AUTH_STREAM,
    DEFAULT_NATS,
    DEFAULT_PG,
    BenchIssuer,
    Http,
    Result,
    Service,
    delete_streams,
    ensure_auth_stream,
    fmt_ms,
    machine_info,
    outbox_backlog,
    render,
    run_async,
    with_database,
)

from tongban_kit import codes
from tongban_user import identity
from tongban_user.contract import CONTRACT
from tongban_user.crypto import PiiCipher

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SERVE_FLAG = "--serve-service"
PREFIX = "/api/v1/users"
#: the scopes of the bootstrap administrator's token (no `user:pii`: answers are masked)
SCOPES = "user:read user:write admin"

# ------------------------------------------------------------------------------------------- names

#: surnames with their pinyin and approximate frequency (per cent of the population)
SURNAMES: tuple[tuple[str, str, float], ...] = tuple(
    (s, p, float(w))
    for s, p, w in (
        x.split(":")
        for x in (  # noqa: SIM905
            "王:wang:7.1 李:li:7.0 张:zhang:6.7 刘:liu:5.4 陈:chen:4.5 杨:yang:3.1 黄:huang:2.2 赵:zhao:2.0 "
            "吴:wu:2.0 周:zhou:1.9 徐:xu:1.3 孙:sun:1.2 马:ma:1.2 朱:zhu:1.1 胡:hu:1.0 郭:guo:1.0 何:he:0.9 "
            "林:lin:0.9 高:gao:0.9 罗:luo:0.8 郑:zheng:0.8 梁:liang:0.7 谢:xie:0.6 宋:song:0.5 唐:tang:0.5 "
            "许:xu:0.5 韩:han:0.5 冯:feng:0.5 邓:deng:0.5 曹:cao:0.5 彭:peng:0.4 曾:zeng:0.4 肖:xiao:0.4 "
            "田:tian:0.4 董:dong:0.4 袁:yuan:0.4 潘:pan:0.4 于:yu:0.4 蒋:jiang:0.4 蔡:cai:0.4 余:yu:0.3 "
            "杜:du:0.3 叶:ye:0.3 程:cheng:0.3 苏:su:0.3 魏:wei:0.3 吕:lv:0.3 丁:ding:0.3 任:ren:0.3 "
            "沈:shen:0.3 姚:yao:0.3 卢:lu:0.3 姜:jiang:0.2 崔:cui:0.2 钟:zhong:0.2 谭:tan:0.2 陆:lu:0.2 "
            "汪:wang:0.2 范:fan:0.2 金:jin:0.2 石:shi:0.2 廖:liao:0.2 贾:jia:0.2 夏:xia:0.2 韦:wei:0.2 "
            "付:fu:0.2 方:fang:0.2 白:bai:0.2 邹:zou:0.2 孟:meng:0.2 熊:xiong:0.2 秦:qin:0.2 邱:qiu:0.2 "
            "江:jiang:0.2 尹:yin:0.2 薛:xue:0.2 闫:yan:0.2 段:duan:0.2 雷:lei:0.2 侯:hou:0.2 龙:long:0.2 "
            "史:shi:0.2 陶:tao:0.2 黎:li:0.2 贺:he:0.2 顾:gu:0.2 毛:mao:0.2 郝:hao:0.2 龚:gong:0.2 "
            "邵:shao:0.2 万:wan:0.2 钱:qian:0.2 严:yan:0.2 覃:qin:0.1 武:wu:0.1 戴:dai:0.1 莫:mo:0.1 "
            "孔:kong:0.1 向:xiang:0.1 汤:tang:0.1 欧阳:ouyang:0.05 司马:sima:0.02 诸葛:zhuge:0.01 上官:shangguan:0.01"
        ).split()
    )
)
#: characters of given names with their pinyin, most common first (drawn with Zipf-like weights)
GIVEN = tuple(
    tuple(x.split(":"))
    for x in (  # noqa: SIM905
        "伟:wei 芳:fang 娜:na 敏:min 静:jing 丽:li 强:qiang 磊:lei 军:jun 洋:yang 勇:yong 艳:yan 杰:jie "
        "娟:juan 涛:tao 明:ming 超:chao 秀:xiu 霞:xia 平:ping 刚:gang 桂:gui 英:ying 华:hua 玉:yu 文:wen "
        "建:jian 国:guo 志:zhi 红:hong 海:hai 小:xiao 晓:xiao 春:chun 林:lin 金:jin 亮:liang 宇:yu 浩:hao "
        "婷:ting 雪:xue 慧:hui 鹏:peng 飞:fei 俊:jun 梅:mei 兰:lan 凤:feng 云:yun 辉:hui 波:bo 斌:bin "
        "宁:ning 佳:jia 欣:xin 怡:yi 子:zi 梓:zi 涵:han 轩:xuan 睿:rui 晨:chen 阳:yang 博:bo 嘉:jia 思:si "
        "雨:yu 琳:lin 颖:ying 倩:qian 蕾:lei 瑶:yao 鑫:xin 帆:fan 诗:shi 昊:hao 然:ran 峰:feng 成:cheng"
    ).split()
)
GIVEN_WEIGHTS = [1 / (rank**0.8) for rank in range(1, len(GIVEN) + 1)]
#: 6-digit address codes of identity numbers: mostly Zhejiang counties, some from elsewhere
ADDRESSES = (  # noqa: SIM905
    "330102 330105 330106 330108 330109 330110 330111 330122 330127 330182 330203 330205 330206 330211 "
    "330212 330225 330226 330281 330302 330303 330304 330324 330381 330382 330402 330411 330421 330424 "
    "330481 330502 330503 330521 330522 330602 330603 330604 330624 330681 330702 330703 330723 330781 "
    "330782 330802 330803 330822 330881 330902 330903 331002 331003 331004 331082 331102 331121 331181 "
    "110105 110108 310104 310115 320102 320506 340102 360102 410105 420106 430104 440106 500103 510107"
).split()
ADDRESS_WEIGHTS = [10 if a.startswith("33") else 2 for a in ADDRESSES]
MOBILE_PREFIXES = (  # noqa: SIM905
    "130 131 132 133 134 135 136 137 138 139 150 151 152 153 155 156 157 158 159 166 170 171 172 173 "
    "175 176 177 178 180 181 182 183 184 185 186 187 188 189 191 198 199"
).split()
MAIL_DOMAINS = ("example.com", "example.cn", "example.net", "mail.example.com", "example.org")
STAFF_DOMAIN = "zj.gov.example"
CITIES = ("杭州", "宁波", "温州", "嘉兴", "湖州", "绍兴", "金华", "衢州", "舟山", "台州", "丽水")
CITY_CODES = ("330106", "330203", "330302", "330402", "330502", "330602", "330702", "330802", "330902", "331002")
FIRM_WORDS = (
    "东方 华通 创新 联合 恒信 盛世 博远 天成 中和 宏达 万象 汇智 锦程 启明 嘉禾 新峰 瑞丰 金石 云帆 同舟".split()  # noqa: SIM905
)
FIRM_TRADES = ("科技", "贸易", "建设", "物流", "餐饮", "文化传媒", "医药", "农业开发", "信息技术", "环保")
DEPARTMENTS = ("办公室", "政务服务科", "社会事务科", "财务科", "人事科", "综合执法队", "信息中心", "便民服务中心")

COLUMNS = (
    "id",
    "kind",
    "name",
    "real_name",
    "username",
    "mobile",
    "email",
    "credit_code",
    "id_number_enc",
    "id_number_hash",
    "id_number_masked",
    "gender",
    "birth_date",
    "representative_id",
    "external_id",
    "enterprise",
    "status",
    "status_reason",
    "status_changed_at",
    "version",
    "created_at",
    "updated_at",
    "deleted_at",
)
OPERATOR_COLUMNS = ("legal_person_id", "citizen_id", "created_at")

#: the population's mix: staff and legal persons in per cent, the rest are citizens
STAFF_PERCENT = 14
LEGAL_PERSON_PERCENT = 1
#: share of accounts disabled and (soft) deleted, in per cent
DISABLED_PERCENT = 1.5
DELETED_PERCENT = 0.5
CHUNK = 50_000


@dataclass
class Person:
    """One person's name and login names."""

    name: str
    surname_py: str
    given_py: str


@dataclass
class Sample:
    """An account kept for the measurements (with its plain identity number)."""

    id: str
    kind: str
    status: str
    mobile: str | None
    email: str | None
    username: str | None
    id_number: str | None


@dataclass
class Dataset:
    """What was loaded, and what the measurements use."""

    users: int
    kinds: Counter[str]
    statuses: Counter[str]
    with_id_number: int
    with_mobile: int
    with_email: int
    with_username: int
    operators: int
    samples: list[Sample]
    prefix_counts: Counter[str]
    surname_counts: Counter[str]
    seconds: dict[str, float] = field(default_factory=dict)


class Generator:
    """Synthetic, reproducible people with unique login names and identity numbers."""

    def __init__(self, rng: random.Random, cipher: PiiCipher, n_mobiles: int) -> None:
        self.rng = rng
        self.cipher = cipher
        self._surnames = [s[:2] for s in SURNAMES]
        self._surname_cum = _cumulative([s[2] for s in SURNAMES])
        self._given_cum = _cumulative(GIVEN_WEIGHTS)
        self._address_cum = _cumulative(ADDRESS_WEIGHTS)
        # unique mobiles: distinct numbers drawn from all prefixes at once, handed out in turn
        space = len(MOBILE_PREFIXES) * 10**8
        self._mobiles = iter(rng.sample(range(space), n_mobiles))
        self._email_seen: Counter[str] = Counter()
        self._username_seen: Counter[str] = Counter()
        self._id_seen: set[str] = set()
        self._credit = 10_000_000 + rng.randrange(10_000_000)
        self._birth_lo = date(1945, 1, 1).toordinal()
        self._birth_hi = date(2007, 12, 31).toordinal()

    def person(self) -> Person:
        rng = self.rng
        surname, spy = rng.choices(self._surnames, cum_weights=self._surname_cum)[0]
        n_given = 1 if rng.random() < 0.25 else 2
        given = rng.choices(GIVEN, cum_weights=self._given_cum, k=n_given)
        return Person(surname + "".join(g[0] for g in given), spy, "".join(g[1] for g in given))

    def mobile(self) -> str:
        v = next(self._mobiles)
        return MOBILE_PREFIXES[v // 10**8] + f"{v % 10**8:08d}"

    def email(self, p: Person, domain: str | None = None) -> str:
        base = f"{p.given_py}.{p.surname_py}" if self.rng.random() < 0.5 else f"{p.surname_py}{p.given_py}"
        self._email_seen[base] += 1
        n = self._email_seen[base]
        local = base if n == 1 else f"{base}{n}"
        return f"{local}@{domain or self.rng.choice(MAIL_DOMAINS)}"

    def username(self, p: Person) -> str:
        base = f"{p.surname_py}.{p.given_py}"
        self._username_seen[base] += 1
        n = self._username_seen[base]
        return base if n == 1 else f"{base}{n}"

    def id_number(self) -> tuple[str, date]:
        """A valid, unique 18-character resident identity number and its birth date."""
        rng = self.rng
        while True:
            address = rng.choices(ADDRESSES, cum_weights=self._address_cum)[0]
            born = date.fromordinal(rng.randint(self._birth_lo, self._birth_hi))
            first17 = f"{address}{born:%Y%m%d}{rng.randrange(1000):03d}"
            if first17 not in self._id_seen:
                self._id_seen.add(first17)
                return first17 + identity.id_number_check_char(first17), born

    def credit_code(self, division6: str) -> str:
        self._credit += 1
        return codes.make_credit_code("9", "1", division6, f"{self._credit:08d}")

    def protect(self, number: str, born: date) -> tuple[str, str, str, str, date]:
        """(encrypted, lookup hash, masked, gender, birth date) exactly as the service stores them."""
        gender = "male" if int(number[16]) % 2 else "female"
        return (
            self.cipher.encrypt(number),
            self.cipher.lookup_hash(number),
            identity.mask_id_number(number),
            gender,
            born,
        )


def _cumulative(weights: Sequence[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


def uuid7_at(moment: datetime, rng: random.Random) -> str:
    """A UUIDv7 string (as `tongban_kit.ids.new_id` makes) whose timestamp is `moment`."""
    ms = int(moment.timestamp() * 1000)
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62)
    return str(uuid.UUID(int=value))


def plan_kinds(n: int, rng: random.Random) -> list[str]:
    """Kinds of the n accounts in creation order."""
    n_legal = max(1, n * LEGAL_PERSON_PERCENT // 100)
    n_staff = n * STAFF_PERCENT // 100
    kinds = ["legal_person"] * n_legal + ["staff"] * n_staff + ["citizen"] * (n - n_legal - n_staff)
    rng.shuffle(kinds)
    return kinds


def generate(
    n: int, gen: Generator, rng: random.Random, now: datetime, data: Dataset
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Account records (COLUMNS order) and operator records, in chunks, in creation (= id) order.

    Citizens all have an identity number (the service requires one); 60 % of the staff have one of their
    own. Accounts were created between 2019 and yesterday; ids are UUIDv7 of their creation time.
    """
    kinds = plan_kinds(n, rng)
    start = datetime(2019, 1, 1, tzinfo=UTC).timestamp()
    span = now.timestamp() - 86_400 - start
    moments = sorted(start + rng.random() * span for _ in range(n))
    sample_every = max(1, n // 6000)
    citizens: list[str] = []
    legal_pending: list[int] = []
    chunk: list[tuple[Any, ...]] = []
    operators: list[tuple[Any, ...]] = []
    for i, kind in enumerate(kinds):
        created = datetime.fromtimestamp(moments[i], UTC)
        uid = uuid7_at(created, rng)
        r = rng.random() * 100
        status = (
            "deleted" if r < DELETED_PERCENT else "disabled" if r < DELETED_PERCENT + DISABLED_PERCENT else "active"
        )
        real_name = username = mobile = email = credit = external_id = representative = None
        enc = hashed = masked = gender = born = None
        enterprise = "{}"
        number = None
        if kind == "legal_person":
            city = rng.randrange(len(CITY_CODES))
            name = f"{CITIES[city]}{rng.choice(FIRM_WORDS)}{rng.choice(FIRM_TRADES)}有限公司"
            credit = gen.credit_code(CITY_CODES[city])
            if citizens:
                representative = rng.choice(citizens)
            else:
                legal_pending.append(len(chunk))
            if rng.random() < 0.5:
                username = f"corp{credit.lower()}"
            if rng.random() < 0.6:
                email = f"office{credit[8:16]}@{rng.choice(MAIL_DOMAINS)}"
            if rng.random() < 0.3:
                mobile = gen.mobile()
        else:
            p = gen.person()
            name = real_name = p.name
            mobile = gen.mobile() if kind == "staff" or rng.random() < 0.95 else None
            if kind == "staff":
                email = gen.email(p, STAFF_DOMAIN)
                username = gen.username(p)
                external_id = f"hr-{i:08d}" if rng.random() < 0.7 else None
                enterprise = orjson.dumps(
                    {
                        "employee_number": f"ZJ{i:08d}",
                        "organization": f"{rng.choice(CITIES)}市人民政府",
                        "department": rng.choice(DEPARTMENTS),
                    }
                ).decode()
            else:
                email = gen.email(p) if rng.random() < 0.4 else None
                username = gen.username(p) if rng.random() < 0.25 else None
            if kind == "citizen" or rng.random() < 0.6:
                number, birth = gen.id_number()
                enc, hashed, masked, gender, born = gen.protect(number, birth)
            if kind == "citizen":
                citizens.append(uid)
        if status != "deleted":
            data.prefix_counts[name[:2]] += 1
            data.surname_counts[name[:1]] += 1
        status_reason = status_changed = deleted_at = None
        version = 1
        updated = created
        if status == "disabled":
            status_reason = "长期未使用"
            status_changed = updated = created + (now - created) * rng.random()
            version = 2
        elif status == "deleted":
            status_reason = "本人申请注销"
            # within the retention period, so the service's purge task leaves them alone
            status_changed = updated = deleted_at = now - timedelta(days=20 * rng.random())
            version = 2
            username = mobile = email = credit = None
            hashed = None  # deleting releases the identity number; the encrypted copy stays for audit
        data.kinds[kind] += 1
        data.statuses[status] += 1
        data.with_id_number += enc is not None
        data.with_mobile += mobile is not None
        data.with_email += email is not None
        data.with_username += username is not None
        if i % sample_every == 0:
            data.samples.append(Sample(uid, kind, status, mobile, email, username, number))
        chunk.append(
            (
                uid,
                kind,
                name,
                real_name,
                username,
                mobile,
                email,
                credit,
                enc,
                hashed,
                masked,
                gender,
                born,
                representative,
                external_id,
                enterprise,
                status,
                status_reason,
                status_changed,
                version,
                created,
                updated,
                deleted_at,
            )
        )
        if kind == "legal_person" and citizens and rng.random() < 0.3:
            for cid in set(rng.sample(citizens, min(len(citizens), rng.randint(1, 3)))):
                operators.append((uid, cid, created))
        if len(chunk) >= CHUNK or i == n - 1:
            for pos in legal_pending:  # legal persons created before the first citizen
                row = list(chunk[pos])
                row[COLUMNS.index("representative_id")] = rng.choice(citizens) if citizens else None
                chunk[pos] = tuple(row)
            legal_pending.clear()
            yield chunk, operators
            chunk, operators = [], []


async def seed(pg_url: str, n: int, gen: Generator, rng: random.Random) -> Dataset:
    """Generate and COPY the accounts and legal-person operators, then VACUUM ANALYZE."""
    data = Dataset(n, Counter(), Counter(), 0, 0, 0, 0, 0, [], Counter(), Counter())
    now = datetime.now(UTC)
    gen_s = copy_s = 0.0
    conn = await asyncpg.connect(pg_url)
    try:
        t0 = time.perf_counter()
        for chunk, operators in generate(n, gen, rng, now, data):
            t1 = time.perf_counter()
            gen_s += t1 - t0
            await conn.copy_records_to_table("user_account", records=chunk, columns=COLUMNS)
            if operators:
                await conn.copy_records_to_table("user_operator", records=operators, columns=OPERATOR_COLUMNS)
                data.operators += len(operators)
            t0 = time.perf_counter()
            copy_s += t0 - t1
            done = sum(data.kinds.values())
            if done % 200_000 < CHUNK or done == n:
                print(f"  {done:>9,} accounts ({gen_s:.0f} s generating, {copy_s:.0f} s copying)", flush=True)
        data.seconds["generate"] = gen_s
        data.seconds["copy"] = copy_s
        t0 = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) user_account")
        await conn.execute("VACUUM (ANALYZE) user_operator")
        data.seconds["vacuum_analyze"] = time.perf_counter() - t0
    finally:
        await conn.close()
    return data


def import_rows(gen: Generator, n: int) -> list[dict[str, Any]]:
    """A JSON import of n new citizens: identity number, mobile, email, some usernames."""
    rows: list[dict[str, Any]] = []
    for _ in range(n):
        p = gen.person()
        number, _born = gen.id_number()
        row: dict[str, Any] = {
            "kind": "citizen",
            "name": p.name,
            "real_name": p.name,
            "id_number": number,
            "mobile": gen.mobile(),
            "email": gen.email(p),
        }
        if gen.rng.random() < 0.25:
            row["username"] = gen.username(p)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------ service


# -------------------------------------------------------------------------------------- measuring


def measure_http(client: Http, paths: list[str], n: int, warmup: int, check: Any = None) -> tuple[list[float], int]:
    """Latencies (ms) of `n` sequential GETs as the admin, cycling through `paths`, after `warmup` untimed ones.

    `check(path, body)` may verify an answer; it runs on the warm-up answers and the first pass over the
    paths, outside the timed part.
    """
    for i in range(warmup):
        status, body = client.request("GET", paths[i % len(paths)])
        if status != 200:
            raise RuntimeError(f"GET {paths[i % len(paths)]} answered {status}: {body[:500]!r}")
        if check is not None:
            check(paths[i % len(paths)], body)
    samples: list[float] = []
    size = 0
    clock = time.perf_counter
    conn, headers = client.conn, client.headers
    for i in range(n):
        path = paths[i % len(paths)]
        t0 = clock()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        samples.append((clock() - t0) * 1000)
        if resp.status != 200:
            raise RuntimeError(f"GET {path} answered {resp.status}: {data[:500]!r}")
        if check is not None and i < len(paths):
            check(path, data)
        size = len(data)
    return samples, size


async def measure_rpc(
    nats_url: str, namespace: str, requests: list[dict[str, str]], n: int, warmup: int
) -> list[float]:
    """Latencies (ms) of `user.rpc.users.lookup` through the kit's RpcClient, cycling through `requests`."""
    from tongban_kit.nats import connect
    from tongban_kit.rpc import RpcClient
    from tongban_user.contract import RPC_LOOKUP, LookupReply, LookupRequest

    bus = await connect(nats_url, name="user-bench", namespace=namespace)
    try:
        client = RpcClient(bus)
        for i in range(warmup):
            await client.call(RPC_LOOKUP, LookupRequest(**requests[i % len(requests)]), LookupReply)
        samples: list[float] = []
        clock = time.perf_counter
        for i in range(n):
            req = LookupRequest(**requests[i % len(requests)])
            t0 = clock()
            reply = await client.call(RPC_LOOKUP, req, LookupReply)
            samples.append((clock() - t0) * 1000)
            if i < len(requests) and not reply.user.id:
                raise RuntimeError("lookup answered without an account")
        return samples
    finally:
        await bus.close()


def pick_prefixes(counts: Counter[str], lo: int, hi: int, k: int) -> list[tuple[str, int]]:
    """Up to k surname + first-given-character prefixes matching between lo and hi accounts, spread evenly."""
    fitting = sorted(
        ((p, c) for p, c in counts.items() if lo <= c <= hi and len(p) == 2 and _single(p)),
        key=lambda pc: -pc[1],
    )
    if len(fitting) <= k:
        return fitting
    step = len(fitting) / k
    return [fitting[int(i * step)] for i in range(k)]


def _single(prefix: str) -> bool:
    """A one-character surname followed by a given-name character (not a compound surname or a firm)."""
    return any(prefix[0] == s for s, _, _ in SURNAMES) and any(prefix[1] == g for g, _ in GIVEN)


def run_measurements(
    args: argparse.Namespace, data: Dataset, service: Service, auth: dict[str, str]
) -> tuple[list[Result], dict[str, Any]]:
    """The read operations, one after the other, each with its own warm-up; `auth` is the Authorization header."""
    n, warmup = args.requests, args.warmup
    rng = random.Random(args.seed + 1)
    client = Http(service.port, auth)
    results: list[Result] = []
    info: dict[str, Any] = {}

    def record(r: Result) -> None:
        results.append(r)
        st = r.stats()
        print(f"  {r.label:<46} p50 {fmt_ms(st['p50_ms']):>6} ms  p99 {fmt_ms(st['p99_ms']):>6} ms", flush=True)

    def run(
        key: str,
        label: str,
        paths: list[str],
        targets: dict[str, float],
        check: Any = None,
        *,
        times: int = n,
        **detail: Any,
    ) -> None:
        samples, size = measure_http(client, paths, times, max(1, warmup * times // n), check)
        record(Result(key, label, samples, targets, {"response_bytes": size, **detail}))

    def one_item(path: str, body: bytes) -> None:
        items = orjson.loads(body)["items"]
        if len(items) != 1:
            raise RuntimeError(f"GET {path} found {len(items)} accounts, expected 1")

    def full_page(path: str, body: bytes) -> None:
        items = orjson.loads(body)["items"]
        if len(items) != 50:
            raise RuntimeError(f"GET {path} returned {len(items)} accounts, expected 50")

    live = [s for s in data.samples if s.status != "deleted"]
    active = [s for s in data.samples if s.status == "active"]
    k = min(1000, len(live))
    by_id = rng.sample(live, k)
    mobiles = [s.mobile for s in rng.sample(active, min(len(active), 2 * k)) if s.mobile][:k]
    emails = rng.sample([s.email for s in active if s.email], min(k, sum(1 for s in active if s.email)))
    usernames = rng.sample([s.username for s in active if s.username], min(k, sum(1 for s in active if s.username)))
    numbers = rng.sample([s.id_number for s in active if s.id_number], min(k, sum(1 for s in active if s.id_number)))
    prefixes = pick_prefixes(data.prefix_counts, args.prefix_min, args.prefix_max, 20)
    if not prefixes:
        raise RuntimeError("no name prefix matches the wanted number of accounts; use more --users")
    surname, surname_count = data.surname_counts.most_common(1)[0]
    info["by_id_kinds"] = dict(Counter(s.kind for s in by_id))
    info["prefixes"] = dict(prefixes)
    info["surname_prefix"] = {surname: surname_count}
    try:
        print("measuring (sequential, one request at a time):")
        healthz, _ = _plain(client, ["/healthz"], n, warmup)
        record(Result("healthz", "baseline: GET /healthz (no database)", healthz, {}))
        run(
            "get_by_id",
            "(a) GET user by id",
            [f"{PREFIX}/{s.id}" for s in by_id],
            {"p99_ms": 10},
            users=len(by_id),
            kinds=info["by_id_kinds"],
        )
        for key, label, values in (
            ("lookup_mobile", "(b) lookup by login: mobile", mobiles),
            ("lookup_email", "(b) lookup by login: email", emails),
            ("lookup_username", "(b) lookup by login: username", usernames),
        ):
            run(
                key,
                label,
                [f"{PREFIX}?login={quote(v, safe='')}" for v in values],
                {"p99_ms": 10},
                one_item,
                logins=len(values),
            )
    finally:
        client.close()

    logins = [{"login": v} for trio in zip(mobiles, emails, usernames, strict=False) for v in trio]
    samples = run_async(lambda: measure_rpc(args.nats, service.namespace, logins, n, warmup))
    record(
        Result(
            "rpc_lookup_login", "(c) RPC users.lookup by login (NATS)", samples, {"p99_ms": 3}, {"logins": len(logins)}
        )
    )
    samples = run_async(
        lambda: measure_rpc(args.nats, service.namespace, [{"id_number": v} for v in numbers], n, warmup)
    )
    record(
        Result(
            "rpc_lookup_id_number",
            "(c) RPC users.lookup by id_number (NATS)",
            samples,
            {"p99_ms": 3},
            {"numbers": len(numbers)},
        )
    )
    client = Http(service.port, auth)
    try:
        run(
            "search_prefix",
            "(d) search by name prefix, limit 50",
            [f"{PREFIX}?q={quote(p)}&limit=50" for p, _ in prefixes],
            {"p99_ms": 50},
            full_page,
            prefixes=len(prefixes),
            matches_min=min(c for _, c in prefixes),
            matches_max=max(c for _, c in prefixes),
        )
        run(
            "search_surname",
            f"info: search by surname only ({surname}), limit 50",
            [f"{PREFIX}?q={quote(surname)}&limit=50"],
            {},
            full_page,
            times=max(20, n // 10),  # slow: a tenth of the requests
            matches=surname_count,
        )
    finally:
        client.close()
    return results, info


def _plain(client: Http, paths: list[str], n: int, warmup: int) -> tuple[list[float], int]:
    """Like measure_http but without the Authorization header (for /healthz)."""
    samples: list[float] = []
    clock = time.perf_counter
    for i in range(warmup + n):
        if i == warmup:
            samples.clear()
        t0 = clock()
        client.conn.request("GET", paths[i % len(paths)])
        resp = client.conn.getresponse()
        resp.read()
        samples.append((clock() - t0) * 1000)
    return samples, 0


def run_imports(
    args: argparse.Namespace, gen: Generator, service: Service, bench_pg: str, auth: dict[str, str]
) -> tuple[Result | None, list[float], list[float]]:
    """Bulk imports of `--import-rows` new citizens as `auth`; waits for the outbox to drain between runs."""
    if args.import_runs == 0:
        return None, [], []
    samples: list[float] = []
    drains: list[float] = []
    rates: list[float] = []
    size = 0
    for run_no in range(args.import_runs):
        rows = import_rows(gen, args.import_rows)
        body = orjson.dumps({"users": rows})
        size = len(body)
        headers = {"Content-Type": "application/json", **auth}
        # a connection of its own: the server closes idle keep-alive connections while the outbox drains
        client = Http(service.port)
        try:
            client.conn.connect()
            t0 = time.perf_counter()
            status, answer = client.request("POST", f"{PREFIX}/import", body=body, headers=headers)
            elapsed = (time.perf_counter() - t0) * 1000
        finally:
            client.close()
        if status != 201:
            raise RuntimeError(f"import answered {status}: {answer[:1000]!r}")
        created = orjson.loads(answer)["created"]
        if created != len(rows):
            raise RuntimeError(f"import created {created} of {len(rows)} accounts")
        samples.append(elapsed)
        rates.append(round(len(rows) / (elapsed / 1000)))
        t0 = time.perf_counter()
        while run_async(lambda: outbox_backlog(bench_pg)) > 0:
            if time.perf_counter() - t0 > 300:
                raise TimeoutError("the outbox did not drain within 300 s")
            time.sleep(0.2)
        drains.append(round(time.perf_counter() - t0, 2))
        print(
            f"  (e) bulk import run {run_no + 1}: {len(rows):,} citizens in {elapsed / 1000:.2f} s = "
            f"{rates[-1]:,} users/s (outbox drained {drains[-1]:.1f} s later)",
            flush=True,
        )
    limit_ms = args.import_rows / 5000 * 1000
    label = f"(e) bulk import of {args.import_rows:,} citizens"
    detail = {"request_bytes": size, "rows": args.import_rows, "users_per_second": rates}
    return Result("bulk_import", label, samples, {"max_ms": limit_ms}, detail), drains, rates


# ------------------------------------------------------------------------------------------- main


def code_state() -> dict[str, Any]:
    """The commit measured and the service files that differ from it (empty outside a git checkout)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.rstrip("\n")

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", "services/user", "services/kit").splitlines()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "uncommitted_changes": [line[3:] for line in changed]} if commit else {}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Benchmark of the Tongban user service")
    ap.add_argument("--users", type=int, default=1_000_000, help="accounts loaded before measuring")
    ap.add_argument("--requests", type=int, default=2000, help="timed requests per read operation")
    ap.add_argument("--warmup", type=int, default=None, help="untimed requests first (default requests/10)")
    ap.add_argument("--import-rows", type=int, default=20_000, help="citizens per bulk import")
    ap.add_argument("--import-runs", type=int, default=3, help="bulk imports timed")
    ap.add_argument("--prefix-min", type=int, default=None, help="fewest matches of a searched name prefix")
    ap.add_argument("--prefix-max", type=int, default=None, help="most matches of a searched name prefix")
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
    ap.add_argument("--out", type=Path, default=None, help="JSON result file (default bench/results/user-DATE.json)")
    args = ap.parse_args(argv)
    if args.warmup is None:
        args.warmup = max(20, args.requests // 10)
    if args.users < 10_000:
        ap.error("--users must be at least 10000")
    if not 1 <= args.import_rows <= 100_000:
        ap.error("--import-rows must be between 1 and 100000")
    if not 0 <= args.import_runs <= 10:
        ap.error("--import-runs must be between 0 and 10")
    # a few hundred to a few thousand matches at 1,000,000 accounts, scaled down for smaller runs
    scale = args.users / 1_000_000
    args.prefix_min = args.prefix_min if args.prefix_min is not None else max(50, round(300 * scale))
    args.prefix_max = args.prefix_max if args.prefix_max is not None else max(200, round(5000 * scale))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # the kit logs "nats disconnected" when a connection is closed on purpose
    logging.getLogger("tongban_kit.nats").setLevel(logging.ERROR)
    rng = random.Random(args.seed)
    suffix = secrets.token_hex(4)
    db_name = f"tongban_bench_user_{suffix}"
    namespace = f"bench{suffix}"
    admin_url = args.pg
    bench_pg = with_database(admin_url, db_name, "postgresql")
    service_url = with_database(admin_url, db_name, "postgresql+asyncpg")
    # fresh keys per run; the service is started with the same ones
    enc_key, hash_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    cipher = PiiCipher(enc_key, hash_key)

    print("user service benchmark")
    machine = machine_info(admin_url)
    code = code_state()
    for k, v in (machine | code).items():
        print(f"  {k:<20} {v}")

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{db_name}"'))
    print(f"\ndatabase {db_name} created")
    service: Service | None = None
    issuer: BenchIssuer | None = None
    try:
        from tongban_kit.db import run_migrations
        from tongban_user.__main__ import MIGRATIONS

        t0 = time.perf_counter()
        run_migrations(MIGRATIONS, service_url)
        migrate_s = time.perf_counter() - t0
        print(f"migrations applied in {migrate_s:.1f} s")
        gen = Generator(rng, cipher, args.users + args.import_runs * args.import_rows)
        print(f"loading {args.users:,} accounts:")
        data = asyncio.run(seed(bench_pg, args.users, gen, rng))
        data.seconds["migrate"] = migrate_s
        print(
            f"loaded {data.users:,} accounts and {data.operators:,} operators ("
            + ", ".join(f"{k} {v:.1f} s" for k, v in data.seconds.items())
            + ")"
        )
        print(f"  kinds {dict(data.kinds)}, statuses {dict(data.statuses)}")

        issuer = BenchIssuer()
        run_async(lambda: ensure_auth_stream(args.nats, namespace))
        service = Service(
            service_url,
            args.nats,
            namespace,
            name="user",
            script=Path(__file__).resolve(),
            extra_env={
                "TONGBAN_USER_PII_ENCRYPTION_KEY": enc_key,
                "TONGBAN_USER_PII_HASH_KEY": hash_key,
                **issuer.env("user"),
            },
        )
        service.wait_ready()
        print(f"service up on port {service.port} (NATS namespace {namespace})\n")
        auth = issuer.headers(SCOPES)
        results, info = run_measurements(args, data, service, auth)
        import_result, drains, rates = run_imports(args, gen, service, bench_pg, auth)
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
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))

    with contextlib.suppress(OSError):
        machine["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print("\n" + render(results))
    if rates:
        print(f"\nbulk import: {', '.join(f'{r:,}' for r in rates)} users/s (target ≥ 5,000 users/s per run)")
    verdicts = [r.passed() for r in results if r.passed() is not None]
    all_pass = all(verdicts)
    print(
        f"\n{'all targets met' if all_pass else 'some targets missed'} "
        f"({sum(bool(v) for v in verdicts)}/{len(verdicts)} PASS)"
    )
    report = {
        "benchmark": "user",
        "command": " ".join(["bench/user_bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine,
        "code": code,
        "dataset": {
            "users": data.users,
            "kinds": dict(data.kinds),
            "statuses": dict(data.statuses),
            "with_id_number": data.with_id_number,
            "with_mobile": data.with_mobile,
            "with_email": data.with_email,
            "with_username": data.with_username,
            "legal_person_operators": data.operators,
            "searched_prefixes": info["prefixes"],
            "surname_prefix": info["surname_prefix"],
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
        "import_users_per_second": rates,
        "outbox_drain_seconds": drains,
        "all_pass": all_pass,
    }
    out = args.out or RESULTS / f"user-{datetime.now(UTC):%Y-%m-%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {out}")
    return 0 if all_pass else 1


if __name__ == "__main__":
    if sys.argv[1:] == [SERVE_FLAG]:
        from tongban_user.__main__ import main as service_main

        sys.exit(service_main(["serve"]))
    sys.exit(main())
