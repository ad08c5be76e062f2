"""Channel ROI: naming, the SQL aggregates on hand-made and generated worlds, and the gates."""

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autonomath_pipelines.contract.schema import create_all
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.lib import channel_roi
from autonomath_pipelines.lib.channel_roi import EMPTY, UNATTRIBUTED, UNKNOWN, channel_name, channel_table

START, END = "2026-10-17T15:00:00Z", "2026-11-14T15:00:00Z"
BEFORE, INSIDE, AFTER = "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", "2026-11-20T00:00:00Z"


def make_db(subscribers, billing, queries=()):
    conn = sqlite3.connect(":memory:")
    create_all(conn)
    conn.executemany("INSERT INTO subscribers VALUES (?, ?, ?, ?, ?)", subscribers)
    conn.executemany(
        "INSERT INTO billing_events (ts, subscriber_id, api_key, event_type, amount_jpy) VALUES (?, ?, NULL, ?, ?)",
        billing,
    )
    conn.executemany(
        "INSERT INTO query_log (ts, api_key, session_id, query_text, confidence, result_count, "
        "latency_ms, tier) VALUES (?, ?, 's', 'q', 0.9, 1, 1.0, 'paid')",
        queries,
    )
    return conn


def aggregate(conn, start=START, end=END) -> pd.DataFrame:
    cursor = conn.execute(channel_roi.AGGREGATES_SQL, {"start": start, "end": end})
    return pd.DataFrame(cursor.fetchall(), columns=[d[0] for d in cursor.description])


def table_of(conn, **kwargs) -> pd.DataFrame:
    return channel_table(aggregate(conn, **kwargs)).set_index("channel")


# ---------------------------------------------------------------------------------------- naming


@pytest.mark.parametrize(
    "raw, attributed, name",
    [
        (None, True, UNKNOWN),
        (float("nan"), True, UNKNOWN),
        ("", True, EMPTY),
        ("  ", True, EMPTY),
        ("google", True, "google"),
        ("google", False, UNATTRIBUTED),
        (None, False, UNATTRIBUTED),
    ],
)
def test_channel_names(raw, attributed, name):
    assert channel_name(raw, attributed) == name


# ---------------------------------------------------------------------------------- aggregation


def test_hand_made_window():
    conn = make_db(
        subscribers=[
            ("s1", "k1", "google", INSIDE, "paid"),
            ("s2", "k2", "google", INSIDE, "free"),
            ("s3", "k3", None, INSIDE, "paid"),
            ("s4", None, "", BEFORE, "free"),
            ("s5", "k5", "x", AFTER, "paid"),
        ],
        billing=[
            (INSIDE, "s1", "charge", 300),
            (INSIDE, "s1", "refund", 30),
            (INSIDE, "s4", "charge", 90),
            (INSIDE, "ghost", "charge", 6),
            (BEFORE, "s1", "charge", 999),
            (AFTER, "s3", "charge", 999),
            (END, "s3", "charge", 999),
            (START, "s3", "refund", 12),
        ],
        queries=[(INSIDE, "k1")] * 4 + [(INSIDE, "k3"), (INSIDE, "internal"), (AFTER, "k1")],
    )
    table = table_of(conn)
    assert table.loc["google", ["signups_28d", "paid_28d", "revenue_28d_jpy", "refunds_jpy"]].tolist() == [
        2,
        1,
        270,
        30,
    ]
    assert table.loc["google", ["requests_28d", "active_keys", "paying_subscribers"]].tolist() == [4, 1, 1]
    # NULL utm: a paid sign-up; its refund at the window start is inside ([start, end)), its charge at the end is not.
    assert table.loc[UNKNOWN, ["signups_28d", "paid_28d", "revenue_28d_jpy", "requests_28d"]].tolist() == [1, 1, -12, 1]
    # '' utm: signed up before the window, still earns in it.
    assert table.loc[EMPTY, ["signups_28d", "revenue_28d_jpy"]].tolist() == [0, 90]
    assert table.loc[UNATTRIBUTED, "revenue_28d_jpy"] == 6
    assert "x" not in table.index  # signed up after the window, no activity in it
    assert int(table["revenue_28d_jpy"].sum()) == 300 - 30 + 90 + 6 - 12
    assert table.index.is_unique
    assert list(table.index[:2]) == ["google", EMPTY]  # by revenue, descending


def test_empty_window_gives_an_empty_typed_table():
    conn = make_db([("s1", "k1", "google", INSIDE, "paid")], [(INSIDE, "s1", "charge", 3)])
    table = channel_table(aggregate(conn, start="2025-01-01T00:00:00Z", end="2025-01-29T00:00:00Z"))
    assert table.empty and list(table.columns) == list(channel_roi.OUTPUT_COLUMNS)
    assert channel_roi.summary(table)["revenue_jpy"] == 0
    assert all(g.evaluate(table).passed for g in channel_roi.candidate_gates(lambda: (0, 0)))


def test_a_key_two_subscribers_name_counts_once_for_the_latest():
    conn = make_db(
        [("s1", "k1", "google", BEFORE, "free"), ("s2", "k1", "x", INSIDE, "paid")], [], queries=[(INSIDE, "k1")] * 3
    )
    table = table_of(conn)
    assert int(table["requests_28d"].sum()) == 3 and table.loc["x", "requests_28d"] == 3


def test_a_literal_reserved_name_merges_into_one_row():
    conn = make_db([("s1", "k1", None, INSIDE, "paid"), ("s2", "k2", UNKNOWN, INSIDE, "free")], [])
    table = table_of(conn)
    assert table.loc[UNKNOWN, "signups_28d"] == 2 and table.index.is_unique


# ------------------------------------------------------------------------------------ properties

CHANNELS = st.sampled_from([None, "", " ", "google", "x", "partner_freee", UNKNOWN])
TIMES = st.sampled_from([BEFORE, START, INSIDE, "2026-11-14T14:59:59Z", END, AFTER])


@st.composite
def worlds(draw):
    n = draw(st.integers(0, 12))
    subscribers = [
        (
            f"s{i}",
            f"k{i}" if draw(st.booleans()) else None,
            draw(CHANNELS),
            draw(TIMES),
            draw(st.sampled_from(["free", "paid"])),
        )
        for i in range(n)
    ]
    ids = [s[0] for s in subscribers] + ["ghost"]
    billing = draw(
        st.lists(
            st.tuples(TIMES, st.sampled_from(ids), st.sampled_from(["charge", "refund"]), st.integers(1, 10_000)),
            max_size=25,
        )
    )
    keys = [s[1] for s in subscribers if s[1]] + ["internal"]
    queries = draw(st.lists(st.tuples(TIMES, st.sampled_from(keys)), max_size=25))
    return subscribers, billing, queries


def in_window(ts):
    return START <= ts < END


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_channels_partition_the_window_exactly(world):
    subscribers, billing, queries = world
    table = channel_table(aggregate(make_db(subscribers, billing, queries)))
    charges = sum(a for t, _, e, a in billing if in_window(t) and e == "charge")
    refunds = sum(a for t, _, e, a in billing if in_window(t) and e == "refund")
    # Revenue per channel sums to the window's billing: nothing dropped, nothing counted twice.
    assert int(table["revenue_28d_jpy"].sum()) == charges - refunds
    assert (table["revenue_28d_jpy"] == table["charges_jpy"] - table["refunds_jpy"]).all()
    assert int(table["signups_28d"].sum()) == sum(in_window(s[3]) for s in subscribers)
    assert int(table["paid_28d"].sum()) == sum(in_window(s[3]) and s[4] == "paid" for s in subscribers)
    # Unknown and empty channels are never dropped.
    for sid, _, utm, signed, _ in subscribers:
        if in_window(signed):
            assert channel_name(utm) in set(table["channel"])
    subscriber_keys = {s[1] for s in subscribers if s[1]}
    assert int(table["requests_28d"].sum()) == sum(in_window(t) and k in subscriber_keys for t, k in queries)
    assert table["channel"].is_unique
    gates = channel_roi.candidate_gates(lambda: (charges, refunds))
    assert all(g.evaluate(table).passed for g in gates)


@settings(max_examples=40, deadline=None)
@given(worlds(), st.integers(1, 5000))
def test_a_refund_reduces_its_channels_revenue_by_its_amount(world, amount):
    subscribers, billing, queries = world
    before = table_of(make_db(subscribers, billing, queries))
    target = subscribers[0][0] if subscribers else "ghost"
    after = table_of(make_db(subscribers, billing + [(INSIDE, target, "refund", amount)], queries))
    channel = channel_name(subscribers[0][2]) if subscribers else UNATTRIBUTED
    old = int(before["revenue_28d_jpy"].get(channel, 0))
    assert int(after.loc[channel, "revenue_28d_jpy"]) == old - amount
    others = after.drop(index=channel)["revenue_28d_jpy"]
    assert others.equals(before.drop(index=channel, errors="ignore")["revenue_28d_jpy"].reindex(others.index))


# ----------------------------------------------------------------------------------------- gates


def candidate_frame(**overrides) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "channel": ["google", UNKNOWN],
            "signups_28d": [3, 1],
            "paid_28d": [1, 0],
            "charges_jpy": [300, 60],
            "refunds_jpy": [30, 0],
            "revenue_28d_jpy": [270, 60],
            "paying_subscribers": [1, 1],
            "requests_28d": [10, 2],
            "active_keys": [1, 1],
        }
    )
    return frame.assign(**overrides)


def outcomes(frame, totals=(360, 30)):
    return {g.name: g.evaluate(frame).passed for g in channel_roi.candidate_gates(lambda: totals)}


def test_gates_pass_on_a_sound_frame():
    assert all(outcomes(candidate_frame()).values())


@pytest.mark.parametrize(
    "frame, totals, failing",
    [
        (candidate_frame(), (363, 30), "revenue_reconciles"),  # one charge more in the db
        (candidate_frame(), (390, 60), "revenue_reconciles"),  # net agrees, refunds do not
        (candidate_frame(revenue_28d_jpy=[271, 59]), (360, 30), "revenue_reconciles"),  # a row is not charges − refunds
        (candidate_frame(channel=["google", "google"]), (360, 30), "one_row_per_channel"),
        (candidate_frame(channel=["google", None]), (360, 30), "one_row_per_channel"),
        (candidate_frame(channel=["google", " "]), (360, 30), "one_row_per_channel"),
        (candidate_frame(requests_28d=[10, -1]), (360, 30), "no_negative_counts"),
        (candidate_frame(paid_28d=[4, 0]), (360, 30), "no_negative_counts"),
    ],
)
def test_each_gate_catches_its_fault(frame, totals, failing):
    results = outcomes(frame, totals)
    assert results[failing] is False
    assert all(passed for name, passed in results.items() if name != failing)
