"""THE loop table (DESIGN §4).

Partitions, schedules, the orchestrator and the run report read only this table: adding a loop
starts here. Times are Asia/Tokyo wall-clock times.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

TIMEZONE = "Asia/Tokyo"
# First partition of every loop. The demo world and the service's logs start after it.
PARTITIONS_START = "2025-01-01"

Cadence = Literal["daily", "weekly", "monthly"]
WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")  # Dagster/cron numbering: Sun = 0


@dataclass(frozen=True)
class LoopSpec:
    letter: str
    loop_id: str
    title: str
    #: Prefix of the loop's asset names (``<short>_snapshot`` …).
    short: str
    cadence: Cadence
    #: Schedule day: weekday name for weekly loops, day of month for monthly loops.
    day: str | int | None
    #: Schedule time of day, JST, "HH:MM".
    at: str
    #: How far back the loop reads, ending at the partition's end. None: exactly the partition.
    lookback_days: int | None
    window: str
    cost_ceiling_cpu_min: float
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    #: The partition set also holds the period in progress, so a data-driven sensor can run the loop
    #: on it as fresh data arrives (the window then ends when the run was created). The schedule
    #: still targets the last complete partition.
    in_progress_partition: bool = False
    #: Where review's promotion puts an approved candidate (a production table, or a path under the
    #: service repo; the loop never writes it itself, DESIGN §1). None: nothing to promote.
    promotes_to: str | None = None

    @property
    def hour(self) -> int:
        return int(self.at.split(":")[0])

    @property
    def minute(self) -> int:
        return int(self.at.split(":")[1])

    @property
    def day_of_week(self) -> int | None:
        return WEEKDAYS.index(self.day) if self.cadence == "weekly" else None

    @property
    def day_of_month(self) -> int | None:
        return int(self.day) if self.cadence == "monthly" else None

    @property
    def group_name(self) -> str:
        return self.loop_id

    @property
    def job_name(self) -> str:
        return f"{self.loop_id}_job"

    @property
    def schedule_name(self) -> str:
        return f"{self.loop_id}_schedule"

    @property
    def cadence_text(self) -> str:
        when = {"daily": "daily", "weekly": f"weekly {self.day}", "monthly": f"monthly day {self.day}"}
        return f"{when[self.cadence]} {self.at} JST"

    @property
    def candidates_folder(self) -> str | None:
        """The folder under the service repo the loop writes candidate files to (its ``writes`` entry
        ending in ``/``), or None for a loop that writes rows."""
        folders = [w.rstrip("/") for w in self.writes if w.endswith("/")]
        return folders[0] if folders else None

    def window_bounds(
        self, partition_start: dt.datetime, partition_end: dt.datetime
    ) -> tuple[dt.datetime, dt.datetime]:
        """The loop's read window for a partition: it always ends where the partition ends."""
        if self.lookback_days is None:
            return partition_start, partition_end
        return partition_end - dt.timedelta(days=self.lookback_days), partition_end


LOOP_SPECS: tuple[LoopSpec, ...] = (
    LoopSpec(
        "A",
        "loop_a_hallucination_guard",
        "Hallucination guard",
        "hallucination_guard",
        "weekly",
        "Mon",
        "09:30",
        None,
        "partition week (configurable lookback)",
        5,
        reads=("customer_feedback", "query_log", "hallucination_guard"),
        writes=("hallucination_guard_candidates",),
        in_progress_partition=True,
        promotes_to="hallucination_guard",
    ),
    LoopSpec(
        "B",
        "loop_b_testimonial_seo",
        "Testimonial → SEO/GEO",
        "testimonial_seo",
        "monthly",
        1,
        "10:00",
        None,
        "previous month",
        2,
        reads=("customer_success_events", "programs", "prefectures"),
        writes=("seo_testimonial_candidates",),
        promotes_to="site/blog",
    ),
    LoopSpec(
        "C",
        "loop_c_personalized_cache",
        "Personalized cache",
        "personalized_cache",
        "weekly",
        "Sun",
        "03:00",
        30,
        "30 days, paid keys",
        10,
        reads=("query_log", "api_keys", "programs", "prefectures", "am_alias"),
        writes=("personalized_cache",),
    ),
    LoopSpec(
        "D",
        "loop_d_forecast_accuracy",
        "Forecast accuracy",
        "forecast_accuracy",
        "monthly",
        15,
        "09:00",
        None,
        "all rounds resolved by window end",
        3,
        reads=("forecast_predictions", "am_application_round"),
        writes=("forecast_calibration",),
    ),
    LoopSpec(
        "E",
        "loop_e_alias_expansion",
        "Alias expansion",
        "alias_expansion",
        "weekly",
        "Wed",
        "04:00",
        14,
        "14 days, all tiers",
        5,
        reads=("query_log", "am_alias", "programs"),
        writes=("alias_candidates",),
        promotes_to="am_alias",
    ),
    LoopSpec(
        "F",
        "loop_f_channel_roi",
        "Channel ROI",
        "channel_roi",
        "weekly",
        "Fri",
        "16:00",
        28,
        "28 days",
        1,
        reads=("subscribers", "query_log", "billing_events"),
        writes=("channel_roi",),
    ),
    LoopSpec(
        "G",
        "loop_g_invariant_expansion",
        "Invariant expansion",
        "invariant_expansion",
        "monthly",
        5,
        "11:00",
        None,
        "previous month",
        3,
        reads=("error_log", "customer_feedback"),
        writes=("tests/properties/_candidates/",),
        promotes_to="tests/properties",
    ),
    LoopSpec(
        "H",
        "loop_h_cache_warming",
        "Cache warming (Zipf)",
        "cache_warming",
        "daily",
        None,
        "03:30",
        None,
        "previous 24 h",
        10,
        reads=("query_log", "programs", "prefectures", "am_alias"),
        writes=("query_cache",),
    ),
    LoopSpec(
        "I",
        "loop_i_doc_freshness",
        "Doc freshness",
        "doc_freshness",
        "weekly",
        "Tue",
        "02:00",
        None,
        "state at run time",
        2,
        reads=("programs", "source_change_signals"),
        writes=("source_refetch_queue",),
        in_progress_partition=True,
    ),
    LoopSpec(
        "J",
        "loop_j_gold_expansion",
        "Gold expansion",
        "gold_expansion",
        "monthly",
        20,
        "09:00",
        30,
        "30 days",
        5,
        reads=("query_log",),
        writes=("evals/_candidates/",),
        promotes_to="evals/gold.yaml",
    ),
)

LOOP_SPECS_BY_ID: dict[str, LoopSpec] = {loop.loop_id: loop for loop in LOOP_SPECS}


def loop_spec(loop_id: str) -> LoopSpec:
    """The catalog row of ``loop_id``; accepts the letter too (``H`` or ``h``)."""
    if loop_id in LOOP_SPECS_BY_ID:
        return LOOP_SPECS_BY_ID[loop_id]
    by_letter = {loop.letter.lower(): loop for loop in LOOP_SPECS}
    if loop_id.lower() in by_letter:
        return by_letter[loop_id.lower()]
    known = ", ".join(loop.loop_id for loop in LOOP_SPECS)
    raise KeyError(f"unknown loop id {loop_id!r}; known loops: {known}")
