"""Every loop's reads of the service's log tables keep a plan whose cost grows with the window (issue 19).

Each loop runs (dry run) on the small demo world with every read-only connection traced; each statement
it sent that reads a log table is then planned (``EXPLAIN QUERY PLAN``) on three copies of the world:
with the full ``ANALYZE`` statistics this project's SQLite writes (``sqlite_stat1`` + ``sqlite_stat4``),
with ``sqlite_stat1`` only (what ``ANALYZE`` leaves on the stock SQLite builds most services run), and
with none. A log-table scan inside a loop over other rows fails, whichever database chose it.
"""

from __future__ import annotations

import datetime as dt
import shutil

import pytest

from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.lib.query_plans import correlated_rescans
from autonomath_pipelines.loops import LOOP_DEFINITIONS
from autonomath_pipelines.loops.common import last_complete_partition_key
from autonomath_pipelines.loops.loop_a_hallucination_guard import QUERY_RULES, suspect_queries_sql
from autonomath_pipelines.resources.db import AutonomathDatabase
from autonomath_pipelines_tests.conftest import AS_OF
from autonomath_pipelines_tests.loops.harness import run_loop

#: Tables a loop reads by time window: the service's logs, which grow without bound.
LOG_TABLES = (
    "query_log",
    "customer_feedback",
    "error_log",
    "billing_events",
    "customer_success_events",
    "source_change_signals",
)
STATISTICS = ("analyze", "stat1_only", "none")
#: The world's logs end at AS_OF 00:00 JST; each loop's default partition as of then.
AS_OF_UTC = dt.datetime.combine(AS_OF, dt.time(0), tzinfo=dt.timezone(dt.timedelta(hours=9))).astimezone(
    dt.timezone.utc
)

#: Loop A's snapshot as it was before issue 19: on a world with sqlite_stat1 only, SQLite runs it as
#: `SCAN asked` × `SEARCH query_log` (the window re-searched per distinct text).
_GOOD = QUERY_RULES.good("query_log")
LOOP_A_SNAPSHOT_BEFORE = (
    "WITH suspect AS (SELECT id, ts, session_id, query_text, result_count, confidence FROM query_log "
    f"  WHERE ts >= :start AND ts < :end AND {_GOOD} "
    "  AND (result_count = 0 OR (confidence < :low AND result_count > :single))), "
    "asked AS (SELECT query_text, COUNT(*) AS text_requests FROM query_log "
    f"  WHERE ts >= :start AND ts < :end AND {_GOOD} AND query_text IN (SELECT query_text FROM suspect) "
    "  GROUP BY query_text) "
    "SELECT 'query_log' AS source, id, ts, session_id, query_text AS text, result_count, confidence, "
    "NULL AS comment, asked.text_requests FROM suspect JOIN asked USING (query_text) ORDER BY id"
)
LOOP_A_PARAMS = {"start": "2026-11-07T15:00:00Z", "end": "2026-11-14T15:00:00Z", "low": 0.5, "single": 1}


def _with_statistics(source, target, statistics: str):
    shutil.copyfile(source, target)
    conn = sqlite3.connect(str(target))
    if statistics in ("stat1_only", "none"):
        conn.execute("DROP TABLE IF EXISTS sqlite_stat4")
    if statistics == "none":
        conn.execute("DROP TABLE IF EXISTS sqlite_stat1")
    conn.commit()
    conn.close()
    return target


@pytest.fixture(scope="module")
def worlds(small_world_pristine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("plans")
    return {s: _with_statistics(small_world_pristine, folder / f"{s}.db", s) for s in STATISTICS}


@pytest.fixture(scope="module")
def loop_statements(small_world_pristine, tmp_path_factory, monkeypatch_module):
    """Per loop id, every distinct statement its dry run sent through a read-only connection."""
    sent: dict[str, list[str]] = {}
    current: list[str] = []
    connect = AutonomathDatabase._connect_read_only

    def traced(self, path):
        conn = connect(self, path)
        conn.set_trace_callback(current.append)
        return conn

    monkeypatch_module.setattr(AutonomathDatabase, "_connect_read_only", traced)
    folder = tmp_path_factory.mktemp("plan_runs")
    world = folder / "autonomath.db"
    shutil.copyfile(small_world_pristine, world)
    for loop in LOOP_DEFINITIONS:
        current.clear()
        key = last_complete_partition_key(loop.spec, AS_OF_UTC)
        run_loop(loop, world, folder / loop.spec.letter, key, embedding_cache=folder / "embeddings.sqlite")
        sent[loop.spec.loop_id] = list(
            dict.fromkeys(
                s
                for s in current
                if s.lstrip().upper().startswith(("SELECT", "WITH")) and any(t in s for t in LOG_TABLES)
            )
        )
    return sent


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _plan(db, sql, params=()):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    finally:
        conn.close()


def test_every_loop_sends_window_reads_that_the_check_sees(loop_statements):
    readers = {loop.spec.loop_id for loop in LOOP_DEFINITIONS if set(loop.spec.reads) & set(LOG_TABLES)}
    assert readers and all(loop_statements[loop_id] for loop_id in readers), {
        loop_id: len(statements) for loop_id, statements in loop_statements.items()
    }


@pytest.mark.parametrize("statistics", STATISTICS)
def test_no_loop_rescans_a_log_table_per_row_of_another(loop_statements, worlds, statistics):
    offenders = {}
    for loop_id, statements in loop_statements.items():
        for sql in statements:
            found = correlated_rescans(_plan(worlds[statistics], sql), LOG_TABLES)
            if found:
                offenders.setdefault(loop_id, []).append((sql[:160], [str(f) for f in found]))
    assert not offenders, offenders


def test_the_check_fails_loop_a_snapshot_as_it_was(worlds):
    found = correlated_rescans(_plan(worlds["stat1_only"], LOOP_A_SNAPSHOT_BEFORE, LOOP_A_PARAMS), LOG_TABLES)
    assert [f.table for f in found] == ["query_log"], found


@pytest.mark.parametrize("statistics", STATISTICS)
def test_loop_a_snapshot_returns_the_rows_it_returned_before(worlds, statistics):
    conn = sqlite3.connect(f"file:{worlds[statistics]}?mode=ro", uri=True)
    try:
        before = conn.execute(LOOP_A_SNAPSHOT_BEFORE, LOOP_A_PARAMS).fetchall()
        after = conn.execute(suspect_queries_sql(_GOOD), LOOP_A_PARAMS).fetchall()
    finally:
        conn.close()
    assert len(before) > 100 and after == before
    assert loop_spec("loop_a_hallucination_guard").reads  # the snapshot reads what the catalog says
