import pytest

from autonomath_pipelines.catalog import LOOP_SPECS
from autonomath_pipelines.contract.schema import SchemaError, contract, missing_schema, output_tables, source_tables
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.resources import AutonomathDatabase

DESIGN_SOURCES = {
    "programs",
    "programs_fts",
    "prefectures",
    "query_log",
    "customer_feedback",
    "hallucination_guard",
    "customer_success_events",
    "api_keys",
    "am_application_round",
    "forecast_predictions",
    "am_alias",
    "subscribers",
    "billing_events",
    "error_log",
    "source_change_signals",
}
DESIGN_OUTPUTS = {
    "hallucination_guard_candidates",
    "seo_testimonial_candidates",
    "personalized_cache",
    "forecast_calibration",
    "alias_candidates",
    "channel_roi",
    "query_cache",
    "source_refetch_queue",
}
PROVENANCE = {"loop_id", "run_id", "partition_key", "code_version"}


def test_contract_holds_every_design_table():
    assert set(source_tables()) == DESIGN_SOURCES
    assert set(output_tables()) == DESIGN_OUTPUTS


def test_query_log_has_the_services_columns():
    assert {
        "ts",
        "api_key",
        "session_id",
        "query_text",
        "top1_program_id",
        "confidence",
        "result_count",
        "latency_ms",
        "tier",
    } <= set(contract()["query_log"].columns)


@pytest.mark.parametrize("table", sorted(DESIGN_OUTPUTS))
def test_every_output_carries_provenance(table):
    assert PROVENANCE <= set(contract()[table].columns)


def test_every_table_a_loop_names_is_in_the_contract():
    for loop in LOOP_SPECS:
        for table in loop.reads + loop.writes:
            assert table in contract() or table.endswith("/"), (loop.loop_id, table)


def test_missing_table_and_column_are_named(tmp_path):
    path = tmp_path / "partial.db"
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE query_log (id INTEGER PRIMARY KEY, ts TEXT, query_text TEXT)")
    problems = missing_schema(conn, ["query_log", "programs"])
    conn.close()
    assert "missing table programs" in problems
    assert "table query_log is missing column top1_program_id" in problems
    with pytest.raises(
        SchemaError, match=r"for loop_h: table query_log is missing column api_key;.*; missing table programs$"
    ):
        AutonomathDatabase(path=str(path)).preflight(["query_log", "programs"], context="loop_h")


def test_preflight_passes_on_full_schema(programs_db):
    AutonomathDatabase(path=str(programs_db)).preflight(contract())
