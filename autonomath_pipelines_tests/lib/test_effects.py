"""Before/after effects on tiny frames: pattern matching, guard rates, next-day cache share."""

import datetime as dt
import json

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from autonomath_pipelines.lib import effects
from autonomath_pipelines.lib.textnorm import normalize_query, query_hash

UTC = dt.timezone.utc
PROMOTED = dt.datetime(2026, 11, 10, tzinfo=UTC)


def counts(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["query_text", "n_before", "n_after"])


def test_guard_patterns_are_normalized_and_unique():
    after = {
        "table": "hallucination_guard",
        "key": ["id"],
        "rows": [
            {"id": 1, "pattern": "架空の補助金ＡＢＣ"},
            {"id": 2, "pattern": "架空の補助金abc"},
            {"id": 3, "pattern": "  "},
            {"id": 4},
        ],
    }
    assert effects.guard_patterns(json.dumps(after)) == ("架空の補助金abc",)
    assert effects.guard_patterns({"files": {"evals/gold.yaml": "x"}}) == ()


def test_matching_goes_both_ways_after_normalization():
    texts = pd.Series(["架空の補助金ABC 申請", "補助金", "ＩＴ導入補助金", "", None, "無関係"])
    matched = effects.matches_patterns(texts, ["架空の補助金abc", "it導入"])
    # contains the pattern; is contained in a pattern; full-width folded; empty never matches
    assert matched.tolist() == [True, True, True, False, False, False]


def test_guard_effect_rates_before_and_after():
    queries = counts(("架空の補助金 申請", 8, 4), ("ＩＴ導入補助金", 10, 10), ("架空の補助金", 2, 1))
    wrong = counts(("架空の補助金 申請", 3, 0), ("架空の補助金", 1, 1), ("ＩＴ導入補助金", 5, 5))
    effect = effects.guard_effect(7, PROMOTED, ("架空の補助金",), queries, wrong, after_days=14)
    assert (effect.before.queries, effect.before.wrong) == (10, 4)
    assert (effect.after.queries, effect.after.wrong) == (5, 1)
    assert effect.before.rate == pytest.approx(0.4) and effect.after.rate == pytest.approx(0.2)
    assert effect.measured and effect.reason is None
    [line] = effects.guard_markdown([effect])
    assert "0.400 (4/10) → 0.200 (1/5)" in line


def test_guard_effect_is_na_without_data_after_the_promotion():
    queries = counts(("架空の補助金", 5, 0))
    effect = effects.guard_effect(1, PROMOTED, ("架空の補助金",), queries, counts(), after_days=2.5)
    assert not effect.measured and effect.reason == "no matching queries after the promotion yet"
    assert effect.after.rate is None
    none_yet = effects.guard_effect(1, PROMOTED, ("架空の補助金",), queries, counts(), after_days=0)
    assert none_yet.reason == "no data after the promotion yet"
    assert "n/a — no data after the promotion yet" in effects.guard_markdown([none_yet])[0]
    assert effects.pooled([effect, none_yet]) is None


def test_effect_windows_cut_the_after_side_at_measurement_time():
    start, split, end = effects.effect_windows(PROMOTED, PROMOTED + dt.timedelta(days=3), days=14)
    assert (start, split, end) == (PROMOTED - dt.timedelta(days=14), PROMOTED, PROMOTED + dt.timedelta(days=3))
    assert effects.effect_windows(PROMOTED, PROMOTED - dt.timedelta(days=1))[2] == PROMOTED


def test_jst_days_and_cache_day_range():
    assert effects.jst_day_bounds("2026-11-13") == (
        dt.datetime(2026, 11, 12, 15, tzinfo=UTC),
        dt.datetime(2026, 11, 13, 15, tzinfo=UTC),
    )
    week_start = dt.datetime(2026, 11, 7, 15, tzinfo=UTC)  # Sun 2026-11-08 00:00 JST
    assert effects.cache_day_range(week_start, week_start + dt.timedelta(days=7)) == ("2026-11-07", "2026-11-13")
    # A window starting mid-day: its first whole next day is the following one.
    assert (
        effects.cache_day_range(week_start + dt.timedelta(hours=1), week_start + dt.timedelta(days=7))[0]
        == "2026-11-08"
    )


def test_cache_effect_share_and_no_traffic():
    cached = {query_hash(normalize_query("補助金 東京"))}
    requests = pd.DataFrame({"query_text": ["補助金　東京", "補助金 東京", "創業"], "requests": [2, 1, 1]})
    effect = effects.cache_effect("2026-11-12", requests, cached)
    assert (effect.next_day, effect.requests, effect.served) == ("2026-11-13", 4, 3)
    assert effect.share == pytest.approx(0.75)
    assert effects.cache_effect("2026-11-12", requests.iloc[:0], cached) is None


@given(
    st.lists(st.tuples(st.sampled_from(["a", "B", "ｃ", "d e", ""]), st.integers(0, 50)), max_size=12),
    st.sets(st.sampled_from(["a", "b", "c", "d e"])),
)
def test_cache_share_is_the_weighted_share_of_cached_texts(rows, cached_texts):
    requests = pd.DataFrame(rows, columns=["query_text", "requests"])
    effect = effects.cache_effect("2026-11-12", requests, {query_hash(t) for t in cached_texts})
    total = sum(n for _, n in rows)
    if total == 0:
        assert effect is None
        return
    served = sum(n for text, n in rows if normalize_query(text) in cached_texts)
    assert (effect.requests, effect.served) == (total, served)
    assert 0.0 <= effect.share <= 1.0
