"""Section G of the real-data eval (evals/real/tracebacks.py) on the committed CPython fixture."""

import json
import pathlib

import pytest

from evals.real import tracebacks as section

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "evals" / "real" / "fixtures"


def test_fixture_parses_and_groups_better_than_both_baselines():
    rows = section.evaluate(FIXTURES)
    assert {tuple(sorted(r)) for r in rows} == {("baseline", "corpus", "metric", "n", "section", "target", "value",
                                                 "verdict")}
    by_metric = {r["metric"]: r for r in rows if r["corpus"] == "cpython_small"}
    assert by_metric["parse_rate"]["value"] >= 0.99 and by_metric["parse_rate"]["n"] == 38
    for name in ("grouping_ari vs type only", "grouping_ari vs type + normalized message"):
        row = by_metric[name]
        assert row["value"] > row["baseline"] and row["verdict"] == "pass", row
    print({m: (round(r["value"], 3), r["baseline"] and round(r["baseline"], 3)) for m, r in by_metric.items()})


def test_missing_folder_is_skipped_and_bad_lines_are_named(tmp_path):
    assert section.evaluate(tmp_path)[0]["verdict"] == "info"
    corpus = tmp_path / "tracebacks" / "broken"
    corpus.mkdir(parents=True)
    (corpus / "traces.jsonl").write_text(json.dumps({"text": "x", "label": 1}) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"traces\.jsonl:2: not JSON"):
        section.evaluate(tmp_path)
