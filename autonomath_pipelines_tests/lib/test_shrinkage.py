"""Empirical-Bayes shrinkage of forecast bias: closed-form estimates, edge cases and properties."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autonomath_pipelines.lib.shrinkage import fit_shrinkage, holdout_score, shrinkage_weight


def fit_of(groups: dict[str, list[float]]):
    ids = [p for p, errors in groups.items() for _ in errors]
    return fit_shrinkage(ids, [e for errors in groups.values() for e in errors])


def test_hand_computed_example():
    # Two programs, n = 2 each: means 0 and 10, within SS = 2 + 2 → σ² = 4 / (4 − 2) = 2.
    fit = fit_of({"A": [-1.0, 1.0], "B": [9.0, 11.0]})
    assert fit.sigma2 == pytest.approx(2.0)
    # μ_FE = 5; Σ n (ē − μ_FE)² = 100; c·σ² = 4 − 8/4 = 2 → τ² = (100 − 1·2) / 2 = 49.
    assert fit.tau2 == pytest.approx(49.0)
    assert fit.mu == pytest.approx(5.0)
    weight = 49.0 / (49.0 + 2.0 / 2)
    rows = fit.programs.set_index("program_id")
    assert rows.loc["A", "weight"] == pytest.approx(weight)
    assert rows.loc["A", "bias_days"] == pytest.approx(5.0 + weight * (0.0 - 5.0))
    assert rows.loc["B", "bias_days"] == pytest.approx(5.0 + weight * (10.0 - 5.0))
    assert list(rows["n"]) == [2, 2]


def test_homogeneous_programs_pool_fully():
    rng = np.random.default_rng(1)
    groups = {f"P{i}": list(3.0 + rng.normal(0, 5, 30)) for i in range(10)}
    fit = fit_of(groups)
    assert fit.tau2 < 1.0  # no real between-program spread
    assert fit.programs["weight"].max() < 0.3
    assert fit.mu == pytest.approx(3.0, abs=1.0)


def test_recovers_planted_variances():
    rng = np.random.default_rng(2)
    bias = rng.normal(5, 7, 400)
    groups = {f"P{i}": list(b + rng.normal(0, 10, 8)) for i, b in enumerate(bias)}
    fit = fit_of(groups)
    assert fit.sigma2 == pytest.approx(100, rel=0.1)
    assert fit.tau2 == pytest.approx(49, rel=0.3)
    assert fit.mu == pytest.approx(5, abs=1.0)
    estimated = fit.programs.set_index("program_id")
    truth = pd.Series(bias, index=[f"P{i}" for i in range(len(bias))])
    shrunk = float(np.sqrt(((estimated["bias_days"] - truth) ** 2).mean()))
    unpooled = float(np.sqrt(((estimated["mean_error_days"] - truth) ** 2).mean()))
    assert shrunk < unpooled


def test_no_data_is_an_empty_result():
    fit = fit_shrinkage([], [])
    assert fit.empty and list(fit.programs.columns) == ["program_id", "n", "mean_error_days", "weight", "bias_days"]
    assert (fit.mu, fit.tau2, fit.sigma2, fit.n_total) == (0.0, 0.0, 0.0, 0)
    assert fit.bias_for("P1") == 0.0
    assert fit_shrinkage(["A"], [float("nan")]).empty


def test_one_program_keeps_its_own_mean():
    fit = fit_of({"A": [2.0, 4.0, 9.0]})
    assert fit.tau2 == 0.0
    [row] = fit.programs.itertuples()
    assert fit.mu == pytest.approx(5.0) and row.bias_days == pytest.approx(5.0)
    assert 0.0 <= row.weight <= 1.0


def test_single_error_in_total():
    fit = fit_of({"A": [7.0]})
    assert fit.sigma2 == 0.0 and fit.tau2 == 0.0
    assert fit.programs["bias_days"].tolist() == [7.0]


def test_one_error_per_program_pools_conservatively():
    fit = fit_of({"A": [0.0], "B": [10.0], "C": [20.0]})
    assert fit.sigma2 == pytest.approx(100.0)  # all errors' variance stands in for σ²
    assert fit.tau2 == 0.0
    assert fit.programs["bias_days"].tolist() == pytest.approx([10.0, 10.0, 10.0])


def test_zero_variance_everywhere():
    same = fit_of({"A": [3.0, 3.0], "B": [3.0, 3.0, 3.0]})
    assert (same.sigma2, same.tau2) == (0.0, 0.0)
    assert same.programs["bias_days"].tolist() == [3.0, 3.0]
    exact = fit_of({"A": [1.0, 1.0], "B": [5.0, 5.0]})  # exact but different means: no shrinkage
    assert exact.sigma2 == 0.0 and exact.tau2 > 0
    assert exact.programs["weight"].tolist() == [1.0, 1.0]
    assert exact.programs["bias_days"].tolist() == pytest.approx([1.0, 5.0])


def test_weight_formula_and_conventions():
    assert shrinkage_weight([1, 4], 1.0, 4.0).tolist() == pytest.approx([0.2, 0.5])
    assert shrinkage_weight([3], 0.0, 4.0).tolist() == [0.0]
    assert shrinkage_weight([3], 0.0, 0.0).tolist() == [1.0]


def test_holdout_score_prefers_shrinkage_on_a_planted_world():
    rng = np.random.default_rng(3)
    rows = []
    for i, b in enumerate(rng.normal(5, 7, 80)):
        for r in range(int(rng.integers(2, 6))):
            for _ in range(2):
                rows.append(
                    {
                        "program_id": f"P{i}",
                        "round_id": f"P{i}-{r}",
                        "opens_at": f"2026-{r + 1:02d}-01",
                        "error_days": round(b + rng.normal(0, 10)),
                    }
                )
    score = holdout_score(pd.DataFrame(rows))
    assert score.held_out > 0 and score.programs == 80
    assert score.ratio_vs_raw < 0.95
    assert score.ratio_vs_unpooled < 1.0


def test_holdout_score_without_later_rounds():
    frame = pd.DataFrame({"program_id": ["A"], "round_id": ["A-1"], "opens_at": ["2026-01-01"], "error_days": [3.0]})
    score = holdout_score(frame)
    assert score.held_out == 0 and math.isnan(score.ratio_vs_raw)


# ------------------------------------------------------------------------------------ properties

variances = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(tau2=variances, sigma2=variances, ns=st.lists(st.integers(1, 10_000), min_size=1, max_size=20))
def test_weights_in_unit_interval_and_monotone_in_n(tau2, sigma2, ns):
    ns = sorted(ns)
    weights = shrinkage_weight(ns, tau2, sigma2)
    assert np.all(np.isfinite(weights))
    assert np.all((weights >= 0.0) & (weights <= 1.0))
    assert np.all(np.diff(weights) >= 0.0)


errors = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
groups = st.dictionaries(
    st.sampled_from([f"P{i}" for i in range(12)]), st.lists(errors, min_size=1, max_size=8), min_size=1, max_size=12
)


@settings(max_examples=100, deadline=None)
@given(groups=groups)
def test_fit_is_finite_and_shrinks_between_own_mean_and_pool(groups):
    fit = fit_of(groups)
    assert len(fit.programs) == len(groups)
    assert all(math.isfinite(v) for v in (fit.mu, fit.tau2, fit.sigma2))
    assert fit.tau2 >= 0.0 and fit.sigma2 >= 0.0
    rows = fit.programs
    assert np.all(np.isfinite(rows[["mean_error_days", "weight", "bias_days"]].to_numpy(float)))
    assert rows["weight"].between(0.0, 1.0).all()
    tolerance = 1e-9 * (1.0 + abs(fit.mu) + rows["mean_error_days"].abs().max())
    low = np.minimum(rows["mean_error_days"], fit.mu) - tolerance
    high = np.maximum(rows["mean_error_days"], fit.mu) + tolerance
    assert ((rows["bias_days"] >= low) & (rows["bias_days"] <= high)).all()
    # Weights are non-decreasing in n within one fit (same τ², σ²).
    ordered = rows.sort_values(["n", "weight"])
    assert np.all(np.diff(ordered["weight"].to_numpy(float)) >= 0.0)
