"""The weekly self-improvement digest (DESIGN §6): the seed's one line and what the operator must see under it.

``Self-improvement: {s}/{n} loops succeeded last 7 days, {x} candidates proposed, {y} promoted.``

- n: loops with a finished run in the window; s: those whose latest finished run there succeeded.
- x: candidates the loops proposed in the window; y: candidates promoted in it and not rolled back
  since (the shell counts both).
- Below it: loops whose latest run did not succeed, loops still running, loops that did not run at
  all (monthly loops, most weeks), and a warning for every loop whose last two finished runs — in
  all history, not only the window — both failed (the seed's "PC2 data-gap signal": a loop that
  keeps failing stops proposing, which looks like silence rather than an outage). Canceled runs
  are an operator's decision, not a data gap: they neither count as failures nor break a streak.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Mapping, Sequence

import pandas as pd

from autonomath_pipelines.catalog import LoopSpec
from autonomath_pipelines.lib.scorecard import FINISHED_STATUSES as FINISHED

#: Failed runs in a row that make a warning.
FAILURE_STREAK = 2
#: Run ids a warning lists before it summarizes the rest.
SHOWN_RUN_IDS = 3


def headline(succeeded: int, ran: int, proposed: int, promoted: int, days: int = 7) -> str:
    return (
        f"Self-improvement: {succeeded}/{ran} loops succeeded last {days} days, "
        f"{proposed} candidates proposed, {promoted} promoted."
    )


# -------------------------------------------------------------------------------- failure streaks


@dataclass(frozen=True)
class FailureStreak:
    loop_id: str
    #: The failed runs of the streak, newest first.
    run_ids: tuple[str, ...]
    #: Every run looked at failed: the streak may be longer than ``len(run_ids)``.
    open_ended: bool = False

    def warning(self, last_error: str | None = None) -> str:
        count = f"{len(self.run_ids)}+" if self.open_ended else str(len(self.run_ids))
        shown = list(self.run_ids[:SHOWN_RUN_IDS])
        if len(self.run_ids) > SHOWN_RUN_IDS:
            shown.append(f"+{len(self.run_ids) - SHOWN_RUN_IDS} earlier")
        details = ", ".join(shown) + (f", last error: {last_error}" if last_error else "")
        return f"WARNING: {self.loop_id} failed in {count} consecutive runs ({details})"


def failure_streaks(
    history: pd.DataFrame, threshold: int = FAILURE_STREAK, lookback: int | None = None
) -> list[FailureStreak]:
    """Loops whose newest ``threshold`` or more finished runs all failed.

    ``history``: one row per run (``loop_id``, ``run_id``, ``status``, ``created_at``), any order;
    ``lookback``: how many finished runs per loop the caller fetched (a streak that long is open-ended).
    """
    streaks = []
    if history.empty:
        return streaks
    decisive = history[history["status"].isin(("SUCCESS", "FAILURE"))]
    for loop_id, runs in decisive.groupby("loop_id", sort=True):
        runs = runs.sort_values("created_at", ascending=False, kind="stable")
        statuses = runs["status"].tolist()
        failed = next((i for i, status in enumerate(statuses) if status != "FAILURE"), len(statuses))
        if failed >= threshold:
            streaks.append(
                FailureStreak(
                    str(loop_id),
                    tuple(runs["run_id"].head(failed)),
                    open_ended=lookback is not None and failed >= lookback,
                )
            )
    return streaks


# ----------------------------------------------------------------------------------------- digest


@dataclass
class Digest:
    """The digest of ``[since, until)``: the seed's line, the extra lines and the numbers behind them."""

    since: dt.datetime
    until: dt.datetime
    days: int
    loops_ran: int
    loops_succeeded: int
    candidates_proposed: int
    candidates_promoted: int
    #: Per loop: letter, loop_id, runs, failures, latest_status, latest_run_id, proposed.
    per_loop: pd.DataFrame
    not_run: tuple[str, ...] = ()
    not_succeeded: tuple[str, ...] = ()
    running: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    #: Caveats about the inputs (e.g. no review audit log to count promotions from).
    notes: tuple[str, ...] = ()

    @property
    def line(self) -> str:
        return headline(
            self.loops_succeeded, self.loops_ran, self.candidates_proposed, self.candidates_promoted, self.days
        )

    @property
    def consecutive_failure_loops(self) -> int:
        return len(self.warnings)

    @property
    def lines(self) -> list[str]:
        extra = []
        if self.not_succeeded:
            extra.append("Latest run did not succeed: " + "; ".join(self.not_succeeded) + ".")
        if self.running:
            extra.append("Still running or queued: " + "; ".join(self.running) + ".")
        if self.not_run:
            extra.append(f"Did not run in the last {self.days} days: " + "; ".join(self.not_run) + ".")
        return [self.line, *extra, *self.warnings, *self.notes]

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def markdown(self, title: str) -> str:
        window = f"{self.since:%Y-%m-%d %H:%M} – {self.until:%Y-%m-%d %H:%M} {self.since.tzname() or ''}".rstrip()
        table = self.per_loop.to_markdown(index=False) if len(self.per_loop) else "_no loops_"
        body = [f"# {title}", "", f"Window: {window}", "", f"**{self.line}**", ""]
        body += [f"- {line}" for line in self.lines[1:]]
        return "\n".join([*body, "", table, ""])


def _loop_label(spec: LoopSpec) -> str:
    return f"{spec.letter} {spec.loop_id}"


def compose_digest(
    loops: Sequence[LoopSpec],
    runs: pd.DataFrame,
    proposed: Mapping[str, int],
    promoted: int,
    streaks: Sequence[FailureStreak],
    errors: Mapping[str, str],
    since: dt.datetime,
    until: dt.datetime,
    days: int = 7,
    notes: Sequence[str] = (),
) -> Digest:
    """The digest of the window's ``runs`` (``loop_id``, ``run_id``, ``status``, ``run_time``).

    ``errors`` maps run ids to their last error: a warning quotes the newest failed run's.
    """
    rows, not_run, not_succeeded, running = [], [], [], []
    ran = succeeded = 0
    for spec in loops:
        own = runs[runs["loop_id"] == spec.loop_id].sort_values("run_time", kind="stable") if len(runs) else runs
        finished = own[own["status"].isin(FINISHED)] if len(own) else own
        latest = finished.iloc[-1] if len(finished) else None
        if latest is not None:
            ran += 1
            if latest["status"] == "SUCCESS":
                succeeded += 1
            else:
                not_succeeded.append(f"{_loop_label(spec)} ({latest['status'].lower()}, run {latest['run_id']})")
        unfinished = own[~own["status"].isin(FINISHED)] if len(own) else own
        if len(unfinished):
            running.append(f"{_loop_label(spec)} (run {unfinished.iloc[-1]['run_id']})")
        elif latest is None:
            not_run.append(f"{_loop_label(spec)} ({spec.cadence_text})")
        rows.append(
            {
                "letter": spec.letter,
                "loop_id": spec.loop_id,
                "runs": len(finished),
                "failures": int((finished["status"] == "FAILURE").sum()) if len(finished) else 0,
                "latest_status": latest["status"] if latest is not None else "",
                "latest_run_id": latest["run_id"] if latest is not None else "",
                "proposed": int(proposed.get(spec.loop_id, 0)),
            }
        )
    return Digest(
        since=since,
        until=until,
        days=days,
        loops_ran=ran,
        loops_succeeded=succeeded,
        candidates_proposed=int(sum(proposed.get(spec.loop_id, 0) for spec in loops)),
        candidates_promoted=int(promoted),
        per_loop=pd.DataFrame(rows),
        not_run=tuple(not_run),
        not_succeeded=tuple(not_succeeded),
        running=tuple(running),
        warnings=tuple(streak.warning(errors.get(streak.run_ids[0])) for streak in streaks),
        notes=tuple(notes),
    )
