"""Is a loop's read window empty or abnormally small against the loop's own recent windows?

Late log ingestion is normal, and a loop that publishes from a window that has not arrived yet
replaces what the service serves (or what the operator reviews) with next to nothing. The measure
is the number of source rows the loop's snapshot read, compared with the snapshots of its previous
partitions: on a log scale, with the median as centre and the median absolute deviation as spread,
so the bound follows each loop's own level and day-to-day swing (weekends included) instead of a
fixed count read off one data set.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from autonomath_pipelines.lib.gates import GateResult

#: Previous windows needed before "abnormally small" is judged (with fewer, only empty fails).
MIN_HISTORY = 3
#: How many robust deviations below the median a window may fall.
DEVIATIONS = 4.0
#: Least spread assumed (log scale), so a loop whose history is flat is not failed for a few rows:
#: with it, a flat history fails a window below exp(-4 × 0.15) ≈ 55 % of its level.
MIN_SPREAD = 0.15
#: MAD × this estimates a normal standard deviation.
MAD_TO_SIGMA = 1.4826


def smallest_normal(previous: Sequence[int]) -> float | None:
    """The fewest rows a window may hold given the previous windows' row counts (None: too little
    history to say). Empty previous windows are left out: they say nothing about the level."""
    counts = [c for c in previous if c > 0]
    if len(counts) < MIN_HISTORY:
        return None
    logs = [math.log(c) for c in counts]
    centre = statistics.median(logs)
    spread = max(MAD_TO_SIGMA * statistics.median(abs(v - centre) for v in logs), MIN_SPREAD)
    return math.exp(centre - DEVIATIONS * spread)


def window_size_verdict(rows: int, previous: Sequence[int], source: str) -> GateResult:
    """Passes unless the window is empty, or smaller than ``smallest_normal(previous)``."""
    if rows < 0:
        raise ValueError(f"a row count cannot be negative, got {rows}")
    floor = smallest_normal(previous)
    counts = [c for c in previous if c > 0]
    metadata = {
        "window_rows": rows,
        "previous_windows": len(previous),
        "previous_median_rows": float(statistics.median(counts)) if counts else 0.0,
        "smallest_normal_rows": round(floor, 1) if floor is not None else -1.0,
    }
    if rows == 0:
        return GateResult(
            False,
            f"the window is empty: {source} holds no rows for it (late ingestion?); nothing was published",
            metadata,
        )
    if floor is not None and rows < floor:
        return GateResult(
            False,
            f"the window is abnormally small: {rows} rows of {source} against a median of "
            f"{metadata['previous_median_rows']:g} over the previous {len(previous)} windows "
            f"(fewest normal: {floor:.0f}); nothing was published",
            metadata,
        )
    judged = (
        "against the previous windows"
        if floor is not None
        else f"({len(counts)} previous windows: too few to judge size)"
    )
    return GateResult(True, f"{rows} rows of {source} {judged}", metadata)
