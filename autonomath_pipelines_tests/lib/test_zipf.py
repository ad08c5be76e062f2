import numpy as np
import pandas as pd
import pytest

from autonomath_pipelines.lib.zipf import fit_zipf_exponent, zipf_head


def zipf_sample(s: float, n_types: int, n: int, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_types + 1) ** s
    picks = rng.choice(n_types, size=n, p=weights / weights.sum())
    return pd.Series([f"query {i}" for i in picks])


def test_head_counts_normalized_variants_together():
    texts = pd.Series(["ＩＴ導入補助金", "it導入補助金", "IT導入補助金 ", "創業"])
    head = zipf_head(texts, k=5).head
    assert head.iloc[0]["query_text"] == "it導入補助金" and head.iloc[0]["requests"] == 3


def test_head_is_top_k_by_count_with_deterministic_ties():
    texts = pd.Series(["b"] * 3 + ["a"] * 3 + ["c"] * 5 + ["d"])
    result = zipf_head(texts, k=3)
    assert list(result.head["query_text"]) == ["c", "a", "b"]
    assert list(result.head["rank"]) == [1, 2, 3]
    assert result.coverage == pytest.approx(11 / 12)


def test_coverage_and_cumulative_share_agree():
    result = zipf_head(zipf_sample(1.0, 5000, 30000), k=200)
    assert len(result.head) == 200
    assert result.coverage == pytest.approx(result.head["cumulative_share"].iloc[-1])
    # Zipf: the top 4 % of types carry far more than 4 % of the traffic.
    assert result.coverage > 0.5


@pytest.mark.parametrize("s", [0.8, 1.0, 1.2])
def test_fitted_exponent_recovers_the_generating_one(s):
    result = zipf_head(zipf_sample(s, 20000, 400000, seed=1), k=200)
    assert result.exponent == pytest.approx(s, abs=0.15)


def test_empty_and_blank_input_gives_empty_head():
    result = zipf_head(pd.Series([" ", "\u3000", None], dtype=object), k=200)
    assert result.head.empty and result.requests == 0 and result.coverage == 0.0
    assert np.isnan(result.exponent)


def test_exponent_undefined_for_flat_frequencies():
    assert np.isnan(fit_zipf_exponent(np.array([5, 5, 5, 5])))


def test_head_size_must_be_positive():
    with pytest.raises(ValueError, match="head size"):
        zipf_head(pd.Series(["a"]), k=0)
