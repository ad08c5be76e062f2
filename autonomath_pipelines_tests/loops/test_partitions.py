"""Partitions and windows: loops A and I also have the week in progress, read only up to now."""

import datetime as dt

import pytest

from autonomath_pipelines.catalog import LOOP_SPECS, loop_spec
from autonomath_pipelines.contract.timestamps import utc_now
from autonomath_pipelines.loops.common import (
    in_progress_partition_key,
    last_complete_partition_key,
    partitions_for,
    read_window,
)
from autonomath_pipelines.loops.loop_i_doc_freshness import LOOP as LOOP_I
from autonomath_pipelines_tests.loops.harness import metadata, run_loop

UTC = dt.timezone.utc
A, B, SPEC_I = loop_spec("A"), loop_spec("B"), loop_spec("I")


def test_only_loops_a_and_i_have_a_partition_in_progress():
    assert [s.letter for s in LOOP_SPECS if s.in_progress_partition] == ["A", "I"]
    now = utc_now()
    for spec in LOOP_SPECS:
        partitions = partitions_for(spec)
        current = partitions.get_partition_key_for_timestamp(now.timestamp())
        assert partitions.has_partition_key(current) == spec.in_progress_partition, spec.loop_id
        assert partitions.end_offset == (1 if spec.in_progress_partition else 0)
        last_complete = last_complete_partition_key(spec, now)
        assert partitions.time_window_for_partition_key(last_complete).end <= now
        assert partitions.has_partition_key(last_complete)


def test_last_complete_and_in_progress_weeks_follow_tokyo_time():
    # Sunday 00:00 JST is Saturday 15:00 UTC: a week ends while UTC is still on Saturday.
    before, after = dt.datetime(2026, 11, 21, 14, 59, 59, tzinfo=UTC), dt.datetime(2026, 11, 21, 15, tzinfo=UTC)
    assert (last_complete_partition_key(SPEC_I, before), in_progress_partition_key(SPEC_I, before)) == (
        "2026-11-08",
        "2026-11-15",
    )
    assert (last_complete_partition_key(SPEC_I, after), in_progress_partition_key(SPEC_I, after)) == (
        "2026-11-15",
        "2026-11-22",
    )
    assert last_complete_partition_key(B, after) == "2026-10-01"
    assert last_complete_partition_key(A, dt.datetime(2025, 1, 3, tzinfo=UTC)) is None
    with pytest.raises(ValueError, match="loop_b_testimonial_seo has no in-progress partition"):
        in_progress_partition_key(B, after)


def test_a_window_ends_at_the_partition_end_or_now_whichever_comes_first():
    window = partitions_for(SPEC_I).time_window_for_partition_key("2026-11-15")
    now = dt.datetime(2026, 11, 18, 3, tzinfo=UTC)
    in_progress = read_window(SPEC_I, window.start, window.end, ["2026-11-15"], now)
    assert (in_progress.start, in_progress.end) == (window.start, now)
    complete = read_window(SPEC_I, window.start, window.end, ["2026-11-15"], window.end + dt.timedelta(days=30))
    assert (complete.start, complete.end) == (window.start, window.end)
    looking_back = read_window(A, window.start, window.end, ["2026-11-15"], now, lookback_days=7)
    assert (looking_back.start, looking_back.end) == (now - dt.timedelta(days=7), now)


def test_loop_i_on_the_week_in_progress_is_as_of_the_run_not_the_week_end(programs_db, tmp_path):
    week = in_progress_partition_key(SPEC_I, utc_now())
    window = partitions_for(SPEC_I).time_window_for_partition_key(week)
    before = utc_now()
    result = run_loop(LOOP_I, programs_db, tmp_path, week)
    after = utc_now()
    assert result.success
    snapshot, candidates = metadata(result, "doc_freshness_snapshot"), metadata(result, "doc_freshness_candidates")
    as_of = dt.datetime.strptime(snapshot["as_of_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before.replace(microsecond=0) <= as_of <= after < window.end
    assert snapshot["window_start_utc"] == window.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # Every step of the run reads as of the same moment: the run's creation.
    assert candidates["as_of_utc"] == snapshot["as_of_utc"] == snapshot["window_end_utc"]
