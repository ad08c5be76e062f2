"""Is the process that ran a Dagster run still there? Decided from the run's tags, no Dagster.

``autonomath-loops run`` tags each run with the host, pid and start time of its process. A run
still marked started whose process is gone (killed, machine rebooted) holds its database-write
pool slot forever unless someone frees it; these functions say which runs those are.

The start time guards against pid reuse: a new process with the old pid has another start time.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Callable, Mapping

HOST_TAG = "autonomath/host"
PID_TAG = "autonomath/pid"
PROCESS_START_TAG = "autonomath/process_start"


@dataclass(frozen=True)
class RunProcess:
    """Where a run ran: host name, pid, and the process start time ("" where the OS does not say)."""

    host: str
    pid: int
    start: str

    def tags(self) -> dict[str, str]:
        return {HOST_TAG: self.host, PID_TAG: str(self.pid), PROCESS_START_TAG: self.start}


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks since boot, from /proc), "" if the OS has no /proc,
    None if there is no such process (or only its zombie)."""
    try:
        stat = open(f"/proc/{pid}/stat", encoding="ascii", errors="replace").read()
    except FileNotFoundError:
        return None
    except OSError:
        return "" if _alive(pid) else None
    # Fields after the command name (in parentheses, may hold spaces): state is field 3, starttime 22.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
        return None
    return fields[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def this_process() -> RunProcess:
    pid = os.getpid()
    return RunProcess(socket.gethostname(), pid, process_start(pid) or "")


def run_process(tags: Mapping[str, str]) -> RunProcess | None:
    """The process recorded in a run's tags; None for a run without them (launched elsewhere)."""
    try:
        return RunProcess(tags[HOST_TAG], int(tags[PID_TAG]), tags.get(PROCESS_START_TAG, ""))
    except (KeyError, ValueError):
        return None


def process_gone(recorded: RunProcess, host: str, start_of: Callable[[int], str | None] = process_start) -> bool:
    """True when the recorded process certainly no longer runs: same host, and no process with that
    pid or one started at another time. A run of another host is never judged from here."""
    if recorded.host != host:
        return False
    now = start_of(recorded.pid)
    if now is None:
        return True
    return bool(recorded.start) and bool(now) and now != recorded.start
