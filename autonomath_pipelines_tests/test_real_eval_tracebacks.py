"""Section G of the real-data eval (evals/real/tracebacks.py) on the committed CPython fixture."""

import json
import pathlib

import pytest

from evals.real import tracebacks as section

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "evals" / "real" / "fixtures"


def test_fixture_parses_and_groups_better_than_both_baselines():
    rows = section.evaluate(FIXTURES)
    assert {tuple(sorted(r)) for r in rows} == {
        ("baseline", "corpus", "metric", "n", "section", "target", "value", "verdict")
    }
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


def test_the_command_prints_one_table_writes_the_report_and_exits_on_verdicts(tmp_path, capsys):
    from evals.real import run

    fixtures = pathlib.Path(section.__file__).parent / "fixtures"
    # The A/E fixtures are samples too small for the purity target (a FAIL verdict, exit 1): not here.
    assert run.main(["--data", str(fixtures), "--out", str(tmp_path), "--only", "G", "--only", "search"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].startswith("| section | corpus | metric |") and "cpython_small" in table
    assert "mixed_forms" in table and "A/E" not in table
    report = json.loads((tmp_path / "real_eval.json").read_text(encoding="utf-8"))
    assert {row["metric"] for row in report["rows"]} >= {"parse_rate"}
    assert run.main(["--data", str(tmp_path / "absent")]) == 2


def test_a_fail_verdict_makes_the_command_exit_1(tmp_path, monkeypatch):
    import sys
    import types

    from evals.real import run

    failing = types.ModuleType("failing_section")
    failing.evaluate = lambda data_dir: [{"section": "X", "metric": "m", "value": 0.1, "verdict": "FAIL"}]
    monkeypatch.setitem(sys.modules, "failing_section", failing)
    monkeypatch.setattr(run, "SECTIONS", {"X": "failing_section"})
    assert run.main(["--data", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "| X |" in (tmp_path / "out" / "real_eval.md").read_text(encoding="utf-8")
