"""Doc freshness: which program source pages to re-fetch first (loop I's pure logic, no Dagster).

The seed's formula, per program::

    priority = 0.6 · staleness_days + 0.3 · tier_weight + 0.1 · change_signal

The three terms are put on one scale — *points*, where one point is worth one day of staleness —
so the seed's coefficients compare like with like:

``staleness_days``
    Days (fractional, 86 400 s each) from ``programs.source_fetched_at`` to the run's *as-of*
    moment, clipped at 0 (a page fetched after the as-of moment, as seen in a backfill over today's
    ``programs`` table, is not stale). 1 day = 1 point.
``tier_weight``
    Editorial importance in points from config, default ``{S: 100, A: 60, B: 30, C: 10}``: tier S
    counts like 100 days of staleness before the coefficient. An unknown tier counts 0.
``change_signal``
    What the latest conclusive liveness scan of the URL observed before the as-of moment, in points:

    * ``changed`` (default 100): HTTP 200 whose ``Last-Modified`` is newer than
      ``source_fetched_at``, or HTTP 200 without ``Last-Modified`` (the server says the page changed
      and gives us nothing to contradict it);
    * ``unchanged`` (0): HTTP 304, or HTTP 200 whose ``Last-Modified`` is not newer than
      ``source_fetched_at`` (a server that ignores conditional requests);
    * ``gone`` (configurable, default 100): HTTP 404 / 410 — the program page may have been withdrawn;
    * ``no_signal`` / ``other`` (0): never scanned, or another status (3xx, 401, 403 …).

    Inconclusive answers (5xx, 429) are not signals: the caller picks the latest *conclusive* one.

"State at run time" is taken to mean *as of the partition end*: only signals observed before it
count and staleness is measured to it, so re-running (or backfilling) a partition gives the same
queue whenever it runs. ``programs`` itself has no history, so its current state is used.

``reason`` names the terms from the largest weighted contribution down, e.g.
``stale 214 d (0.6×214=128.4) > tier S (0.3×100=30.0) > changed (0.1×100=10.0)``; the first is
the *dominant* term. Ranking: priority descending, ties by ``program_id`` ascending; one row per
URL (the best-ranked program of a shared URL); at most N rows.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

DEFAULT_TIER_WEIGHTS: dict[str, float] = {"S": 100.0, "A": 60.0, "B": 30.0, "C": 10.0}
DEFAULT_TOP_N = 500
SECONDS_PER_DAY = 86_400.0
#: HTTP answers that say nothing about the page (server trouble, rate limiting).
INCONCLUSIVE_STATUSES = (429,)  # plus every status >= 500
GONE_STATUSES = (404, 410)
TERMS = ("staleness", "tier", "change")
SIGNAL_CLASSES = ("changed", "unchanged", "gone", "no_signal", "other")


@dataclass(frozen=True)
class FreshnessWeights:
    """Coefficients and point scales of the priority formula (see the module docstring)."""

    staleness: float = 0.6
    tier: float = 0.3
    change: float = 0.1
    tier_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TIER_WEIGHTS))
    changed_points: float = 100.0
    unchanged_points: float = 0.0
    gone_points: float = 100.0
    no_signal_points: float = 0.0

    def __post_init__(self) -> None:
        values = [
            self.staleness,
            self.tier,
            self.change,
            self.changed_points,
            self.unchanged_points,
            self.gone_points,
            self.no_signal_points,
            *self.tier_weights.values(),
        ]
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ValueError("freshness weights and points must be finite and non-negative")

    def signal_points(self, signal_class: str) -> float:
        return {
            "changed": self.changed_points,
            "unchanged": self.unchanged_points,
            "gone": self.gone_points,
            "no_signal": self.no_signal_points,
            "other": self.no_signal_points,
        }[signal_class]


def is_conclusive(http_status: int) -> bool:
    return not (http_status >= 500 or http_status in INCONCLUSIVE_STATUSES)


def _utc(values) -> pd.Series:
    return pd.to_datetime(pd.Series(values, dtype=object), utc=True, errors="coerce", format="ISO8601")


def last_modified_utc(values) -> pd.Series:
    """``Last-Modified`` values as UTC timestamps: contract ISO text, or the raw header's HTTP-date
    (``Wed, 18 Nov 2026 07:28:00 GMT``); anything else NaT."""
    parsed = _utc(values)
    raw = pd.Series(values, dtype=object)
    http = parsed.isna().to_numpy() & raw.map(lambda v: isinstance(v, str) and v.endswith(" GMT")).to_numpy()
    if http.any():
        parsed[http] = pd.to_datetime(raw[http], utc=True, errors="coerce", format="%a, %d %b %Y %H:%M:%S GMT")
    return parsed


def classify_signals(http_status: pd.Series, last_modified: pd.Series, fetched_at: pd.Series) -> pd.Series:
    """One of ``SIGNAL_CLASSES`` per row (``http_status`` NaN: no signal)."""
    status = pd.to_numeric(pd.Series(http_status).reset_index(drop=True), errors="coerce")
    modified = last_modified_utc(list(last_modified))
    fetched = _utc(list(fetched_at))
    newer = (modified > fetched).fillna(False).to_numpy(bool)
    no_lm = modified.isna().to_numpy(bool)
    s = status.to_numpy(float)
    out = np.full(len(s), "other", dtype=object)
    out[np.isnan(s)] = "no_signal"
    out[s == 304] = "unchanged"
    out[(s == 200) & (newer | no_lm)] = "changed"
    out[(s == 200) & ~(newer | no_lm)] = "unchanged"
    out[np.isin(s, GONE_STATUSES)] = "gone"
    return pd.Series(out, index=pd.Series(http_status).index, name="signal_class")


def staleness_days(fetched_at: pd.Series, as_of: pd.Timestamp | str) -> pd.Series:
    """Days from each ``source_fetched_at`` to ``as_of``, clipped at 0 (unparseable: NaN)."""
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    fetched = _utc(list(fetched_at))
    days = (as_of - fetched).dt.total_seconds() / SECONDS_PER_DAY
    return pd.Series(days.clip(lower=0.0).to_numpy(float), index=pd.Series(fetched_at).index, name="staleness_days")


def priority(
    staleness: float | np.ndarray,
    tier_weight: float | np.ndarray,
    change_signal: float | np.ndarray,
    weights: FreshnessWeights = FreshnessWeights(),
):
    """The seed's formula on points (scalar or array)."""
    return weights.staleness * staleness + weights.tier * tier_weight + weights.change * change_signal


def reason_text(
    staleness: float,
    tier: str,
    tier_weight: float,
    signal_class: str,
    change_signal: float,
    weights: FreshnessWeights = FreshnessWeights(),
) -> tuple[str, str]:
    """``(reason, dominant term)``: the terms by weighted contribution, largest first."""
    parts = [
        (
            "staleness",
            weights.staleness * staleness,
            f"stale {staleness:.0f} d ({weights.staleness:g}×{staleness:.0f}={weights.staleness * staleness:.1f})",
        ),
        (
            "tier",
            weights.tier * tier_weight,
            f"tier {tier} ({weights.tier:g}×{tier_weight:g}={weights.tier * tier_weight:.1f})",
        ),
        (
            "change",
            weights.change * change_signal,
            f"{signal_class} ({weights.change:g}×{change_signal:g}={weights.change * change_signal:.1f})",
        ),
    ]
    # Stable sort: equal contributions keep the order staleness, tier, change.
    ordered = sorted(parts, key=lambda p: -p[1])
    return " > ".join(p[2] for p in ordered), ordered[0][0]


def score_programs(
    frame: pd.DataFrame, as_of: pd.Timestamp | str, weights: FreshnessWeights = FreshnessWeights()
) -> pd.DataFrame:
    """Score every program of ``frame``.

    ``frame`` columns: ``program_id, source_url, tier, source_fetched_at`` and the latest conclusive
    signal ``signal_status, signal_last_modified`` (NaN/None when the URL was never scanned).
    Adds ``staleness_days, tier_weight, signal_class, change_signal, priority, reason, dominant_term``.
    """
    scored = frame.reset_index(drop=True).copy()
    if scored.empty:
        for column in ("staleness_days", "tier_weight", "change_signal", "priority"):
            scored[column] = pd.Series(dtype=float)
        for column in ("signal_class", "reason", "dominant_term"):
            scored[column] = pd.Series(dtype=object)
        return scored
    scored["staleness_days"] = staleness_days(scored["source_fetched_at"], as_of).fillna(0.0)
    scored["tier_weight"] = scored["tier"].map(lambda t: float(weights.tier_weights.get(t, 0.0)))
    scored["signal_class"] = classify_signals(
        scored["signal_status"], scored["signal_last_modified"], scored["source_fetched_at"]
    )
    scored["change_signal"] = scored["signal_class"].map(weights.signal_points).astype(float)
    scored["priority"] = priority(
        scored["staleness_days"].to_numpy(float),
        scored["tier_weight"].to_numpy(float),
        scored["change_signal"].to_numpy(float),
        weights,
    )
    reasons = [
        reason_text(s, t, tw, sc, cs, weights)
        for s, t, tw, sc, cs in zip(
            scored["staleness_days"],
            scored["tier"],
            scored["tier_weight"],
            scored["signal_class"],
            scored["change_signal"],
        )
    ]
    scored["reason"] = [r for r, _ in reasons]
    scored["dominant_term"] = [d for _, d in reasons]
    return scored


def rank_top(scored: pd.DataFrame, top_n: int = DEFAULT_TOP_N) -> pd.DataFrame:
    """Priority descending, ties by ``program_id``; one row per ``source_url``; at most ``top_n`` rows."""
    if top_n < 0:
        raise ValueError(f"top_n must be >= 0, got {top_n}")
    ordered = scored.sort_values(["priority", "program_id"], ascending=[False, True], kind="mergesort")
    ordered = ordered.drop_duplicates("source_url", keep="first")
    return ordered.head(top_n).reset_index(drop=True).assign(rank=lambda f: np.arange(1, len(f) + 1))


def fetched_at_digest(rows: Iterable[tuple[str, str]]) -> str:
    """sha256 over the sorted ``(program_id, source_fetched_at)`` pairs: equal iff byte-identical."""
    h = hashlib.sha256()
    for program_id, fetched in sorted((str(p), "" if f is None else str(f)) for p, f in rows):
        h.update(program_id.encode() + b"\x1f" + fetched.encode() + b"\x1e")
    return h.hexdigest()
