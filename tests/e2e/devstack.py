"""The embedded default (`make run`, i.e. `tongban-dev`) as a process of a test: start it, wait for its URLs, stop it
as Ctrl-C would."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path


def start_dev_stack(data: Path, port: int, *, timeout: float = 300) -> tuple[subprocess.Popen[str], list[str]]:
    """Start `tongban-dev` on `port` with its files under `data`; returns the process and what it printed up to
    "Ctrl-C stops everything" (a loaded machine starts slowly, hence the generous `timeout`)."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "tongban-dev"), "--data", str(data), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "Ctrl-C stops everything" in line or proc.poll() is not None:
            break
    if not any("Tongban is running" in x for x in lines):
        stop_dev_stack(proc)
        raise AssertionError("".join(lines))
    return proc, lines


def stop_dev_stack(proc: subprocess.Popen[str], *, timeout: float = 30) -> int:
    """Stop it as Ctrl-C does; its exit code (killed, and the timeout raised, when it does not stop in time)."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
