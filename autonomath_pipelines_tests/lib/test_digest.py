"""The digest's wording and the consecutive-failure rule, on hand-made run frames."""

import datetime as dt

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from autonomath_pipelines.catalog import LOOP_SPECS, loop_spec
from autonomath_pipelines.lib.digest import FailureStreak, compose_digest, failure_streaks, headline

SINCE = dt.datetime(2026, 11, 8, tzinfo=dt.timezone(dt.timedelta(hours=9), "JST"))
UNTIL = SINCE + dt.timedelta(days=7)
A, B, C = (loop_spec(x).loop_id for x in "ABC")


def history(*runs: tuple[str, str]) -> pd.DataFrame:
    """Runs of one or more loops, oldest first: (loop_id, status)."""
    base = pd.Timestamp("2026-11-01", tz="UTC")
    return pd.DataFrame(
        [
            {"loop_id": loop_id, "run_id": f"r{i}", "status": status, "created_at": base + pd.Timedelta(hours=i)}
            for i, (loop_id, status) in enumerate(runs)
        ]
    )


def window_runs(*runs: tuple[str, str]) -> pd.DataFrame:
    frame = history(*runs)
    return frame.rename(columns={"created_at": "run_time"})


def test_headline_is_the_seeds_line():
    assert (
        headline(9, 10, 42, 3)
        == "Self-improvement: 9/10 loops succeeded last 7 days, 42 candidates proposed, 3 promoted."
    )


def test_two_failures_in_a_row_warn_with_ids_and_error():
    streaks = failure_streaks(history((A, "SUCCESS"), (A, "FAILURE"), (A, "FAILURE")))
    assert streaks == [FailureStreak(A, ("r2", "r1"))]
    assert (
        streaks[0].warning("snapshot: ValueError: empty")
        == f"WARNING: {A} failed in 2 consecutive runs (r2, r1, last error: snapshot: ValueError: empty)"
    )
    assert streaks[0].warning() == f"WARNING: {A} failed in 2 consecutive runs (r2, r1)"


def test_a_success_in_between_resets_the_streak():
    assert failure_streaks(history((A, "FAILURE"), (A, "SUCCESS"), (A, "FAILURE"))) == []
    assert failure_streaks(history((A, "FAILURE"), (A, "FAILURE"), (A, "SUCCESS"))) == []


def test_canceled_runs_neither_count_nor_break_a_streak():
    runs = history((A, "FAILURE"), (A, "CANCELED"), (A, "FAILURE"), (B, "FAILURE"), (B, "CANCELED"))
    assert failure_streaks(runs) == [FailureStreak(A, ("r2", "r0"))]


def test_long_streak_lists_three_ids_and_is_open_ended_at_the_lookback():
    runs = history(*[(A, "FAILURE")] * 5)
    [streak] = failure_streaks(runs, lookback=5)
    assert streak.open_ended
    assert streak.warning() == f"WARNING: {A} failed in 5+ consecutive runs (r4, r3, r2, +2 earlier)"
    assert not failure_streaks(runs, lookback=10)[0].open_ended


@given(st.lists(st.sampled_from(["SUCCESS", "FAILURE", "CANCELED"]), max_size=12))
def test_warns_exactly_when_the_last_two_decisive_runs_failed(statuses):
    streaks = failure_streaks(history(*[(A, s) for s in statuses]))
    decisive = [s for s in statuses if s != "CANCELED"]
    assert bool(streaks) == (decisive[-2:] == ["FAILURE", "FAILURE"])
    if streaks:
        trailing = len(decisive) - len("".join("F" if s == "FAILURE" else "S" for s in decisive).rstrip("F"))
        assert len(streaks[0].run_ids) == trailing


def test_compose_digest_lines():
    runs = window_runs((A, "FAILURE"), (A, "SUCCESS"), (B, "SUCCESS"), (B, "FAILURE"), (C, "STARTED"))
    streak = FailureStreak(B, ("rb2", "rb1"))
    digest = compose_digest(
        LOOP_SPECS,
        runs,
        {A: 5, B: 2, "unknown": 99},
        promoted=1,
        streaks=[streak],
        errors={"rb2": "step: KeyError: 'x'"},
        since=SINCE,
        until=UNTIL,
    )
    assert digest.line == "Self-improvement: 1/2 loops succeeded last 7 days, 7 candidates proposed, 1 promoted."
    assert (digest.loops_ran, digest.loops_succeeded, digest.candidates_proposed) == (2, 1, 7)
    not_run = "; ".join(f"{s.letter} {s.loop_id} ({s.cadence_text})" for s in LOOP_SPECS[3:])
    assert digest.lines == [
        digest.line,
        f"Latest run did not succeed: B {B} (failure, run r3).",
        f"Still running or queued: C {C} (run r4).",
        f"Did not run in the last 7 days: {not_run}.",
        f"WARNING: {B} failed in 2 consecutive runs (rb2, rb1, last error: step: KeyError: 'x')",
    ]
    assert digest.consecutive_failure_loops == 1
    assert list(digest.per_loop["runs"][:3]) == [2, 2, 0]
    markdown = digest.markdown("Digest")
    assert markdown.startswith("# Digest\n") and f"**{digest.line}**" in markdown and "| A " in markdown


def test_nothing_ran():
    empty = pd.DataFrame(columns=["loop_id", "run_id", "status", "run_time"])
    digest = compose_digest(LOOP_SPECS, empty, {}, 0, [], {}, SINCE, UNTIL, notes=["Promotions not counted: x"])
    assert digest.line == "Self-improvement: 0/0 loops succeeded last 7 days, 0 candidates proposed, 0 promoted."
    assert len(digest.not_run) == 10 and digest.lines[-1] == "Promotions not counted: x"
