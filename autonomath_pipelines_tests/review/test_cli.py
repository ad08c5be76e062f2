"""`autonomath-loops review` as the operator types it: dry run first, --execute to act, exit 2 on a refusal."""

from autonomath_pipelines.cli import main
from autonomath_pipelines_tests.review.test_service import GOLD, world  # noqa: F401 - the fixture


def _review(world, *args):
    db, repo = world
    return main(["review", *args, "--db", str(db), "--repo-root", str(repo), "--actor", "yamada"])


def test_the_weekly_routine_from_the_command_line(world, capsys):
    _, repo = world
    assert _review(world, "list", "--loop", "J") == 0
    assert "J:2026-10/cand-aaaaaaaaaaaa  pending_review" in capsys.readouterr().out
    assert _review(world, "approve", "J:2026-10/cand-aaaaaaaaaaaa") == 0
    assert "dry run: would have approved 1 candidate(s); nothing changed" in capsys.readouterr().out
    assert _review(world, "approve", "J:2026-10/cand-aaaaaaaaaaaa", "--execute") == 0
    assert _review(world, "reject", "--loop", "J", "--reason", "ambiguous query", "--execute") == 0
    assert "pending_review → rejected" in capsys.readouterr().out
    assert _review(world, "promote", "--loop", "J", "--execute") == 0
    assert "promoted 1 candidate(s) — promotion 1" in capsys.readouterr().out
    assert _review(world, "promotions") == 0
    assert "loop_j_gold_expansion" in capsys.readouterr().out
    assert _review(world, "rollback", "1", "--execute") == 0
    assert (repo / "evals" / "gold.yaml").read_text(encoding="utf-8") == GOLD


def test_a_refusal_exits_2_with_one_line_naming_the_problem(world, capsys):
    assert _review(world, "promote", "A:1", "--execute") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "autonomath-loops: cannot promote A:1: it is pending_review; only a candidate that is approved can be promoted"
    ]
    assert _review(world, "list", "--loop", "F") == 2
    assert "is not reviewable" in capsys.readouterr().err
