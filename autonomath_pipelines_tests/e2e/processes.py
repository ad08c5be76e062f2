"""Server processes for the end-to-end tests: a free loopback port, start in a process group, stop the
whole group, and wait for a condition with the servers' log tails in the error."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable

REPO = Path(__file__).parents[2]
BIN = REPO / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """``args`` from the repo root in its own process group (so stop() reaches its children)."""
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM to the process group, SIGKILL if it is still there after ``timeout`` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_until(condition: Callable[[], object], timeout: float, what: str, logs: Iterable[Path] = ()):
    """The first truthy value of ``condition()`` (polled each second; exceptions mean "not yet"), or a
    TimeoutError saying ``what`` did not happen, with the last error and the tail of each log."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        time.sleep(1)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs if log.exists())
    raise TimeoutError(f"{what} within {timeout:.0f} s (last error: {last})\n{tails}")
