"""Cost of loops on a (production-scale) world: cold (empty embedding cache) and warm (re-run).

    autonomath-loops bench loops [--only A --only E] [--db data/bench/autonomath-production.db]

Each loop's last complete partition runs twice through the orchestrator (dry run): first with a
fresh embedding cache, then again with the cache the first run filled — a re-run of an unchanged
partition must embed nothing. Reports wall and CPU seconds against the catalog's ceiling and the
10 %-of-ceiling target, the texts embedded, and peak memory; writes ``bench_loops.json`` and
``bench_loops.png`` under the output folder.
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.orchestrator import run_loops

TARGET_SHARE_OF_CEILING = 0.10


def _embedded(metrics: dict[str, dict[str, float]]) -> int:
    return int(sum(m.get("texts_embedded", 0) for m in metrics.values()))


def run_loops_benchmark(db_path: str, only: Sequence[str], out_dir: str, say: Callable[[str], None] = print) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-loops-") as tmp:
        cache = str(Path(tmp) / "embedding_cache.sqlite")
        for phase in ("cold", "warm"):
            say(f"[{phase}] running {', '.join(only)} on {db_path} ({'empty' if phase == 'cold' else 'filled'} embedding cache)")
            started = time.perf_counter()
            report = run_loops(only=list(only), db_path=db_path, reports_dir=str(Path(tmp) / "reports"),
                               storage_dir=str(Path(tmp) / f"storage-{phase}"), embedding_cache=cache,
                               progress=lambda line: say("    " + line.strip()))
            for r in report.results:
                ceiling = loop_spec(r.loop_id).cost_ceiling_cpu_min * 60
                rows.append({
                    "loop_id": r.loop_id, "phase": phase, "status": r.status, "partition_key": r.partition_key,
                    "wall_seconds": r.wall_seconds, "cpu_seconds": r.cpu_seconds, "ceiling_cpu_seconds": ceiling,
                    "share_of_ceiling": round(r.cpu_seconds / ceiling, 4),
                    "target_met": r.cpu_seconds <= TARGET_SHARE_OF_CEILING * ceiling,
                    "scanned": r.scanned, "proposed": r.actions_proposed, "texts_embedded": _embedded(r.asset_metrics),
                })
            say(f"    {phase} phase: {time.perf_counter() - started:.1f} s wall")
    result = {"db": db_path, "rows": rows, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "target_share_of_ceiling": TARGET_SHARE_OF_CEILING}
    (out / "bench_loops.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(out / "bench_loops.png", rows)
    say("")
    say(f"{'loop':<30} {'phase':<5} {'CPU s':>7} {'wall s':>7} {'% ceiling':>9} {'embedded':>9} {'proposed':>9}")
    for row in rows:
        say(f"{row['loop_id']:<30} {row['phase']:<5} {row['cpu_seconds']:>7.1f} {row['wall_seconds']:>7.1f} "
            f"{100 * row['share_of_ceiling']:>8.1f}% {row['texts_embedded']:>9,} {row['proposed']:>9,}")
    say(f"peak RSS of this process: {result['peak_rss_mb']:.0f} MB; figures: {out / 'bench_loops.json'}, {out / 'bench_loops.png'}")
    return result


def _plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loops = list(dict.fromkeys(r["loop_id"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.38
    for offset, phase, color in ((-width / 2, "cold", "#c44e52"), (width / 2, "warm", "#4c72b0")):
        values = [next((r["cpu_seconds"] for r in rows if r["loop_id"] == loop and r["phase"] == phase), 0) for loop in loops]
        bars = ax.bar([i + offset for i in range(len(loops))], values, width, label=f"{phase} embedding cache", color=color)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    for i, loop in enumerate(loops):
        target = TARGET_SHARE_OF_CEILING * loop_spec(loop).cost_ceiling_cpu_min * 60
        ax.hlines(target, i - 0.45, i + 0.45, colors="black", linestyles="dashed",
                  label="target: 10 % of ceiling" if i == 0 else None)
    ax.set_xticks(range(len(loops)), [loop.replace("loop_", "").replace("_", " ") for loop in loops], fontsize=8)
    ax.set_ylabel("CPU seconds per run")
    ax.set_title("Loop cost on the production-scale world (dry run, last complete partition)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
