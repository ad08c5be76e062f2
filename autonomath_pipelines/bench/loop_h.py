"""``autonomath-loops bench``: what loop H costs, and what its warm cache buys.

Phases (each announced with ``say``):

1. **World**: build the demo world at ``db_path`` (unless it exists and ``rebuild`` is off).
2. **Loop H cost**: ``repeats`` dry runs of ``loop_h_cache_warming`` through the orchestrator on the
   last complete partition that has logs, against the source world (read-only); then one
   ``execute=True`` run on a *copy* of the world (the publish step included; the copy is deleted at
   the end). The source file is never written.
3. **Latency**: the ``queries`` most requested normalized queries of the world's last days
   (``zipf_head`` over as many days as it takes to have that many distinct texts) are put into the
   copy's ``query_cache`` with the loop's own payload builder (bench setup, not the loop). Then, per
   query, interleaved in a seeded random order after a warm-up, both paths the API can take are
   timed with ``perf_counter_ns`` over read-only connections:
   *cold*: ``normalize_query`` + ``ProgramSearcher.payload`` (the built-in search) + ``dumps_payload``;
   *hit*: ``normalize_query`` + ``query_hash`` + the primary-key ``SELECT payload_json``.
   Measured ``repeats`` times; the median of each figure and its spread (min..max) are reported.
4. **Files**: ``<out_dir>/bench_loop_h.json`` (every figure, machine, world) and
   ``<out_dir>/bench_loop_h.png`` (latency CDF of both paths, loop H CPU seconds per run).

Exit code 0 when the benchmark ran (missed targets are reported, not failures), 1 when a loop H run
failed, 2 on bad input.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from autonomath_pipelines import CODE_VERSION
from autonomath_pipelines.catalog import TIMEZONE, loop_spec
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.contract.timestamps import iso_utc, utc_now
from autonomath_pipelines.lib.payload import dumps_payload
from autonomath_pipelines.lib.search import ProgramSearcher
from autonomath_pipelines.lib.textnorm import normalize_query, query_hash
from autonomath_pipelines.lib.zipf import zipf_head
from autonomath_pipelines.resources.db import AutonomathDatabase

Say = Callable[[str], None]
Progress = Callable[[str, int, int], None]

EXIT_OK, EXIT_LOOP_FAILED, EXIT_USAGE = 0, 1, 2
LOOP_ID = "loop_h_cache_warming"
SCALES = ("small", "medium", "production")
#: The issue's target for one loop H run, and the minimum cold/hit p95 ratio a warm cache must buy.
TARGET_CPU_SECONDS = 30.0
TARGET_P95_RATIO = 15.0
WARMUP_QUERIES = 200
JSON_NAME, PNG_NAME = "bench_loop_h.json", "bench_loop_h.png"
HIT_SQL = "SELECT payload_json FROM query_cache WHERE query_hash = ?"
JST = ZoneInfo(TIMEZONE)
PERCENTILES = {"p50_us": 50, "p95_us": 95, "p99_us": 99}


class BenchInputError(ValueError):
    """The benchmark cannot run as asked; the message says what to change."""


# ------------------------------------------------------------------------------------------ entry


def run_benchmark(
    db_path: str,
    scale: str = "production",
    seed: int = 7,
    queries: int = 2000,
    repeats: int = 3,
    out_dir: str = "reports/bench",
    rebuild: bool = False,
    say: Say = print,
    progress: Progress = lambda stage, done, total: None,
) -> int:
    """Run the whole benchmark and write its JSON and PNG; returns the exit code."""
    try:
        source, out, copy = _check_inputs(db_path, scale, queries, repeats, out_dir)
    except BenchInputError as exc:
        print(f"autonomath-loops bench: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE

    try:
        return _run(source, out, copy, scale, seed, queries, repeats, rebuild, say, progress)
    finally:
        # The working copy is as large as the world: never leave it behind, whatever happened.
        for stale in _sqlite_files(copy) + [copy.with_name(copy.name + ".partial")]:
            stale.unlink(missing_ok=True)


def _run(
    source: Path,
    out: Path,
    copy: Path,
    scale: str,
    seed: int,
    queries: int,
    repeats: int,
    rebuild: bool,
    say: Say,
    progress: Progress,
) -> int:
    started = time.perf_counter()
    load_before = _loadavg()
    say(
        f"loop H benchmark: {scale} world (seed {seed}) at {source}, {queries:,} head queries, "
        f"{repeats} repeat(s), output in {out}"
    )

    say("[1/5] world")
    world = _prepare_world(source, scale, seed, rebuild, out / JSON_NAME, say, progress)

    say("[2/5] loop H cost")
    partition = _partition_for(world, say)
    loop_h = _loop_h_cost(source, copy, out, partition, repeats, say)

    say(f"[3/5] head queries and query_cache (in the copy {copy.name})")
    head = _head_queries(copy, queries, say)
    setup = _populate_cache(copy, head, progress)
    empty = setup.pop("empty_by_query")
    say(
        f"    {len(head['texts']):,} payloads upserted into query_cache in {setup['seconds']:.1f} s "
        f"({setup['result_count_zero']:,} with no results)"
    )

    say(f"[4/5] latency: cold search vs cache hit, {repeats} repeat(s) of {len(head['texts']):,} queries")
    latency = _measure_latency(copy, head["texts"], repeats, seed, say, progress)
    latency["by_result"] = _by_result(latency["samples_ns"], empty)
    latency["empty_by_query"] = empty

    say("[5/5] figures")
    result = {
        "benchmark": "loop_h_cache_warming",
        "generated_at": dt.datetime.now(JST).replace(microsecond=0).isoformat(),
        "parameters": {
            "db_path": str(source),
            "scale": scale,
            "seed": seed,
            "queries": queries,
            "repeats": repeats,
            "out_dir": str(out),
            "rebuild": rebuild,
        },
        "machine": _machine_info(load_before),
        "world": world,
        "loop_h": loop_h,
        "head": {k: v for k, v in head.items() if k != "texts"} | {"setup": setup},
        "latency": latency,
        "targets": {
            "loop_h_cpu_seconds_max": TARGET_CPU_SECONDS,
            "loop_h_cpu_seconds_median": loop_h["median"]["cpu_seconds"],
            "loop_h_cpu_target_met": loop_h["target_met"],
            "cost_ceiling_cpu_seconds": loop_h["cost_ceiling_cpu_seconds"],
            "p95_ratio_min": TARGET_P95_RATIO,
            "p95_ratio_median": latency["median"]["ratios"]["p95"],
            "p95_ratio_target_met": latency["target_met"],
        },
        "files": {"json": str(out / JSON_NAME), "png": str(out / PNG_NAME)},
        "seconds_total": None,
    }
    result["seconds_total"] = round(time.perf_counter() - started, 1)
    _write_json(out / JSON_NAME, result)
    _plot(out / PNG_NAME, latency, loop_h, result)
    for line in summary_lines(result):
        say(line)
    return EXIT_OK if loop_h["all_succeeded"] else EXIT_LOOP_FAILED


def _check_inputs(db_path: str, scale: str, queries: int, repeats: int, out_dir: str) -> tuple[Path, Path, Path]:
    if not isinstance(queries, int) or queries < 1:
        raise BenchInputError(f"--queries must be >= 1, got {queries!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise BenchInputError(f"--repeats must be >= 1, got {repeats!r}")
    if scale not in SCALES:
        raise BenchInputError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    if not db_path:
        raise BenchInputError("--db must name the world's SQLite file")
    source = Path(db_path).expanduser().resolve()
    if source.exists() and not source.is_file():
        raise BenchInputError(f"--db {source} exists and is not a file")
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise BenchInputError(f"--out {out} exists and is not a folder")
    copy = out / f"{source.stem}.bench-copy{source.suffix or '.db'}"
    if copy == source:
        raise BenchInputError(f"--out {out} would put the working copy on the source world itself")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchInputError(f"cannot create --out {out}: {exc.strerror}") from None
    return source, out, copy


# ------------------------------------------------------------------------------------------ world


def _prepare_world(
    source: Path, scale: str, seed: int, rebuild: bool, previous_json: Path, say: Say, progress: Progress
) -> dict[str, Any]:
    world: dict[str, Any] = {"db_path": str(source), "scale": scale, "seed": seed}
    if source.is_file() and not rebuild:
        say(f"    reusing the existing world {source} (pass --rebuild to build it again)")
        world.update(built_this_run=False, build_seconds=None)
        truth = _truth_of(source)
        if truth:
            world.update(truth)
            if (truth.get("scale"), truth.get("seed")) != (scale, seed):
                say(
                    f"    note: that world is {truth.get('scale')} scale, seed {truth.get('seed')} "
                    f"(asked for {scale}, seed {seed}); pass --rebuild to replace it"
                )
        previous = _previous_build(previous_json, source)
        if previous:
            world.update(previous)
            say(f"    it was built in {previous['build_seconds']:.1f} s by an earlier bench run")
    else:
        from autonomath_pipelines.demo import build_world

        # build_world writes next to the target and renames into place: a failed rebuild keeps the old world.
        say(f"    building the {scale} world (seed {seed}) at {source} ...")
        wall = time.perf_counter()
        summary = build_world(str(source), scale=scale, seed=seed, progress=progress)
        seconds = float(getattr(summary, "seconds", None) or time.perf_counter() - wall)
        world.update(
            built_this_run=True,
            build_seconds=round(seconds, 1),
            build_wall_seconds=round(time.perf_counter() - wall, 1),
            as_of=str(getattr(summary, "as_of", "")) or None,
        )
        say(f"    built in {seconds:.1f} s")
    stat = source.stat()
    world.update(db_bytes=stat.st_size, db_mtime_ns=stat.st_mtime_ns)
    with _read_only(source) as conn:
        world["row_counts"] = _row_counts(conn)
        first, last = conn.execute("SELECT MIN(ts), MAX(ts) FROM query_log").fetchone()
    world["query_log_first_ts"], world["query_log_last_ts"] = first, last
    if last is None:
        raise RuntimeError(f"the world {source} has an empty query_log: nothing to benchmark")
    world["logs_last_day_jst"] = _jst_day(last).isoformat()
    say(
        f"    query_log: {world['row_counts'].get('query_log', 0):,} rows, {first} .. {last} "
        f"({world['db_bytes'] / 2**20:,.0f} MiB)"
    )
    return world


def _truth_of(source: Path) -> dict[str, Any] | None:
    """Scale, seed and as-of of a reused world, from its planted-truth sidecar (if it has one)."""
    try:
        from autonomath_pipelines.demo import load_truth

        truth = load_truth(source)
    except (ImportError, OSError, ValueError):
        return None
    found = {k: truth.get(k) for k in ("scale", "seed", "as_of") if truth.get(k) is not None}
    return found or None


def _previous_build(previous_json: Path, source: Path) -> dict[str, Any] | None:
    """Build time recorded by the bench run that built this very file (same path and mtime)."""
    try:
        previous = json.loads(previous_json.read_text(encoding="utf-8"))["world"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    same = previous.get("db_path") == str(source) and previous.get("db_mtime_ns") == source.stat().st_mtime_ns
    seconds = previous.get("build_seconds")
    if not same or seconds is None:
        return None
    return {"build_seconds": seconds, "build_seconds_from": "an earlier bench run", "as_of": previous.get("as_of")}


def _sqlite_files(path: Path) -> list[Path]:
    return [path] + [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[Any]:
    with AutonomathDatabase(path=str(path)).read_only() as conn:
        yield conn


def _row_counts(conn) -> dict[str, int]:
    names = [
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name NOT LIKE '%_fts_%' ORDER BY name"
        )
    ]
    return {name: int(conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]) for name in names}


def _jst_day(iso_utc: str) -> dt.date:
    moment = dt.datetime.fromisoformat(iso_utc.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(JST).date()


# ----------------------------------------------------------------------------------- loop H cost


def _partition_for(world: dict[str, Any], say: Say) -> str:
    """The last complete daily partition, or the world's last log day if its logs end earlier."""
    from autonomath_pipelines.loops.common import partitions_for

    last_complete = partitions_for(loop_spec(LOOP_ID)).get_last_partition_key()
    logs_last = world["logs_last_day_jst"]
    if last_complete is None or logs_last < last_complete:
        say(
            f"    the world's logs end on {logs_last} (JST), before the last complete partition "
            f"{last_complete}: using partition {logs_last}"
        )
        return logs_last
    return last_complete


def _loop_h_cost(source: Path, copy: Path, out: Path, partition: str, repeats: int, say: Say) -> dict[str, Any]:
    spec = loop_spec(LOOP_ID)
    runs = []
    for i in range(repeats):
        say(f"    dry run {i + 1}/{repeats} on partition {partition} ...")
        runs.append(_one_loop_h_run(source, out, partition, execute=False))
        _say_run(say, runs[-1])
    say(f"    copying the world to {copy} for the execute run ...")
    copy_seconds = _copy_database(source, copy)
    say(f"    copied in {copy_seconds:.1f} s; execute run on the copy ...")
    executed = _one_loop_h_run(copy, out, partition, execute=True)
    _say_run(say, executed)
    succeeded = [r for r in runs if r["status"] == "succeeded"]
    median = {k: round(statistics.median(r[k] for r in runs), 3) for k in ("wall_seconds", "cpu_seconds")}
    ceiling = spec.cost_ceiling_cpu_min * 60
    return {
        "loop_id": LOOP_ID,
        "partition_key": partition,
        "cost_ceiling_cpu_seconds": ceiling,
        "target_cpu_seconds": TARGET_CPU_SECONDS,
        "dry_runs": runs,
        "execute_run": executed,
        "median": median,
        "min": {k: min(r[k] for r in runs) for k in ("wall_seconds", "cpu_seconds")},
        "max": {k: max(r[k] for r in runs) for k in ("wall_seconds", "cpu_seconds")},
        "median_share_of_ceiling": round(median["cpu_seconds"] / ceiling, 5),
        "target_met": len(succeeded) == len(runs) and median["cpu_seconds"] <= TARGET_CPU_SECONDS,
        "all_succeeded": len(succeeded) == len(runs) and executed["status"] == "succeeded",
        "copy_seconds": round(copy_seconds, 2),
        "note": "wall/cpu_seconds: the Dagster run as the orchestrator measures it (process CPU time, "
        "all threads); call_*: the whole run_loops call incl. building Definitions and the report",
    }


def _one_loop_h_run(db: Path, out: Path, partition: str, execute: bool) -> dict[str, Any]:
    import dagster as dg

    from autonomath_pipelines.orchestrator import run_loops, run_settings

    wall, cpu = time.perf_counter(), time.process_time()
    # An ephemeral instance: benchmark runs stay out of the operator's run history (DAGSTER_HOME).
    report = run_loops(
        AutonomathDatabase(path=str(db)),
        run_settings([LOOP_ID], execute=execute, reports_dir=str(out / "reports")),
        only=[LOOP_ID],
        partition=partition,
        storage_dir=str(out / "storage"),
        instance=dg.DagsterInstance.ephemeral(),
    )
    call_wall, call_cpu = time.perf_counter() - wall, time.process_time() - cpu
    r = report.results[0]
    return {
        "status": r.status,
        "execute": execute,
        "partition_key": r.partition_key,
        "run_id": r.run_id,
        "scanned": r.scanned,
        "actions_proposed": r.actions_proposed,
        "actions_executed": r.actions_executed,
        "wall_seconds": r.wall_seconds,
        "cpu_seconds": r.cpu_seconds,
        "call_wall_seconds": round(call_wall, 3),
        "call_cpu_seconds": round(call_cpu, 3),
        "checks_failed": list(r.checks_failed),
        "error": r.error,
        "db": str(db),
    }


def _say_run(say: Say, run: dict[str, Any]) -> None:
    what = f"executed {run['actions_executed']}" if run["execute"] else f"proposed {run['actions_proposed']}"
    say(
        f"      {run['status']}: scanned {run['scanned']:,}, {what}; "
        f"{run['wall_seconds']:.2f} s wall, {run['cpu_seconds']:.2f} CPU s"
        + (f" — {run['error']}" if run["error"] else "")
        + (f" (checks failed: {'; '.join(run['checks_failed'])})" if run["checks_failed"] else "")
    )


def _copy_database(source: Path, copy: Path) -> float:
    """A consistent copy through SQLite's backup API (WAL content included); the source is opened read-only."""
    started = time.perf_counter()
    for stale in _sqlite_files(copy):
        stale.unlink(missing_ok=True)
    partial = copy.with_name(copy.name + ".partial")
    partial.unlink(missing_ok=True)
    target = sqlite3.connect(str(partial))
    try:
        with _read_only(source) as conn:
            conn.backup(target)
        target.execute("PRAGMA journal_mode = DELETE")
    finally:
        target.close()
    os.replace(partial, copy)
    return time.perf_counter() - started


# --------------------------------------------------------------------------------- head queries


def _head_queries(db: Path, k: int, say: Say) -> dict[str, Any]:
    """The ``k`` most requested normalized queries of the world's last days.

    Walks back one JST day at a time until the window holds ``k`` distinct normalized texts (or the
    log is exhausted), then takes ``zipf_head(..., k)`` of the window. Each query is requested in the
    raw form users typed most often (so both timed paths pay for real normalization).
    """
    with _read_only(db) as conn:
        first_ts, last_ts = conn.execute("SELECT MIN(ts), MAX(ts) FROM query_log").fetchone()
        first_day, day = _jst_day(first_ts), _jst_day(last_ts)
        end = day + dt.timedelta(days=1)
        raw_counts: Counter[str] = Counter()
        normalized_of: dict[str, str] = {}
        distinct: set[str] = set()
        days = 0
        while day >= first_day and len(distinct) < k:
            start_iso, end_iso = _day_bounds_utc(day)
            for text, count in conn.execute(
                "SELECT query_text, COUNT(*) FROM query_log WHERE ts >= ? AND ts < ? GROUP BY query_text",
                (start_iso, end_iso),
            ):
                raw_counts[text] += count
                if text not in normalized_of:
                    normalized_of[text] = normalize_query(text)
                    if normalized_of[text]:
                        distinct.add(normalized_of[text])
            days += 1
            day -= dt.timedelta(days=1)
    window_start = end - dt.timedelta(days=days)
    raw = pd.Series(list(raw_counts.keys()), dtype=object)
    series = raw.repeat(list(raw_counts.values())).reset_index(drop=True)
    head = zipf_head(series, k=k)
    # Most frequent raw surface form of each head text (ties: the lexically first, deterministic).
    best_raw: dict[str, tuple[int, str]] = {}
    for text, count in raw_counts.items():
        norm = normalized_of[text]
        current = best_raw.get(norm)
        if current is None or (-count, text) < (-current[0], current[1]):
            best_raw[norm] = (count, text)
    texts = [best_raw[t][1] for t in head.head["query_text"]]
    if len(texts) < k:
        say(
            f"    only {len(texts):,} distinct normalized queries in the whole log (asked for {k:,}): timing all of "
            "them"
        )
    say(
        f"    {len(texts):,} head queries from {days} day(s) {window_start} .. {end - dt.timedelta(days=1)} (JST): "
        f"{head.requests:,} requests, {head.unique_queries:,} distinct, head covers {head.coverage:.1%}, "
        f"Zipf s = {head.exponent:.2f}"
    )
    return {
        "texts": texts,
        "normalized": list(head.head["query_text"]),
        "requested": k,
        "count": len(texts),
        "window_days": days,
        "window_start_jst": window_start.isoformat(),
        "window_end_jst": end.isoformat(),
        "requests_in_window": head.requests,
        "distinct_in_window": head.unique_queries,
        "head_coverage": round(head.coverage, 5),
        "zipf_exponent": None if np.isnan(head.exponent) else round(head.exponent, 4),
        "raw_differs_from_normalized": sum(r != n for r, n in zip(texts, head.head["query_text"])),
    }


def _day_bounds_utc(day: dt.date) -> tuple[str, str]:
    start = dt.datetime.combine(day, dt.time(), tzinfo=JST)
    return iso_utc(start), iso_utc(start + dt.timedelta(days=1))


def _populate_cache(db: Path, head: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Bench setup: every head query into ``query_cache`` with the payload builder loop H uses."""
    started = time.perf_counter()
    now = utc_now()
    computed_at, ttl_until = iso_utc(now), iso_utc(now + dt.timedelta(hours=24))
    normalized = head["normalized"]
    rows, empty = [], []
    with _read_only(db) as conn, ProgramSearcher.over(conn) as searcher:
        for i, text in enumerate(normalized):
            payload = searcher.payload(text)
            empty.append(payload["result_count"] == 0)
            rows.append(
                (
                    query_hash(text),
                    text,
                    dumps_payload(payload),
                    computed_at,
                    ttl_until,
                    json.dumps({"bench": True, "rank": i + 1}),
                    "bench",
                    "bench-setup",
                    "bench",
                    CODE_VERSION,
                )
            )
            if (i + 1) % 100 == 0 or i + 1 == len(normalized):
                progress("query_cache setup", i + 1, len(normalized))
    columns = (
        "query_hash, query_text, payload_json, computed_at, ttl_until, evidence_json, "
        "loop_id, run_id, partition_key, code_version"
    )
    updates = ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in columns.split(",")[1:])
    with AutonomathDatabase(path=str(db)).write_transaction(output_tables=["query_cache"]) as conn:
        conn.executemany(
            f"INSERT INTO query_cache ({columns}) VALUES ({', '.join('?' * 10)}) "
            f"ON CONFLICT (query_hash) DO UPDATE SET {updates}",
            rows,
        )
        cache_rows = conn.execute("SELECT COUNT(*) FROM query_cache").fetchone()[0]
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "rows_upserted": len(rows),
        "query_cache_rows": int(cache_rows),
        "result_count_zero": int(sum(empty)),
        "empty_by_query": empty,
    }


def _by_result(samples_ns: dict[str, list[list[int]]], empty: list[bool]) -> dict[str, Any]:
    """Latency of head queries with and without results, pooled over repeats: an empty FTS5 result is
    cheaper to compute, so a head full of empty payloads makes the cold path look faster."""
    mask = np.asarray(empty, dtype=bool)
    out: dict[str, Any] = {}
    for name, select in (("with_results", ~mask), ("no_results", mask)):
        if not select.any():
            out[name] = {"queries": 0}
            continue
        cold = np.concatenate([np.asarray(s)[select] for s in samples_ns["cold"]])
        hit = np.concatenate([np.asarray(s)[select] for s in samples_ns["hit"]])
        stats = _repeat_stats(cold, hit)
        out[name] = {"queries": int(select.sum()), **stats}
    return out


# -------------------------------------------------------------------------------------- latency


def _measure_latency(
    db: Path, texts: list[str], repeats: int, seed: int, say: Say, progress: Progress
) -> dict[str, Any]:
    n = len(texts)
    cold_runs: list[np.ndarray] = []
    hit_runs: list[np.ndarray] = []
    problems = {"cache_misses": 0, "payload_mismatches": 0}
    with _read_only(db) as cold_conn, _read_only(db) as hit_conn, ProgramSearcher.over(cold_conn) as searcher:
        perf = time.perf_counter_ns

        def cold(text: str) -> tuple[int, str]:
            t0 = perf()
            body = dumps_payload(searcher.payload(normalize_query(text)))
            return perf() - t0, body

        def hit(text: str) -> tuple[int, str | None]:
            t0 = perf()
            row = hit_conn.execute(HIT_SQL, (query_hash(normalize_query(text)),)).fetchone()
            elapsed = perf() - t0
            return elapsed, (row[0] if row else None)

        warmup_order = list(range(n))
        random.Random(seed).shuffle(warmup_order)
        for idx in warmup_order[: min(n, WARMUP_QUERIES)]:
            cold(texts[idx])
            hit(texts[idx])
        for rep in range(repeats):
            rng = random.Random(seed * 1_000_003 + rep + 1)
            order = list(range(n))
            rng.shuffle(order)
            cold_ns = np.zeros(n, dtype=np.int64)
            hit_ns = np.zeros(n, dtype=np.int64)
            gc.collect()
            gc.disable()
            try:
                for done, idx in enumerate(order, start=1):
                    text = texts[idx]
                    # Which path goes first alternates at random: neither always gets the warmer caches.
                    if rng.random() < 0.5:
                        cold_ns[idx], cold_body = cold(text)
                        hit_ns[idx], hit_body = hit(text)
                    else:
                        hit_ns[idx], hit_body = hit(text)
                        cold_ns[idx], cold_body = cold(text)
                    if hit_body is None:
                        problems["cache_misses"] += 1
                    elif hit_body != cold_body:
                        problems["payload_mismatches"] += 1
                    if done % 250 == 0 or done == n:
                        progress(f"latency repeat {rep + 1}/{repeats}", done, n)
            finally:
                gc.enable()
            cold_runs.append(cold_ns)
            hit_runs.append(hit_ns)
            stats = _repeat_stats(cold_ns, hit_ns)
            say(
                f"    repeat {rep + 1}/{repeats}: cold p50 {stats['cold']['p50_us']:,.0f} µs p95 "
                f"{stats['cold']['p95_us']:,.0f} µs | hit p50 {stats['hit']['p50_us']:,.1f} µs p95 "
                f"{stats['hit']['p95_us']:,.1f} µs | ratio p50 {stats['ratios']['p50']:,.1f}× "
                f"p95 {stats['ratios']['p95']:,.1f}×"
            )
    per_repeat = [_repeat_stats(c, h) for c, h in zip(cold_runs, hit_runs)]
    median, spread = _across_repeats(per_repeat)
    return {
        "queries": n,
        "repeats": repeats,
        "warmup_queries": min(n, WARMUP_QUERIES),
        "seed": seed,
        "unit": "microseconds",
        "cold_path": "normalize_query + ProgramSearcher.payload (built-in search: aliases, folded shadow index "
        "in memory, partial matches ranked, top 10) + dumps_payload",
        "hit_path": "normalize_query + query_hash + SELECT payload_json FROM query_cache WHERE query_hash = ? "
        "(primary key), read-only connection",
        "per_repeat": per_repeat,
        "median": median,
        "spread": spread,
        "target_p95_ratio": TARGET_P95_RATIO,
        "target_met": median["ratios"]["p95"] >= TARGET_P95_RATIO,
        # Checked on every timed request: a hit must return the cold path's payload byte for byte.
        "cache_misses": problems["cache_misses"],
        "payload_mismatches": problems["payload_mismatches"],
        # Raw samples for the CDF (and for anyone who wants other statistics): ns, per repeat, in query order.
        "samples_ns": {"cold": [a.tolist() for a in cold_runs], "hit": [a.tolist() for a in hit_runs]},
    }


def latency_stats(samples_ns: np.ndarray) -> dict[str, float]:
    """p50/p95/p99/mean/min/max of nanosecond samples, in microseconds."""
    us = np.asarray(samples_ns, dtype=float) / 1_000.0
    stats = {name: float(np.percentile(us, q)) for name, q in PERCENTILES.items()}
    stats.update(mean_us=float(us.mean()), min_us=float(us.min()), max_us=float(us.max()))
    return {k: round(v, 3) for k, v in stats.items()} | {"n": int(us.size)}


def _repeat_stats(cold_ns: np.ndarray, hit_ns: np.ndarray) -> dict[str, Any]:
    cold, hit = latency_stats(cold_ns), latency_stats(hit_ns)
    ratios = {
        "p50": cold["p50_us"] / hit["p50_us"],
        "p95": cold["p95_us"] / hit["p95_us"],
        "p99": cold["p99_us"] / hit["p99_us"],
        "mean": cold["mean_us"] / hit["mean_us"],
    }
    return {"cold": cold, "hit": hit, "ratios": {k: round(v, 2) for k, v in ratios.items()}}


def _across_repeats(per_repeat: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Median of each figure over the repeats, and its spread (min, max, (max-min)/median)."""
    median: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    for part in ("cold", "hit", "ratios"):
        median[part], spread[part] = {}, {}
        for key in per_repeat[0][part]:
            if key == "n":
                continue
            values = [r[part][key] for r in per_repeat]
            mid = statistics.median(values)
            median[part][key] = round(mid, 3)
            spread[part][key] = {
                "min": round(min(values), 3),
                "max": round(max(values), 3),
                "rel_range": round((max(values) - min(values)) / mid, 4) if mid else None,
            }
    return median, spread


# ----------------------------------------------------------------------------------- reporting


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def _machine_info(load_before: list[float] | None) -> dict[str, Any]:
    import dagster

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "sqlite_module": sqlite3.__name__,
        "dagster": dagster.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "code_version": CODE_VERSION,
        "loadavg_before": load_before,
        "loadavg_after": _loadavg(),
    }


def _write_json(path: Path, result: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _fmt_us(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:,.2f} ms"
    return f"{value:,.1f} µs" if value < 100 else f"{value:,.0f} µs"


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The compact human-readable summary the command prints last."""
    m, w, h, lat, head = result["machine"], result["world"], result["loop_h"], result["latency"], result["head"]
    lines = [
        "",
        f"Loop H benchmark — {w['scale']} world, seed {w['seed']}; {m['cpus_usable']} CPUs, "
        f"Python {m['python']}, SQLite {m['sqlite']}",
    ]
    if w.get("build_seconds") is not None:
        how = "built in" if w["built_this_run"] else "reused (built earlier in"
        lines.append(
            f"  world     {how} {w['build_seconds']:,.1f} s{'' if w['built_this_run'] else ')'}; "
            f"query_log {w['row_counts'].get('query_log', 0):,} rows, logs to {w['logs_last_day_jst']} (JST)"
        )
    else:
        lines.append(
            f"  world     reused; query_log {w['row_counts'].get('query_log', 0):,} rows, "
            f"logs to {w['logs_last_day_jst']} (JST)"
        )
    runs = ", ".join(f"{r['wall_seconds']:.2f}/{r['cpu_seconds']:.2f}" for r in h["dry_runs"])
    ex = h["execute_run"]
    lines += [
        f"  loop H    partition {h['partition_key']}: median {h['median']['wall_seconds']:.2f} s wall, "
        f"{h['median']['cpu_seconds']:.2f} CPU s per run (wall/CPU s per run: {runs})",
        f"            target ≤ {TARGET_CPU_SECONDS:.0f} CPU s: {'met' if h['target_met'] else 'MISSED'}; "
        f"{h['median_share_of_ceiling']:.1%} of the {h['cost_ceiling_cpu_seconds']:.0f} s catalog ceiling",
        f"            execute run on the copy: {ex['status']}, {ex['actions_executed']} rows written, "
        f"{ex['wall_seconds']:.2f} s wall, {ex['cpu_seconds']:.2f} CPU s",
        f"  latency   {lat['queries']:,} head queries ({head['window_days']} day(s), head covers "
        f"{head['head_coverage']:.1%} of {head['requests_in_window']:,} requests) × {lat['repeats']} repeat(s); "
        "median [min..max] over repeats",
        f"            {'':<10} {'p50':>10} {'p95':>10} {'p99':>10} {'mean':>10}",
    ]
    for part, label in (("cold", "cold search"), ("hit", "cache hit")):
        fig = lat["median"][part]
        lines.append(
            f"            {label:<10} "
            + " ".join(f"{_fmt_us(fig[k]):>10}" for k in ("p50_us", "p95_us", "p99_us", "mean_us"))
        )
    for name, label in (("with_results", "with results"), ("no_results", "no results")):
        part = lat.get("by_result", {}).get(name, {})
        if part.get("queries"):
            lines.append(
                f"            {label:<13} {part['queries']:>5,} queries: cold p50 {_fmt_us(part['cold']['p50_us'])}, "
                f"p95 {_fmt_us(part['cold']['p95_us'])}; ratio p95 {part['ratios']['p95']:,.1f}× (pooled)"
            )
    r, s = lat["median"]["ratios"], lat["spread"]["ratios"]
    lines.append(
        f"            cold/hit   p50 {r['p50']:,.1f}× [{s['p50']['min']:,.1f}..{s['p50']['max']:,.1f}], "
        f"p95 {r['p95']:,.1f}× [{s['p95']['min']:,.1f}..{s['p95']['max']:,.1f}] "
        f"(target p95 ≥ {TARGET_P95_RATIO:.0f}×: {'met' if lat['target_met'] else 'MISSED'})"
    )
    if lat["cache_misses"] or lat["payload_mismatches"]:
        lines.append(
            f"  WARNING   {lat['cache_misses']} cache misses, {lat['payload_mismatches']} hit payloads "
            "differing from the cold payload"
        )
    lines.append(
        f"  files     {result['files']['json']}  {result['files']['png']}  ({result['seconds_total']:,.0f} s in all)"
    )
    return lines


def _plot(path: Path, latency: dict[str, Any], loop_h: dict[str, Any], result: dict[str, Any]) -> None:
    from autonomath_pipelines.lib.plots import pyplot

    plt = pyplot()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    colors = {"cold": "#d1495b", "hit": "#00798c"}
    fig, (ax_cdf, ax_bar) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1.7, 1]})

    for part, label in (("cold", "cold search (built-in)"), ("hit", "query_cache hit")):
        samples = np.sort(np.concatenate([np.asarray(s, dtype=float) for s in latency["samples_ns"][part]])) / 1_000.0
        y = np.arange(1, samples.size + 1) / samples.size
        med = latency["median"][part]
        ax_cdf.step(
            samples,
            y,
            where="post",
            color=colors[part],
            lw=1.8,
            label=f"{label}: p50 {_fmt_us(med['p50_us'])}, p95 {_fmt_us(med['p95_us'])}",
        )
        for key, style in (("p50_us", ":"), ("p95_us", "--")):
            ax_cdf.axvline(med[key], color=colors[part], ls=style, lw=1, alpha=0.7)
    with_results = latency.get("by_result", {}).get("with_results", {})
    no_results = latency.get("by_result", {}).get("no_results", {})
    if with_results.get("queries") and no_results.get("queries"):
        mask = ~np.asarray(latency.get("empty_by_query", []), dtype=bool)
        if mask.size == latency["queries"]:
            samples = (
                np.sort(np.concatenate([np.asarray(s, dtype=float)[mask] for s in latency["samples_ns"]["cold"]]))
                / 1_000.0
            )
            ax_cdf.plot(
                samples,
                np.arange(1, samples.size + 1) / samples.size,
                color=colors["cold"],
                lw=1,
                ls="-.",
                alpha=0.6,
                label=f"cold, the {with_results['queries']:,} queries with results: "
                f"p95 {_fmt_us(with_results['cold']['p95_us'])}",
            )
    ax_cdf.axhline(0.95, color="grey", lw=0.6, ls="--")
    ax_cdf.set_xscale("log")
    ax_cdf.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax_cdf.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax_cdf.xaxis.set_minor_formatter(NullFormatter())
    ax_cdf.text(ax_cdf.get_xlim()[0], 0.955, " p95", color="grey", fontsize=8, va="bottom")
    ax_cdf.text(ax_cdf.get_xlim()[0], 0.505, " p50", color="grey", fontsize=8, va="bottom")
    ax_cdf.axhline(0.5, color="grey", lw=0.6, ls=":")
    ax_cdf.set_ylim(0, 1.005)
    ax_cdf.set_xlabel("latency per request (µs, log scale)")
    ax_cdf.set_ylabel("fraction of requests")
    ratios = latency["median"]["ratios"]
    verdict = "met" if latency["target_met"] else "missed"
    ax_cdf.set_title(
        f"Cache hit vs cold search — {latency['queries']:,} head queries × {latency['repeats']} repeat(s)\n"
        f"cold/hit: p50 {ratios['p50']:,.1f}×, p95 {ratios['p95']:,.1f}× "
        f"(target ≥ {TARGET_P95_RATIO:.0f}×: {verdict})",
        fontsize=10,
    )
    ax_cdf.grid(True, which="both", alpha=0.25)
    ax_cdf.legend(loc="best", fontsize=9, framealpha=0.9)

    runs = loop_h["dry_runs"] + [loop_h["execute_run"]]
    labels = [f"dry {i + 1}" for i in range(len(loop_h["dry_runs"]))] + ["execute\n(copy)"]
    x = np.arange(len(runs))
    cpu = [r["cpu_seconds"] for r in runs]
    wall = [r["wall_seconds"] for r in runs]
    bar_colors = ["#30638e" if r["status"] == "succeeded" else "#999999" for r in runs]
    ax_bar.bar(x - 0.18, cpu, width=0.36, color=bar_colors, label="CPU s")
    ax_bar.bar(x + 0.18, wall, width=0.36, color="#edae49", alpha=0.8, label="wall s")
    for xi, value in zip(x, cpu):
        ax_bar.text(xi - 0.18, value, f"{value:.1f}", ha="center", va="bottom", fontsize=8)
    ax_bar.axhline(TARGET_CPU_SECONDS, color="#d1495b", ls="--", lw=1.2, label=f"target {TARGET_CPU_SECONDS:.0f} CPU s")
    top = max(max(cpu + wall), TARGET_CPU_SECONDS) * 1.18
    ax_bar.set_ylim(0, top)
    ax_bar.set_xticks(x, labels, fontsize=9)
    ax_bar.set_ylabel("seconds per run")
    ax_bar.set_title(
        f"Loop H per run, partition {loop_h['partition_key']}\nmedian {loop_h['median']['cpu_seconds']:.1f} CPU s "
        f"(catalog ceiling {loop_h['cost_ceiling_cpu_seconds']:.0f} s, off the chart)",
        fontsize=10,
    )
    ax_bar.legend(loc="upper right", fontsize=8)
    ax_bar.grid(True, axis="y", alpha=0.25)

    m, w = result["machine"], result["world"]
    fig.suptitle(
        f"autonomath-loops bench — {w['scale']} world (seed {w['seed']}), query_log "
        f"{w['row_counts'].get('query_log', 0):,} rows; {m['cpus_usable']} CPUs, Python {m['python']}, "
        f"SQLite {m['sqlite']}",
        fontsize=10,
    )
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
