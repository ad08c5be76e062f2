"""The window-size rule: empty always fails; abnormally small is judged against the loop's own
previous windows, on their level and their spread."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autonomath_pipelines.lib.window_size import MIN_HISTORY, smallest_normal, window_size_verdict

counts = st.lists(st.integers(min_value=0, max_value=10_000_000), max_size=12)


def test_empty_fails_even_without_history():
    verdict = window_size_verdict(0, [], "query_log")
    assert not verdict.passed and "the window is empty: query_log holds no rows" in verdict.description


def test_too_little_history_judges_only_emptiness():
    assert smallest_normal([5000, 0, 5200]) is None  # empty windows say nothing about the level
    assert window_size_verdict(1, [5000, 5200], "query_log").passed


def test_the_bound_follows_the_loops_own_spread():
    steady = [10_000, 10_100, 9_900, 10_050, 9_950]
    swinging = [10_000, 3_000, 12_000, 2_500, 11_000, 9_000, 2_800]  # weekdays and weekends
    assert not window_size_verdict(3_000, steady, "query_log").passed
    assert window_size_verdict(3_000, swinging, "query_log").passed
    failed = window_size_verdict(100, steady, "query_log")
    assert not failed.passed and "abnormally small: 100 rows of query_log" in failed.description
    assert failed.metadata["previous_median_rows"] == 10_000


@given(rows=st.integers(min_value=1, max_value=10_000_000), previous=counts)
def test_a_window_at_least_the_median_always_passes_and_the_floor_scales(rows, previous):
    positive = sorted(c for c in previous if c > 0)
    floor = smallest_normal(previous)
    assert (floor is None) == (len(positive) < MIN_HISTORY)
    if floor is not None:
        assert 0 < floor < positive[len(positive) // 2] + 1
        assert window_size_verdict(max(rows, positive[-1]), previous, "t").passed
        scaled = smallest_normal([c * 10 for c in previous])
        assert scaled == pytest.approx(floor * 10, rel=1e-9)  # no fixed count: the level sets it
        assert window_size_verdict(rows, previous, "t").passed == (rows >= floor)


@given(previous=counts)
def test_empty_never_passes(previous):
    assert not window_size_verdict(0, previous, "t").passed


def test_a_negative_count_is_an_error():
    with pytest.raises(ValueError, match="cannot be negative"):
        window_size_verdict(-1, [], "t")
