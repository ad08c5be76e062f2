"""Loop I's pure logic: the priority formula, signal classes, reasons, ranking and the digest."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autonomath_pipelines.lib.freshness import (
    DEFAULT_TIER_WEIGHTS,
    FreshnessWeights,
    classify_signals,
    fetched_at_digest,
    is_conclusive,
    last_modified_utc,
    priority,
    rank_top,
    reason_text,
    score_programs,
    staleness_days,
)

AS_OF = "2026-11-21T15:00:00Z"


def frame(rows):
    return pd.DataFrame(
        rows, columns=["program_id", "source_url", "tier", "source_fetched_at", "signal_status", "signal_last_modified"]
    )


def test_staleness_is_days_to_as_of_clipped_at_zero():
    days = staleness_days(pd.Series(["2026-11-11T15:00:00Z", "2026-11-21T03:00:00Z", "2026-12-01T00:00:00Z"]), AS_OF)
    assert days.tolist() == pytest.approx([10.0, 0.5, 0.0])


def test_signal_classes():
    fetched = ["2026-10-01T00:00:00Z"] * 7
    status = pd.Series([200, 200, 200, 304, 404, 410, np.nan])
    modified = [
        "2026-11-01T00:00:00Z",  # newer than the fetch: changed
        "2026-09-01T00:00:00Z",  # older: a server ignoring conditional requests
        None,  # 200 without Last-Modified: trust the server
        "2026-11-01T00:00:00Z",
        None,
        None,
        None,
    ]
    assert classify_signals(status, pd.Series(modified), pd.Series(fetched)).tolist() == [
        "changed",
        "unchanged",
        "changed",
        "unchanged",
        "gone",
        "gone",
        "no_signal",
    ]
    assert classify_signals(pd.Series([301]), pd.Series([None]), pd.Series(fetched[:1])).tolist() == ["other"]
    assert not is_conclusive(503) and not is_conclusive(429) and is_conclusive(304) and is_conclusive(404)


def test_a_raw_http_date_last_modified_is_read_like_contract_text():
    fetched = pd.Series(["2026-10-01T00:00:00Z"] * 3)
    modified = pd.Series(
        ["Sun, 01 Nov 2026 00:00:00 GMT", "Tue, 01 Sep 2026 00:00:00 GMT", "Sun, 32 Nov 2026 00:00:00 GMT"]
    )
    assert classify_signals(pd.Series([200, 200, 200]), modified, fetched).tolist() == [
        "changed",
        "unchanged",
        "changed",
    ]
    assert last_modified_utc(modified).isna().tolist() == [False, False, True]  # impossible: as if absent


@settings(max_examples=80, deadline=None)
@given(
    st.datetimes(
        min_value=pd.Timestamp("1995-01-01").to_pydatetime(), max_value=pd.Timestamp("2099-12-31").to_pydatetime()
    ),
    st.datetimes(
        min_value=pd.Timestamp("1995-01-01").to_pydatetime(), max_value=pd.Timestamp("2099-12-31").to_pydatetime()
    ),
)
def test_iso_and_http_date_forms_of_one_instant_classify_alike(modified, fetched):
    modified, fetched = modified.replace(microsecond=0), fetched.replace(microsecond=0)
    iso, http = modified.strftime("%Y-%m-%dT%H:%M:%SZ"), modified.strftime("%a, %d %b %Y %H:%M:%S GMT")
    fetched_iso = pd.Series([fetched.strftime("%Y-%m-%dT%H:%M:%SZ")] * 2)
    classes = classify_signals(pd.Series([200, 200]), pd.Series([iso, http]), fetched_iso).tolist()
    assert classes[0] == classes[1]
    assert last_modified_utc([http])[0] == last_modified_utc([iso])[0]


def test_formula_and_reason_match_the_seed():
    w = FreshnessWeights()
    assert priority(214, 100, 100, w) == pytest.approx(0.6 * 214 + 0.3 * 100 + 0.1 * 100)
    reason, dominant = reason_text(214.0, "S", 100.0, "changed", 100.0, w)
    assert reason == "stale 214 d (0.6×214=128.4) > tier S (0.3×100=30.0) > changed (0.1×100=10.0)"
    assert dominant == "staleness"
    reason, dominant = reason_text(3.0, "S", 100.0, "changed", 100.0, w)
    assert dominant == "tier" and reason.startswith("tier S") and reason.endswith("stale 3 d (0.6×3=1.8)")


def test_score_and_rank_a_small_frame():
    rows = frame(
        [
            ("P1", "u1", "S", "2026-11-11T15:00:00Z", 304, "2026-01-01T00:00:00Z"),  # 6 + 30 + 0
            ("P2", "u2", "C", "2026-11-11T15:00:00Z", 200, "2026-11-15T00:00:00Z"),  # 6 + 3 + 10
            ("P3", "u3", "C", "2026-11-11T15:00:00Z", None, None),  # 6 + 3 + 0
            ("P4", "u3", "C", "2026-11-11T15:00:00Z", None, None),  # same URL: dropped
            ("P5", "u5", "X", "2026-11-11T15:00:00Z", 404, None),  # unknown tier: 6 + 0 + 10
        ]
    )
    scored = score_programs(rows, AS_OF)
    assert scored.set_index("program_id")["priority"].to_dict() == pytest.approx(
        {"P1": 36.0, "P2": 19.0, "P3": 9.0, "P4": 9.0, "P5": 16.0}
    )
    top = rank_top(scored, 10)
    assert top["program_id"].tolist() == ["P1", "P2", "P5", "P3"]
    assert top["rank"].tolist() == [1, 2, 3, 4]
    assert rank_top(scored, 2)["program_id"].tolist() == ["P1", "P2"]
    assert rank_top(scored, 0).empty
    assert score_programs(rows.iloc[:0], AS_OF).empty


def test_gone_points_are_configurable():
    rows = frame([("P1", "u1", "C", "2026-11-11T15:00:00Z", 404, None)])
    assert score_programs(rows, AS_OF, FreshnessWeights(gone_points=30))["change_signal"].tolist() == [30.0]
    with pytest.raises(ValueError):
        FreshnessWeights(gone_points=-1)


def test_digest_sees_any_byte_change_and_ignores_order():
    rows = [("P1", "2026-01-01T00:00:00Z"), ("P2", "2026-02-01T00:00:00Z")]
    assert fetched_at_digest(rows) == fetched_at_digest(reversed(rows))
    assert fetched_at_digest(rows) != fetched_at_digest([rows[0], ("P2", "2026-02-01T00:00:01Z")])
    assert fetched_at_digest(rows) != fetched_at_digest(rows[:1])


# --------------------------------------------------------------------------------- properties

finite = st.floats(min_value=0, max_value=1e5, allow_nan=False, allow_infinity=False)
tiers = st.sampled_from(sorted(DEFAULT_TIER_WEIGHTS))
statuses = st.sampled_from([200, 304, 404, 410, 301, None])
program = st.tuples(st.integers(0, 40), tiers, st.integers(0, 800 * 86400), statuses, st.integers(-400, 400))


def world(programs) -> pd.DataFrame:
    as_of = pd.Timestamp(AS_OF)
    rows = []
    for i, (url, tier, age_s, status, lm_days) in enumerate(programs):
        fetched = as_of - pd.Timedelta(seconds=age_s)
        lm = None if status is None else (fetched + pd.Timedelta(days=lm_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append((f"P{i:04d}", f"u{url}", tier, fetched.strftime("%Y-%m-%dT%H:%M:%SZ"), status, lm))
    return frame(rows)


@given(finite, finite, finite, finite, finite)
def test_priority_is_monotone_in_staleness_and_tier_weight(s, extra, tw, extra_tw, change):
    assert priority(s + extra, tw, change) >= priority(s, tw, change)
    assert priority(s, tw + extra_tw, change) >= priority(s, tw, change)
    assert math.isfinite(priority(s, tw, change))


@settings(max_examples=60, deadline=None)
@given(st.lists(program, max_size=40), st.integers(0, 50))
def test_ranking_is_finite_deterministic_capped_and_unique(programs, top_n):
    data = world(programs)
    scored = score_programs(data, AS_OF)
    assert np.isfinite(scored["priority"].to_numpy(float)).all()
    top = rank_top(scored, top_n)
    assert len(top) <= top_n and len(top) <= data["source_url"].nunique()
    assert not top["source_url"].duplicated().any()
    # Same input in another row order: same queue.
    shuffled = rank_top(score_programs(data.sample(frac=1.0, random_state=1), AS_OF), top_n)
    assert top["program_id"].tolist() == shuffled["program_id"].tolist()
    # Priority descending, ties by program_id.
    keys = list(zip(-top["priority"], top["program_id"]))
    assert keys == sorted(keys)


@settings(max_examples=60, deadline=None)
@given(tiers, st.integers(0, 400 * 86400), st.integers(1, 30 * 86400), statuses, st.integers(-400, 400))
def test_older_fetch_or_higher_tier_never_lowers_priority(tier, age_s, more_s, status, lm_days):
    base = score_programs(world([(0, tier, age_s, status, lm_days)]), AS_OF)["priority"].iloc[0]
    # Fetched earlier with the same Last-Modified: staleness grows; the signal can only turn to "changed".
    older = world([(0, tier, age_s + more_s, status, lm_days)])
    if status is not None:
        older.loc[0, "signal_last_modified"] = world([(0, tier, age_s, status, lm_days)])["signal_last_modified"][0]
    assert score_programs(older, AS_OF)["priority"].iloc[0] >= base
    for higher in [t for t in DEFAULT_TIER_WEIGHTS if DEFAULT_TIER_WEIGHTS[t] >= DEFAULT_TIER_WEIGHTS[tier]]:
        assert score_programs(world([(0, higher, age_s, status, lm_days)]), AS_OF)["priority"].iloc[0] >= base
