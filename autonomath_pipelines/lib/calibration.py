"""Loop D's calibration: per program, the empirical-Bayes corrected forecast bias and its gates.

The estimate is ``lib/shrinkage.py``'s (normal–normal, DerSimonian–Laird τ²); this module turns it
into the rows of ``forecast_calibration`` (``coef_json`` holds every coefficient) and checks them.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from autonomath_pipelines.lib import gates
from autonomath_pipelines.lib.evidence import evidence_json
from autonomath_pipelines.lib.gates import Gate, GateResult
from autonomath_pipelines.lib.shrinkage import fit_shrinkage, holdout_score

#: The keys of ``coef_json``; every one must be a finite number (blocking gate).
COEF_KEYS = ("bias_days", "weight", "n", "mean_error_days", "pooled_mean", "tau2", "sigma2")


def calibrate(key: str, end: str, rows: pd.DataFrame, *, holdout_fraction: float) -> tuple[pd.DataFrame, dict]:
    """One partition's calibration rows (``partition_key``, ``program_id``, ``coef_json``,
    ``evidence_json`` and one column per ``COEF_KEYS``) from its forecast errors ``rows`` (loop D's
    snapshot of partition ``key``, window end ``end``), and the pooled and held-out figures."""
    fit = fit_shrinkage(rows["program_id"], rows["error_days"])
    programs = fit.programs
    if programs.empty:
        return pd.DataFrame(columns=["partition_key", "program_id", "coef_json", "evidence_json"]), {}
    per_program = rows.groupby("program_id").agg(
        rounds=("round_id", "nunique"),
        first_opens_at=("opens_at", "min"),
        last_resolved_at=("resolved_at", "max"),
        model_versions=("model_version", lambda v: sorted(set(v))),
    )
    coefs, evidence = [], []
    for r in programs.itertuples(index=False):
        coef = {
            "bias_days": round(float(r.bias_days), 6),
            "weight": round(float(r.weight), 6),
            "n": int(r.n),
            "mean_error_days": round(float(r.mean_error_days), 6),
            "pooled_mean": round(fit.mu, 6),
            "tau2": round(fit.tau2, 6),
            "sigma2": round(fit.sigma2, 6),
        }
        coefs.append(coef)
        p = per_program.loc[r.program_id]
        evidence.append(
            evidence_json(
                predictions=int(r.n),
                rounds=int(p["rounds"]),
                first_opens_at=p["first_opens_at"],
                last_resolved_at=p["last_resolved_at"],
                model_versions=p["model_versions"],
                window_end_utc=end,
                programs_pooled=len(programs),
                predictions_pooled=fit.n_total,
                method="normal-normal EB, DerSimonian-Laird tau2",
            )
        )
    frame = pd.DataFrame(
        {
            "partition_key": key,
            "program_id": programs["program_id"].tolist(),
            "coef_json": [json.dumps(c, sort_keys=True) for c in coefs],
            "evidence_json": evidence,
        }
    )
    for name in COEF_KEYS:
        frame[name] = [c[name] for c in coefs]
    score = holdout_score(rows, holdout_fraction=holdout_fraction)
    stats = {
        "pooled_mean_days": fit.mu,
        "tau2": fit.tau2,
        "sigma2": fit.sigma2,
        "mean_weight": float(programs["weight"].mean()),
        "holdout_rmse_raw_days": score.rmse_raw,
        "holdout_rmse_shrunk_days": score.rmse_shrunk,
        "holdout_rmse_unpooled_days": score.rmse_unpooled,
        "holdout_ratio_vs_raw": score.ratio_vs_raw,
        "holdout_ratio_vs_unpooled": score.ratio_vs_unpooled,
    }
    return frame, stats


# ----------------------------------------------------------------------------------------- gates


def coefficients_finite(frame: pd.DataFrame) -> GateResult:
    bad = []
    for program, coef in zip(frame["program_id"], frame["coef_json"]):
        values = json.loads(coef)
        if set(COEF_KEYS) - set(values) or not all(
            isinstance(values[k], (int, float)) and math.isfinite(values[k]) for k in COEF_KEYS
        ):
            bad.append(program)
    return GateResult(
        not bad,
        f"{len(bad)} programs with a missing or non-finite coefficient" + (f": {bad[:5]}" if bad else ""),
        {"non_finite": len(bad)},
    )


def weights_in_unit_interval(frame: pd.DataFrame) -> GateResult:
    weights = [json.loads(c)["weight"] for c in frame["coef_json"]]
    out = sum(not (isinstance(w, (int, float)) and 0.0 <= w <= 1.0) for w in weights)
    return GateResult(out == 0, f"{out} shrinkage weights outside [0, 1]", {"outside": out})


def one_row_per_program(expected: dict[str, set] | None = None) -> Gate:
    """Exactly one row per (partition, program); with ``expected``, exactly the programs that have data."""

    def evaluate(frame: pd.DataFrame) -> GateResult:
        duplicated = int(frame.duplicated(["partition_key", "program_id"]).sum()) if len(frame) else 0
        missing = extra = 0
        if expected is not None:
            got: dict[str, set] = {}
            for key, program in zip(frame["partition_key"], frame["program_id"]):
                got.setdefault(key, set()).add(program)
            for key in set(expected) | set(got):
                missing += len(expected.get(key, set()) - got.get(key, set()))
                extra += len(got.get(key, set()) - expected.get(key, set()))
        return GateResult(
            duplicated == missing == extra == 0,
            f"{duplicated} duplicate programs, {missing} programs with data but no row, "
            f"{extra} rows for programs without data",
            {"duplicated": duplicated, "missing": missing, "extra": extra},
        )

    return Gate("one_row_per_program", "One calibration row per program with resolved forecasts, no more.", evaluate)


def candidate_gates(expected: dict[str, set] | None = None) -> tuple[Gate, ...]:
    return (
        Gate(
            "coefficients_finite", "Every coefficient in coef_json is present and a finite number.", coefficients_finite
        ),
        Gate("weights_in_unit_interval", "Every shrinkage weight lies in [0, 1].", weights_in_unit_interval),
        one_row_per_program(expected),
        gates.all_pending_review(),
    )
