"""Build or reuse the world, run every loop once (dry run), score, write the report; the CLI's arguments."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from autonomath_pipelines.catalog import LOOP_SPECS, loop_spec
from autonomath_pipelines.quality.partitions import DEFAULT_AS_OF, JST, eval_partitions, range_keys
from autonomath_pipelines.quality.report import (
    JSON_NAME,
    MD_NAME,
    PNG_NAME,
    markdown_table,
    plot,
    render_markdown,
    write_file,
)
from autonomath_pipelines.quality.scores import NOTES, SCORERS, Context, Metric, format_value, round_figure

Say = Callable[[str], None]
SCALES = ("small", "medium", "production")
DEFAULT_OUT = "reports/eval"


# -------------------------------------------------------------------------------------------- world


def default_db_path(scale: str, seed: int, as_of: dt.date) -> Path:
    return Path("data/eval") / f"autonomath-{scale}-seed{seed}-{as_of.isoformat()}.db"


def prepare_world(db_path: Path, scale: str, seed: int, as_of: dt.date, say: Say, *, explicit: bool) -> dict:
    """The world to score and its truth.

    ``explicit`` (``--db``): an existing file is used as it is and must have its ``.truth.json`` (a
    database without one is never overwritten); a missing one is built there. Otherwise the cached
    world at ``db_path`` is reused when its truth says it is this (scale, seed, as-of), else rebuilt."""
    from autonomath_pipelines.demo import build_world, load_truth, truth_path
    from autonomath_pipelines.resources import AutonomathDatabase

    if db_path.exists():
        AutonomathDatabase(path=str(db_path)).require_exists()  # not an SQLite file: say so, before the truth
        if truth_path(db_path).is_file():
            truth = load_truth(db_path)
            same = (truth.get("scale"), truth.get("seed"), truth.get("as_of")) == (scale, seed, as_of.isoformat())
            if explicit or same:
                say(
                    f"  using the world {db_path} ({truth.get('scale')}, seed {truth.get('seed')}, "
                    f"logs end {truth.get('as_of')} JST)"
                )
                return truth
        elif explicit:
            raise FileNotFoundError(
                f"{db_path} has no planted truth ({truth_path(db_path).name}): "
                "pass a demo world, or a path where one can be built"
            )
    say(f"  building the {scale} world (seed {seed}, logs end {as_of} JST) at {db_path} ...")
    started = time.perf_counter()
    build_world(db_path, scale=scale, seed=seed, as_of=as_of)
    say(f"  built in {time.perf_counter() - started:.1f} s")
    return load_truth(db_path)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- runs

#: Parquet outputs each score reads (asset names), by loop letter.
OUTPUTS = {
    "A": ("hallucination_guard_texts", "hallucination_guard_clusters", "hallucination_guard_candidates"),
    "B": ("testimonial_seo_candidates",),
    "C": ("personalized_cache_candidates",),
    "D": ("forecast_accuracy_candidates",),
    "E": ("alias_expansion_clusters", "alias_expansion_candidates"),
    "F": ("channel_roi_candidates",),
    "G": ("invariant_expansion_groups", "invariant_expansion_candidates"),
    "H": ("cache_warming_candidates",),
    "I": ("doc_freshness_candidates",),
    "J": ("gold_expansion_candidates",),
}


def run_all(
    db_path: Path, partitions: dict[str, str], work: Path, embedding_cache: Path, say: Say, letters: Sequence[str]
) -> tuple[dict[str, dict[str, pd.DataFrame]], dict[str, dict]]:
    """Each loop once, dry run, through the orchestrator; returns (outputs by letter, run facts)."""
    import dagster as dg

    from autonomath_pipelines.orchestrator import run_loops
    from autonomath_pipelines.resources import AutonomathDatabase, EmbeddingModel, LoopSettings
    from autonomath_pipelines.resources.io_manager import PartitionedParquetIOManager

    repo = work / "repo"  # an empty service repo: no gold set, no property tests
    (repo / "evals").mkdir(parents=True, exist_ok=True)
    (repo / "evals" / "gold.yaml").write_text("version: 1\nitems: []\n", encoding="utf-8")
    storage = work / "storage"
    io = PartitionedParquetIOManager(base_dir=str(storage))
    outputs: dict[str, dict[str, pd.DataFrame]] = {}
    runs: dict[str, dict] = {}
    instance = dg.DagsterInstance.ephemeral()
    database = AutonomathDatabase(path=str(db_path))
    settings = LoopSettings(execute_loops=[], repo_root=str(repo), reports_dir=str(work / "reports"))
    embeddings = EmbeddingModel(cache_path=str(embedding_cache))
    for i, letter in enumerate(letters, 1):
        spec, key = loop_spec(letter), partitions[letter]
        say(f"  [{i}/{len(letters)}] loop {letter} {spec.loop_id}, partition {key} (dry run) ...")
        first, _, last = key.partition("..")
        report = run_loops(
            database,
            settings,
            only=[letter],
            partition=first,
            until=last or None,
            storage_dir=str(storage),
            embeddings=embeddings,
            instance=instance,
        )
        results = report.results
        failed = [r for r in results if r.status != "succeeded"]
        runs[letter] = {
            "loop_id": spec.loop_id,
            "partition_key": key,
            "runs": len(results),
            "status": "failed" if failed else "succeeded",
            "scanned": sum(r.scanned for r in results),
            "proposed": sum(r.actions_proposed for r in results),
            "executed": sum(r.actions_executed for r in results),
            "wall_seconds": round(sum(r.wall_seconds for r in results), 3),
            "cpu_seconds": round(sum(r.cpu_seconds for r in results), 3),
            "error": "; ".join(f"{r.partition_key}: {r.error}" for r in failed) or None,
            "checks_failed": [c for r in results for c in r.checks_failed],
        }
        run = runs[letter]
        say(
            f"      {run['status']}{f' ({len(results)} partitions)' if len(results) > 1 else ''}: scanned "
            f"{run['scanned']:,}, proposed {run['proposed']:,}, {run['cpu_seconds']:.1f} CPU s"
            + (f" — {run['error']}" if run["error"] else "")
        )
        if failed:
            continue
        outputs[letter] = {
            name: pd.concat(
                [pd.read_parquet(io.path_for(dg.AssetKey(name), k)) for k in range_keys(letter, key)], ignore_index=True
            )
            for name in OUTPUTS[letter]
        }
    return outputs, runs


# --------------------------------------------------------------------------------------------- main


def run_eval(
    *,
    scale: str = "small",
    seed: int = 7,
    db_path: str | None = None,
    out_dir: str = DEFAULT_OUT,
    as_of: dt.date | None = None,
    embedding_cache: str | None = None,
    only: Sequence[str] | None = None,
    say: Say = print,
) -> dict:
    """Build/reuse the world, run the loops, score them, write the Markdown, JSON and PNG; return the result."""
    from autonomath_pipelines import CODE_VERSION
    from autonomath_pipelines.resources import AutonomathDatabase
    from autonomath_pipelines.resources.embeddings import EmbeddingModel

    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    letters = [loop_spec(x).letter for x in only] if only else [s.letter for s in LOOP_SPECS]
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    explicit = db_path is not None
    db = Path(db_path) if explicit else default_db_path(scale, seed, as_of or DEFAULT_AS_OF)
    world = f"the world {db}" if explicit else f"{scale} world, seed {seed}"  # a given world says its own scale
    say(f"loop-quality eval: {world}, {len(letters)} loop(s); output in {out}")
    say("[1/4] world")
    truth = prepare_world(db, scale, seed, as_of or DEFAULT_AS_OF, say, explicit=explicit)
    world_as_of = dt.date.fromisoformat(truth["as_of"])
    database = AutonomathDatabase(path=str(db))
    partitions = eval_partitions(world_as_of, database)
    digest_before = file_sha256(db)
    cache = Path(embedding_cache) if embedding_cache else db.with_name(db.stem + ".embedding_cache.sqlite")
    say(f"[2/4] loops (dry run), embedding cache {cache}")
    with tempfile.TemporaryDirectory(prefix="loop-quality-") as tmp:
        outputs, runs = run_all(db, partitions, Path(tmp), cache, say, letters)
    if file_sha256(db) != digest_before:
        raise RuntimeError(f"the dry run changed {db}: a loop wrote to the database")
    say("[3/4] scores")
    ctx = Context(db=database, truth=truth, partitions=partitions)
    metrics: list[Metric] = []
    details: dict[str, dict] = {}
    for letter in letters:
        if letter not in outputs:
            metrics.append(
                Metric(letter, f"loop run ({runs[letter]['error']})", 0, better="equal", target=1, unit="count")
            )
            continue
        found, detail = SCORERS[letter](outputs[letter], ctx)
        metrics += found
        details[letter] = detail
        say(f"  {letter}: " + "; ".join(f"{m.metric} {format_value(m.value, m.unit)} [{m.verdict}]" for m in found))
    summary = {v: sum(m.verdict == v for m in metrics) for v in ("pass", "FAIL", "info", "n/a")}
    summary["fail"] = summary.pop("FAIL")
    result = {
        "world": {
            "scale": truth.get("scale"),
            "seed": truth.get("seed"),
            "as_of": truth.get("as_of"),
            "db_path": str(db),
            "db_sha256": digest_before,
            "row_counts": truth.get("row_counts"),
        },
        "embedding_model": EmbeddingModel(cache_path=str(cache)).model,
        "code_version": CODE_VERSION,
        "partitions": {letter: partitions[letter] for letter in letters},
        "metrics": [asdict(m) for m in metrics],
        "summary": summary,
        "details": json.loads(json.dumps(details, default=_json_default, sort_keys=True)),
        "notes": NOTES,
        "runtime": {
            "generated_at": dt.datetime.now(JST).replace(microsecond=0).isoformat(),
            "seconds": None,
            "runs": runs,
            "loadavg": list(os.getloadavg()),
        },
    }
    say("[4/4] report")
    result["runtime"]["seconds"] = round(time.perf_counter() - started, 1)
    write_file(out / JSON_NAME, json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    write_file(out / MD_NAME, render_markdown(result))
    plot(result, out / PNG_NAME)
    say("")
    say(markdown_table(metrics))
    say("")
    say(
        f"{summary['pass']} pass, {summary['fail']} FAIL, {summary['info']} info, {summary['n/a']} n/a "
        f"({result['runtime']['seconds']:.0f} s); files: {out / MD_NAME}, {out / JSON_NAME}, {out / PNG_NAME}"
    )
    return result


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return round_figure(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=SCALES, default="small")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--db",
        default=None,
        help="a demo world with its .truth.json (built there if missing; "
        "default: data/eval/autonomath-<scale>-seed<seed>-<as-of>.db)",
    )
    parser.add_argument("--as-of", default=None, help=f"JST date the built world's logs end (default {DEFAULT_AS_OF})")
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder for loop_quality.md/.json/.png")
    parser.add_argument("--only", action="append", metavar="LOOP", help="score only this loop (repeatable)")
    parser.add_argument("--embedding-cache", default=None, help="embedding cache file (default: next to the world)")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="also exit 1 when a metric could not be judged "
        "(verdict n/a); a FAIL verdict or a failed loop run always exits 1",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evals/loop_quality.py", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_from_args(args)


def run_from_args(args: argparse.Namespace, say: Say = lambda line: print(line, flush=True)) -> int:
    from autonomath_pipelines.resources.db import DatabaseFileError

    try:
        result = run_eval(
            scale=args.scale,
            seed=args.seed,
            db_path=args.db,
            out_dir=args.out,
            as_of=dt.date.fromisoformat(args.as_of) if args.as_of else None,
            embedding_cache=args.embedding_cache,
            only=args.only,
            say=say,
        )
    except (ValueError, KeyError, FileNotFoundError, DatabaseFileError) as exc:
        print(f"autonomath-loops eval: {exc}", file=sys.stderr)
        return 2
    return exit_code(result, strict=getattr(args, "strict", False))


def exit_code(result: Mapping, *, strict: bool = False) -> int:
    """1 when a loop run failed or a verdict is FAIL (so CI can rely on it); with ``strict``, also when
    a metric was not computable (n/a): a world that cannot judge a loop has not shown it works."""
    failed_runs = [r for r in result["runtime"]["runs"].values() if r["status"] != "succeeded"]
    unjudged = strict and result["summary"].get("n/a", 0)
    return 1 if failed_runs or result["summary"]["fail"] or unjudged else 0


if __name__ == "__main__":
    sys.exit(main())
