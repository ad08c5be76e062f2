"""Scorecard numbers on a hand-made audit log and run frame."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autonomath_pipelines.catalog import LOOP_SPECS, loop_spec
from autonomath_pipelines.lib.scorecard import (
    SCORECARD_COLUMNS,
    acceptance_rate,
    review_summary,
    scorecard,
    scorecard_metrics,
    standing_promotions,
)

SINCE, UNTIL = "2026-11-07T15:00:00Z", "2026-11-14T15:00:00Z"
A, E, J = (loop_spec(x).loop_id for x in "AEJ")


def audit(*rows) -> pd.DataFrame:
    """Rows: (ts, action, loop_id, candidate_id, proposed_at, promotion_id)."""
    return pd.DataFrame(
        [
            {
                "audit_id": i + 1,
                "ts": ts,
                "actor": "op",
                "action": action,
                "loop_id": loop_id,
                "candidate_id": cid,
                "proposed_at": proposed,
                "promotion_id": pid,
                "detail_json": "{}",
            }
            for i, (ts, action, loop_id, cid, proposed, pid) in enumerate(rows)
        ]
    )


AUDIT = audit(
    ("2026-11-01T00:00:00Z", "approve", A, "A:0", "2026-10-30T00:00:00Z", None),  # before the week
    ("2026-11-08T00:00:00Z", "approve", A, "A:1", "2026-11-07T00:00:00Z", None),  # 24 h
    ("2026-11-08T06:00:00Z", "approve", A, "A:2", "2026-11-07T00:00:00Z", None),  # 30 h
    ("2026-11-09T00:00:00Z", "reject", A, "A:3", "2026-11-08T12:00:00Z", None),  # 12 h
    ("2026-11-09T01:00:00Z", "approve", A, "A:1", "2026-11-07T00:00:00Z", None),  # repeated: counts once
    ("2026-11-10T00:00:00Z", "promote", A, "A:1", "2026-11-07T00:00:00Z", 7),
    ("2026-11-10T00:00:00Z", "promote", A, "A:2", "2026-11-07T00:00:00Z", 7),
    ("2026-11-11T00:00:00Z", "rollback", A, None, None, 7),  # bare: both of 7
    ("2026-11-12T00:00:00Z", "promote", A, "A:2", "2026-11-07T00:00:00Z", 8),  # promoted again
    ("2026-11-09T00:00:00Z", "reject", "E", "E:5", None, None),  # letter, no proposed_at
    ("2026-11-13T00:00:00Z", "promote", J, "J:2026-10/x", "2026-11-01T00:00:00Z", 9),
    ("2026-11-13T00:00:00Z", "rollback", J, "J:2026-10/x", None, 9),  # same second, later row
    ("2026-11-20T00:00:00Z", "approve", A, "A:9", "2026-11-19T00:00:00Z", None),  # after the week
)


def test_standing_promotions_drop_rolled_back_and_keep_repromoted():
    standing = standing_promotions(AUDIT, SINCE, UNTIL)
    assert sorted(standing["candidate_id"]) == ["A:2"]
    assert int(standing["promotion_id"].iloc[0]) == 8


def test_a_rollback_after_the_window_still_withdraws_the_promotion():
    later = audit(
        ("2026-11-10T00:00:00Z", "promote", A, "A:1", None, 1),
        ("2026-11-10T00:00:00Z", "promote", A, "A:2", None, 1),
        ("2026-11-20T00:00:00Z", "rollback", A, "A:2", None, 1),
    )
    assert standing_promotions(later, SINCE, UNTIL)["candidate_id"].tolist() == ["A:1"]


def test_review_summary_counts_rates_and_delays():
    summary = review_summary(AUDIT, SINCE, UNTIL).set_index("loop_id")
    a = summary.loc[A]
    assert (a["approved"], a["rejected"], a["promoted"], a["rolled_back"]) == (2, 1, 2, 2)
    assert a["acceptance_rate"] == pytest.approx(2 / 3)
    assert a["median_review_delay_h"] == pytest.approx(24.0)  # median of 24, 30, 12
    e = summary.loc[E]  # 'E' in the log is loop E
    assert (e["rejected"], e["acceptance_rate"]) == (1, 0.0)
    assert math.isnan(e["median_review_delay_h"])
    assert summary.loc[J, "promoted"] == 1 and summary.loc[J, "rolled_back"] == 1
    assert math.isnan(summary.loc[J, "acceptance_rate"])


RUNS = pd.DataFrame(
    [
        {"loop_id": A, "status": "SUCCESS", "cost_seconds": 60.0, "cost_source": "cpu"},
        {"loop_id": A, "status": "FAILURE", "cost_seconds": 30.0, "cost_source": "step_time"},
        {"loop_id": A, "status": "SUCCESS", "cost_seconds": 90.0, "cost_source": "cpu"},
        {"loop_id": A, "status": "STARTED", "cost_seconds": None, "cost_source": None},
        {"loop_id": E, "status": "FAILURE", "cost_seconds": None, "cost_source": None},
    ]
)


def test_scorecard_has_every_loop_and_the_numbers():
    frame = scorecard(LOOP_SPECS, {A: 4, J: 1}, AUDIT, RUNS, SINCE, UNTIL)
    assert list(frame.columns) == list(SCORECARD_COLUMNS)
    assert list(frame["letter"]) == list("ABCDEFGHIJ")
    a = frame.set_index("letter").loc["A"]
    assert (a["proposed"], a["runs"], a["failures"]) == (4, 3, 1)
    assert a["median_cost_s"] == 60.0
    assert a["cost_share_of_ceiling"] == pytest.approx(60.0 / (5 * 60))
    assert a["cost_source"] == "mixed"
    e = frame.set_index("letter").loc["E"]
    assert (e["runs"], e["failures"], e["cost_source"]) == (1, 1, None)
    assert math.isnan(e["median_cost_s"])
    b = frame.set_index("letter").loc["B"]
    assert (b["proposed"], b["approved"], b["runs"]) == (0, 0, 0)


def test_metrics_are_flat_numbers_without_nans():
    metrics = scorecard_metrics(scorecard(LOOP_SPECS, {A: 4}, AUDIT, RUNS, SINCE, UNTIL))
    assert metrics["A_proposed"] == 4 and isinstance(metrics["A_proposed"], int)
    assert metrics["A_acceptance_rate"] == pytest.approx(2 / 3)
    assert metrics["A_median_review_delay_h"] == pytest.approx(24.0)
    assert metrics["A_cost_share_of_ceiling"] == pytest.approx(0.2)
    assert metrics["A_failures"] == 1 and metrics["B_failures"] == 0
    assert "B_acceptance_rate" not in metrics and "E_median_review_delay_h" not in metrics
    assert metrics["total_approved"] == 2 and metrics["total_rejected"] == 2
    assert metrics["total_acceptance_rate"] == pytest.approx(0.5)
    assert all(isinstance(v, (int, float)) and not isinstance(v, np.generic) for v in metrics.values())
    assert not any(isinstance(v, float) and math.isnan(v) for v in metrics.values())


def test_empty_inputs_give_zeros():
    empty_runs = pd.DataFrame(columns=["loop_id", "status", "cost_seconds", "cost_source"])
    frame = scorecard(LOOP_SPECS, {}, pd.DataFrame(), empty_runs, SINCE, UNTIL)
    assert len(frame) == 10 and frame["proposed"].sum() == 0 and frame["runs"].sum() == 0
    assert "total_acceptance_rate" not in scorecard_metrics(frame)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.sampled_from(["approve", "reject"])), max_size=25))
def test_acceptance_rate_is_approved_share_of_distinct_decisions(decisions):
    rows = [
        (f"2026-11-{8 + i % 5:02d}T00:00:00Z", action, A, f"A:{cid}-{action}", None, None)
        for i, (cid, action) in enumerate(decisions)
    ]
    summary = review_summary(audit(*rows), SINCE, UNTIL)
    approved = len({cid for cid, action in decisions if action == "approve"})
    rejected = len({cid for cid, action in decisions if action == "reject"})
    if not decisions:
        assert summary.empty
        return
    rate = summary.set_index("loop_id").loc[A, "acceptance_rate"]
    assert rate == pytest.approx(acceptance_rate(approved, rejected))
    assert 0.0 <= rate <= 1.0
