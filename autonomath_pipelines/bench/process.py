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
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
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


def code_provenance() -> dict[str, Any]:
    """Which code measured: the package version and, in a git checkout, the commit and whether the
    tree had uncommitted changes (a figure from a dirty tree is not the commit's)."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    from autonomath_pipelines import CODE_VERSION

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "package_version": CODE_VERSION,
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
    }


def world_provenance(db_path: str | os.PathLike) -> dict[str, Any]:
    """What the world on disk is: its build parameters and builder (from the truth sidecar), its
    planner statistics (``ANALYZE`` tables present) and its size, plus warnings when it was built by
    other generator code than this checkout's, or lacks statistics."""
    from autonomath_pipelines.contract.sqlite import sqlite3
    from autonomath_pipelines.demo.world import generator_digest, load_truth, truth_path

    info: dict[str, Any] = {"db": str(db_path), "warnings": []}
    if truth_path(db_path).exists():
        truth = load_truth(db_path)
        info.update({k: truth.get(k) for k in ("scale", "seed", "as_of", "days", "row_counts")})
        info["built_by"] = truth.get("built_by")
    else:
        info["built_by"] = None
        info["warnings"].append(f"{db_path} has no truth sidecar: not a demo world, build parameters unknown")
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        present = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'sqlite_stat%'"
            )
        }
    finally:
        conn.close()
    info["statistics"] = {"sqlite_stat1": "sqlite_stat1" in present, "sqlite_stat4": "sqlite_stat4" in present}
    if not info["statistics"]["sqlite_stat1"]:
        info["warnings"].append(f"{db_path} has no ANALYZE statistics: query plans (and costs) may differ")
    built_by, digest = info["built_by"], generator_digest()
    if info.get("scale") is not None and not built_by:
        info["warnings"].append(
            f"{db_path} was built by a version that did not record itself: rebuild it "
            "(--rebuild) for figures of this code"
        )
    elif built_by and built_by.get("generator_digest") != digest:
        info["warnings"].append(
            f"{db_path} was built by other generator code (package "
            f"{built_by.get('package_version')}, generator {str(built_by.get('generator_digest'))[:12]}; "
            f"this checkout's is {digest[:12]}): rebuild it (--rebuild) for figures of this code"
        )
    return info


def provenance_lines(code: dict[str, Any], world: dict[str, Any] | None = None) -> list[str]:
    """The Markdown lines a report opens with: which code measured on which world."""
    commit = code.get("git_commit") or "unknown"
    lines = [
        f"Measured by autonomath-pipelines {code['package_version']} at commit `{commit[:12]}`"
        + (" with uncommitted changes" if code.get("git_dirty") else "")
        + "."
    ]
    if world is not None:
        stats = world["statistics"]
        lines.append(
            f"World: scale {world.get('scale')}, seed {world.get('seed')}, as of {world.get('as_of')}, "
            f"statistics: {'stat1 + stat4' if stats['sqlite_stat4'] else 'stat1' if stats['sqlite_stat1'] else 'none'}."
        )
        lines += [f"**Warning:** {w}" for w in world["warnings"]]
    return lines


def write_report(
    out: Path,
    names: tuple[str, str, str],
    result: dict[str, Any],
    *,
    markdown: Callable[[dict], str],
    plot: Callable[[Path, dict], None],
    table: Callable[[dict], list[str]],
    say: Callable[[str], None],
) -> None:
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
    proc = subprocess.run([sys.executable, "-m", module, "--child", json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {what} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(time.perf_counter() - started, 3)
    result["loadavg_1min_before"] = round(load_before, 2)
    result["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
    return result
