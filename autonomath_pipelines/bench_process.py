"""What every benchmark shares: each measured run in a fresh interpreter (as a scheduled Dagster
run is), its memory read from ``/proc`` inside that interpreter.

A benchmark module ``M`` exposes ``_child(spec) -> dict`` and answers ``python -m M --child JSON``
by printing that dict as its last line; :func:`run_child` starts it and reads it back.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable


def rss_mb() -> float:
    """This process's resident set size now, MB."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return float("nan")


def peak_rss_mb() -> float:
    """This process's RSS high-water mark (``VmHWM``). Not ``ru_maxrss``: on Linux a child's ru_maxrss
    starts at its parent's RSS when it was forked (exec keeps the old image's high-water mark)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_report(out: Path, names: tuple[str, str, str], result: dict[str, Any], *,
                 markdown: Callable[[dict], str], plot: Callable[[Path, dict], None],
                 table: Callable[[dict], list[str]], say: Callable[[str], None]) -> None:
    """``result`` as JSON, Markdown and PNG under ``out`` (``names``: json, md, png), then the table
    and where the files are on ``say``."""
    json_name, md_name, png_name = names
    (out / json_name).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / md_name).write_text(markdown(result), encoding="utf-8")
    plot(out / png_name, result)
    say("")
    for line in table(result):
        say(line)
    say(f"files: {out / md_name}, {out / json_name}, {out / png_name} ({result['seconds_total']:.0f} s in all)")


def run_child(module: str, spec: dict[str, Any], what: str) -> dict[str, Any]:
    """Run ``python -m module --child spec`` and return its figures, plus the parent's view: the
    child's wall time and the 1-minute load average before and after (the host may be shared)."""
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", module, "--child", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {what} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(time.perf_counter() - started, 3)
    result["loadavg_1min_before"] = round(load_before, 2)
    result["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
    return result
