"""The demo world: a deterministic synthetic AutonoMath database with planted truth.

Scales (``SCALES``): ``small`` (600 programs, 45 days × 2,000 queries, ~2 s), ``medium`` (5,000
programs, 90 days × 10,000 queries, ~13 s), ``production`` (20,000 programs, 120 days × 33,000
queries, exactly 335,605 aliases and 1,256 rounds, ~1 min, ~1.1 GB). 504 launch guard patterns at
every scale. Every table gets its own random stream (``numpy.random.default_rng([seed, stage])``).

``build_world(db_path, scale, seed, as_of)`` creates the database by executing ``schema.sql`` and
filling every source table (output tables stay empty). The same ``(scale, seed, as_of)`` always
gives the same bytes. Logs cover the ``days`` full JST days before ``as_of``: the window is
``[as_of - days, as_of)`` in Asia/Tokyo, i.e. it ends at ``as_of 00:00 JST`` (previous day 15:00Z).

The stages (``STAGES``, in build order) are functions over one ``common.World`` (the scale, seed,
window, open database and what earlier stages left): ``programs`` (prefectures, the catalogue and the
forms of its names), ``customers`` (api keys, subscribers), ``intents`` (search needs and their surface
forms), ``traffic`` (query_log, billing), ``service_events`` (feedback, guard, success events, rounds
and forecasts, aliases, errors, source signals); ``truth`` gathers the planted truth below.

What each loop should find is recorded next to the database in ``<db_path>.truth.json``
(``truth_path(db)``, ``load_truth(db)``). Keys:

``version``, ``scale``, ``seed``, ``as_of`` (JST date), ``window_start`` / ``window_end`` (UTC ISO),
``days``, ``zipf_exponent``, ``row_counts``
    What was built.
``intents``
    List of ``{id, kind, text, program_id, family, p, rank}``: the search needs behind query_log.
    ``kind``: ``program_name`` | ``program_short`` (flagship short name) | ``topic`` (prefecture +
    purpose) | ``category`` (purpose + place, vaguer) | ``hallucination``. ``p`` is the Zipf
    probability of the intent (exponent ``zipf_exponent``) in the global traffic; ``rank`` 1 = head.
    Loyal customers (below) and session refinements add traffic on top of it.
``paraphrase_groups``
    ``{intent id: [{text, kind, n}]}``: every surface form of the intent (``kind``: canonical,
    paraphrase, typo, width, en, romaji, zh, ko) and ``n``, its rows in query_log.
``hallucination_families``
    List of ``{id, label, guard_pattern, texts, intent_id, covered_by_guard, guard_patterns,
    decoy_program_ids, rows, feedback_ids}``: each a set of paraphrases of one non-existent program.
    Their queries return no result (``result_count = 0``, ``top1_program_id`` NULL) or a low-
    confidence (< 0.5) answer with several results; wrong-answer feedback quotes them.
    ``covered_by_guard``: a launch ``hallucination_guard`` row already covers the family (loop A
    should drop it); ``guard_patterns`` are those rows' patterns.
``planted_aliases``
    List of ``{program_id, surface, lang, kind, in_am_alias, intent_id, rows, rows_last_14d}``: the
    surface forms queries use with confidence < 0.5 that hit exactly this program (foreign and romaji
    forms: ``result_count`` 1, sometimes 2). ``in_am_alias = false`` ones are absent from ``am_alias``
    altogether (loop E should propose them), ``true`` ones are present for that program (loop E
    should skip them). No other query row has confidence < 0.5 with a single-program hit except
    sparse noise (wrong top-1 answers, confidence 0.3–0.8).
``gold_candidates``
    Loop J's rule evaluated on the truth: normalized query text (NFKC, case-folded, whitespace
    collapsed) + top-1 program seen with confidence >= 0.85 in >= 5 distinct sessions in the last 30
    days of the window: ``[{query_text, program_id, sessions}]``, most sessions first.
``loyal_customers``
    List of ``{customer_id, api_key, favourites, favourite_share, requests_last_30d}``: paid
    customers whose queries come from a fixed favourites list (``favourite_share`` ≈ 0.85 of their
    queries) — loop C's top-20 of one week predicts the next.
``forecast_bias_days`` / ``forecast_noise_sd_days`` / ``pooled_bias_mean`` / ``pooled_bias_sd``
    Planted forecast error: ``predicted_opens_at - opens_at = bias[program] + N(0, noise_sd)`` days,
    rounded to whole days; ``bias ~ N(pooled_bias_mean, pooled_bias_sd)``.
    ``forecast_observed`` = ``{program_id: {n, mean_error_days}}`` over resolved rounds.
``failure_modes``
    ``{mode: {exception_type, endpoints, chain, links, top_frames, first_version}}``.
``error_modes``
    ``{error_log id: mode}`` for every row; ``error_malformed`` ``{id: "truncated" | "headless"}``;
    ``error_formats`` ``{id: how the trace was logged}`` (``demo.tracebacks.LOG_FORMATS``).
    ``deploy_versions``: UTC start of each deploy version (line numbers change with each).
``feedback_labels``
    ``{customer_feedback id: {family, reason}}``; ``reason``: hallucination, ended, region, deadline,
    amount, eligibility, positive.
``success_groups``
    ``[{month, program_id, prefecture_code, consented, total}]`` per JST calendar month.
``channels``
    ``{utm_source or "(null)" / "(empty)": {signup_weight, paid_rate}}``: planted channel quality.
``changed_sources`` / ``gone_sources`` / ``noisy_sources``
    Liveness scan truth: ``{program_id: changed_at}`` pages changed after ``source_fetched_at``
    (scans after the change answer 200 with that Last-Modified), ``{program_id: gone_at}`` (404
    from then on), and programs whose server ignores conditional requests (200 but unchanged).
``last_day_top_texts``
    ``[[query_text, count]]``: the 200 most frequent raw query texts of the window's last JST day.
``built_by``
    ``{package_version, generator_digest}``: the code that built the world (``generator_digest()``:
    SHA-256 of the generator's sources and the schema), so benchmarks can tell a stale world.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autonomath_pipelines import CODE_VERSION
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.demo.common import SCALES, VOLUME_FIELDS, Progress, World, WorldScale, scaled, today_jst
from autonomath_pipelines.demo.customers import build_customers
from autonomath_pipelines.demo.intents import build_intents
from autonomath_pipelines.demo.programs import build_prefectures, build_programs
from autonomath_pipelines.demo.service_events import (
    build_aliases,
    build_errors,
    build_feedback,
    build_guard,
    build_rounds,
    build_source_signals,
    build_success_events,
)
from autonomath_pipelines.demo.traffic import build_billing, build_query_log
from autonomath_pipelines.demo.truth import hallucination_family_of, load_truth, truth_doc, truth_path

__all__ = [
    "SCALES",
    "SCHEMA_PATH",
    "SOURCE_TABLES",
    "STAGES",
    "VOLUME_FIELDS",
    "WorldScale",
    "WorldSummary",
    "build_world",
    "generator_digest",
    "generator_sources",
    "hallucination_family_of",
    "load_truth",
    "scaled",
    "today_jst",
    "truth_path",
]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "contract" / "schema.sql"

SOURCE_TABLES = (
    "prefectures",
    "programs",
    "programs_fts",
    "api_keys",
    "query_log",
    "customer_feedback",
    "hallucination_guard",
    "customer_success_events",
    "am_application_round",
    "forecast_predictions",
    "am_alias",
    "subscribers",
    "billing_events",
    "error_log",
    "source_change_signals",
)

#: The stages in build order: each reads what the earlier ones left in the ``World`` and draws from its
#: own stream ``default_rng([seed, n])`` (n in the comment); changing a number changes the world.
STAGES: tuple[Callable[[World], None], ...] = (
    build_prefectures,  # -
    build_programs,  # 1, and 13 for the published forms of the names
    build_customers,  # 2
    build_intents,  # 3
    build_query_log,  # 4
    build_billing,  # 5
    build_feedback,  # 6
    build_guard,  # 7
    build_success_events,  # 8
    build_rounds,  # 9
    build_aliases,  # 10
    build_errors,  # 11, and 1101 for the log formats
    build_source_signals,  # 12
)


@dataclass
class WorldSummary:
    db_path: Path
    scale: str
    seed: int
    as_of: dt.date
    row_counts: dict[str, int]
    seconds: float
    truth_path: Path | None = None


def generator_sources() -> list[Path]:
    """The files the world is made of: every ``demo/*.py`` (this module, ``common``, the stages,
    ``truth``, ``text``, ``tracebacks``, ``vocab``), any ``demo/*.json``, and the schema."""
    demo = Path(__file__).resolve().parent
    return sorted(demo.glob("*.py")) + sorted(demo.glob("*.json")) + [SCHEMA_PATH]


def generator_digest() -> str:
    """SHA-256 over ``generator_sources()``: a world built when this differed was built by other
    code, and its figures (costs, evals) are not today's."""
    digest = hashlib.sha256()
    for source in generator_sources():
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


def _build(path: Path, scale: WorldScale, seed: int, as_of: dt.date, progress: Progress) -> World:
    """Create the database at ``path`` and run every stage over it; the world's state, counts filled."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        conn.execute("PRAGMA temp_store=MEMORY")
        schema = SCHEMA_PATH.read_text(encoding="utf-8")
        conn.executescript(schema)
        # Bulk load without secondary indexes; re-applying the schema recreates them.
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL ORDER BY name"
        ).fetchall():
            conn.execute(f'DROP INDEX "{name}"')
        progress("schema", 1, 1)
        conn.execute("BEGIN")
        w = World(scale, seed, as_of, conn, progress)
        for stage in STAGES:
            stage(w)
        conn.execute("COMMIT")
        progress("indexes", 0, 1)
        conn.executescript(schema)
        progress("indexes", 1, 1)
        progress("analyze", 0, 1)
        conn.execute("ANALYZE")
        progress("analyze", 1, 1)
        for table in SOURCE_TABLES:
            w.counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return w
    finally:
        conn.close()


def build_world(
    db_path: str | os.PathLike,
    scale: str = "small",
    seed: int = 7,
    as_of: dt.date | None = None,
    progress: Progress | None = None,
) -> WorldSummary:
    """Build the demo AutonoMath database at ``db_path`` (replacing it) and its truth sidecar.

    The database is written to a temporary file next to the target and renamed into place at the end,
    so a crash never leaves a half-built database behind.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    t0 = time.perf_counter()
    as_of = as_of or today_jst()
    if isinstance(as_of, str):
        as_of = dt.date.fromisoformat(as_of)
    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    target = Path(db_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.building-{os.getpid()}")
    tmp_truth = target.with_name(f".{target.name}.truth-{os.getpid()}")
    for p in (tmp, tmp_truth):
        p.unlink(missing_ok=True)
    progress = progress or (lambda stage, done, total: None)
    try:
        world = _build(tmp, SCALES[scale], int(seed), as_of, progress)
        truth = truth_doc(world)
        truth["built_by"] = {"package_version": CODE_VERSION, "generator_digest": generator_digest()}
        tmp_truth.write_text(json.dumps(truth, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
        for suffix in ("-journal", "-wal", "-shm"):
            Path(str(target) + suffix).unlink(missing_ok=True)
        os.replace(tmp, target)
        os.replace(tmp_truth, truth_path(target))
    except BaseException:
        for p in (tmp, tmp_truth):
            p.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - t0
    progress("done", 1, 1)
    return WorldSummary(
        db_path=target,
        scale=scale,
        seed=int(seed),
        as_of=as_of,
        row_counts=dict(world.counts),
        seconds=round(seconds, 3),
        truth_path=truth_path(target),
    )
