"""Load: every loop on the service's size and on ten times it, side by side, and writers at once.

    autonomath-loops bench load [--factor 10] [--only A --only E] [--repeats 3] [--out reports/bench] [--rebuild]
    .venv/bin/python -m autonomath_pipelines.bench.load [same options]

Worlds (seed 7, logs ending 2026-11-21 JST, kept under ``data/bench/load/`` and reused while the
generator is unchanged): ``production`` (1×: ≈1M query_log rows a month, 20k programs, 335,605
aliases) and ``production-10x`` (``demo.world.scaled``: every volume ×10 — ≈10M rows a month, 200k
programs, 3.36M aliases — from the same generator, over 60 days; see ``SCALES``). Both end on the
same day, so every loop runs the same partition on both.

1. **Cost**, per world: ``bench loops`` (``run_loops_benchmark``: one cold and ``repeats`` warm runs
   per loop, each a fresh process, dry run), reported under ``<out>/load/<scale>/``. Targets, on
   the warm medians: each loop's run ≤ 10 % of its catalog ceiling; peak RSS ≤ 2 GB; the month at
   the catalog cadences ≤ 30 CPU-minutes.
2. **Writers at once**, on a copy of the 10× world, every process sharing one Dagster instance as a
   deployment does (one ``DAGSTER_HOME``), all executing:

   * *two loops*: ``run --only A --execute`` and ``run --only E --execute`` started together;
   * *a loop and promotions*: ``run --only E --execute`` while, one candidate at a time, loop A's
     pending candidates are approved and promoted (``review approve … --execute`` then ``review
     promote … --execute``) until the run ends.

   A probe passes when every process exits 0 and none prints a lock error.

Writes ``bench_load.json``, ``bench_load.md`` and ``bench_load.png`` under ``<out>``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from autonomath_pipelines.bench.loops import run_loops_benchmark
from autonomath_pipelines.bench.process import code_provenance, provenance_lines, write_report

Say = Callable[[str], None]
AS_OF = dt.date(2026, 11, 21)
SEED = 7
WORLD_DIR = Path("data/bench/load")
BASE_SCALE = "production"
PEAK_RSS_TARGET_MB = 2048.0
JSON_NAME, MD_NAME, PNG_NAME = "bench_load.json", "bench_load.md", "bench_load.png"
#: What a lock error looks like in a process's output: ours (resources.db) and SQLite's own.
LOCK_ERROR = re.compile(r"database is locked|is locked by another connection|SQLITE_BUSY|SQLITE_LOCKED")
#: The line a Python traceback ends with (``package.Error: message``): what a failed process died of.
EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception)\b:.*$", re.MULTILINE)
PAIR = ("A", "E")


def scale_of(factor: int, base: str = BASE_SCALE) -> str:
    """The name of the world scale of ``factor`` times ``base`` (``production-10x`` is predefined)."""
    return base if factor == 1 else f"{base}-{factor}x"


@contextlib.contextmanager
def registered_scale(name: str) -> Iterator[None]:
    """``name`` in ``demo.world.SCALES`` while the world is built: a predefined scale as it is, any
    other ``<base>-<N>x`` as ``scaled(base, N)`` over the 10× world's days, removed afterwards."""
    from autonomath_pipelines.demo.world import SCALES, scaled

    if name in SCALES:
        yield
        return
    base, _, factor = name.rpartition("-")
    SCALES[name] = scaled(SCALES[base], int(factor.rstrip("x")), name=name, days=SCALES[f"{BASE_SCALE}-10x"].days)
    try:
        yield
    finally:
        SCALES.pop(name, None)


def world_path(scale: str, folder: Path = WORLD_DIR) -> Path:
    return folder / f"autonomath-{scale}.db"


def prepare_world(scale: str, folder: Path, say: Say, rebuild: bool = False) -> Path:
    """The world of ``scale`` ending on ``AS_OF``: reused when its truth says this generator built
    it with these parameters, built (with progress) otherwise."""
    from autonomath_pipelines.demo.world import build_world, generator_digest, load_truth, truth_path

    path = world_path(scale, folder)
    if path.is_file() and truth_path(path).is_file() and not rebuild:
        truth = load_truth(path)
        same = (truth.get("scale"), truth.get("seed"), truth.get("as_of")) == (scale, SEED, AS_OF.isoformat())
        if same and (truth.get("built_by") or {}).get("generator_digest") == generator_digest():
            say(f"  reusing {path} ({truth['row_counts']['query_log']:,} query_log rows)")
            return path
    folder.mkdir(parents=True, exist_ok=True)
    say(f"  building {path} ({scale}, seed {SEED}, logs ending {AS_OF}) ...")
    started = time.perf_counter()
    with registered_scale(scale):
        summary = build_world(path, scale=scale, seed=SEED, as_of=AS_OF, progress=_progress)
    say(
        f"  built in {time.perf_counter() - started:.0f} s ({summary.row_counts['query_log']:,} query_log rows, "
        f"{summary.row_counts['programs']:,} programs, {summary.row_counts['am_alias']:,} aliases)"
    )
    return path


def _progress(stage: str, done: int, total: int) -> None:
    from autonomath_pipelines.cli import _progress_bar

    _progress_bar(stage, done, total)


# ------------------------------------------------------------------------------------- probes


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "autonomath_pipelines.cli", *args]


def _run_loop(db: Path, letter: str) -> list[str]:
    """``run --only letter --execute`` on the partition the schedule runs when the world's logs end
    (not today's: a demo world's logs end on its as-of)."""
    from autonomath_pipelines.bench.loops import bench_partition, world_as_of
    from autonomath_pipelines.catalog import loop_spec

    key = bench_partition(loop_spec(letter), world_as_of(str(db)))
    return _cli("run", "--only", letter, "--execute", *(["--partition", key] if key else []))


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


def _finish(name: str, proc: subprocess.Popen, started: float, log: Path) -> dict[str, Any]:
    code = proc.wait()
    output = log.read_text(encoding="utf-8", errors="replace")
    return {
        "process": name,
        "exit_code": code,
        "wall_s": round(time.perf_counter() - started, 1),
        "lock_errors": len(LOCK_ERROR.findall(output)),
        "log": str(log),
        "error": next(iter(EXCEPTION_LINE.findall(output)[-1:]), None),
        "tail": output.strip().splitlines()[-3:],
    }


def _probe_env(work: Path, db: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DAGSTER_HOME": str(work / "dagster_home"),
            "AUTONOMATH_DB": str(db),
            "AUTONOMATH_REPORTS_DIR": str(work / "reports"),
            "AUTONOMATH_STORAGE": str(work / "storage"),
            "AUTONOMATH_REPO_ROOT": str(work / "repo"),
            "AUTONOMATH_OPERATOR": "bench-load",
            "PYTHONWARNINGS": "ignore",
        }
    )
    for folder in ("dagster_home", "reports", "storage", "repo"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    return env


def pending_candidates(db: Path, letter: str) -> list[str]:
    """Ids (``A:12``) of the loop's candidates waiting for review, as ``review list`` shows them."""
    from autonomath_pipelines.resources.db import AutonomathDatabase
    from autonomath_pipelines.review import ReviewService

    service = ReviewService(AutonomathDatabase(path=str(db)), db.parent, actor="bench-load")
    return [c.id for c in service.list(letter, status="pending_review")]


def probe_two_loops(db: Path, work: Path, say: Say, pair: tuple[str, str] = PAIR) -> dict[str, Any]:
    """Two loops' ``run --execute`` started together on ``db``, sharing one Dagster instance."""
    env = _probe_env(work, db)
    say(f"  two loops at once: run --only {pair[0]} --execute  ∥  run --only {pair[1]} --execute")
    started = time.perf_counter()
    procs = {f"loop {x}": _start(_run_loop(db, x), env, work / f"two-loops-{x}.log") for x in pair}
    results = [_finish(name, p, started, work / f"two-loops-{name[-1]}.log") for name, p in procs.items()]
    return _verdict("two loops at once", results, say)


def probe_loop_and_promote(
    db: Path, work: Path, say: Say, letter: str = PAIR[0], loop: str = PAIR[1]
) -> dict[str, Any]:
    """``run --only loop --execute`` while ``letter``'s pending candidates are approved and promoted
    one by one through the CLI, until the run ends (at least one promotion must overlap it)."""
    env = _probe_env(work, db)
    refs = pending_candidates(db, letter)
    say(
        f"  a loop and promotions at once: run --only {loop} --execute  ∥  approve + promote of {letter}'s "
        f"{len(refs)} pending candidate(s), one at a time"
    )
    started = time.perf_counter()
    run_log = work / "loop-and-promote-run.log"
    proc = _start(_run_loop(db, loop), env, run_log)
    results = []
    promoted_while_running = 0
    for i, ref in enumerate(refs):
        if proc.poll() is not None:
            break
        for verb in ("approve", "promote"):
            log = work / f"loop-and-promote-{verb}-{i}.log"
            results.append(
                _finish(
                    f"review {verb} {ref}",
                    _start(_cli("review", verb, ref, "--execute"), env, log),
                    time.perf_counter(),
                    log,
                )
            )
        promoted_while_running += proc.poll() is None
    results.insert(0, _finish(f"loop {loop}", proc, started, run_log))
    outcome = _verdict("a loop and promotions at once", results, say)
    outcome["promotions_while_running"] = promoted_while_running
    if not refs or promoted_while_running == 0:
        outcome["passed"] = False
        outcome["why"] = (
            f"no pending {letter} candidate to promote"
            if not refs
            else f"loop {loop} ended before the first promotion did: nothing overlapped"
        )
        say(f"    FAILED: {outcome['why']}")
    return outcome


def _verdict(name: str, results: list[dict[str, Any]], say: Say) -> dict[str, Any]:
    passed = all(r["exit_code"] == 0 and r["lock_errors"] == 0 for r in results)
    for r in results:
        if r["exit_code"] != 0 or r["lock_errors"]:
            say(f"    {r['process']}: exit {r['exit_code']}, {r['lock_errors']} lock error(s) — {r['log']}")
            if r["error"]:
                say(f"      {r['error'][:300]}")
    runs = [r for r in results if r["process"].startswith("loop")]
    say(
        f"    {'passed' if passed else 'FAILED'}: {len(results)} process(es), "
        + ", ".join(f"{r['process']} {r['wall_s']:.0f} s" for r in runs)
    )
    return {"probe": name, "passed": passed, "processes": results}


# ----------------------------------------------------------------------------------------- bench


def run_load_benchmark(
    factor: int = 10,
    only: Sequence[str] | None = None,
    out_dir: str = "reports/bench",
    say: Say = print,
    *,
    repeats: int = 3,
    rebuild: bool = False,
    world_dir: Path = WORLD_DIR,
    probes: bool = True,
    base: str = BASE_SCALE,
) -> dict:
    """Cost at 1× and ``factor``× (``base`` is the 1× world: the service's size), then the writers-at-once
    probes on a copy of the larger world; writes the side-by-side report."""
    if factor < 2:
        raise ValueError(f"--factor must be >= 2 (1× is measured beside it), got {factor}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    code = code_provenance()
    say(f"load benchmark: the loops at 1× and {factor}× the service (worlds under {world_dir}/)")
    worlds = {f: prepare_world(scale_of(f, base), world_dir, say, rebuild) for f in (1, factor)}
    cost = {}
    for f, db in worlds.items():
        say(f"\ncost at {f}× ({db}):")
        cost[str(f)] = run_loops_benchmark(
            str(db), only, str(out / "load" / scale_of(f, base)), say=say, repeats=repeats
        )
    concurrency = []
    if probes:
        from autonomath_pipelines.demo import truth_path

        with tempfile.TemporaryDirectory(prefix="bench-load-", dir=world_dir) as tmp:
            copy = Path(tmp) / worlds[factor].name
            say(f"\nwriters at once, on a copy of the {factor}× world ({copy}):")
            shutil.copyfile(worlds[factor], copy)
            shutil.copyfile(truth_path(worlds[factor]), truth_path(copy))  # where its logs end
            concurrency.append(probe_two_loops(copy, Path(tmp) / "two-loops", say))
            concurrency.append(probe_loop_and_promote(copy, Path(tmp) / "loop-and-promote", say))
            # The world copy goes with the temporary folder; every process's log is kept with the figures.
            logs = out / "probe-logs"
            for probe in concurrency:
                for process in probe["processes"]:
                    kept = logs / Path(process["log"]).name
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(process["log"], kept)
                    process["log"] = str(kept)
    result = {
        "benchmark": "load",
        "factor": factor,
        "generated_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "code": code,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()},
        "peak_rss_target_mb": PEAK_RSS_TARGET_MB,
        "worlds": {str(f): str(db) for f, db in worlds.items()},
        "cost": cost,
        "comparison": compare(cost["1"], cost[str(factor)]),
        "concurrency": concurrency,
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    big = cost[str(factor)]
    result["targets"] = {
        "every_loop_within_share_of_ceiling": all(r["target_met"] for r in big["loops"]),
        "peak_rss_within_target": all(
            max(r["cold"]["peak_rss_mb"], r["warm_median"]["peak_rss_mb"]) <= PEAK_RSS_TARGET_MB for r in big["loops"]
        ),
        "month_within_target": big["monthly_target_met_warm"],
        "writers_at_once_without_lock_error": all(p["passed"] for p in concurrency) if probes else None,
    }
    write_report(
        out, (JSON_NAME, MD_NAME, PNG_NAME), result, markdown=render_markdown, plot=_plot, table=table_lines, say=say
    )
    return result


def compare(small: dict, big: dict) -> list[dict[str, Any]]:
    """Per loop, the 1× and N× figures side by side and their ratio."""
    by_letter = {r["letter"]: r for r in small["loops"]}
    rows = []
    for b in big["loops"]:
        s = by_letter[b["letter"]]
        sw, bw = s["warm_median"], b["warm_median"]
        rows.append(
            {
                "letter": b["letter"],
                "cadence": b["cadence"],
                "partition_key": b["partition_key"],
                "ceiling_cpu_s": b["ceiling_cpu_s"],
                "status_1x": s["status"],
                "status_nx": b["status"],
                "scanned_1x": s["scanned"],
                "scanned_nx": b["scanned"],
                "warm_cpu_s_1x": sw["run_cpu_s"],
                "warm_cpu_s_nx": bw["run_cpu_s"],
                "cold_cpu_s_1x": s["cold"]["run_cpu_s"],
                "cold_cpu_s_nx": b["cold"]["run_cpu_s"],
                "cpu_ratio": round(bw["run_cpu_s"] / sw["run_cpu_s"], 2) if sw["run_cpu_s"] > 0 else None,
                "share_of_ceiling_1x": s["share_of_ceiling_warm"],
                "share_of_ceiling_nx": b["share_of_ceiling_warm"],
                "peak_rss_mb_1x": max(s["cold"]["peak_rss_mb"], sw["peak_rss_mb"]),
                "peak_rss_mb_nx": max(b["cold"]["peak_rss_mb"], bw["peak_rss_mb"]),
                "monthly_cpu_min_1x": round(s["monthly_cpu_s_warm"] / 60, 3),
                "monthly_cpu_min_nx": round(b["monthly_cpu_s_warm"] / 60, 3),
            }
        )
    return rows


def table_lines(result: dict) -> list[str]:
    n = result["factor"]
    lines = [
        f"| loop | cadence | partition | rows read 1× / {n}× | warm run CPU s 1× / {n}× (ratio) | cold CPU s 1× / {n}× "
        f"| % of ceiling {n}× | peak MB 1× / {n}× | CPU min / month 1× / {n}× | status {n}× |",
        "|" + "---|" * 10,
    ]
    for r in result["comparison"]:
        ratio = f"{r['cpu_ratio']:.1f}×" if r["cpu_ratio"] is not None else "–"
        lines.append(
            f"| {r['letter']} | {r['cadence']} | {r['partition_key']} | {r['scanned_1x']:,} / {r['scanned_nx']:,} | "
            f"{r['warm_cpu_s_1x']:.2f} / {r['warm_cpu_s_nx']:.2f} ({ratio}) | {r['cold_cpu_s_1x']:.2f} / "
            f"{r['cold_cpu_s_nx']:.2f} | {100 * r['share_of_ceiling_nx']:.2f} % | {r['peak_rss_mb_1x']:.0f} / "
            f"{r['peak_rss_mb_nx']:.0f} | {r['monthly_cpu_min_1x']:.2f} / {r['monthly_cpu_min_nx']:.2f} | "
            f"{r['status_nx']} |"
        )
    small, big = (result["cost"][k]["monthly_totals"] for k in ("1", str(n)))
    t = result["targets"]
    lines += [
        "",
        f"Month at the catalog cadences (warm): **1× {small['monthly_cpu_min_warm']:.2f} CPU-min, {n}× "
        f"{big['monthly_cpu_min_warm']:.2f} CPU-min** (cold upper bound {small['monthly_cpu_min_cold']:.2f} / "
        f"{big['monthly_cpu_min_cold']:.2f}); target ≤ 30 at {n}×: "
        f"{'met' if t['month_within_target'] else 'MISSED'}.",
        f"At {n}×: every loop within 10 % of its ceiling: {_yes(t['every_loop_within_share_of_ceiling'])}; "
        f"peak RSS ≤ {result['peak_rss_target_mb']:.0f} MB: {_yes(t['peak_rss_within_target'])}.",
    ]
    for p in result["concurrency"]:
        procs = ", ".join(
            f"{x['process']} exit {x['exit_code']}" for x in p["processes"] if x["process"].startswith("loop")
        )
        extra = (
            f"; {p['promotions_while_running']} promotion(s) while the run ran"
            if "promotions_while_running" in p
            else ""
        )
        locks = sum(x["lock_errors"] for x in p["processes"])
        lines.append(
            f"Writers at once — {p['probe']}: **{'passed' if p['passed'] else 'FAILED'}** ({len(p['processes'])} "
            f"processes: {procs}; {locks} lock error(s){extra})" + (f" — {p['why']}" if p.get("why") else "") + "."
        )
    return lines


def _yes(value: bool | None) -> str:
    return "not measured" if value is None else ("yes" if value else "**no**")


def render_markdown(result: dict) -> str:
    n = result["factor"]
    return "\n".join(
        [
            f"# Loop cost at 1× and {n}× the service",
            "",
            *provenance_lines(result["code"]),
            "",
            f"Worlds: {', '.join(f'{k}× `{v}`' for k, v in result['worlds'].items())} (seed {SEED}, logs ending "
            f"{AS_OF}). "
            f"Per world the full `bench loops` report is under `load/<scale>/`: 1 cold and "
            f"{result['cost']['1']['repeats_warm']} warm runs per loop, each a fresh process, dry run; the warm "
            "median is "
            "shown. *rows read*: the loop's `scanned`. The host is shared: read CPU seconds.",
            "",
            *table_lines(result),
            "",
            f"![load]({PNG_NAME})",
            "",
        ]
    )


def _plot(path: Path, result: dict) -> None:
    from autonomath_pipelines.lib.plots import pyplot

    plt = pyplot()
    import numpy as np

    rows, n = result["comparison"], result["factor"]
    x = np.arange(len(rows))
    w = 0.38
    fig, (ax, mx, tx) = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [2.2, 1.8, 0.9]})
    ax.bar(x - w / 2, [r["warm_cpu_s_1x"] for r in rows], w, color="#8da0cb", label="1× warm")
    ax.bar(x + w / 2, [r["warm_cpu_s_nx"] for r in rows], w, color="#4c72b0", label=f"{n}× warm")
    ax.scatter(x, [0.1 * r["ceiling_cpu_s"] for r in rows], marker="_", s=400, color="red", label="10 % of ceiling")
    ax.set_yscale("log")
    ax.set_xticks(x, [r["letter"] for r in rows])
    ax.set_ylabel("CPU seconds per run (log)")
    ax.set_title("Run CPU per loop, warm median", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    mx.bar(x - w / 2, [r["peak_rss_mb_1x"] for r in rows], w, color="#8da0cb", label="1×")
    mx.bar(x + w / 2, [r["peak_rss_mb_nx"] for r in rows], w, color="#4c72b0", label=f"{n}×")
    mx.axhline(result["peak_rss_target_mb"], color="red", ls="--", lw=1, label="2 GB")
    mx.set_xticks(x, [r["letter"] for r in rows])
    mx.set_ylabel("peak RSS (MB), cold or warm")
    mx.set_title("Peak memory per loop", fontsize=10)
    mx.legend(fontsize=7)
    totals = [result["cost"][k]["monthly_totals"]["monthly_cpu_min_warm"] for k in ("1", str(n))]
    tx.bar([0, 1], totals, color=["#8da0cb", "#4c72b0"])
    tx.axhline(30, color="red", ls="--", lw=1, label="target 30 CPU-min")
    tx.set_xticks([0, 1], ["1×", f"{n}×"])
    tx.set_ylabel("CPU-minutes per month (warm)")
    tx.set_title("The month", fontsize=10)
    tx.legend(fontsize=7)
    fig.suptitle(f"Loop cost at 1× and {n}× the service, every run a fresh process", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autonomath_pipelines.bench.load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--only", action="append", metavar="LOOP")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="reports/bench")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)
    result = run_load_benchmark(args.factor, args.only, args.out, repeats=args.repeats, rebuild=args.rebuild)
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
