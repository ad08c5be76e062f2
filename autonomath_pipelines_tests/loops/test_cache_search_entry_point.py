"""Loops H and C through the service's own search (``AUTONOMATH_SEARCH=package.module:function``), and
the gates that stop a search whose answers are not the service's."""

import json

import pytest

from autonomath_pipelines.lib.payload import search_payload
from autonomath_pipelines.lib.textnorm import normalize_query
from autonomath_pipelines.loops import loop_c_personalized_cache, loop_h_cache_warming
from autonomath_pipelines.resources import AutonomathDatabase
from autonomath_pipelines.resources.search import SearchEntryPointError, ServiceSearcher, load_entry_point
from autonomath_pipelines_tests.conftest import LAST_DAY, LAST_FULL_WEEK
from autonomath_pipelines_tests.loops.harness import check_outcomes, materialized, metadata, run_loop, sha256

HERE = "autonomath_pipelines_tests.loops.test_cache_search_entry_point"
#: What the fake service answers: normalized query → program ids (set by the tests).
SERVICE: dict[str, list[str]] = {}
CALLS: list[str] = []


def service_search(query: str) -> dict:
    """A stand-in for the service's search: answers from ``SERVICE`` (its own logged answers)."""
    CALLS.append(query)
    results = [
        {
            "program_id": pid,
            "name": f"program {pid}",
            "agency": "テスト庁",
            "level": "national",
            "prefecture_code": None,
            "score": 1.0,
        }
        for pid in SERVICE.get(normalize_query(query), [])
    ]
    return search_payload(normalize_query(query), results)


def empty_search(query: str) -> dict:
    return search_payload(normalize_query(query), [])


def not_a_payload(query: str) -> list:
    return []


def logged_answers(db_path) -> dict[str, list[str]]:
    """The service's most frequent top-1 per normalized query, from query_log."""
    frame = AutonomathDatabase(path=str(db_path)).read_frame(
        "SELECT query_text, top1_program_id FROM query_log WHERE result_count > 0 AND top1_program_id IS NOT NULL"
    )
    frame["query_text"] = frame["query_text"].map(normalize_query)
    modal = frame.groupby("query_text")["top1_program_id"].agg(lambda s: s.value_counts().sort_index().idxmax())
    return {text: [pid] for text, pid in modal.items()}


def test_the_services_own_search_fills_the_cache(small_world, tmp_path, monkeypatch):
    SERVICE.clear()
    SERVICE.update(logged_answers(small_world))
    CALLS.clear()
    monkeypatch.setenv("AUTONOMATH_SEARCH", f"{HERE}:service_search")
    result = run_loop(loop_h_cache_warming.LOOP, small_world, tmp_path, LAST_DAY, execute=True)
    assert result.success
    candidates = metadata(result, "cache_warming_candidates")
    assert candidates["search"] == f"entry point {HERE}:service_search"
    assert len(CALLS) == candidates["head_queries"] == 200
    rows = AutonomathDatabase(path=str(small_world)).read_frame("SELECT query_text, payload_json FROM query_cache")
    assert len(rows) == candidates["decision_cache"] > 0
    for row in rows.itertuples():
        assert json.loads(row.payload_json) == service_search(row.query_text)


def test_an_empty_answering_search_is_stopped_before_the_cache(small_world, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTONOMATH_SEARCH", f"{HERE}:empty_search")
    before = sha256(small_world)
    result = run_loop(loop_h_cache_warming.LOOP, small_world, tmp_path, LAST_DAY, execute=True)
    assert not result.success
    assert check_outcomes(result)["no_empty_payload_for_answered_query"] is False
    assert "query_cache_published" not in materialized(result)
    assert sha256(small_world) == before


def test_loop_c_is_gated_the_same_way(small_world, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTONOMATH_SEARCH", f"{HERE}:empty_search")
    before = sha256(small_world)
    result = run_loop(loop_c_personalized_cache.LOOP, small_world, tmp_path, LAST_FULL_WEEK, execute=True)
    assert not result.success
    assert check_outcomes(result)["no_empty_payload_for_answered_query"] is False
    assert sha256(small_world) == before


def test_a_wrong_top1_search_fails_the_agreement_floor(small_world, tmp_path, monkeypatch):
    SERVICE.clear()
    SERVICE.update({text: ["P999999"] for text in logged_answers(small_world)})
    monkeypatch.setenv("AUTONOMATH_SEARCH", f"{HERE}:service_search")
    result = run_loop(loop_h_cache_warming.LOOP, small_world, tmp_path, LAST_DAY, execute=True)
    assert not result.success
    outcomes = check_outcomes(result)
    assert outcomes["top1_agrees_with_service"] is False and outcomes["no_empty_payload_for_answered_query"] is True
    assert metadata(result, "cache_warming_candidates")["top1_agreement"] == 0.0


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_colon_here", "not of the form package.module:function"),
        ("autonomath_missing_module:f", "cannot import 'autonomath_missing_module'"),
        (f"{HERE}:nothing_here", "has no attribute 'nothing_here'"),
        (f"{HERE}:SERVICE", "is not callable"),
    ],
)
def test_an_unusable_entry_point_is_named(spec, message):
    with pytest.raises(SearchEntryPointError, match=message):
        load_entry_point(spec)


def test_an_entry_point_answering_something_else_is_named_with_the_query():
    searcher = ServiceSearcher(f"{HERE}:not_a_payload", not_a_payload)
    with pytest.raises(SearchEntryPointError, match="returned list for '補助金'"):
        searcher.payload("補助金")
    broken = ServiceSearcher("x:y", lambda q: {"query": q, "result_count": 3, "results": []})
    with pytest.raises(SearchEntryPointError, match="invalid payload: result_count 3 != 0 results"):
        broken.payload("補助金")
