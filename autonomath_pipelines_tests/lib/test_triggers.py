"""The sensors' pure logic: row cursors, burst decisions and settings, complete months."""

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autonomath_pipelines.lib.triggers import (
    THRESHOLD_VAR,
    WINDOW_HOURS_VAR,
    BurstSettings,
    BurstState,
    Report,
    burst_decision,
    burst_settings,
    month_start,
    months_to_request,
    parse_id_cursor,
    parse_utc,
    reports_from_rows,
)

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
FIRST = dt.date(2025, 1, 1)


def at(hours_ago: float) -> dt.datetime:
    return NOW - dt.timedelta(hours=hours_ago)


def reports(first_id: int, *hours_ago: float) -> list[Report]:
    return [Report(first_id + i, at(h)) for i, h in enumerate(hours_ago)]


# ------------------------------------------------------------------------------------------ parsing


def test_parse_utc_reads_the_database_format_offsets_and_naive_text():
    assert parse_utc("2026-11-20T15:00:00Z") == dt.datetime(2026, 11, 20, 15, tzinfo=UTC)
    assert parse_utc("2026-11-21T00:00:00+09:00") == dt.datetime(2026, 11, 20, 15, tzinfo=UTC)
    assert parse_utc("2026-11-20 15:00:00") == dt.datetime(2026, 11, 20, 15, tzinfo=UTC)


def test_id_cursor():
    assert parse_id_cursor(None) is None
    assert parse_id_cursor("42") == 42
    with pytest.raises(ValueError, match="'abc' is not a row id"):
        parse_id_cursor("abc")


def test_rows_with_unreadable_timestamps_are_seen_but_never_counted():
    rows = reports_from_rows([(1, "2026-11-20T11:00:00Z"), (2, "yesterday"), (3, None)])
    assert [r.id for r in rows] == [1, 2, 3] and [r.ts for r in rows] == [at(1), None, None]
    decision = burst_decision(rows, BurstState(0), NOW, BurstSettings(threshold=2))
    assert (decision.fire, decision.counted, decision.state.last_id) == (False, 1, 3)


# ------------------------------------------------------------------------------------------ settings


def test_settings_default_then_environment_then_explicit():
    assert burst_settings({}) == BurstSettings(20, 24.0)
    env = {THRESHOLD_VAR: " 7 ", WINDOW_HOURS_VAR: "1.5"}
    assert burst_settings(env) == BurstSettings(7, 1.5)
    assert burst_settings(env, threshold=3, window_hours=48) == BurstSettings(3, 48.0)
    assert burst_settings({THRESHOLD_VAR: ""}) == BurstSettings(20, 24.0)


@pytest.mark.parametrize(
    "name, value",
    [
        (THRESHOLD_VAR, "abc"),
        (THRESHOLD_VAR, "0"),
        (THRESHOLD_VAR, "-3"),
        (THRESHOLD_VAR, "2.5"),
        (WINDOW_HOURS_VAR, "soon"),
        (WINDOW_HOURS_VAR, "0"),
        (WINDOW_HOURS_VAR, "-1"),
        (WINDOW_HOURS_VAR, "nan"),
        (WINDOW_HOURS_VAR, "inf"),
    ],
)
def test_a_malformed_variable_is_named(name, value):
    with pytest.raises(ValueError, match=f"{name}='{value}' is invalid"):
        burst_settings({name: value})


def test_explicit_settings_are_validated_too():
    with pytest.raises(ValueError, match="threshold must be >= 1"):
        BurstSettings(threshold=0)
    with pytest.raises(ValueError, match="window must be > 0 hours"):
        BurstSettings(window_hours=0)


# ------------------------------------------------------------------------------------------ bursts


def test_threshold_minus_one_does_not_fire_threshold_fires_once():
    rules = BurstSettings(threshold=5, window_hours=24)
    quiet = burst_decision(reports(1, 1, 2, 3, 4), BurstState(0), NOW, rules)
    assert (quiet.fire, quiet.counted, quiet.state.last_id, len(quiet.state.pending)) == (False, 4, 4, 4)
    burst = burst_decision(reports(5, 0.5), quiet.state, NOW, rules)
    assert (burst.fire, burst.counted) == (True, 5)
    assert burst.state == BurstState(5, NOW, ())
    later = NOW + dt.timedelta(minutes=5)
    assert not burst_decision([], burst.state, later, rules).fire


def test_after_a_request_it_takes_threshold_new_reports_to_fire_again():
    rules = BurstSettings(threshold=3, window_hours=24)
    state = burst_decision(reports(1, 3, 2, 1), BurstState(0), NOW, rules).state
    assert state.requested_at == NOW
    later = NOW + dt.timedelta(hours=1)
    fresh = [Report(4, NOW + dt.timedelta(minutes=10)), Report(5, NOW + dt.timedelta(minutes=20))]
    two = burst_decision(fresh, state, later, rules)
    assert (two.fire, two.counted) == (False, 2)
    three = burst_decision([Report(6, NOW + dt.timedelta(minutes=30))], two.state, later, rules)
    assert (three.fire, three.counted, three.state.last_id) == (True, 3, 6)


def test_stragglers_of_an_acted_on_burst_do_not_start_a_new_one():
    rules = BurstSettings(threshold=2, window_hours=24)
    state = burst_decision(reports(1, 2, 1), BurstState(0), NOW, rules).state
    # Late rows stamped before the request: the burst already acted on.
    late = burst_decision(reports(3, 1.5, 0.5), state, NOW + dt.timedelta(hours=1), rules)
    assert (late.fire, late.counted, late.state.last_id) == (False, 0, 4)


def test_reports_outside_the_window_do_not_count_and_held_ones_expire():
    rules = BurstSettings(threshold=3, window_hours=24)
    old = burst_decision(reports(1, 30, 25), BurstState(0), NOW, rules)
    assert (old.fire, old.counted, old.state.pending) == (False, 0, ())
    held = burst_decision(reports(3, 23, 22), old.state, NOW, rules)
    assert held.counted == 2
    # Two hours later the first held report is 25 h old: a third report makes two, not three.
    expired = burst_decision(reports(5, -2), held.state, NOW + dt.timedelta(hours=2), rules)
    assert (expired.fire, expired.counted) == (False, 2)


def test_lowering_the_threshold_acts_on_the_reports_held():
    state = burst_decision(reports(1, 1, 2), BurstState(0), NOW, BurstSettings(threshold=5)).state
    assert burst_decision([], state, NOW, BurstSettings(threshold=2)).fire


def test_cursor_round_trip_and_malformed_cursors():
    state = BurstState(17, at(5), (at(3), at(1)))
    assert BurstState.from_cursor(state.to_cursor()) == state
    assert BurstState.from_cursor(BurstState(3).to_cursor()) == BurstState(3)
    for bad in ["17", "{}", "[1]", '{"last_id": "x"}', '{"last_id": 1, "pending": ["never"]}']:
        with pytest.raises(ValueError, match="is not a burst cursor"):
            BurstState.from_cursor(bad)


@st.composite
def evaluations(draw):
    """Ticks of a sensor: each brings new reports (ids increasing, timestamps anywhere around the
    tick) and advances time by up to a day."""
    ticks, next_id, now = [], 1, NOW
    for _ in range(draw(st.integers(1, 12))):
        now = now + dt.timedelta(minutes=draw(st.integers(0, 24 * 60)))
        batch = []
        for offset in draw(st.lists(st.integers(-48 * 60, 60), max_size=8)):
            batch.append(Report(next_id, now + dt.timedelta(minutes=offset)))
            next_id += 1
        ticks.append((now, batch))
    return ticks


@settings(max_examples=300, deadline=None)
@given(ticks=evaluations(), threshold=st.integers(1, 6), window_hours=st.sampled_from([1, 6, 24]))
def test_decisions_match_a_model_over_the_whole_history(ticks, threshold, window_hours):
    """Fires exactly when the reports seen since the last firing evaluation, stamped after that
    request and within the window, reach the threshold — with the cursor saved and restored at
    every tick, as across daemon restarts."""
    rules = BurstSettings(threshold, window_hours)
    cursor = BurstState(0).to_cursor()
    history: list[tuple[int, Report]] = []
    last_fire_tick, last_fire_time = -1, None
    for i, (now, batch) in enumerate(ticks):
        history += [(i, r) for r in batch]
        decision = burst_decision(batch, BurstState.from_cursor(cursor), now, rules)
        counting = [
            r
            for tick, r in history
            if tick > last_fire_tick
            and r.ts >= now - rules.window
            and (last_fire_time is None or r.ts > last_fire_time)
        ]
        assert decision.counted == len(counting)
        assert decision.fire == (len(counting) >= threshold)
        assert decision.state.last_id == max([0, *(r.id for _, r in history)])
        assert len(decision.state.pending) < threshold
        if decision.fire:
            last_fire_tick, last_fire_time = i, now
        cursor = decision.state.to_cursor()


# ------------------------------------------------------------------------------------------ months


def test_a_month_is_complete_once_data_reaches_its_end_in_tokyo():
    # October ends at 2026-11-01 00:00 JST = 2026-10-31 15:00 UTC.
    before = parse_utc("2026-10-31T14:59:59Z")
    after = parse_utc("2026-10-31T15:00:00Z")
    assert month_start(before) == dt.date(2026, 10, 1) and month_start(after) == dt.date(2026, 11, 1)
    assert months_to_request(before, None, NOW, FIRST, 3) == [dt.date(2026, 9, 1)]
    assert months_to_request(after, None, NOW, FIRST, 3) == [dt.date(2026, 10, 1)]


def test_first_evaluation_requests_only_the_latest_complete_month():
    assert months_to_request(at(0), None, NOW, FIRST, 3) == [dt.date(2026, 10, 1)]
    assert months_to_request(None, None, NOW, FIRST, 3) == []


def test_missed_months_follow_in_order_at_most_limit_at_a_time():
    latest = at(0)
    first_batch = months_to_request(latest, dt.date(2026, 4, 1), NOW, FIRST, 3)
    assert first_batch == [dt.date(2026, 5, 1), dt.date(2026, 6, 1), dt.date(2026, 7, 1)]
    second = months_to_request(latest, first_batch[-1], NOW, FIRST, 3)
    assert second == [dt.date(2026, 8, 1), dt.date(2026, 9, 1), dt.date(2026, 10, 1)]
    assert months_to_request(latest, second[-1], NOW, FIRST, 3) == []


def test_rows_stamped_in_the_future_complete_nothing_and_no_month_precedes_the_first_partition():
    assert months_to_request(parse_utc("2099-01-01T00:00:00Z"), None, NOW, FIRST, 3) == [dt.date(2026, 10, 1)]
    assert months_to_request(parse_utc("2025-01-20T00:00:00Z"), None, NOW, FIRST, 3) == []
    assert months_to_request(parse_utc("2025-03-02T00:00:00Z"), dt.date(2024, 6, 1), NOW, FIRST, 5) == [
        dt.date(2025, 1, 1),
        dt.date(2025, 2, 1),
    ]


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.integers(0, 80), min_size=1, max_size=10), limit=st.integers(1, 4))
def test_every_complete_month_after_the_first_request_is_requested_once_in_order(steps, limit):
    latest, last, requested = dt.datetime(2025, 6, 10, tzinfo=UTC), None, []
    for days in steps:
        latest += dt.timedelta(days=days)
        now = latest + dt.timedelta(hours=1)
        months = months_to_request(latest, last, now, FIRST, limit)
        assert len(months) <= limit
        requested += months
        last = months[-1] if months else last
    while months := months_to_request(latest, last, now, FIRST, limit):  # let the sensor catch up
        requested += months
        last = months[-1]
    expected = []
    month = requested[0]
    while month < month_start(latest):
        expected.append(month)
        month = (month + dt.timedelta(days=32)).replace(day=1)
    assert requested == expected
