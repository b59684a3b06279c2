"""Contract tests for the deployment files: docker-compose.yml, the Dockerfile,
deploy/nats/nats.conf and deploy/postgres/init/01-databases.sh.

No container engine is needed: the compose file is parsed and cross-checked
against the settings classes, the NATS config and the database init script.
Where a `nats-server` binary is available the NATS config is checked by the
server itself, and its permissions are exercised on a live server when nats-py
is installed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from tongban_kit.demo import demo_user_id

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
NATS_CONF = REPO / "deploy" / "nats" / "nats.conf"
PG_INIT = REPO / "deploy" / "postgres" / "init" / "01-databases.sh"

ENV_VAR = re.compile(r"^TONGBAN_([A-Z0-9]+)_([A-Z0-9_]+)$")
ONE_SHOT_RESTART = {None, "no"}


# --------------------------------------------------------------- helpers ---


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Resolve compose variable syntax ($$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e})."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value
    return _interpolate_str(value, env)


def _interpolate_str(value: str, env: dict[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        nxt = value[i + 1] if i + 1 < len(value) else ""
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            depth, j = 1, i + 2
            while j < len(value) and depth:
                depth += {"{": 1, "}": -1}.get(value[j], 0)
                j += 1
            assert depth == 0, f"unclosed ${{ in {value!r}"
            body = value[i + 2 : j - 1]
            m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", body, re.S)
            assert m, f"bad variable reference ${{{body}}} in {value!r}"
            name, op, arg = m.group(1), m.group(2), m.group(3) or ""
            current = env.get(name)
            unset_or_empty = current is None or (op is not None and op.startswith(":") and current == "")
            if op in (":-", "-"):
                out.append(_interpolate_str(arg, env) if unset_or_empty or current is None else current)
            elif op in (":?", "?"):
                if unset_or_empty:
                    raise KeyError(f"required variable {name} is not set: {arg}")
                out.append(current or "")
            elif op in (":+", "+"):
                out.append("" if unset_or_empty else _interpolate_str(arg, env))
            else:
                out.append(current or "")
            i = j
        else:
            m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", value[i + 1 :])
            assert m, f"stray $ in {value!r} (write $$ for a literal $)"
            out.append(env.get(m.group(0), ""))
            i += 1 + len(m.group(0))
    return "".join(out)


def load_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    resolved = interpolate(raw, env or {})
    assert isinstance(resolved, dict), "docker-compose.yml is not a mapping"
    return resolved


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command_of(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def healthcheck_of(service: dict[str, Any]) -> list[str] | None:
    hc = service.get("healthcheck")
    if not hc or hc.get("disable"):
        return None
    test = hc.get("test")
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    if not test or test == ["NONE"]:
        return None
    return [str(t) for t in test]


def depends_on_of(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def is_app(service: dict[str, Any], compose: dict[str, Any]) -> bool:
    """A service that runs the Tongban image (built from the repository)."""
    return "build" in service


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if is_app(s, compose)}


def tongban_env(service: dict[str, Any]) -> dict[str, dict[str, str]]:
    """TONGBAN_<SVC>_<FIELD> variables of a container, grouped by <svc> (lowercase)."""
    grouped: dict[str, dict[str, str]] = {}
    for key, value in environment_of(service).items():
        m = ENV_VAR.match(key)
        if m:
            grouped.setdefault(m.group(1).lower(), {})[m.group(2).lower()] = value
    return grouped


def is_one_shot(name: str, compose: dict[str, Any]) -> bool:
    service = compose["services"][name]
    if service.get("restart") not in ONE_SHOT_RESTART:
        return False
    awaited = any(
        depends_on_of(other).get(name) == "service_completed_successfully" for other in compose["services"].values()
    )
    return awaited or bool(service.get("profiles"))


@functools.cache
def _strong_secrets() -> tuple[tuple[str, str], ...]:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    names = sorted(set(re.findall(r"\$\{([A-Z0-9_]*(?:PASSWORD|KEY|SECRET))", text)))
    return tuple((name, secrets.token_hex(24)) for name in names)


def strong_secrets_env() -> dict[str, str]:
    """Every secret the compose file reads, set as production must (same values for the whole run)."""
    return dict(_strong_secrets())


def find_nats_server() -> str | None:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("nats-server")


def import_settings(svc: str) -> Any:
    """tongban_<svc>.config.Settings, from the installed package or the source tree."""
    module_name = f"tongban_{svc}.config"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        src = next((p.parent for p in REPO.glob(f"*/src/tongban_{svc}") if p.is_dir()), None) or next(
            (p.parent for p in REPO.glob(f"services/*/src/tongban_{svc}") if p.is_dir()), None
        )
        if exc.name not in (f"tongban_{svc}", module_name) or src is None:
            pytest.skip(f"{module_name} not importable: {exc}")
        sys.path.insert(0, str(src))
        for kit in REPO.glob("services/kit/src"):
            sys.path.insert(0, str(kit))
        module = pytest.importorskip(module_name)
    settings = getattr(module, "Settings", None)
    if settings is None:
        pytest.skip(f"{module_name} has no Settings class yet")
    return settings


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


# ------------------------------------------------------- nats.conf parser ---


class NatsConfError(ValueError):
    pass


def _nats_tokens(text: str) -> list[tuple[str, str]]:
    """Tokens of the NATS config subset used here: { } [ ] : = , newline, strings, $vars, words."""
    tokens: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "#" or text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
        elif ch == "\n":
            tokens.append(("nl", ch))
            i += 1
        elif ch in " \t\r":
            i += 1
        elif ch in "{}[]:=,;":
            tokens.append((ch, ch))
            i += 1
        elif ch in "\"'":
            j = i + 1
            while j < len(text) and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            if j >= len(text):
                raise NatsConfError(f"unterminated string at offset {i}")
            tokens.append(("str", text[i + 1 : j]))
            i = j + 1
        else:
            m = re.compile(r"[^\s{}\[\]:=,;#\"']+").match(text, i)
            assert m
            word = m.group(0)
            tokens.append(("var" if word.startswith("$") else "word", word))
            i = m.end()
    return tokens


def parse_nats_conf(text: str) -> dict[str, Any]:
    """Parse the config into nested dicts/lists; `$VAR` values stay as {'$var': 'VAR'}."""
    tokens = _nats_tokens(text)
    pos = 0

    def skip_separators() -> None:
        nonlocal pos
        while pos < len(tokens) and tokens[pos][0] in ("nl", ",", ";"):
            pos += 1

    def value() -> Any:
        nonlocal pos
        kind, tok = tokens[pos]
        pos += 1
        if kind == "{":
            return mapping("}")
        if kind == "[":
            items: list[Any] = []
            while True:
                skip_separators()
                if pos >= len(tokens):
                    raise NatsConfError("unclosed [")
                if tokens[pos][0] == "]":
                    pos += 1
                    return items
                items.append(value())
        if kind == "var":
            return {"$var": tok[1:]}
        if kind in ("str", "word"):
            return tok
        raise NatsConfError(f"unexpected {tok!r}")

    def mapping(close: str | None) -> dict[str, Any]:
        nonlocal pos
        result: dict[str, Any] = {}
        while True:
            skip_separators()
            if pos >= len(tokens):
                if close is None:
                    return result
                raise NatsConfError("unclosed {")
            kind, tok = tokens[pos]
            if close and kind == close:
                pos += 1
                return result
            if kind not in ("word", "str"):
                raise NatsConfError(f"expected a key, got {tok!r}")
            pos += 1
            if pos < len(tokens) and tokens[pos][0] in (":", "="):
                pos += 1
            if pos >= len(tokens):
                raise NatsConfError(f"key {tok!r} has no value")
            if tok in result:
                raise NatsConfError(f"duplicate key {tok!r}")
            result[tok] = value()

    return mapping(None)


@pytest.fixture(scope="module")
def nats_conf() -> dict[str, Any]:
    return parse_nats_conf(NATS_CONF.read_text(encoding="utf-8"))


def nats_users(conf: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {u["user"]: u for u in conf["authorization"]["users"]}


def allowed(user: dict[str, Any], direction: str) -> list[str]:
    perm = user.get("permissions", {}).get(direction, {})
    allow = perm.get("allow", []) if isinstance(perm, dict) else perm
    return [allow] if isinstance(allow, str) else list(allow)


# ------------------------------------------------------------ the compose ---


def test_compose_parses_and_references_are_declared(compose: dict[str, Any]) -> None:
    services = compose.get("services")
    assert isinstance(services, dict) and services, "no services"
    declared_volumes = set(compose.get("volumes") or {})
    declared_networks = set(compose.get("networks") or {}) | {"default"}
    for name, svc in services.items():
        assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name), name
        assert svc.get("image") or svc.get("build"), f"{name}: neither image nor build"
        for vol in svc.get("volumes") or []:
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: bind mount source {source} missing"
            else:
                assert source in declared_volumes, f"{name}: volume {source} not declared"
        nets = svc.get("networks") or []
        for net in nets if isinstance(nets, list) else list(nets):
            assert net in declared_networks, f"{name}: network {net} not declared"
    assert "gateway" in services and "org" in services


def test_every_service_has_a_healthcheck_or_is_one_shot(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        test = healthcheck_of(svc)
        if test is None:
            assert is_one_shot(name, compose), f"{name}: no healthcheck and not a one-shot job"
            continue
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: bad healthcheck {test}"
        if is_app(svc, compose):
            # python:3.11-slim has neither curl nor wget
            assert test[0] == "CMD" and test[1] == "python", f"{name}: health check must use python"


def test_depends_on_targets_exist_and_conditions_hold(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for target, condition in depends_on_of(svc).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name
            if condition == "service_healthy":
                assert healthcheck_of(services[target]), f"{name} waits for {target} health, it has no check"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart") in ONE_SHOT_RESTART, f"{target} restarts, never completes"
            else:
                assert condition == "service_started", condition
            # a service not in a profile must not need one that only runs in a profile
            if not svc.get("profiles"):
                assert not services[target].get("profiles"), f"{name} depends on profile-only {target}"

    seen: dict[str, int] = {}

    def visit(node: str, path: tuple[str, ...]) -> None:
        if seen.get(node) == 2:
            return
        assert seen.get(node) != 1, f"depends_on cycle: {' -> '.join((*path, node))}"
        seen[node] = 1
        for dep in depends_on_of(services[node]):
            visit(dep, (*path, node))
        seen[node] = 2

    for name in services:
        visit(name, ())


def test_org_migrates_before_serving(compose: dict[str, Any]) -> None:
    services = compose["services"]
    migrate = services["org-migrate"]
    assert command_of(migrate)[-3:] == ["-m", "tongban_org", "migrate"]
    assert depends_on_of(migrate).get("postgres") == "service_healthy"
    org_deps = depends_on_of(services["org"])
    assert org_deps.get("org-migrate") == "service_completed_successfully"
    assert org_deps.get("nats") == "service_healthy"
    assert command_of(services["org"])[-3:] == ["-m", "tongban_org", "serve"]
    assert command_of(services["gateway"])[-2:] == ["-m", "tongban_gateway"]
    # migrate and serve see the same settings
    assert environment_of(migrate) == environment_of(services["org"])


def test_app_commands_name_real_packages(compose: dict[str, Any]) -> None:
    for name, svc in app_services(compose).items():
        cmd = command_of(svc)
        assert cmd[:2] == ["python", "-m"], f"{name}: command should be python -m <package>: {cmd}"
        package = cmd[2]
        dirs = [p for p in REPO.glob(f"**/src/{package}") if p.is_dir() and ".venv" not in p.parts]
        assert dirs, f"{name}: package {package} not found under */src/"
        if not (dirs[0] / "__init__.py").exists():
            continue  # package still being written
        assert (dirs[0] / "__main__.py").exists(), f"{name}: {package} has no __main__.py"


def test_ports_health_urls_and_upstreams_agree(compose: dict[str, Any]) -> None:
    services = compose["services"]
    ports: dict[str, int] = {}
    ops_ports: dict[str, int] = {}
    for name, svc in app_services(compose).items():
        for fields in tongban_env(svc).values():
            if "port" in fields:
                ports[name] = int(fields["port"])
                ops_ports[name] = int(fields.get("management_port") or fields["port"])
                assert fields.get("host") == "0.0.0.0", f"{name}: must listen on 0.0.0.0 in a container"
        test = healthcheck_of(svc)
        if test:
            urls = re.findall(r"http://[^'\"\s]+", " ".join(test))
            assert urls, f"{name}: health check calls no URL"
            parts = urlsplit(urls[0])
            assert parts.port == ops_ports[name], f"{name}: health check port {parts.port} != {ops_ports[name]}"
            assert parts.path == "/readyz", f"{name}: health check should call /readyz"

    assert ports["gateway"] == 8000 and ports["org"] == 8101
    published = [str(p) for p in services["gateway"].get("ports") or []]
    assert "8000:8000" in published, published
    assert ops_ports["gateway"] != 8000 and not any(str(ops_ports["gateway"]) in p for p in published)
    for name, svc in app_services(compose).items():
        if name != "gateway":
            assert not svc.get("ports"), f"{name}: only the gateway is published"

    upstreams = json.loads(tongban_env(services["gateway"])["gateway"]["upstreams"])
    assert upstreams, "gateway has no upstreams"
    for urls in upstreams.values():
        for url in urls:
            parts = urlsplit(url)
            assert parts.hostname in services, f"upstream {url}: no service {parts.hostname}"
            assert parts.port == ports.get(parts.hostname), f"upstream {url}: port mismatch"
            assert healthcheck_of(services[parts.hostname])
            assert depends_on_of(services["gateway"]).get(parts.hostname) == "service_healthy"


def _settings_cases() -> list[tuple[str, str]]:
    compose = load_compose()
    return sorted((name, svc_key) for name, svc in app_services(compose).items() for svc_key in tongban_env(svc))


@pytest.mark.parametrize(("service", "svc"), _settings_cases())
def test_development_fallbacks_are_refused_in_production(
    service: str, svc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started with the compose file's development fallbacks, a prod container refuses to start."""
    container_env = environment_of(load_compose()["services"][service])
    Settings = import_settings(svc)
    prefix = f"TONGBAN_{svc.upper()}_"
    for key in list(os.environ):
        if key.upper().startswith(prefix):
            monkeypatch.delenv(key)
    for key, value in container_env.items():
        monkeypatch.setenv(key, value)
    if not any(k.endswith(("_PASSWORD", "_KEY")) for k in container_env):
        pytest.skip(f"{service} has no secrets")
    with pytest.raises(ValueError, match="must be set to real secrets"):
        Settings(_env_file=None)


@pytest.mark.parametrize(("service", "svc"), _settings_cases())
def test_env_vars_are_settings_fields(service: str, svc: str, monkeypatch: pytest.MonkeyPatch) -> None:
    compose = load_compose(strong_secrets_env())
    container_env = environment_of(compose["services"][service])
    Settings = import_settings(svc)

    prefix = f"TONGBAN_{svc.upper()}_"
    configured = str(Settings.model_config.get("env_prefix", "")).upper()
    assert configured == prefix, f"{Settings.__module__}.Settings reads {configured!r}, compose sets {prefix!r}"

    fields = Settings.model_fields
    names = {n.lower() for n in fields}
    set_here = {k[len(prefix) :].lower() for k in container_env if k.startswith(prefix)}
    unknown = sorted(set_here - names)
    assert not unknown, f"{service}: {', '.join(prefix + u.upper() for u in unknown)} match no settings field"
    missing = sorted(n for n, f in fields.items() if f.is_required() and n.lower() not in set_here)
    assert not missing, f"{service}: required settings not set: {missing}"

    # the values load: same environment as the container (production secrets), no .env file
    for key in list(os.environ):
        if key.upper().startswith(prefix):
            monkeypatch.delenv(key)
    for key, value in container_env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.environment == "prod"


@pytest.mark.parametrize(("service", "svc"), _settings_cases())
def test_production_has_no_demo_administrators(service: str, svc: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A prod container names no administrator by default, and refuses to start with a demo account or app as one."""
    Settings = import_settings(svc)
    if "bootstrap_admins" not in Settings.model_fields:
        pytest.skip(f"{service} names no administrators")
    prefix = f"TONGBAN_{svc.upper()}_"
    for key in list(os.environ):
        if key.upper().startswith(prefix):
            monkeypatch.delenv(key)
    for key, value in environment_of(load_compose(strong_secrets_env())["services"][service]).items():
        monkeypatch.setenv(key, value)
    assert Settings(_env_file=None).bootstrap_admins == []
    for demo in (demo_user_id("demo-admin"), "demo-app"):
        monkeypatch.setenv(prefix + "BOOTSTRAP_ADMINS", json.dumps([demo]))
        with pytest.raises(ValueError, match="demo identities"):
            Settings(_env_file=None)


# ------------------------------------------------------------- dockerfile ---


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _dockerignored(path: str) -> bool:
    patterns = [
        ln.strip()
        for ln in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        hit = any(
            fnmatch("/".join(parts[: i + 1]), pattern)
            or (pattern.startswith("**/") and fnmatch("/".join(parts[: i + 1]), pattern[3:]))
            for i in range(len(parts))
        )
        if hit:
            ignored = not negate
    return ignored


def test_dockerfile_copy_sources_exist_in_the_build_context(compose: dict[str, Any]) -> None:
    for name, svc in app_services(compose).items():
        build = svc["build"]
        context = REPO / (build if isinstance(build, str) else build.get("context", "."))
        assert context.resolve() == REPO, f"{name}: build context should be the repository root"
        dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
        assert dockerfile.resolve() == DOCKERFILE.resolve(), f"{name}: builds from {dockerfile}"

    copies = 0
    for instr, args in _dockerfile_instructions():
        if instr not in ("COPY", "ADD") or "--from=" in args:
            continue
        words = [w for w in args.split() if not w.startswith("--")]
        if args.lstrip().startswith("["):
            words = json.loads(args[args.index("[") :])
        for source in words[:-1]:
            copies += 1
            src = source.rstrip("/") or "."
            matches = list(REPO.glob(src)) if any(c in src for c in "*?[") else [REPO / src]
            assert any(m.exists() for m in matches), f"COPY source {source} missing from the repository"
            assert not _dockerignored(src), f"COPY source {source} is excluded by .dockerignore"
    assert copies, "the Dockerfile copies nothing"


def test_dockerfile_builds_every_package_without_naming_an_index() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = _dockerfile_instructions()
    froms = [args for instr, args in instructions if instr == "FROM"]
    assert len(froms) >= 2, "expected a multi-stage build"
    args = dict(a.split("=", 1) for i, a in instructions if i == "ARG" and "=" in a)
    base = {re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), f.split()[0]) for f in froms}
    assert base == {"python:3.11-slim"}, base
    users = [a for i, a in instructions if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "runtime must not run as root"
    assert "--from=builder" in text and "/opt/venv" in text
    assert re.search(r"pip install --no-cache-dir -c constraints\.txt", text)
    for needle in ("index-url", "extra-index", "trusted-host", "find-links", "pypi.", "://"):
        assert needle not in text.lower(), f"Dockerfile names a package index ({needle})"
    # every workspace package is a buildable project
    assert (REPO / "services" / "kit" / "pyproject.toml").is_file()
    assert (REPO / "gateway" / "pyproject.toml").is_file()
    assert (REPO / "constraints.txt").is_file(), "constraints.txt is missing"


def test_dockerignore_keeps_local_state_out() -> None:
    for path in (".venv", "data", ".git", "services/org/src/tongban_org/__pycache__", "x.egg-info", ".env"):
        assert _dockerignored(path), f"{path} reaches the build context"
    for path in ("constraints.txt", "services/kit/pyproject.toml", "gateway/src/tongban_gateway/__init__.py"):
        assert not _dockerignored(path), f"{path} is excluded from the build context"


# ------------------------------------------------------------- postgres ---


def _all_dependencies(services: dict[str, Any], name: str) -> set[str]:
    found: set[str] = set()
    todo = list(depends_on_of(services[name]))
    while todo:
        dep = todo.pop()
        if dep not in found:
            found.add(dep)
            todo.extend(depends_on_of(services[dep]))
    return found


def test_every_listed_database_has_a_service_url_and_password(compose: dict[str, Any]) -> None:
    services = compose["services"]
    pg = services["postgres"]
    pg_env = environment_of(pg)
    databases = pg_env["TONGBAN_DATABASES"].split()
    assert databases, "TONGBAN_DATABASES is empty"
    mounts = [str(v) for v in pg.get("volumes") or []]
    assert any(m.startswith("./deploy/postgres/init:/docker-entrypoint-initdb.d") for m in mounts), (
        "init scripts not mounted"
    )

    urls: dict[str, tuple[str, Any]] = {}
    for name, svc in app_services(compose).items():
        for key, value in environment_of(svc).items():
            if key.endswith("_DATABASE_URL"):
                parts = urlsplit(value)
                if parts.hostname == "postgres":
                    urls.setdefault(parts.path.lstrip("/"), (name, parts))

    for db in databases:
        assert db in urls, f"database {db} is created but no service's DATABASE_URL points at it"
        name, parts = urls[db]
        assert parts.scheme == "postgresql+asyncpg", f"{name}: {parts.scheme}"
        assert parts.port == 5432 and parts.username == db, f"{name}: must connect as role {db} on 5432"
        password_var = f"{db.upper()}_DB_PASSWORD"
        assert password_var in pg_env, f"postgres container lacks {password_var}"
        assert unquote(parts.password or "") == pg_env[password_var], f"{name}: URL password != {password_var}"
        assert "postgres" in _all_dependencies(services, name), f"{name}: does not wait for postgres"
    for db, (name, _) in urls.items():
        assert db in databases, f"{name} uses database {db}, which TONGBAN_DATABASES does not create"

    # the same holds when production passwords are set
    prod = load_compose(strong_secrets_env())
    prod_pg = environment_of(prod["services"]["postgres"])
    for db in databases:
        url = environment_of(prod["services"][urls[db][0]])
        url_value = next(v for k, v in url.items() if k.endswith("_DATABASE_URL"))
        assert unquote(urlsplit(url_value).password or "") == prod_pg[f"{db.upper()}_DB_PASSWORD"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not available")
def test_database_init_script_creates_each_listed_database(tmp_path: Path) -> None:
    assert PG_INIT.is_file() and os.access(PG_INIT, os.X_OK), "init script must be executable"
    assert PG_INIT.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash")
    log = tmp_path / "psql.log"
    fake = tmp_path / "bin" / "psql"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "ARGS $*" >> "{log}"\ncat >> "{log}"\n', encoding="utf-8")
    fake.chmod(0o755)
    env = {
        "PATH": f"{fake.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": "postgres",
        "TONGBAN_DATABASES": "org  user",
        "ORG_DB_PASSWORD": "org-secret",
        "USER_DB_PASSWORD": "user-secret",
    }
    done = subprocess.run(["bash", str(PG_INIT)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    calls = log.read_text(encoding="utf-8")
    for db in ("org", "user"):
        assert f"-v name={db} -v password={db}-secret" in calls
    assert "CREATE DATABASE" in calls and "CREATE ROLE" in calls and "REVOKE ALL ON DATABASE" in calls

    env.pop("USER_DB_PASSWORD")
    failed = subprocess.run(["bash", str(PG_INIT)], env=env, capture_output=True, text=True, timeout=30)
    assert failed.returncode != 0 and "USER_DB_PASSWORD" in failed.stderr
    env["TONGBAN_DATABASES"] = "bad;name"
    failed = subprocess.run(["bash", str(PG_INIT)], env=env, capture_output=True, text=True, timeout=30)
    assert failed.returncode != 0


# ------------------------------------------------------------------ nats ---


def test_nats_conf_parses(nats_conf: dict[str, Any]) -> None:
    text = NATS_CONF.read_text(encoding="utf-8")
    code = "".join(t for k, t in _nats_tokens(text) if k in "{}[]")
    depth: list[str] = []
    for ch in code:
        if ch in "{[":
            depth.append(ch)
        else:
            assert depth and depth.pop() == {"}": "{", "]": "["}[ch], "unbalanced braces in nats.conf"
    assert not depth, "unbalanced braces in nats.conf"
    assert "jetstream" in nats_conf and nats_conf["jetstream"].get("store_dir")
    assert str(nats_conf.get("http_port")) == "8222"


def test_nats_users_match_the_service_containers(compose: dict[str, Any], nats_conf: dict[str, Any]) -> None:
    services = compose["services"]
    nats = services["nats"]
    nats_env = environment_of(nats)
    users = nats_users(nats_conf)
    mounts = [str(v) for v in nats.get("volumes") or []]
    conf_target = next(m.split(":")[1] for m in mounts if m.startswith("./deploy/nats/nats.conf:"))
    assert conf_target in command_of(nats), "nats does not load the mounted config"
    store_dir = nats_conf["jetstream"]["store_dir"]
    assert any(not m.startswith(".") and m.split(":")[1] == store_dir for m in mounts), (
        "JetStream store not on a volume"
    )

    for name, svc in app_services(compose).items():
        for fields in tongban_env(svc).values():
            if "nats_user" not in fields:
                continue
            user = fields["nats_user"]
            assert user in users, f"{name}: NATS user {user} not defined in nats.conf"
            password = users[user].get("password")
            assert isinstance(password, dict), f"nats.conf: password of {user} must come from an env variable"
            var = password["$var"]
            assert var in nats_env, f"nats container does not get {var}"
            assert nats_env[var] == fields.get("nats_password"), f"{name}: NATS password differs from the server's"
            assert urlsplit(fields["nats_url"]).hostname == "nats"
            if not is_one_shot(name, compose):
                assert depends_on_of(svc).get("nats") == "service_healthy", f"{name} does not wait for nats"


def test_nats_permissions_follow_subject_ownership(nats_conf: dict[str, Any]) -> None:
    users = nats_users(nats_conf)
    shared_pub = {"$JS.API.>", "$JS.ACK.>", "_INBOX.>", "$SRV.>"}
    for name, user in users.items():
        pub, sub = allowed(user, "publish"), allowed(user, "subscribe")
        assert ">" not in pub and ">" not in sub, f"{name} may use every subject"
        for subject in pub:
            domain = subject.split(".")[0]
            assert subject in shared_pub or domain == name or subject == f"{domain}.rpc.>", (
                f"{name} may publish {subject}, which another service owns"
            )
        for subject in sub:
            assert subject in {"_INBOX.>", "$SRV.>"} or subject.split(".")[0] == name or subject.endswith(".v1"), (
                f"{name} may subscribe {subject}"
            )
    org = users["org"]
    assert {"org.>", "$JS.API.>", "$JS.ACK.>", "_INBOX.>"} <= set(allowed(org, "publish"))
    assert {"org.rpc.>", "$SRV.>", "_INBOX.>"} <= set(allowed(org, "subscribe"))
    gateway = users["gateway"]
    assert {"$JS.API.>", "org.rpc.>", "$SRV.>"} <= set(allowed(gateway, "publish"))
    assert "_INBOX.>" in allowed(gateway, "subscribe")


NATS_SERVER = find_nats_server()
needs_nats_server = pytest.mark.skipif(NATS_SERVER is None, reason="nats-server binary not available")


def _nats_env() -> dict[str, str]:
    env = environment_of(load_compose(strong_secrets_env())["services"]["nats"])
    return {**env, "PATH": os.environ.get("PATH", "")}


@needs_nats_server
def test_nats_server_accepts_the_config() -> None:
    assert NATS_SERVER
    for env in (_nats_env(), {**environment_of(load_compose()["services"]["nats"]), "PATH": ""}):
        done = subprocess.run(
            [NATS_SERVER, "-c", str(NATS_CONF), "-t"], env=env, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stdout + done.stderr
    missing = {k: v for k, v in _nats_env().items() if k != "ORG_NATS_PASSWORD"}
    done = subprocess.run(
        [NATS_SERVER, "-c", str(NATS_CONF), "-t"], env=missing, capture_output=True, text=True, timeout=30
    )
    assert done.returncode != 0, "config must read ORG_NATS_PASSWORD from the environment"


@pytest.mark.integration
@needs_nats_server
def test_nats_permissions_on_a_live_server(tmp_path: Path) -> None:
    nats = pytest.importorskip("nats")
    pytest.importorskip("nats.micro")
    from nats.micro import add_service

    assert NATS_SERVER
    store = tmp_path / "js"
    conf = tmp_path / "nats.conf"
    text = NATS_CONF.read_text(encoding="utf-8")
    text = re.sub(r'store_dir:\s*"[^"]*"', f'store_dir: "{store}"', text)
    conf.write_text(text, encoding="utf-8")
    log = tmp_path / "nats-server.log"
    ports_dir = tmp_path / "ports"
    ports_dir.mkdir()
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                *(NATS_SERVER, "-c", str(conf), "-a", "127.0.0.1", "-p", "-1", "-m", "-1"),
                *("--ports_file_dir", str(ports_dir)),
            ],
            env=_nats_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 10
        while not (ports := list(ports_dir.glob("*.ports"))):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "nats-server did not start"
            time.sleep(0.05)
        time.sleep(0.05)  # the ports file is written in one go; let it land
        url = json.loads(ports[0].read_text(encoding="utf-8"))["nats"][0]
        compose = load_compose(strong_secrets_env())
        org_env = tongban_env(compose["services"]["org"])["org"]
        gw_env = tongban_env(compose["services"]["gateway"])["gateway"]

        async def scenario() -> list[str]:
            errors: list[str] = []
            three_errors = asyncio.Event()

            async def on_error(exc: Exception) -> None:
                errors.append(str(exc))
                if len(errors) >= 3:
                    three_errors.set()

            options: dict[str, Any] = {"error_cb": on_error, "allow_reconnect": False, "connect_timeout": 5}
            org = await nats.connect(url, user=org_env["nats_user"], password=org_env["nats_password"], **options)
            gw = await nats.connect(url, user=gw_env["nats_user"], password=gw_env["nats_password"], **options)
            try:
                js = org.jetstream()
                await js.add_stream(name="ORG_EVENTS", subjects=["org.*.*.v1"])
                ack = await js.publish("org.unit.created.v1", b"{}")
                assert ack.seq == 1
                sub = await js.pull_subscribe("org.unit.created.v1", durable="org-contract")
                msgs = await sub.fetch(1, timeout=5)
                await msgs[0].ack()

                async def handler(req: Any) -> None:
                    await req.respond(b'{"ok":true}')

                svc = await add_service(org, name="org", version="0.1.0")
                await svc.add_group(name="org.rpc").add_endpoint(name="units_get", subject="units.get", handler=handler)
                await org.flush()
                for _ in range(20):  # the endpoint's subscription reaches the server asynchronously
                    try:
                        reply = await gw.request("org.rpc.units.get", b"{}", timeout=5)
                        break
                    except nats.errors.NoRespondersError:
                        await asyncio.sleep(0.05)
                assert reply.data == b'{"ok":true}'
                inbox = gw.new_inbox()
                pings = await gw.subscribe(inbox)
                await gw.publish("$SRV.PING.org", b"", reply=inbox)
                assert b'"org"' in (await pings.next_msg(timeout=5)).data
                await gw.jetstream().account_info()
                assert not errors, errors

                # what the design forbids
                await gw.publish("org.unit.created.v1", b"forged")
                await org.publish("user.account.created.v1", b"foreign")
                await gw.subscribe("org.>")
                await org.flush()
                await gw.flush()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(three_errors.wait(), timeout=5)
                await svc.stop()
            finally:
                await org.close()
                await gw.close()
            return errors

        errors = asyncio.run(scenario())
        violations = " | ".join(errors)
        assert 'publish to "org.unit.created.v1"' in violations
        assert 'publish to "user.account.created.v1"' in violations
        assert 'subscription to "org.>"' in violations
    finally:
        proc.terminate()
        proc.wait(timeout=10)
