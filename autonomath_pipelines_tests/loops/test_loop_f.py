"""Loop F end to end on the small demo world, through Dagster."""

import pandas as pd

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.demo import load_truth
from autonomath_pipelines.lib.channel_roi import EMPTY, UNATTRIBUTED, UNKNOWN
from autonomath_pipelines.loops.loop_f_channel_roi import LOOP
from autonomath_pipelines.resources import AutonomathDatabase
from autonomath_pipelines_tests.conftest import LAST_FULL_WEEK
from autonomath_pipelines_tests.loops.harness import check_outcomes, metadata, run_loop, sha256

# Partition 2026-11-08 (Nov 8–15 JST): the 28-day window ends at the partition end.
WINDOW = ("2026-10-17T15:00:00Z", "2026-11-14T15:00:00Z")
TABLE_COLUMNS = ["channel", "signups_28d", "paid_28d", "revenue_28d_jpy"]


def rows_in_db(db) -> pd.DataFrame:
    return AutonomathDatabase(path=str(db)).read_frame("SELECT * FROM channel_roi ORDER BY partition_key, channel")


def pandas_reference(db, start: str, end: str) -> pd.DataFrame:
    """Channel ROI recomputed from the raw tables with pandas only (no SQL aggregation)."""
    conn = sqlite3.connect(str(db))
    subs = pd.DataFrame(
        conn.execute("SELECT subscriber_id, utm_source, signed_up_at, plan FROM subscribers").fetchall(),
        columns=["subscriber_id", "utm_source", "signed_up_at", "plan"],
    )
    bill = pd.DataFrame(
        conn.execute("SELECT ts, subscriber_id, event_type, amount_jpy FROM billing_events").fetchall(),
        columns=["ts", "subscriber_id", "event_type", "amount_jpy"],
    )
    conn.close()

    def name(utm):
        return UNKNOWN if utm is None or pd.isna(utm) else EMPTY if utm.strip() == "" else utm

    subs["channel"] = subs["utm_source"].map(name)
    new = subs[(subs["signed_up_at"] >= start) & (subs["signed_up_at"] < end)]
    signups = new.groupby("channel").size().rename("signups_28d")
    paid = new[new["plan"] == "paid"].groupby("channel").size().rename("paid_28d")
    bill = bill[(bill["ts"] >= start) & (bill["ts"] < end)].copy()
    bill["signed"] = bill["amount_jpy"].where(bill["event_type"] == "charge", -bill["amount_jpy"])
    bill = bill.merge(subs[["subscriber_id", "channel"]], on="subscriber_id", how="left")
    bill["channel"] = bill["channel"].fillna(UNATTRIBUTED)
    revenue = bill.groupby("channel")["signed"].sum().rename("revenue_28d_jpy")
    frame = pd.concat([signups, paid, revenue], axis=1).fillna(0).astype("int64")
    return frame.rename_axis("channel").reset_index()


def key(frame: pd.DataFrame) -> set[tuple]:
    return {(r.channel, int(r.signups_28d), int(r.paid_28d), int(r.revenue_28d_jpy)) for r in frame.itertuples()}


def test_dry_run_writes_nothing_and_matches_an_independent_pandas_computation(small_world, tmp_path):
    before = sha256(small_world)
    result = run_loop(LOOP, small_world, tmp_path, LAST_FULL_WEEK)
    assert result.success
    assert sha256(small_world) == before
    candidates = result.output_for_node("channel_roi_candidates")
    reference = pandas_reference(small_world, *WINDOW)
    # Channels with only requests (no sign-up, no billing) in the window carry zeros in the reference.
    active = candidates[(candidates[TABLE_COLUMNS[1:]] != 0).any(axis=1)]
    assert key(active) == key(reference)
    assert candidates["channel"].is_unique
    assert check_outcomes(result) == {
        "revenue_reconciles": True,
        "one_row_per_channel": True,
        "no_negative_counts": True,
        "window_not_abnormally_small": True,
    }
    snap = metadata(result, "channel_roi_snapshot")
    assert (snap["window_start_utc"], snap["window_end_utc"]) == WINDOW
    meta = metadata(result, "channel_roi_candidates")
    assert meta["total_revenue_jpy"] == int(reference["revenue_28d_jpy"].sum()) > 0
    assert meta["total_signups"] == int(reference["signups_28d"].sum()) > 0
    assert meta["channels"] == len(candidates)
    assert metadata(result, "channel_roi_published")["rows_would_write"] == len(candidates)


def test_unknown_and_empty_utm_are_named_channels(small_world, tmp_path):
    result = run_loop(LOOP, small_world, tmp_path, LAST_FULL_WEEK)
    channels = set(result.output_for_node("channel_roi_candidates")["channel"])
    truth = {UNKNOWN if c == "(null)" else c for c in load_truth(small_world)["channels"]}
    assert {UNKNOWN, EMPTY} <= channels
    assert channels - {UNATTRIBUTED} <= truth


def test_execute_writes_one_row_per_channel_and_rerun_is_idempotent(small_world, tmp_path):
    result = run_loop(LOOP, small_world, tmp_path, LAST_FULL_WEEK, execute=True)
    assert result.success
    first = rows_in_db(small_world)
    candidates = result.output_for_node("channel_roi_candidates")
    assert len(first) == len(candidates) == metadata(result, "channel_roi_published")["rows_written"] > 0
    assert first["channel"].is_unique
    assert set(first["partition_key"]) == {LAST_FULL_WEEK} and set(first["run_id"]) == {result.run_id}
    assert set(first["loop_id"]) == {"loop_f_channel_roi"}
    assert (set(first["window_start"]), set(first["window_end"])) == ({WINDOW[0]}, {WINDOW[1]})
    assert key(first) == key(candidates)

    again = run_loop(LOOP, small_world, tmp_path, LAST_FULL_WEEK, execute=True)
    assert again.success
    second = rows_in_db(small_world)
    assert key(second) == key(first) and len(second) == len(first)
    assert metadata(again, "channel_roi_published")["rows_deleted"] == len(first)


def test_two_partitions_coexist(small_world, tmp_path):
    assert run_loop(LOOP, small_world, tmp_path, LAST_FULL_WEEK, execute=True).success
    assert run_loop(LOOP, small_world, tmp_path, "2026-11-01", execute=True).success
    rows = rows_in_db(small_world)
    assert set(rows["partition_key"]) == {"2026-11-01", LAST_FULL_WEEK}
    assert not rows.duplicated(["channel", "partition_key"]).any()
    earlier = rows[rows["partition_key"] == "2026-11-01"]
    reference = pandas_reference(small_world, "2026-10-10T15:00:00Z", "2026-11-07T15:00:00Z")
    assert int(earlier["revenue_28d_jpy"].sum()) == int(reference["revenue_28d_jpy"].sum())


def test_an_empty_window_fails_its_check_and_publishes_nothing(small_world, tmp_path):
    result = run_loop(LOOP, small_world, tmp_path, "2025-01-05", execute=True)
    assert not result.success
    assert metadata(result, "channel_roi_candidates")["dagster/row_count"] == 0
    assert metadata(result, "channel_roi_published")["rows_written"] == 0
    outcomes = check_outcomes(result)
    assert outcomes.pop("window_not_abnormally_small") is False and all(outcomes.values())
    assert rows_in_db(small_world).empty


def test_reconciliation_gate_blocks_publish_when_billing_changes_underneath(small_world, tmp_path, monkeypatch):
    """The gate reads billing_events anew: if the candidates disagree with it, nothing is written."""
    from autonomath_pipelines.loops import loop_f_channel_roi as loop_f

    original = loop_f.billing_totals

    def skewed(database, window):
        read = original(database, window)
        return lambda: (read()[0] + 3, read()[1])

    monkeypatch.setattr(loop_f, "billing_totals", skewed)
    before = sha256(small_world)
    result = run_loop(LOOP, small_world, tmp_path, LAST_FULL_WEEK, execute=True)
    assert check_outcomes(result)["revenue_reconciles"] is False
    assert "channel_roi_published" not in {
        e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
    }
    assert sha256(small_world) == before
