"""Cost of the loops on a (production-scale) world: every run in a fresh subprocess, cold and warm.

    autonomath-loops bench loops [--only A --only E] [--repeats 3] [--db data/bench/autonomath-production.db]
    .venv/bin/python -m autonomath_pipelines.bench.loops [same options]

For each loop (all ten by default), on the partition the schedule would run when the world's logs
end (``last_complete_partition_key`` as of the world's as-of, so the figure does not depend on
today's date), dry run, through ``orchestrator.run_loops``:

* **cold**: one run with an empty embedding cache (a fresh file per loop) — the first run ever;
* **warm**: ``repeats`` (≥ 3) re-runs of the same partition with the cache the cold run filled; the
  median of each figure is reported (the loops embed nothing new on a re-run of a partition).

Every run is a fresh Python process (``python -m autonomath_pipelines.bench.loops --child``), as a
scheduled Dagster run is. Per run, measured inside the child:

* ``run_cpu_s`` / ``run_wall_s``: the loop's Dagster run alone (``LoopResult``: CPU time of the
  process during ``execute_in_process``) — what the catalog's ceilings are about;
* ``process_cpu_s``: the whole child, interpreter start and imports included (``getrusage`` self +
  children), and the parent's wall time of the child;
* ``peak_rss_mb``: the child's RSS high-water mark (``VmHWM``; ``ru_maxrss`` would include the
  parent's RSS at fork), ``base_rss_mb``: its RSS after the imports, before the run;
  ``children_peak_rss_mb``: ``ru_maxrss`` of the subprocesses the loop starts (loop G runs
  ``pytest --collect-only``), an upper bound for the same reason.

Totals per month at the catalog cadences (daily × 30, weekly × 4.35, monthly × 1) from the warm
medians (the steady state: a persistent embedding cache) and from the cold runs (upper bound: every
text new), against the target of 30 CPU-minutes a month and against the sum of the ceilings (the
seed's budget). Writes ``bench_loops.json``, ``bench_loops.md`` and ``bench_loops.png`` under the
output folder. The host is shared: CPU seconds are what to read; wall seconds and the load
averages show contention.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from autonomath_pipelines.bench.process import (
    code_provenance,
    peak_rss_mb,
    provenance_lines,
    rss_mb,
    run_child,
    world_provenance,
    write_report,
)
from autonomath_pipelines.catalog import LOOP_SPECS, TIMEZONE, LoopSpec, loop_spec

Say = Callable[[str], None]
RUNS_PER_MONTH = {"daily": 30.0, "weekly": 4.35, "monthly": 1.0}
TARGET_MONTHLY_CPU_MIN = 30.0
#: A loop's own target: a run within 10 % of its catalog ceiling.
TARGET_SHARE_OF_CEILING = 0.10
JSON_NAME, MD_NAME, PNG_NAME = "bench_loops.json", "bench_loops.md", "bench_loops.png"
FIGURES = (
    "run_cpu_s",
    "run_wall_s",
    "process_cpu_s",
    "process_wall_s",
    "peak_rss_mb",
    "base_rss_mb",
    "children_peak_rss_mb",
)


def runs_per_month(spec: LoopSpec) -> float:
    return RUNS_PER_MONTH[spec.cadence]


def world_as_of(db_path: str) -> dt.datetime | None:
    """The moment the world's logs end (its truth's as-of, 00:00 JST), or None without a truth file."""
    from zoneinfo import ZoneInfo

    from autonomath_pipelines.demo import load_truth

    try:
        as_of = dt.date.fromisoformat(load_truth(db_path)["as_of"])
    except (OSError, ValueError, KeyError):
        return None
    return dt.datetime(as_of.year, as_of.month, as_of.day, tzinfo=ZoneInfo(TIMEZONE))


def bench_partition(spec: LoopSpec, now: dt.datetime | None) -> str | None:
    """The partition the schedule would run at ``now`` (the world's end); None: the orchestrator's default."""
    from autonomath_pipelines.loops.common import last_complete_partition_key

    return last_complete_partition_key(spec, now) if now is not None else None


# -------------------------------------------------------------------------------------------- child


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measured loop run in this fresh process; returns the figures (printed as JSON)."""
    import warnings

    warnings.filterwarnings("ignore")
    import dagster as dg

    from autonomath_pipelines.orchestrator import run_loops
    from autonomath_pipelines.resources import AutonomathDatabase, EmbeddingModel, LoopSettings

    base_rss = rss_mb()
    work = Path(spec["work"])
    report = run_loops(
        AutonomathDatabase(path=spec["db"]),
        LoopSettings(execute_loops=[], reports_dir=str(work / "reports")),
        only=[spec["loop"]],
        partition=spec["partition"],
        storage_dir=str(work / "storage"),
        embeddings=EmbeddingModel(cache_path=spec["cache"]),
        instance=dg.DagsterInstance.ephemeral(),
    )
    r = report.results[0]
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "status": r.status,
        "error": r.error,
        "partition_key": r.partition_key,
        "run_cpu_s": r.cpu_seconds,
        "run_wall_s": r.wall_seconds,
        "process_cpu_s": round(me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "base_rss_mb": round(base_rss, 1),
        "children_peak_rss_mb": round(kids.ru_maxrss / 1024, 1),
        "scanned": r.scanned,
        "proposed": r.actions_proposed,
        "texts_embedded": int(sum(m.get("texts_embedded", 0) for m in r.asset_metrics.values())),
    }


# ------------------------------------------------------------------------------------------ bench


def _median(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def run_loops_benchmark(
    db_path: str,
    only: Sequence[str] | None = None,
    out_dir: str = "reports/bench",
    say: Say = print,
    *,
    repeats: int = 3,
) -> dict:
    """Cold + ``repeats`` warm runs per loop, each in a fresh subprocess; writes JSON, Markdown and PNG."""
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    specs = [loop_spec(x) for x in only] if only else list(LOOP_SPECS)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    now = world_as_of(db_path)
    code, world = code_provenance(), world_provenance(db_path)
    for warning in world["warnings"]:
        say(f"warning: {warning}")
    started = time.perf_counter()
    load_before = list(os.getloadavg())
    say(
        f"loop cost benchmark: {len(specs)} loop(s) on {db_path}; 1 cold + {repeats} warm run(s) each, "
        f"every run a fresh process; world ends {now.isoformat() if now else '(unknown: last complete partitions)'}"
    )
    loops = []
    with tempfile.TemporaryDirectory(prefix="bench-loops-") as tmp:
        for i, spec in enumerate(specs, 1):
            key = bench_partition(spec, now)
            cache = str(Path(tmp) / f"embedding_cache-{spec.letter}.sqlite")  # empty: the cold run fills it
            runs = []
            for n in range(1 + repeats):
                phase = "cold" if n == 0 else "warm"
                say(
                    f"  [{i}/{len(specs)}] loop {spec.letter} {spec.loop_id} partition {key or '(default)'}: "
                    f"{phase} run{'' if phase == 'cold' else f' {n}/{repeats}'} ..."
                )
                run = run_child(
                    "autonomath_pipelines.bench.loops",
                    {
                        "loop": spec.loop_id,
                        "partition": key,
                        "db": db_path,
                        "cache": cache,
                        "work": str(Path(tmp) / f"{spec.letter}-{n}"),
                    },
                    f"for loop {spec.letter}",
                )
                run["phase"] = phase
                runs.append(run)
                say(
                    f"      {run['status']}: run {run['run_cpu_s']:.2f} CPU s / {run['run_wall_s']:.2f} s wall, "
                    f"process {run['process_cpu_s']:.1f} CPU s / {run['process_wall_s']:.1f} s, peak "
                    f"{run['peak_rss_mb']:.0f} MB, embedded {run['texts_embedded']:,}, load "
                    f"{run['loadavg_1min_before']:.1f}" + (f" — {run['error']}" if run["error"] else "")
                )
            cold, warm = runs[0], runs[1:]
            ceiling = spec.cost_ceiling_cpu_min * 60
            row = {
                "letter": spec.letter,
                "loop_id": spec.loop_id,
                "cadence": spec.cadence,
                "runs_per_month": runs_per_month(spec),
                "partition_key": cold["partition_key"],
                "ceiling_cpu_s": ceiling,
                "status": "succeeded" if all(r["status"] == "succeeded" for r in runs) else "failed",
                "cold": {k: cold[k] for k in FIGURES} | {"texts_embedded": cold["texts_embedded"]},
                "warm_median": {k: _median(warm, k) for k in FIGURES}
                | {"texts_embedded": _median(warm, "texts_embedded")},
                "warm_min": {k: min(r[k] for r in warm) for k in ("run_cpu_s", "run_wall_s")},
                "warm_max": {k: max(r[k] for r in warm) for k in ("run_cpu_s", "run_wall_s")},
                "scanned": cold["scanned"],
                "proposed": cold["proposed"],
                "runs": runs,
            }
            row["share_of_ceiling_warm"] = round(row["warm_median"]["run_cpu_s"] / ceiling, 5)
            row["share_of_ceiling_cold"] = round(cold["run_cpu_s"] / ceiling, 5)
            row["target_met"] = row["warm_median"]["run_cpu_s"] <= TARGET_SHARE_OF_CEILING * ceiling
            row["monthly_cpu_s_warm"] = round(row["warm_median"]["run_cpu_s"] * row["runs_per_month"], 2)
            row["monthly_cpu_s_cold"] = round(cold["run_cpu_s"] * row["runs_per_month"], 2)
            row["monthly_process_cpu_s_warm"] = round(row["warm_median"]["process_cpu_s"] * row["runs_per_month"], 2)
            row["monthly_ceiling_cpu_s"] = round(ceiling * row["runs_per_month"], 2)
            loops.append(row)
    totals = {
        k: round(sum(r[k] for r in loops) / 60, 3)
        for k in ("monthly_cpu_s_warm", "monthly_cpu_s_cold", "monthly_process_cpu_s_warm", "monthly_ceiling_cpu_s")
    }
    totals = {k.replace("_cpu_s", "_cpu_min"): v for k, v in totals.items()}
    result = {
        "benchmark": "loops_cost",
        "generated_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "db": db_path,
        "world_ends": now.isoformat() if now else None,
        "repeats_warm": repeats,
        "code": code,
        "world": world,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "target_monthly_cpu_min": TARGET_MONTHLY_CPU_MIN,
        "target_share_of_ceiling": TARGET_SHARE_OF_CEILING,
        "runs_per_month": RUNS_PER_MONTH,
        "monthly_totals": totals,
        "loops": loops,
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    result["monthly_target_met_warm"] = totals["monthly_cpu_min_warm"] <= TARGET_MONTHLY_CPU_MIN
    result["monthly_target_met_cold"] = totals["monthly_cpu_min_cold"] <= TARGET_MONTHLY_CPU_MIN
    write_report(
        out, (JSON_NAME, MD_NAME, PNG_NAME), result, markdown=render_markdown, plot=_plot, table=table_lines, say=say
    )
    return result


# ----------------------------------------------------------------------------------------- report


def table_lines(result: dict) -> list[str]:
    head = (
        "| loop | cadence | partition | cold run CPU s | warm run CPU s (median) | warm wall s | warm process CPU s "
        "| peak MB cold / warm | embedded cold | ceiling s | % of ceiling (warm) | CPU min / month (warm) |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in result["loops"]:
        c, w = r["cold"], r["warm_median"]
        lines.append(
            f"| {r['letter']} | {r['cadence']} | {r['partition_key']} | {c['run_cpu_s']:.2f} | {w['run_cpu_s']:.2f} "
            f"[{r['warm_min']['run_cpu_s']:.2f}–{r['warm_max']['run_cpu_s']:.2f}] | {w['run_wall_s']:.2f} | "
            f"{w['process_cpu_s']:.1f} | {c['peak_rss_mb']:.0f} / {w['peak_rss_mb']:.0f} | {c['texts_embedded']:,} | "
            f"{r['ceiling_cpu_s']:.0f} | {100 * r['share_of_ceiling_warm']:.2f} % | "
            f"{r['monthly_cpu_s_warm'] / 60:.2f} |"
        )
    t = result["monthly_totals"]
    lines += [
        "",
        f"Per month at the catalog cadences (daily ×30, weekly ×4.35, monthly ×1): **{t['monthly_cpu_min_warm']:.2f} "
        f"CPU-min warm** (cold upper bound {t['monthly_cpu_min_cold']:.2f}; with process start-up and imports "
        f"{t['monthly_process_cpu_min_warm']:.2f}) against the target of {result['target_monthly_cpu_min']:.0f} "
        "CPU-min "
        f"({'met' if result['monthly_target_met_warm'] else 'MISSED'}) and the ceilings' "
        f"{t['monthly_ceiling_cpu_min']:.0f} CPU-min ({t['monthly_ceiling_cpu_min'] / 60:.1f} CPU-hours).",
    ]
    return lines


def render_markdown(result: dict) -> str:
    m = result["machine"]
    return "\n".join(
        [
            "# Loop cost on the production-scale world",
            "",
            *provenance_lines(result["code"], result["world"]),
            "",
            f"World `{result['db']}` (logs end {result['world_ends']}); every run a fresh Python process, dry run, "
            "the partition the schedule would run at the world's end; 1 cold run (empty embedding cache) and the "
            "median "
            f"of {result['repeats_warm']} warm re-runs. {m['cpu_count']} CPUs, Python {m['python']}; load average "
            f"{m['loadavg_before'][0]:.1f} before, {m['loadavg_after'][0]:.1f} after (the host is shared: read CPU "
            "seconds; wall seconds include contention).",
            "",
            "*run CPU s*: the loop's Dagster run (the catalog ceiling's unit); *process CPU s*: the whole process "
            "(interpreter start, imports, model load when embedding); *peak MB*: the process's RSS high-water mark.",
            "",
            *table_lines(result),
            "",
            f"![loop cost]({PNG_NAME})",
            "",
        ]
    )


def _plot(path: Path, result: dict) -> None:
    from autonomath_pipelines.lib.plots import pyplot

    plt = pyplot()
    import numpy as np

    loops = result["loops"]
    x = np.arange(len(loops))
    fig, (ax, mx, tx) = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [2.2, 1.6, 1]})
    w = 0.38
    cold = [r["cold"]["run_cpu_s"] for r in loops]
    warm = [r["warm_median"]["run_cpu_s"] for r in loops]
    ax.bar(x - w / 2, cold, w, color="#c44e52", label="cold (empty embedding cache)")
    ax.bar(x + w / 2, warm, w, color="#4c72b0", label=f"warm (median of {result['repeats_warm']})")
    ax.scatter(x, [r["ceiling_cpu_s"] for r in loops], marker="_", s=400, color="black", label="catalog ceiling")
    ax.scatter(
        x,
        [TARGET_SHARE_OF_CEILING * r["ceiling_cpu_s"] for r in loops],
        marker="_",
        s=400,
        color="grey",
        label="10 % of ceiling",
    )
    ax.set_yscale("log")
    ax.set_xticks(x, [r["letter"] for r in loops])
    ax.set_ylabel("CPU seconds per run (log)")
    ax.set_title("Run CPU per loop vs ceiling", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    mx.bar(x - w / 2, [r["cold"]["peak_rss_mb"] for r in loops], w, color="#c44e52", label="cold")
    mx.bar(x + w / 2, [r["warm_median"]["peak_rss_mb"] for r in loops], w, color="#4c72b0", label="warm")
    mx.plot(x, [r["warm_median"]["base_rss_mb"] for r in loops], "k_", ms=14, label="after imports")
    mx.set_xticks(x, [r["letter"] for r in loops])
    mx.set_ylabel("peak RSS of the process (MB)")
    mx.set_title("Peak memory per run", fontsize=10)
    mx.legend(fontsize=7)
    bottom = 0.0
    for r in sorted(loops, key=lambda r: -r["monthly_cpu_s_warm"]):
        value = r["monthly_cpu_s_warm"] / 60
        tx.bar(0, value, bottom=bottom, label=f"{r['letter']} {value:.2f}")
        bottom += value
    t = result["monthly_totals"]
    tx.bar(1, t["monthly_cpu_min_cold"], color="#c44e52", alpha=0.6)
    tx.axhline(result["target_monthly_cpu_min"], color="red", ls="--", lw=1, label="target 30 CPU-min")
    tx.set_xticks([0, 1], ["warm", "cold"])
    tx.set_ylabel("CPU-minutes per month")
    tx.set_title(f"Per month: {t['monthly_cpu_min_warm']:.1f} warm, {t['monthly_cpu_min_cold']:.1f} cold", fontsize=10)
    tx.legend(fontsize=6, ncol=2)
    fig.suptitle(f"Loop cost, production-scale world ({result['db']}), every run a fresh process", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autonomath_pipelines.bench.loops", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--db", default="data/bench/autonomath-production.db")
    parser.add_argument("--only", action="append", metavar="LOOP")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="reports/bench")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    result = run_loops_benchmark(args.db, args.only, args.out, repeats=args.repeats)
    return 0 if all(r["status"] == "succeeded" for r in result["loops"]) else 1


if __name__ == "__main__":
    sys.exit(main())
