"""The `autonomath-loops` command as the operator types it."""

import json
import subprocess
import sys

from autonomath_pipelines.cli import main
from autonomath_pipelines.demo import load_truth


def test_demo_builds_a_world_and_prints_progress(tmp_path, capsys):
    db = tmp_path / "w.db"
    assert main(["demo", "--scale", "small", "--seed", "3", "--as-of", "2026-11-21", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "query_log" in out and "planted truth" in out and db.exists()
    assert load_truth(db)["seed"] == 3


def test_loops_lists_the_whole_catalog(capsys):
    assert main(["loops"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 10 and "loop_h_cache_warming" in lines[7] and "[implemented]" in lines[7]


def test_console_script_runs_end_to_end(small_world, tmp_path):
    """The installed entry point, in a subprocess: dry run, then the report on disk."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "autonomath_pipelines.cli",
            "run",
            "--db",
            str(small_world),
            "--only",
            "H",
            "--partition",
            "2026-11-20",
            "--reports-dir",
            str(tmp_path / "reports"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1/1 loop runs succeeded" in done.stdout
    report_path = done.stdout.strip().splitlines()[-1].removeprefix("report: ")
    assert json.loads(open(report_path, encoding="utf-8").read())["loops_succeeded"] == 1
