"""Which partition of each loop the eval runs, and the windows the scores read."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd

from autonomath_pipelines.catalog import LOOP_SPECS, TIMEZONE, LoopSpec, loop_spec

JST = ZoneInfo(TIMEZONE)
#: The eval world's logs end here (JST). A Sunday *and* the 1st of a month: weekly and monthly
#: partitions both end exactly where the logs end, so the truth's "last 14 / 30 days" line up.
DEFAULT_AS_OF = dt.date(2026, 11, 1)
#: Loop C's replay: the week after its partition.
C_REPLAY_DAYS = 7
#: Loop D's first origin: the month by which a third of the resolved forecasts are in (the warm-up).
D_WARMUP_QUANTILE = 1 / 3


def world_end(as_of: dt.date) -> dt.datetime:
    """The instant the world's logs end: ``as_of`` 00:00 JST, as UTC."""
    return dt.datetime(as_of.year, as_of.month, as_of.day, tzinfo=JST).astimezone(dt.timezone.utc)


def _last_complete(spec: LoopSpec, now: dt.datetime) -> str:
    from autonomath_pipelines.loops.common import last_complete_partition_key

    key = last_complete_partition_key(spec, now)
    if key is None:
        raise ValueError(f"no complete {spec.cadence} partition of {spec.loop_id} before {now.isoformat()}")
    return key


def window_of(letter: str, key: str) -> tuple[dt.datetime, dt.datetime]:
    """The read window [start, end) of a loop partition, as the loop computes it (catalog lookback)."""
    from autonomath_pipelines.loops.common import partitions_for

    spec = loop_spec(letter)
    tw = partitions_for(spec).time_window_for_partition_key(key)
    start, end = spec.window_bounds(tw.start, tw.end)
    return start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)


def d_partitions(db, end: dt.datetime) -> str:
    """Loop D's origins, ``first..last``: every month from the one in which a third of the resolved
    forecasts (by resolution time) are in, to the last month that ends before the logs do. Each
    origin's calibration is scored on the rounds resolved in the month after it (rolling origin)."""
    from autonomath_pipelines.loops.common import partitions_for

    spec = loop_spec("D")
    partitions = partitions_for(spec)
    last = _last_complete(spec, end)
    if partitions.time_window_for_partition_key(last).end >= end:  # nothing resolves after it
        keys = partitions.get_partition_keys()
        last = keys[max(0, keys.index(last) - 1)]
    frame = db.read_frame(
        "SELECT r.resolved_at FROM forecast_predictions p JOIN am_application_round r "
        "ON r.round_id = p.round_id WHERE r.status = 'resolved' ORDER BY r.resolved_at"
    )
    if frame.empty:
        return f"{last}..{last}"
    cut = pd.Timestamp(frame["resolved_at"].iloc[int(D_WARMUP_QUANTILE * (len(frame) - 1))]).tz_convert(JST)
    first = f"{cut.year:04d}-{cut.month:02d}-01"
    if not partitions.has_partition_key(first) or first > last:
        first = last
    return f"{first}..{last}"


def range_keys(letter: str, key: str) -> list[str]:
    """The partition keys of ``key`` (one key, or ``first..last``)."""
    if ".." not in key:
        return [key]
    import dagster as dg

    from autonomath_pipelines.loops.common import partitions_for

    first, last = key.split("..")
    return partitions_for(loop_spec(letter)).get_partition_keys_in_range(dg.PartitionKeyRange(first, last))


def eval_partitions(as_of: dt.date, db) -> dict[str, str]:
    """Partition per loop letter, all chosen from the world's end so that what each score needs is in
    the logs: the window itself, and for C and H the period after it (the replay)."""
    end = world_end(as_of)
    keys = {}
    for spec in LOOP_SPECS:
        if spec.letter == "C":  # the week after the window is the replay period
            keys["C"] = _last_complete(spec, end - dt.timedelta(days=C_REPLAY_DAYS))
        elif spec.letter == "H":  # the next day is the replay day
            keys["H"] = _last_complete(spec, end - dt.timedelta(days=1))
        elif spec.letter == "D":
            keys["D"] = d_partitions(db, end)
        else:
            keys[spec.letter] = _last_complete(spec, end)
    return keys
