"""The loop-quality suite: verdict rules, the independent checks, and a stable eval on the small world."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from autonomath_pipelines.cli import main
from autonomath_pipelines.lib.jsonld import build_jsonld, dumps_jsonld
from autonomath_pipelines.quality.partitions import eval_partitions, range_keys
from autonomath_pipelines.quality.report import JSON_NAME, MD_NAME, PNG_NAME, markdown_table
from autonomath_pipelines.quality.runner import file_sha256, run_eval
from autonomath_pipelines.quality.scores import Metric, jsonld_errors
from autonomath_pipelines.resources import AutonomathDatabase


def test_verdicts_compare_with_baseline_and_target():
    assert Metric("X", "m", 0.8, 0.5).verdict == "pass"
    assert Metric("X", "m", 0.5, 0.5).verdict == "pass"  # ties are not worse
    assert Metric("X", "m", 0.4, 0.5).verdict == "FAIL"
    assert Metric("X", "m", 3.0, 4.0, better="lower", unit="days").verdict == "pass"
    assert Metric("X", "m", 5.0, 4.0, better="lower", unit="days").verdict == "FAIL"
    assert Metric("X", "m", 0, better="equal", target=0, unit="count").verdict == "pass"
    assert Metric("X", "m", 1, better="equal", target=0, unit="count").verdict == "FAIL"
    assert Metric("X", "m", 7, 7, better="equal", unit="jpy").verdict == "pass"
    assert Metric("X", "m", 0.9, 0.5, target=0.95).verdict == "FAIL"  # beats the baseline, misses the target
    assert Metric("X", "m", float("nan"), 0.5).verdict == "n/a"
    assert Metric("X", "m", 0.3, 0.9, better="info").verdict == "info"


def test_markdown_table_escapes_pipes_and_formats_units():
    rows = markdown_table(
        [
            Metric("X", "a|b", 0.5, 0.25, "base"),
            Metric("Y", "mae", 8.123, 9.5, "none", better="lower", unit="days"),
            Metric("Z", "total", 92631, 92631, "Σ", better="equal", unit="jpy"),
        ]
    ).splitlines()
    assert rows[0] == "| loop | metric | value | baseline | verdict |"
    assert rows[2] == "| X | a\\|b | 0.500 | 0.250 (base) | pass (≥ baseline) |"
    assert rows[3] == "| Y | mae | 8.12 d | 9.50 d (none) | pass (≤ baseline) |"
    assert rows[4] == "| Z | total | ¥92,631 | ¥92,631 (Σ) | pass (= ¥92,631) |"


def test_independent_jsonld_validator():
    page = dumps_jsonld(
        build_jsonld(
            name="東京都創業助成金",
            rating_value=4.33,
            rating_count=3,
            provider="東京都",
            area="東京都",
            category="創業",
        )
    )
    assert jsonld_errors(page, min_count=3) == []
    assert "ratingCount" in jsonld_errors(page, min_count=4)  # fewer ratings than k
    doc = json.loads(page)
    doc["aggregateRating"]["ratingValue"] = 6
    assert "ratingValue range" in jsonld_errors(json.dumps(doc), min_count=1)
    doc["@context"] = "https://example.org"
    assert "@context" in jsonld_errors(json.dumps(doc), min_count=1)
    assert jsonld_errors("{not json", min_count=1) == ["not JSON"]


def test_partitions_follow_the_world_end(small_world_pristine):
    db = AutonomathDatabase(path=str(small_world_pristine))
    keys = eval_partitions(dt.date(2026, 11, 1), db)  # a Sunday and the 1st of a month
    assert keys["A"] == keys["E"] == keys["F"] == keys["I"] == "2026-10-25"
    assert keys["C"] == "2026-10-18"  # its replay week ends where the logs do
    assert keys["H"] == "2026-10-30"  # its replay day is the last day
    assert keys["B"] == keys["G"] == keys["J"] == "2026-10-01"
    first, last = keys["D"].split("..")
    assert first <= last == "2026-09-01"  # October's calibration has nothing after it
    assert range_keys("D", keys["D"])[-1] == last


def test_eval_on_the_small_world_is_stable(small_world_pristine, embedding_cache, tmp_path):
    digest = file_sha256(small_world_pristine)
    lines: list[str] = []
    first = run_eval(
        db_path=str(small_world_pristine),
        out_dir=str(tmp_path / "one"),
        embedding_cache=str(embedding_cache),
        say=lines.append,
    )
    second = run_eval(
        db_path=str(small_world_pristine),
        out_dir=str(tmp_path / "two"),
        embedding_cache=str(embedding_cache),
        say=lambda line: None,
    )
    assert file_sha256(small_world_pristine) == digest  # a dry run: nothing written
    table = (tmp_path / "one" / MD_NAME).read_text(encoding="utf-8")
    assert table == (tmp_path / "two" / MD_NAME).read_text(encoding="utf-8")
    assert first["metrics"] == second["metrics"] and first["details"] == second["details"]
    saved = json.loads((tmp_path / "one" / JSON_NAME).read_text(encoding="utf-8"))
    assert saved["metrics"] == first["metrics"] and (tmp_path / "one" / PNG_NAME).stat().st_size > 10_000
    assert {m["loop"] for m in first["metrics"]} == set("ABCDEFGHIJ")
    assert all(run["status"] == "succeeded" for run in first["runtime"]["runs"].values())
    assert "| loop | metric | value | baseline | verdict |" in table and "\n| J |" in "\n".join(lines)
    by_metric = {(m["loop"], m["metric"]): m for m in first["metrics"]}

    def value(loop: str, starts: str):
        return next(m["value"] for (letter, name), m in by_metric.items() if letter == loop and name.startswith(starts))

    # What must hold exactly on any world: the independent recomputations agree, nothing leaks.
    assert value("F", "channel cells") == 0
    assert value("I", "Kendall") >= 0.999 and value("I", "top-") == 1.0
    assert value("J", "agreement") == 1.0
    assert value("B", "pages with an identifier") == 0 and value("B", "pages whose JSON-LD") == 1.0
    assert value("A", "covered families") == 0


def test_eval_never_overwrites_a_database_without_truth(tmp_path, capsys):
    db = tmp_path / "service.db"
    db.write_bytes(b"not a demo world")
    assert main(["eval", "--db", str(db), "--out", str(tmp_path / "out")]) == 2
    assert "not an SQLite database" in capsys.readouterr().err  # said before looking for the truth
    assert db.read_bytes() == b"not a demo world"


def test_eval_never_overwrites_a_real_database_without_truth(programs_db, tmp_path, capsys):
    db = tmp_path / "service.db"
    db.write_bytes(programs_db.read_bytes())
    assert main(["eval", "--db", str(db), "--out", str(tmp_path / "out")]) == 2
    assert "no planted truth" in capsys.readouterr().err
    assert db.read_bytes() == programs_db.read_bytes()


def test_eval_rejects_an_unknown_loop(tmp_path, capsys):
    assert main(["eval", "--only", "Z", "--db", str(tmp_path / "w.db")]) == 2
    assert "unknown loop id" in capsys.readouterr().err


@pytest.mark.slow
def test_exact_scores_on_the_production_world(tmp_path):
    world = Path("data/bench/autonomath-production.db")
    if not world.is_file():
        pytest.skip("no production-scale world (autonomath-loops bench builds it)")
    result = run_eval(db_path=str(world), out_dir=str(tmp_path), only=["B", "F", "I", "J"], say=lambda line: None)
    failing = [m for m in result["metrics"] if m["verdict"] == "FAIL"]
    assert not failing, failing


def _canned_eval(monkeypatch, metrics: list[Metric], run_status: str = "succeeded") -> None:
    """``run_eval`` replaced by a result with these verdicts, so the exit code is tested without a world."""
    import autonomath_pipelines.quality.runner as evals

    summary = {v: sum(m.verdict == v for m in metrics) for v in ("pass", "FAIL", "info", "n/a")}
    summary["fail"] = summary.pop("FAIL")
    result = {"summary": summary, "runtime": {"runs": {"A": {"status": run_status}}}}
    monkeypatch.setattr(evals, "run_eval", lambda **_kwargs: result)


@pytest.mark.parametrize("strict", [False, True])
def test_eval_exits_1_on_a_fail_verdict(monkeypatch, tmp_path, strict):
    _canned_eval(monkeypatch, [Metric("A", "good", 0.9, 0.5), Metric("A", "bad", 0.1, 0.5)])
    argv = ["eval", "--out", str(tmp_path)] + (["--strict"] if strict else [])
    assert main(argv) == 1


def test_eval_exits_0_when_every_verdict_passes(monkeypatch, tmp_path):
    _canned_eval(monkeypatch, [Metric("A", "good", 0.9, 0.5), Metric("A", "shown", 3, better="info")])
    assert main(["eval", "--out", str(tmp_path)]) == 0
    assert main(["eval", "--out", str(tmp_path), "--strict"]) == 0


def test_strict_eval_also_fails_on_an_unjudged_metric(monkeypatch, tmp_path):
    _canned_eval(monkeypatch, [Metric("A", "good", 0.9, 0.5), Metric("A", "unknown", None, 0.5)])
    assert main(["eval", "--out", str(tmp_path)]) == 0
    assert main(["eval", "--out", str(tmp_path), "--strict"]) == 1


def test_eval_exits_1_when_a_loop_run_failed(monkeypatch, tmp_path):
    _canned_eval(monkeypatch, [Metric("A", "good", 0.9, 0.5)], run_status="failed")
    assert main(["eval", "--out", str(tmp_path)]) == 1
