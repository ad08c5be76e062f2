"""Closed-form empirical-Bayes shrinkage of per-program forecast bias (numpy, no Dagster).

Data: forecast errors ``e_ij = predicted_opens_at − opens_at`` in days, prediction ``j`` of program
``i`` (``i = 1..k``), ``n_i`` errors per program, ``N = Σ n_i``.

Model (normal–normal)::

    e_ij | b_i ~ N(b_i, σ²)        b_i ~ N(μ, τ²)

Estimates, all closed form:

* per program: ``ē_i = mean_j e_ij``, ``n_i``.
* ``σ²`` — pooled within-program variance ``Σ_i Σ_j (e_ij − ē_i)² / (N − k)``. When no program has
  two errors (``N = k``) it is not identifiable from within-program spread; then the variance of all
  errors (``ddof = 1``) is used — an upper bound, so τ² comes out ≈ 0 and the estimate pools
  fully, the conservative choice. With a single error in total, ``σ² = 0``.
* ``τ²`` — between-program variance by DerSimonian–Laird (method of moments) with fixed-effect
  weights ``w_i = n_i / σ²``::

      μ_FE = Σ n_i ē_i / N
      Q    = Σ w_i (ē_i − μ_FE)²
      c    = Σ w_i − Σ w_i² / Σ w_i
      τ²   = max(0, (Q − (k − 1)) / c)
           = max(0, (Σ n_i (ē_i − μ_FE)² − (k − 1) σ²) / (N − Σ n_i² / N))

  (the second form, used here, needs no division by σ², so σ² = 0 is fine). With one program
  (``c = 0``) τ² = 0.
* ``μ`` — precision-weighted pooled mean ``Σ W_i ē_i / Σ W_i`` with ``W_i = 1 / (τ² + σ²/n_i)``
  (``μ_FE`` when τ² = σ² = 0).
* shrinkage weight ``B_i = τ² / (τ² + σ²/n_i) ∈ [0, 1]`` — the weight of the program's own mean;
  non-decreasing in ``n_i``. Conventions: σ² = 0 → ``B_i = 1`` (the means are exact).
* corrected bias ``b̂_i = μ + B_i (ē_i − μ)``, always between ``μ`` and ``ē_i``. A calibrated
  forecast is ``predicted_opens_at − b̂_i`` days.

No data gives an empty result, not an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

PROGRAM_COLUMNS = ["program_id", "n", "mean_error_days", "weight", "bias_days"]


def shrinkage_weight(n: Any, tau2: float, sigma2: float) -> np.ndarray:
    """``B = τ² / (τ² + σ²/n)`` elementwise, clipped to [0, 1]; 1 where σ² = 0."""
    n = np.asarray(n, dtype=float)
    tau2 = max(float(tau2), 0.0)
    sigma2 = max(float(sigma2), 0.0)
    if sigma2 == 0.0:
        return np.ones_like(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = tau2 / (tau2 + sigma2 / n)
    return np.clip(np.nan_to_num(weight, nan=0.0), 0.0, 1.0)


@dataclass(frozen=True)
class ShrinkageFit:
    """Per-program estimates (``programs``: program_id, n, mean_error_days, weight, bias_days) and the
    pooled parameters."""

    programs: pd.DataFrame
    mu: float
    tau2: float
    sigma2: float
    n_total: int

    @property
    def empty(self) -> bool:
        return self.programs.empty

    def bias_for(self, program_id: str) -> float:
        """The corrected bias of a program; ``μ`` for a program without data (0 when nothing was fitted)."""
        hit = self.programs.loc[self.programs["program_id"] == program_id, "bias_days"]
        if len(hit):
            return float(hit.iloc[0])
        return self.mu if not self.empty else 0.0

    def pooled(self) -> dict[str, float]:
        return {"pooled_mean": self.mu, "tau2": self.tau2, "sigma2": self.sigma2}


def fit_shrinkage(program_ids: Sequence[Any], errors: Sequence[float]) -> ShrinkageFit:
    """Fit the normal–normal model above to errors grouped by program (non-finite errors are dropped)."""
    frame = pd.DataFrame(
        {
            "program_id": pd.Series(list(program_ids), dtype=object),
            "e": pd.to_numeric(pd.Series(list(errors), dtype=float), errors="coerce"),
        }
    )
    frame = frame[np.isfinite(frame["e"].to_numpy(float))]
    if frame.empty:
        return ShrinkageFit(pd.DataFrame(columns=PROGRAM_COLUMNS), 0.0, 0.0, 0.0, 0)
    grouped = frame.groupby("program_id", sort=True)["e"]
    stats = grouped.agg(n="size", mean_error_days="mean").reset_index()
    frame = frame.assign(dev=frame["e"] - grouped.transform("mean"))
    n = stats["n"].to_numpy(float)
    means = stats["mean_error_days"].to_numpy(float)
    k, total = len(stats), float(n.sum())

    within_ss = float((frame["dev"] ** 2).sum())
    if total > k:
        sigma2 = within_ss / (total - k)
    elif total >= 2:
        sigma2 = float(np.var(frame["e"].to_numpy(float), ddof=1))
    else:
        sigma2 = 0.0

    mu_fe = float((n * means).sum() / total)
    c_scaled = total - float((n**2).sum()) / total  # c · σ²
    if k > 1 and c_scaled > 0:
        q_scaled = float((n * (means - mu_fe) ** 2).sum())  # Q · σ²
        tau2 = max(0.0, (q_scaled - (k - 1) * sigma2) / c_scaled)
    else:
        tau2 = 0.0

    variances = tau2 + (sigma2 / n if sigma2 > 0 else np.zeros_like(n))
    if np.all(variances > 0):
        # Relative precisions (the smallest variance weighs 1): the same weighted mean as 1/variance,
        # but finite when a variance is subnormal (errors a hair apart) and 1/variance overflows.
        precision = variances.min() / variances
        mu = float((precision * means).sum() / precision.sum())
    else:
        mu = mu_fe
    if not math.isfinite(mu):
        mu = mu_fe
    weight = shrinkage_weight(n, tau2, sigma2)
    bias = mu + weight * (means - mu)
    programs = stats.assign(n=stats["n"].astype(int), weight=weight, bias_days=bias)[PROGRAM_COLUMNS]
    return ShrinkageFit(programs.reset_index(drop=True), mu, tau2, sigma2, int(total))


# ------------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class HoldoutScore:
    """Root-mean-square error (days) of held-out forecasts: raw, shrunk-calibrated, unpooled-calibrated."""

    rmse_raw: float
    rmse_shrunk: float
    rmse_unpooled: float
    held_out: int
    programs: int

    @property
    def ratio_vs_raw(self) -> float:
        return self.rmse_shrunk / self.rmse_raw if self.rmse_raw > 0 else float("nan")

    @property
    def ratio_vs_unpooled(self) -> float:
        return self.rmse_shrunk / self.rmse_unpooled if self.rmse_unpooled > 0 else float("nan")

    def as_dict(self) -> dict[str, float]:
        return {
            "rmse_raw": self.rmse_raw,
            "rmse_shrunk": self.rmse_shrunk,
            "rmse_unpooled": self.rmse_unpooled,
            "ratio_vs_raw": self.ratio_vs_raw,
            "ratio_vs_unpooled": self.ratio_vs_unpooled,
            "held_out": self.held_out,
            "programs": self.programs,
        }


def holdout_score(
    frame: pd.DataFrame, *, holdout_fraction: float = 0.34, order: str = "opens_at", round_column: str = "round_id"
) -> HoldoutScore:
    """Hold out each program's later rounds and score three calibrations on them.

    ``frame`` has ``program_id``, ``error_days``, ``round_column`` and ``order`` (sortable). For a
    program with at least two rounds, its last ``ceil(holdout_fraction · rounds)`` rounds (at least
    one, leaving one) are held out; every other prediction trains one shrinkage fit. On the held-out
    predictions the residual is ``e`` without calibration, ``e − b̂_i`` shrunk and ``e − ē_i`` unpooled.
    """
    rounds = (
        frame.groupby(["program_id", round_column], sort=False)[order]
        .min()
        .reset_index()
        .sort_values(["program_id", order, round_column], kind="mergesort")
    )
    rounds["rank"] = rounds.groupby("program_id").cumcount()
    rounds["count"] = rounds.groupby("program_id")["rank"].transform("size")
    hold = np.minimum(np.maximum(1, np.ceil(holdout_fraction * rounds["count"])), rounds["count"] - 1)
    rounds["held_out"] = rounds["rank"] >= rounds["count"] - hold
    marked = frame.merge(rounds[["program_id", round_column, "held_out"]], on=["program_id", round_column])
    train, test = marked[~marked["held_out"]], marked[marked["held_out"]]
    if test.empty:
        return HoldoutScore(float("nan"), float("nan"), float("nan"), 0, 0)
    fit = fit_shrinkage(train["program_id"], train["error_days"])
    by_program = fit.programs.set_index("program_id")
    e = test["error_days"].to_numpy(float)
    shrunk = test["program_id"].map(by_program["bias_days"]).fillna(fit.mu).to_numpy(float)
    unpooled = test["program_id"].map(by_program["mean_error_days"]).fillna(fit.mu).to_numpy(float)

    def rmse(residual: np.ndarray) -> float:
        return float(np.sqrt(np.mean(residual**2)))

    return HoldoutScore(rmse(e), rmse(e - shrunk), rmse(e - unpooled), len(test), int(test["program_id"].nunique()))
