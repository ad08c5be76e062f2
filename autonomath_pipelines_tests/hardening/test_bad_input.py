"""Every loop over a polluted world (issue 8): bad input is skipped and counted, or fails naming it.

One polluted copy of the small demo world (``bad_world.pollute``: every source table, plus earlier
output rows and files the loops re-read) is run through the orchestrator (``run_loops``, execute
enabled, a private repo root), all ten loops, each on the partition whose window holds the planted
rows. Then:

* every loop succeeded, its snapshot counts the malformed rows it skipped (``bad_rows_*``) and names
  them (table, column, row ids) in its ``bad_rows`` metadata;
* nothing undecodable, over-long or unparseable reached an output: every text written decodes as
  UTF-8, payload / evidence / coefficient JSON parses, the gold YAML parses, the stubs compile;
* earlier output rows of other partitions (with malformed JSON and bytes) are untouched;
* with a malformed ``evals/gold.yaml`` loop J fails with a one-line error naming the file, and
  neither its candidate folder nor any output table changes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.contract.schema import contract, output_tables, source_tables
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.lib import gold as goldlib
from autonomath_pipelines.lib.case_pages import front_matter
from autonomath_pipelines.lib.jsonld import jsonld_problems
from autonomath_pipelines.lib.payload import payload_problems
from autonomath_pipelines.lib.textnorm import MAX_QUERY_CHARS
from autonomath_pipelines.resources import AutonomathDatabase
from autonomath_pipelines_tests.hardening import bad_world
from autonomath_pipelines_tests.hardening.bad_world import PARTITIONS
from autonomath_pipelines_tests.loops.harness import run_loops_at, table_digests

SHIPPED_GOLD = Path(__file__).parents[2] / "evals" / "gold.yaml"
LETTERS = tuple(PARTITIONS)
#: The output rows the loops write in this test (the planted earlier rows carry loop_id 'x').
JSON_COLUMNS = ("payload_json", "evidence_json", "coef_json", "jsonld")


def folder_dump(folder: Path) -> dict[str, str]:
    return (
        {
            str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        if folder.exists()
        else {}
    )


def rows_as_bytes(db: Path, sql: str, params=()) -> list[dict]:
    conn = sqlite3.connect(str(db))
    conn.text_factory = bytes
    try:
        cursor = conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        conn.close()


def earlier_rows(db: Path) -> dict[str, list[dict]]:
    """The planted output rows of other partitions (loop_id 'x'), as stored."""
    return {t: rows_as_bytes(db, f"SELECT * FROM {t} WHERE loop_id = 'x' ORDER BY rowid") for t in output_tables()}


@pytest.fixture(scope="module")
def world(small_world_pristine, tmp_path_factory):
    """The polluted world, its repo root and manifest, and every loop's result through the orchestrator."""
    root = tmp_path_factory.mktemp("bad_world")
    db = root / "autonomath.db"
    shutil.copyfile(small_world_pristine, db)
    repo = root / "repo"
    (repo / "evals").mkdir(parents=True)
    shutil.copyfile(SHIPPED_GOLD, repo / "evals" / "gold.yaml")
    cases = bad_world.pollute(db, repo)
    before = earlier_rows(db)
    old_stub = (repo / "tests" / "properties" / "_candidates" / "test_old_stub.py").read_bytes()
    instance = dg.DagsterInstance.ephemeral()
    results, started = {}, time.perf_counter()
    by_partition: dict[str, list[str]] = {}
    for letter, key in PARTITIONS.items():
        by_partition.setdefault(key, []).append(letter)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTONOMATH_REPO_ROOT", str(repo))
        for key, letters in by_partition.items():
            report = run_loops_at(
                only=letters,
                partition=key,
                execute=True,
                db_path=str(db),
                reports_dir=str(root / "reports"),
                storage_dir=str(root / "storage"),
                embedding_cache=str(root / "embeddings.sqlite"),
                instance=instance,
            )
            results.update({r.letter: r for r in report.results})
    return {
        "db": db,
        "repo": repo,
        "root": root,
        "cases": cases,
        "results": results,
        "instance": instance,
        "before": before,
        "old_stub": old_stub,
        "seconds": time.perf_counter() - started,
    }


def snapshot_markdown(world, asset: str) -> str:
    event = world["instance"].get_latest_materialization_event(dg.AssetKey(asset))
    return event.asset_materialization.metadata["bad_rows"].value


def test_the_corpus_pollutes_every_source_table_with_every_kind(world):
    cases = world["cases"]
    kinds = bad_world.cases_by_kind(cases)
    print(f"\n{len(cases)} bad-input cases by kind: {kinds}")
    assert len(cases) >= 250
    assert set(source_tables()) <= {c.table for c in cases}
    assert {
        "null",
        "empty_text",
        "huge_text",
        "control_chars",
        "invalid_utf8",
        "lone_surrogate",
        "blob_in_text",
        "emoji",
        "rtl",
        "fts5_syntax",
        "sql_injection",
        "code_injection",
        "ts_format",
        "duplicate_id",
        "dangling_fk",
        "negative_amount",
        "huge_amount",
        "wrong_type",
        "out_of_range",
        "malformed_json",
        "truncated_traceback",
        "bad_yaml",
    } <= set(kinds)


def test_every_loop_succeeds_and_counts_what_it_skipped(world):
    results = world["results"]
    print(f"\nten loops over the bad world in {world['seconds']:.1f} s")
    for letter in LETTERS:
        r = results[letter]
        spec = loop_spec(letter)
        metrics = r.asset_metrics
        snapshot = next(m for a, m in metrics.items() if a.endswith("_snapshot"))
        bad_kinds = {k: v for k, v in snapshot.items() if k.startswith("bad_rows_") and k != "bad_rows_skipped"}
        print(
            f"  {letter} {r.status}: scanned {r.scanned}, proposed {r.actions_proposed}, written "
            f"{r.actions_executed}, skipped {snapshot['bad_rows_skipped']} "
            f"({', '.join(f'{k[9:]} {int(v)}' for k, v in bad_kinds.items())})"
        )
        assert r.status == "succeeded", (letter, r.error)
        assert r.error is None and r.checks_failed == [], (letter, r.checks_failed)
        assert snapshot["bad_rows_skipped"] > 0, (letter, snapshot)
        assert snapshot["bad_rows_skipped"] == sum(
            snapshot[f"bad_rows_{k}"] for k in ("timestamp", "text", "value", "reference")
        )
        assert r.actions_executed == r.actions_proposed > 0 or spec.letter in "GJ", (letter, r)
    # Rows whose timestamps are not contract text are in no window: every loop reading a log counts them.
    for letter in "ABCEFGHJ":
        snapshot = next(m for a, m in results[letter].asset_metrics.items() if a.endswith("_snapshot"))
        assert snapshot["bad_rows_timestamp"] >= 7, letter


@pytest.mark.parametrize(
    "asset, names",
    [
        (
            "hallucination_guard_snapshot",
            [
                "query_log",
                "query_text",
                "text not valid UTF-8",
                "not text",
                "timestamp not ISO-8601 UTC",
                "not a number >= 0 and <= 1",
            ],
        ),
        (
            "testimonial_seo_snapshot",
            ["programs", "name", "PBAD_NAME_UTF8", "prefectures", "amount_jpy", "points to no programs.program_id"],
        ),
        ("personalized_cache_snapshot", ["api_keys", "customer_id", "query_log", "longer than 1000 characters"]),
        (
            "forecast_accuracy_snapshot",
            [
                "forecast_predictions",
                "FPBAD-HUGE",
                "FPBAD-MISMATCH",
                "am_application_round",
                "RBAD-NULL",
                "FPBAD-MODEL",
            ],
        ),
        ("alias_expansion_surfaces", ["am_alias", "surface", "top1_program_id"]),
        ("channel_roi_snapshot", ["billing_events", "amount_jpy", "subscribers", "(unreadable)"]),
        ("invariant_expansion_snapshot", ["error_log", "traceback", "customer_feedback", "program_id"]),
        ("cache_warming_snapshot", ["query_log", "ts", "query_text"]),
        (
            "doc_freshness_snapshot",
            ["programs", "source_fetched_at", "PBAD_TS_SLASH", "source_change_signals", "last_modified", "http_status"],
        ),
        ("gold_expansion_snapshot", ["query_log", "confidence"]),
    ],
)
def test_skipped_rows_are_named_by_table_column_and_row(world, asset, names):
    markdown = snapshot_markdown(world, asset)
    missing = [n for n in names if n not in markdown]
    assert not missing, (missing, markdown)
    # Planted row ids appear as examples (the first rows of each group).
    planted = {r for c in world["cases"] for r in c.rows}
    shown = {cell.strip() for line in markdown.splitlines() for cell in line.split("|")[-2].split(",")}
    assert shown & planted, markdown


def _decodes(value) -> bool:
    if not isinstance(value, bytes):
        return True
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return "\ufffd" not in text


def test_nothing_undecodable_or_unparseable_reaches_an_output(world):
    db = world["db"]
    written = 0
    for table in output_tables():
        columns = contract()[table].columns
        if "loop_id" not in columns:
            continue
        for row in rows_as_bytes(db, f"SELECT * FROM {table} WHERE loop_id != 'x'"):
            written += 1
            bad = [c for c, v in row.items() if not _decodes(v)]
            assert not bad, (table, bad, {c: row[c][:80] for c in bad})
            for column in JSON_COLUMNS:
                if column in row:
                    json.loads(row[column].decode("utf-8"))
            for column in ("pattern", "query_text", "surface"):
                if column in row:
                    assert 0 < len(row[column].decode("utf-8")) <= MAX_QUERY_CHARS, (table, column)
    assert written > 2000


def test_earlier_output_rows_of_other_partitions_are_untouched(world):
    assert earlier_rows(world["db"]) == world["before"]
    stub = world["repo"] / "tests" / "properties" / "_candidates" / "test_old_stub.py"
    assert stub.read_bytes() == world["old_stub"]  # not the loop's own text: an operator's, kept


def test_loop_outputs_hold_only_well_formed_values(world):
    db, repo = world["db"], world["repo"]
    conn = sqlite3.connect(str(db))
    try:
        q = lambda sql, *p: conn.execute(sql, p).fetchall()  # noqa: E731
        # A: guard patterns are normalized query text; the polluted asks that recur are themes like any other.
        patterns = [p for (p,) in q("SELECT pattern FROM hallucination_guard_candidates WHERE loop_id != 'x'")]
        assert patterns and all(p == p.strip() and "\x00" not in p for p in patterns)
        # B: pages for well-formed groups only; front matter and JSON-LD survive odd names.
        pages = {
            (p, f): (m, j)
            for p, f, m, j in q(
                "SELECT program_id, prefecture_code, markdown, jsonld "
                "FROM seo_testimonial_candidates WHERE loop_id != 'x'"
            )
        }
        for bad_group in [
            ("PBAD_NAME_UTF8", "13"),
            ("P000003", "99"),
            ("P000001", "13"),
            ("P000002", "13"),
            ("P000003", "13"),
            ("P_NOWHERE", "13"),
            ("P000004", "77"),
        ]:
            assert bad_group not in pages, bad_group
        for markdown, jsonld in pages.values():
            assert jsonld_problems(jsonld) == [] and front_matter(markdown)["title"]
        heading = next(
            line
            for line in pages[("PBAD_NAME_YAML", "13")][0].split("\n---\n", 1)[1].splitlines()
            if line.startswith("# ")
        )
        # One line, rendered as text, not a template (the page source Markdown-escapes its punctuation).
        assert "{{ 7*7 }}" in heading.replace("\\", "") and "\x00" not in heading
        # C and H: every payload valid; a program whose name does not decode is never served.
        for table in ("personalized_cache", "query_cache"):
            payloads = [p for (p,) in q(f"SELECT payload_json FROM {table} WHERE loop_id != 'x'")]
            assert payloads and all(payload_problems(p) == [] for p in payloads), table
            ids = {r["program_id"] for p in payloads for r in json.loads(p)["results"]}
            assert "PBAD_NAME_UTF8" not in ids and "PBAD_FTS" in ids, table
        customers = {c for (c,) in q("SELECT DISTINCT customer_id FROM personalized_cache WHERE loop_id != 'x'")}
        assert bad_world.BAD_PAID_CUSTOMER in customers and "" not in customers
        assert any(c.startswith("cus'; DROP TABLE") for c in customers)  # odd but readable: served as any id
        # D: finite coefficients, no calibration from the corrupt forecasts.
        for coef, evidence in q("SELECT coef_json, evidence_json FROM forecast_calibration WHERE loop_id != 'x'"):
            assert all(math.isfinite(v) for v in json.loads(coef).values())
        p10 = json.loads(
            q(
                "SELECT coef_json FROM forecast_calibration WHERE program_id = 'P000010' AND partition_key = ?",
                PARTITIONS["D"],
            )[0][0]
        )
        assert abs(p10["mean_error_days"]) < 365
        # E: surfaces are readable, of existing programs.
        assert not q(
            "SELECT 1 FROM alias_candidates WHERE loop_id != 'x' AND entity_id NOT IN (SELECT program_id FROM programs)"
        )
        # F: revenue reconciles (gate passed); unreadable channel names are labelled, not dropped.
        channels = dict(q("SELECT channel, revenue_28d_jpy FROM channel_roi WHERE partition_key = ?", PARTITIONS["F"]))
        assert channels.get("(unreadable)", 0) > 0 and all(len(c) <= 200 for c in channels)
        # I: one row per URL; programs without a readable fetch time are not guessed at.
        urls = [u for (u,) in q("SELECT source_url FROM source_refetch_queue WHERE partition_key = ?", PARTITIONS["I"])]
        assert len(urls) == len(set(urls)) == 500
        assert not q(
            "SELECT 1 FROM source_refetch_queue WHERE partition_key = ? AND program_id LIKE 'PBAD_TS_%'",
            PARTITIONS["I"],
        )
    finally:
        conn.close()
    # G: every stub compiles and carries no control character outside escapes.
    stubs = sorted((repo / "tests" / "properties" / "_candidates").glob("test_*.py"))
    generated = [p for p in stubs if p.name != "test_old_stub.py"]
    assert len(generated) == 20
    for path in generated:
        text = path.read_text(encoding="utf-8")
        compile(text, str(path), "exec")
        assert "\x00" not in text and "\ufffd" not in text
    assert any("wrong_answer_p1_import_os" in p.name for p in generated)
    # J: the proposals file parses under the gold schema; no polluted row became gold.
    [proposals] = (repo / "evals" / "_candidates").glob("gold_proposed_*.yaml")
    parsed = goldlib.parse_gold(proposals.read_text(encoding="utf-8"), str(proposals))
    assert parsed.items and all(0 < len(i.query) <= MAX_QUERY_CHARS and "\ufffd" not in i.query for i in parsed.items)
    assert yaml.safe_load(proposals.read_text(encoding="utf-8"))["status"] == "pending_review"


#: Partitions before the world's logs begin (D and I still see rounds and programs: their windows
#: are "everything resolved so far" and "state as of the end").
EMPTY_PARTITIONS = {
    "A": "2025-01-05",
    "B": "2025-01-01",
    "C": "2025-01-05",
    "D": "2025-01-01",
    "E": "2025-01-05",
    "F": "2025-01-05",
    "G": "2025-01-01",
    "H": "2025-01-02",
    "I": "2025-01-05",
    "J": "2025-01-01",
}


def test_empty_windows_of_the_bad_world_succeed_with_zero_proposals(world):
    """Malformed timestamps (epoch numbers, other formats) never land in an early, empty window."""
    by_partition: dict[str, list[str]] = {}
    for letter, key in EMPTY_PARTITIONS.items():
        by_partition.setdefault(key, []).append(letter)
    before = table_digests(world["db"], output_tables())
    results = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTONOMATH_REPO_ROOT", str(world["repo"]))
        for key, letters in by_partition.items():
            report = run_loops_at(
                only=letters,
                partition=key,
                execute=False,
                db_path=str(world["db"]),
                reports_dir=str(world["root"] / "reports"),
                storage_dir=str(world["root"] / "storage"),
                embedding_cache=str(world["root"] / "embeddings.sqlite"),
                instance=world["instance"],
            )
            results.update({r.letter: r for r in report.results})
    for letter, r in results.items():
        # Loops whose publish carries the window gate publish nothing from an empty window: a failed check.
        if letter in "ACEFGHJ":
            assert [c.split(":")[0] for c in r.checks_failed] == ["window_not_abnormally_small"], (letter, r.error)
        else:
            assert r.status == "succeeded", (letter, r.error)
        assert r.actions_executed == 0
        if letter not in "DI":
            assert r.actions_proposed == 0, (letter, r.actions_proposed)
    assert table_digests(world["db"], output_tables()) == before  # a dry run writes nothing


def test_sensors_read_past_malformed_timestamps(world):
    """One 'yesterday' in query_log.ts sorts after every ISO date: the month sensor must not stall on it."""
    from autonomath_pipelines.definitions import defs
    from autonomath_pipelines.loops import LOOP_DEFINITIONS
    from autonomath_pipelines.operations.sensors import build_month_complete_sensor, build_wrong_answer_burst_sensor

    now = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.timezone.utc)
    context = lambda cursor=None: dg.build_sensor_context(  # noqa: E731
        cursor=cursor, definitions=defs, resources={"autonomath_db": AutonomathDatabase(path=str(world["db"]))}
    )
    month = build_month_complete_sensor(LOOP_DEFINITIONS, clock=lambda: now).evaluate_tick(context())
    assert {r.partition_key for r in month.run_requests} == {"2026-10-01"}, month.skip_message
    loop_a = next(loop for loop in LOOP_DEFINITIONS if loop.spec.letter == "A")
    burst = build_wrong_answer_burst_sensor(loop_a, threshold=5, window_hours=24 * 30, clock=lambda: now)
    first_feedback = min(int(r) for c in world["cases"] if c.table == "customer_feedback" for r in c.rows)
    result = burst.evaluate_tick(context(json.dumps({"last_id": first_feedback - 1})))
    assert result.cursor and json.loads(result.cursor)["last_id"] > first_feedback


def test_malformed_gold_fails_naming_the_file_and_changes_nothing(world):
    db, repo = world["db"], world["repo"]
    gold_path = bad_world.write_bad_gold(repo)
    candidates = repo / "evals" / "_candidates"
    files_before, tables_before = folder_dump(candidates), table_digests(db, output_tables())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTONOMATH_REPO_ROOT", str(repo))
        report = run_loops_at(
            only=["J"],
            partition=PARTITIONS["J"],
            execute=True,
            db_path=str(db),
            reports_dir=str(world["root"] / "reports"),
            storage_dir=str(world["root"] / "storage"),
            embedding_cache=str(world["root"] / "embeddings.sqlite"),
            instance=world["instance"],
        )
    [result] = report.results
    print(f"\nloop J with a malformed gold file: {result.status}: {result.error}")
    assert result.status == "failed" and report.loops_failed == 1
    assert str(gold_path) in result.error and "GoldFormatError" in result.error and "not valid YAML" in result.error
    assert "\n" not in result.error and "Traceback" not in result.error and 'File "' not in result.error
    assert result.error.startswith("gold_expansion_candidates: ")
    assert folder_dump(candidates) == files_before
    assert table_digests(db, output_tables()) == tables_before
