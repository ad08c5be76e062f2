"""Scaling of loops A and E with the size of their window: time and peak memory at 10k, 100k, 1M rows.

    autonomath-loops bench scaling [--sizes 10000,100000,1000000] [--out reports/bench]
    .venv/bin/python -m autonomath_pipelines.bench.scaling [same options]

Worlds: for each size N a demo world with the production world's shape (20,000 programs, 335,605
aliases, 5,000 api keys, 40 hallucination families …) whose logs cover exactly 14 JST days with
⌈N / 14⌉ queries a day, ending on a Sunday (2026-11-01): loop E's catalog window (14 days) and loop A
run with ``lookback_days = 14`` (A's window is "partition week, configurable lookback") both read the
whole world, about N query_log rows. The scale is registered in ``demo.world.SCALES`` for the build
only (``scaling-<N>``); worlds are kept under ``data/bench/scaling/`` and reused.

Runs: each (size, loop, phase) in a fresh Python process: *cold* with an empty embedding cache, then
*warm* with the cache the cold run filled. Measured in the child: the Dagster run's wall and CPU
seconds (``execute_in_process``), the process's RSS after the imports and its high-water mark
(``VmHWM``), texts embedded, rows the loop selected from the window and unique texts it
clustered. The log-log slope of each figure against the window's rows (least squares over the
sizes) is printed: 1 is linear. Writes ``bench_scaling.json``, ``bench_scaling.md``, ``bench_scaling.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from autonomath_pipelines.bench.process import (
    code_provenance,
    peak_rss_mb,
    provenance_lines,
    rss_mb,
    run_child,
    world_provenance,
    write_report,
)
from autonomath_pipelines.contract.timestamps import iso_utc

Say = Callable[[str], None]
AS_OF = dt.date(2026, 11, 1)  # a Sunday: the weekly partition 2026-10-25 ends where the logs end
PARTITION = "2026-10-25"
DAYS = 14
SIZES = (10_000, 100_000, 1_000_000)
SCALED_LOOPS = ("A", "E")
WORLD_DIR = Path("data/bench/scaling")
JSON_NAME, MD_NAME, PNG_NAME = "bench_scaling.json", "bench_scaling.md", "bench_scaling.png"
#: Per loop: (job name, run config that makes its window the 14 days, asset whose rows are "selected",
#: asset whose rows are the unique texts clustered).
LOOP_RUNS = {
    "A": (
        "loop_a_hallucination_guard_job",
        {"ops": {"hallucination_guard_snapshot": {"config": {"lookback_days": DAYS}}}},
        "hallucination_guard_snapshot",
        "hallucination_guard_texts",
    ),
    "E": ("loop_e_alias_expansion_job", {}, "alias_expansion_snapshot", "alias_expansion_surfaces"),
}


def scale_name(n: int) -> str:
    return f"scaling-{n}"


def world_path(n: int, folder: Path = WORLD_DIR) -> Path:
    return folder / f"autonomath-{scale_name(n)}.db"


@contextlib.contextmanager
def registered_scale(n: int) -> Iterator[str]:
    """``demo.world.SCALES`` with a production-shaped scale of ``DAYS`` days and ⌈n/DAYS⌉ queries a day."""
    from autonomath_pipelines.demo import world

    name = scale_name(n)
    world.SCALES[name] = dataclasses.replace(
        world.SCALES["production"], name=name, days=DAYS, queries_per_day=math.ceil(n / DAYS)
    )
    try:
        yield name
    finally:
        world.SCALES.pop(name, None)


def prepare_world(n: int, folder: Path, say: Say, rebuild: bool = False) -> Path:
    from autonomath_pipelines.demo import build_world, load_truth, truth_path

    path = world_path(n, folder)
    if path.is_file() and truth_path(path).is_file() and not rebuild:
        truth = load_truth(path)
        if truth.get("scale") == scale_name(n) and truth.get("as_of") == AS_OF.isoformat():
            say(f"  reusing {path} ({truth['row_counts']['query_log']:,} query_log rows)")
            return path
    with registered_scale(n) as name:
        say(f"  building {path} ({name}: {DAYS} days × {math.ceil(n / DAYS):,} queries) ...")
        started = time.perf_counter()
        summary = build_world(path, scale=name, seed=7, as_of=AS_OF)
    say(f"  built in {time.perf_counter() - started:.1f} s ({summary.row_counts['query_log']:,} query_log rows)")
    return path


# -------------------------------------------------------------------------------------------- child


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    import warnings

    warnings.filterwarnings("ignore")
    import dagster as dg
    import pandas as pd

    from autonomath_pipelines.definitions import build_definitions
    from autonomath_pipelines.resources import AutonomathDatabase, EmbeddingModel, LoopSettings, loop_resources
    from autonomath_pipelines.resources.io_manager import PartitionedParquetIOManager

    job_name, run_config, selected_asset, texts_asset = LOOP_RUNS[spec["loop"]]
    defs = build_definitions(
        loop_resources(
            AutonomathDatabase(path=spec["db"]),
            LoopSettings(execute_loops=[]),
            storage_dir=spec["storage"],
            embeddings=EmbeddingModel(cache_path=spec["cache"]),
        )
    )
    job = defs.resolve_job_def(job_name)
    base_rss = rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    result = job.execute_in_process(
        partition_key=PARTITION,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        run_config={**run_config, "loggers": {"console": {"config": {"log_level": "ERROR"}}}},
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = peak_rss_mb()
    embedded = 0
    for event in result.get_asset_materialization_events():
        value = event.materialization.metadata.get("texts_embedded")
        embedded += int(value.value) if value is not None else 0
    io = PartitionedParquetIOManager(base_dir=spec["storage"])
    rows = {
        name: len(pd.read_parquet(io.path_for(dg.AssetKey(name), PARTITION))) if result.success else None
        for name in (selected_asset, texts_asset)
    }
    return {
        "success": result.success,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "peak_rss_mb": round(peak, 1),
        "base_rss_mb": round(base_rss, 1),
        "texts_embedded": embedded,
        "selected_rows": rows[selected_asset],
        "unique_texts": rows[texts_asset],
    }


# -------------------------------------------------------------------------------------------- bench


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of log(y) on log(x); None with fewer than two usable points."""
    pairs = [(x, y) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pairs) < 2:
        return None
    slope, _ = np.polyfit(np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs]), 1)
    return round(float(slope), 3)


def window_rows(db: Path) -> int:
    from autonomath_pipelines.resources import AutonomathDatabase

    start = dt.datetime(AS_OF.year, AS_OF.month, AS_OF.day, tzinfo=dt.timezone(dt.timedelta(hours=9))) - dt.timedelta(
        days=DAYS
    )
    end = start + dt.timedelta(days=DAYS)
    frame = AutonomathDatabase(path=str(db)).read_frame(
        "SELECT COUNT(*) AS n FROM query_log WHERE ts >= ? AND ts < ?", (iso_utc(start), iso_utc(end))
    )
    return int(frame["n"].iloc[0])


def run_scaling_benchmark(
    sizes: Sequence[int] = SIZES,
    loops: Sequence[str] = SCALED_LOOPS,
    out_dir: str = "reports/bench",
    say: Say = print,
    *,
    world_dir: Path = WORLD_DIR,
    rebuild: bool = False,
) -> dict:
    sizes = sorted(int(n) for n in sizes)
    if not sizes or sizes[0] < 1000:
        raise ValueError("sizes must be >= 1000 rows")
    unknown = [x for x in loops if x not in LOOP_RUNS]
    if unknown:
        raise ValueError(f"scaling covers loops {', '.join(LOOP_RUNS)}; not {', '.join(unknown)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    code = code_provenance()  # at the start: the code that ran, should the tree change during the benchmark
    started = time.perf_counter()
    say(
        f"scaling benchmark: loops {', '.join(loops)} at {', '.join(f'{n:,}' for n in sizes)} query_log rows in "
        f"their {DAYS}-day window; every run a fresh process (cold, then warm embedding cache)"
    )
    say("[1/3] worlds")
    worlds = {n: prepare_world(n, world_dir, say, rebuild) for n in sizes}
    rows = {n: window_rows(path) for n, path in worlds.items()}
    say("[2/3] runs")
    results = []
    total = len(sizes) * len(loops) * 2
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        for n in sizes:
            for letter in loops:
                cache = str(Path(tmp) / f"cache-{letter}-{n}.sqlite")
                for phase in ("cold", "warm"):
                    say(f"  [{len(results) + 1}/{total}] loop {letter}, {rows[n]:,} rows in the window, {phase} ...")
                    r = run_child(
                        "autonomath_pipelines.bench.scaling",
                        {
                            "loop": letter,
                            "db": str(worlds[n]),
                            "cache": cache,
                            "storage": str(Path(tmp) / f"storage-{letter}-{n}-{phase}"),
                        },
                        f"scaling loop {letter} n={n}",
                    )
                    r.update(loop=letter, size=n, window_rows=rows[n], phase=phase)
                    results.append(r)
                    say(
                        f"      {'ok' if r['success'] else 'FAILED'}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} "
                        "CPU s, "
                        f"peak {r['peak_rss_mb']:.0f} MB (after imports {r['base_rss_mb']:.0f}), selected "
                        f"{r['selected_rows']:,} rows, {r['unique_texts']:,} unique texts, embedded "
                        f"{r['texts_embedded']:,}"
                    )
    say("[3/3] slopes")
    slopes: dict[str, dict[str, float | None]] = {}
    for letter in loops:
        for phase in ("cold", "warm"):
            runs = sorted(
                (r for r in results if r["loop"] == letter and r["phase"] == phase), key=lambda r: r["window_rows"]
            )
            xs = [r["window_rows"] for r in runs]
            slopes[f"{letter}/{phase}"] = {
                "wall_s": loglog_slope(xs, [r["wall_s"] for r in runs]),
                "cpu_s": loglog_slope(xs, [r["cpu_s"] for r in runs]),
                # the two largest sizes only: where fixed costs (model load, Dagster) matter least
                "cpu_s_top_decade": loglog_slope(xs[-2:], [r["cpu_s"] for r in runs[-2:]]),
                "selected_rows": loglog_slope(xs, [r["selected_rows"] for r in runs]),
                "peak_rss_mb": loglog_slope(xs, [r["peak_rss_mb"] for r in runs]),
                "peak_above_imports_mb": loglog_slope(xs, [r["peak_rss_mb"] - r["base_rss_mb"] for r in runs]),
                "unique_texts": loglog_slope(xs, [r["unique_texts"] for r in runs]),
                "cpu_per_unique_text": loglog_slope([r["unique_texts"] for r in runs], [r["cpu_s"] for r in runs]),
            }
    result = {
        "benchmark": "loops_scaling",
        "generated_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()},
        "code": code,
        "worlds": {
            str(n): {"path": str(worlds[n]), "window_rows": rows[n], "world": world_provenance(worlds[n])}
            for n in sizes
        },
        "days": DAYS,
        "partition": PARTITION,
        "results": results,
        "slopes": slopes,
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    write_report(
        out, (JSON_NAME, MD_NAME, PNG_NAME), result, markdown=render_markdown, plot=_plot, table=table_lines, say=say
    )
    return result


def table_lines(result: dict) -> list[str]:
    lines = [
        "| loop | phase | window rows | selected rows | unique texts | embedded | wall s | CPU s | peak MB | "
        "after imports MB |",
        "|" + "---|" * 10,
    ]
    for r in result["results"]:
        lines.append(
            f"| {r['loop']} | {r['phase']} | {r['window_rows']:,} | {r['selected_rows']:,} | {r['unique_texts']:,} | "
            f"{r['texts_embedded']:,} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{r['base_rss_mb']:.0f} |"
        )
    lines += [
        "",
        "Log-log slopes against the window's rows (1 = linear):",
        "",
        "| loop/phase | wall s | CPU s | CPU s, two largest sizes | peak MB | peak above imports | selected rows "
        "| unique texts | CPU vs unique texts |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
    for key, s in result["slopes"].items():
        lines.append(
            f"| {key} | {fmt(s['wall_s'])} | {fmt(s['cpu_s'])} | {fmt(s['cpu_s_top_decade'])} | "
            f"{fmt(s['peak_rss_mb'])} | {fmt(s['peak_above_imports_mb'])} | {fmt(s['selected_rows'])} | "
            f"{fmt(s['unique_texts'])} | {fmt(s['cpu_per_unique_text'])} |"
        )
    return lines


def render_markdown(result: dict) -> str:
    return "\n".join(
        [
            "# Loops A and E: cost against the size of the window",
            "",
            *provenance_lines(result["code"]),
            *[f"**Warning:** {w}" for world in result["worlds"].values() for w in world["world"]["warnings"]],
            "",
            f"Production-shaped worlds whose {result['days']} days of logs are the loops' whole window (E: catalog "
            f"14 days; A: `lookback_days = {result['days']}`), partition {result['partition']}; every run a fresh "
            "process, "
            "cold (empty embedding cache) then warm. *peak MB*: RSS high-water mark of the process; *after imports*: "
            "its RSS before the run.",
            "",
            *table_lines(result),
            "",
            "The loops select a share of the window (A: zero-result and unanchored low-confidence asks; E: "
            "low-confidence single-program answers), which grows linearly with it; their work grows with the unique "
            "texts they embed and cluster, which repeat (Zipf) and so grow more slowly. A slope below 1 is sub-linear; "
            "at the smallest size fixed costs (model load in cold runs, Dagster start of the run) dominate.",
            "",
            f"![scaling]({PNG_NAME})",
            "",
        ]
    )


def _plot(path: Path, result: dict) -> None:
    from autonomath_pipelines.lib.plots import pyplot

    plt = pyplot()

    fig, (tx, mx) = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = {"A": "#30638e", "E": "#d1495b"}
    for letter in dict.fromkeys(r["loop"] for r in result["results"]):
        for phase, style in (("cold", "o-"), ("warm", "s--")):
            runs = sorted(
                (r for r in result["results"] if r["loop"] == letter and r["phase"] == phase),
                key=lambda r: r["window_rows"],
            )
            xs = [r["window_rows"] for r in runs]
            s = result["slopes"][f"{letter}/{phase}"]
            tx.loglog(
                xs,
                [r["cpu_s"] for r in runs],
                style,
                color=colors[letter],
                label=f"{letter} {phase} CPU s (slope {s['cpu_s']})",
            )
            mx.loglog(
                xs,
                [r["peak_rss_mb"] for r in runs],
                style,
                color=colors[letter],
                label=f"{letter} {phase} peak (slope {s['peak_rss_mb']})",
            )
            if phase == "cold":
                mx.loglog(
                    xs,
                    [max(r["peak_rss_mb"] - r["base_rss_mb"], 1) for r in runs],
                    ":",
                    color=colors[letter],
                    label=f"{letter} cold above imports (slope {s['peak_above_imports_mb']})",
                )
    xs = sorted({r["window_rows"] for r in result["results"]})
    if xs:
        y0 = min(r["cpu_s"] for r in result["results"] if r["window_rows"] == xs[0])
        tx.loglog(xs, [y0 * x / xs[0] for x in xs], color="grey", lw=0.8, ls=":", label="linear reference")
    for ax, label in ((tx, "CPU seconds of the run"), (mx, "MB")):
        ax.set_xlabel("query_log rows in the window")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    tx.set_title("Time", fontsize=10)
    mx.set_title("Peak memory (process RSS)", fontsize=10)
    fig.suptitle("Loops A and E vs window size (production-shaped worlds, fresh process per run)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autonomath_pipelines.bench.scaling", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sizes", default=",".join(str(n) for n in SIZES))
    parser.add_argument("--only", action="append", metavar="LOOP", help="A and/or E (default both)")
    parser.add_argument("--out", default="reports/bench")
    parser.add_argument("--world-dir", default=str(WORLD_DIR))
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    import warnings

    warnings.filterwarnings("ignore")
    try:
        result = run_scaling_benchmark(
            [int(s) for s in args.sizes.split(",") if s.strip()],
            [x.upper() for x in args.only] if args.only else SCALED_LOOPS,
            args.out,
            say=lambda line: print(line, flush=True),
            world_dir=Path(args.world_dir),
            rebuild=args.rebuild,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if all(r["success"] for r in result["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
