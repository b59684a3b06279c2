"""`make run`: the whole system on one machine — NATS from the wheel, every service on SQLite, the gateway."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

from tongban_kit.contracts import ServiceDescriptor, discover
from tongban_kit.demo import demo_user_id
from tongban_kit.natsserver import LocalNatsServer, free_port

GATEWAY_PORT = 8000


def _port_free(port: int) -> bool:
    """True when a server could listen on the port now: SO_REUSEADDR as servers set it, so connections of a stopped
    run waiting out TIME-WAIT do not count (a restart right after Ctrl-C works)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s")


class DevStack:
    """Starts and stops every process of the embedded default."""

    def __init__(self, data: Path, gateway_port: int, log_dir: Path) -> None:
        self.data = data
        self.gateway_port = gateway_port
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.nats: LocalNatsServer | None = None

    def env_for(self, prefix: str, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment of one service process."""
        assert self.nats is not None
        env = dict(os.environ)
        env.update(
            {
                f"{prefix}ENVIRONMENT": "dev",
                f"{prefix}PORT": str(port),
                f"{prefix}HOST": "127.0.0.1",
                f"{prefix}NATS_URL": self.nats.url,
                f"{prefix}LOG_JSON": os.environ.get("TONGBAN_LOG_JSON", "false"),
                f"{prefix}PUBLIC_URL": f"http://127.0.0.1:{self.gateway_port}",
            }
        )
        env.update(extra or {})
        return env

    def run_step(self, name: str, args: list[str], env: dict[str, str]) -> None:
        """Run a one-shot command (migrations, seed), failing loudly."""
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            rc = subprocess.call(args, env=env, stdout=out, stderr=out)
        if rc != 0:
            sys.stderr.write(log.read_text()[-4000:])
            raise RuntimeError(f"{' '.join(args[2:])} failed (exit {rc}); log: {log}")

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start a long-running process with its output in logs/<name>.log."""
        out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=out, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def start(self, services: dict[str, ServiceDescriptor]) -> list[tuple[str, str]]:
        """Start everything; returns (name, URL) lines to print."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        nats_port = 4222 if _port_free(4222) else free_port()
        self.nats = LocalNatsServer(self.data / "nats", port=nats_port, log_file=self.log_dir / "nats.log").start()
        upstreams: dict[str, list[str]] = {}
        ready: list[tuple[str, subprocess.Popen[bytes], str]] = []
        ports = {name: d.dev_port if _port_free(d.dev_port) else free_port() for name, d in services.items()}
        # services verify access tokens of the auth service: issued for the gateway URL, keys fetched directly
        issuer = f"http://127.0.0.1:{self.gateway_port}"
        jwks = f"http://127.0.0.1:{ports['auth']}/oauth2/jwks" if "auth" in ports else ""
        for name, d in services.items():
            prefix = f"TONGBAN_{name.upper()}_"
            port = ports[name]
            env = self.env_for(
                prefix,
                port,
                {
                    f"{prefix}DATABASE_URL": f"sqlite+aiosqlite:///{self.data}/{name}.db",
                    f"{prefix}OIDC_ISSUER": issuer,
                    f"{prefix}OIDC_JWKS_URL": jwks,
                    # the gateway reaches the services over the loopback: believe its X-Forwarded-For
                    f"{prefix}FORWARDED_ALLOW_IPS": "127.0.0.1",
                    # development only: the demo app's own token may manage apps; one-time codes go through the
                    # message service (whose SMS and email providers write them to its log)
                    **(
                        {
                            f"{prefix}BOOTSTRAP_ADMINS": json.dumps([demo_user_id("demo-admin"), "demo-app"]),
                            f"{prefix}OTP_CHANNEL": "message" if "message" in services else "log",
                        }
                        if name == "auth"
                        else {}
                    ),
                    # development only: text messages and emails go to the message service's log
                    **({f"{prefix}SMS_PROVIDER": "log", f"{prefix}EMAIL_PROVIDER": "log"} if name == "message" else {}),
                },
            )
            py = [sys.executable, "-m", d.module]
            if d.migrate:
                self.run_step(f"{name}-migrate", [*py, "migrate"], env)
            if d.seed:
                self.run_step(f"{name}-seed", [*py, "seed"], env)
            proc = self.spawn(name, [*py, "serve"], env)
            ready.append((name, proc, f"http://127.0.0.1:{port}/readyz"))
            upstreams[name] = [f"http://127.0.0.1:{port}"]
        # one gateway process: its rate-limit buckets live in the process (no Redis needed on a fresh machine)
        gateway_settings = {"TONGBAN_GATEWAY_UPSTREAMS": json.dumps(upstreams), "TONGBAN_GATEWAY_REDIS_URL": ""}
        genv = self.env_for("TONGBAN_GATEWAY_", self.gateway_port, gateway_settings)
        gw = self.spawn("gateway", [sys.executable, "-m", "tongban_gateway"], genv)
        ready.append(("gateway", gw, f"http://127.0.0.1:{self.gateway_port}/healthz"))
        for _name, proc, url in ready:
            _wait_ready(url, proc)
        base = f"http://127.0.0.1:{self.gateway_port}"
        lines = [("gateway", base), ("API docs", f"{base}/docs"), ("OpenAPI", f"{base}/openapi.json")]
        lines += [(f"{n} (via gateway)", f"{base}{p}") for n, p in (("org units", "/api/v1/orgs/units"),)]
        lines += [(f"{n} (direct)", u[0]) for n, u in upstreams.items()]
        lines += [("NATS", self.nats.url), ("data", str(self.data)), ("logs", str(self.log_dir))]
        return lines

    def stop(self) -> None:
        """Stop services (gateway first), then NATS."""
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.nats:
            self.nats.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the embedded default until Ctrl-C."""
    ap = argparse.ArgumentParser(prog="tongban-dev", description=__doc__)
    ap.add_argument("--data", default="data", help="folder for SQLite files, NATS storage and logs")
    ap.add_argument("--port", type=int, default=GATEWAY_PORT, help="gateway port")
    ap.add_argument("--check", action="store_true", help="start, print the URLs, then stop (smoke test)")
    args = ap.parse_args(argv)
    data = Path(args.data).resolve()
    stack = DevStack(data, args.port, data / "logs")
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if not _port_free(args.port):
            print(f"port {args.port} is in use; stop what runs there or pass --port", file=sys.stderr)
            return 2
        lines = stack.start(discover())
        width = max(len(n) for n, _ in lines)
        print("\nTongban is running:\n" + "\n".join(f"  {n.ljust(width)}  {u}" for n, u in lines))
        print(
            "\nAPIs take access tokens: e.g. client credentials of demo-app (secret demo-secret) at "
            f"{lines[0][1]}/oauth2/token, or sign in as demo-admin (see README).  Ctrl-C stops everything.",
            flush=True,
        )
        if args.check:
            return 0
        while True:
            for name, proc in stack.procs:
                if proc.poll() is not None:
                    print(
                        f"{name} exited with {proc.returncode}; see {stack.log_dir / (name + '.log')}",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"failed to start: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
