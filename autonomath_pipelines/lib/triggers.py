"""When a data-driven sensor asks for a loop run: cursors and decisions (pure logic, no Dagster).

Row cursors are the table's integer ``id`` (SQLite's rowid), never a timestamp: ids of appended rows
grow in commit order (SQLite has one writer at a time), while ``ts`` is the service's clock and rows
may arrive late or out of order. A row is therefore seen exactly once, whatever its ``ts``.

*Wrong-answer bursts* (loop A). A report counts toward a request when it is new (id above the
cursor), lies in the last ``window`` (its ``ts``) and is later than the last request (a straggler of
a burst already acted on does not start a new one). A request fires when ``threshold`` such reports
are held; it spends them, so the next request needs ``threshold`` new ones. The cursor keeps the
timestamps of the reports still counting (fewer than ``threshold`` after every decision, so it stays
small). A window made longer later counts from the reports still held.

*Complete months* (monthly loops). A calendar month (Asia/Tokyo) is complete once the data holds a
row stamped at or after its end. The first evaluation requests only the latest complete month;
later ones request every month since the last requested, oldest first, at most ``limit`` at a time
(the rest follow at the next evaluations).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping
from zoneinfo import ZoneInfo

from autonomath_pipelines.catalog import TIMEZONE

THRESHOLD_VAR = "AUTONOMATH_BURST_THRESHOLD"
WINDOW_HOURS_VAR = "AUTONOMATH_BURST_WINDOW_HOURS"
DEFAULT_THRESHOLD = 20
DEFAULT_WINDOW_HOURS = 24.0
TOKYO = ZoneInfo(TIMEZONE)


def parse_utc(text: str) -> dt.datetime:
    """A database timestamp (``2026-11-20T15:00:00Z``; no offset means UTC) as an aware datetime."""
    moment = dt.datetime.fromisoformat(text)
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat()


# ------------------------------------------------------------------------------------- row cursor


def parse_id_cursor(cursor: str | None) -> int | None:
    """The last processed id of a row cursor; None before the first evaluation."""
    if cursor is None:
        return None
    try:
        return int(cursor)
    except ValueError:
        raise ValueError(f"cursor {cursor!r} is not a row id; reset the sensor's cursor") from None


# ---------------------------------------------------------------------------------- burst (loop A)


@dataclass(frozen=True)
class BurstSettings:
    """How many wrong-answer reports within how many hours make a burst."""

    threshold: int = DEFAULT_THRESHOLD
    window_hours: float = DEFAULT_WINDOW_HOURS

    def __post_init__(self):
        if self.threshold < 1:
            raise ValueError(f"burst threshold must be >= 1, got {self.threshold}")
        if not self.window_hours > 0:
            raise ValueError(f"burst window must be > 0 hours, got {self.window_hours}")

    @property
    def window(self) -> dt.timedelta:
        return dt.timedelta(hours=self.window_hours)


def burst_settings(
    env: Mapping[str, str], threshold: int | None = None, window_hours: float | None = None
) -> BurstSettings:
    """Settings from explicit values, else ``AUTONOMATH_BURST_THRESHOLD`` / ``AUTONOMATH_BURST_WINDOW_HOURS``,
    else the defaults. A malformed variable raises ``ValueError`` naming it."""
    if threshold is None:
        threshold = _env_number(env, THRESHOLD_VAR, int, DEFAULT_THRESHOLD, "an integer >= 1", lambda v: v >= 1)
    if window_hours is None:
        window_hours = _env_number(
            env, WINDOW_HOURS_VAR, float, DEFAULT_WINDOW_HOURS, "a number of hours > 0", lambda v: 0 < v < float("inf")
        )
    return BurstSettings(threshold, window_hours)


def _env_number(env, name, kind, default, expected, valid):
    """``env[name]`` as ``kind``, ``default`` when unset or blank; anything else invalid raises."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise ValueError(f"{name}={text!r} is invalid: expected {expected}")
    return value


@dataclass(frozen=True)
class Report:
    """One wrong-answer report: its row id and its timestamp (None: unreadable, never counted)."""

    id: int
    ts: dt.datetime | None


def reports_from_rows(rows: Iterable[tuple[int, str]]) -> list[Report]:
    """Reports from ``(id, ts)`` rows; a malformed ``ts`` is read as None rather than stopping the sensor."""
    reports = []
    for row_id, ts in rows:
        try:
            moment = parse_utc(ts)
        except (TypeError, ValueError):
            moment = None
        reports.append(Report(int(row_id), moment))
    return reports


@dataclass(frozen=True)
class BurstState:
    """The burst sensor's cursor (saved as JSON between evaluations)."""

    #: Highest ``customer_feedback`` id processed.
    last_id: int
    #: When the last run was requested (None: never).
    requested_at: dt.datetime | None = None
    #: Timestamps of the reports counting toward the next request, oldest first.
    pending: tuple[dt.datetime, ...] = field(default_factory=tuple)

    def to_cursor(self) -> str:
        return json.dumps(
            {
                "last_id": self.last_id,
                "requested_at": _iso(self.requested_at) if self.requested_at else None,
                "pending": [_iso(t) for t in self.pending],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_cursor(cls, cursor: str) -> BurstState:
        try:
            data = json.loads(cursor)
            return cls(
                int(data["last_id"]),
                parse_utc(data["requested_at"]) if data.get("requested_at") else None,
                tuple(parse_utc(t) for t in data.get("pending", ())),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ValueError(f"cursor {cursor!r} is not a burst cursor; reset the sensor's cursor") from None


@dataclass(frozen=True)
class BurstDecision:
    """What one evaluation decides: request a run or not, and the cursor to save."""

    fire: bool
    state: BurstState
    #: Reports counting toward a request at this evaluation (before a request spends them).
    counted: int
    #: New rows seen at this evaluation.
    new_reports: int


def burst_decision(
    new_reports: Iterable[Report], state: BurstState, now: dt.datetime, settings: BurstSettings
) -> BurstDecision:
    """Whether the reports since ``state`` make a burst at ``now``, and the cursor after deciding."""
    new_reports = list(new_reports)
    cutoff = now - settings.window
    counting = [t for t in state.pending if t >= cutoff]
    counting += [
        r.ts
        for r in new_reports
        if r.ts is not None and r.ts >= cutoff and (state.requested_at is None or r.ts > state.requested_at)
    ]
    last_id = max([state.last_id, *(r.id for r in new_reports)])
    if len(counting) >= settings.threshold:
        return BurstDecision(True, BurstState(last_id, now, ()), len(counting), len(new_reports))
    return BurstDecision(
        False, BurstState(last_id, state.requested_at, tuple(sorted(counting))), len(counting), len(new_reports)
    )


# ------------------------------------------------------------------------- months (monthly loops)


def month_start(moment: dt.datetime) -> dt.date:
    """The first day of ``moment``'s calendar month in Asia/Tokyo."""
    return moment.astimezone(TOKYO).date().replace(day=1)


def next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def months_to_request(
    latest_data: dt.datetime | None, last_requested: dt.date | None, now: dt.datetime, first: dt.date, limit: int
) -> list[dt.date]:
    """Months (first days) whose data is complete and not yet requested, oldest first, at most ``limit``.

    A month is complete when ``latest_data`` (the newest row's timestamp) is at or after its end and
    the month has ended by ``now`` (rows stamped in the future do not complete a month). Months
    before ``first`` (the first partition) do not exist. Without ``last_requested`` only the latest
    complete month is returned: history is not replayed."""
    if latest_data is None:
        return []
    current = month_start(min(latest_data, now))
    latest = (current - dt.timedelta(days=1)).replace(day=1)
    if latest < first:
        return []
    if last_requested is None:
        return [latest]
    months = []
    month = max(next_month(last_requested), first)
    while month <= latest and len(months) < limit:
        months.append(month)
        month = next_month(month)
    return months
