import math

import pytest

from autonomath_pipelines.lib.scoring import ari_with_noise, precision_recall, purity


def test_perfect_clustering_scores_one():
    assert ari_with_noise(["a", "a", "b"], [0, 0, 1]) == pytest.approx(1.0)
    assert purity(["a", "a", "b"], [5, 5, 7]) == 1.0


def test_noise_points_are_singletons_not_one_cluster():
    # Two planted groups, all predicted as noise: not a perfect match, and not the "one big cluster" either.
    assert ari_with_noise(["a", "a", "b", "b"], [-1, -1, -1, -1]) == pytest.approx(0.0)
    assert ari_with_noise(["a", "b", "c"], [-1, -1, -1]) == pytest.approx(1.0)


def test_purity_ignores_noise_and_counts_majorities():
    assert purity(["a", "a", "b", "c"], [0, 0, 0, -1]) == pytest.approx(2 / 3)
    assert math.isnan(purity(["a"], [-1]))


def test_precision_recall():
    assert precision_recall({1, 2, 3, 4}, {2, 4, 6}) == (0.5, pytest.approx(2 / 3))
    p, r = precision_recall(set(), {1})
    assert math.isnan(p) and r == 0.0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 truth labels but 1 predictions"):
        ari_with_noise(["a", "b"], [0])
