"""eps from the data (choose_eps / core_distances), the chaining guard and the HDBSCAN option."""

import tracemalloc
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autonomath_pipelines.lib import clustering
from autonomath_pipelines.lib.clustering import (
    EpsChoice,
    GuardReport,
    choose_eps,
    core_distances,
    dbscan_cosine,
    guard_chaining,
    hdbscan_cosine,
)


def unit(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def brute_radii(X, w, min_samples):
    """The linking radius of every row, by sorting the full distance matrix (test sizes only)."""
    X = unit(X)
    D = np.clip(1 - X @ X.T, 0, 2)
    np.fill_diagonal(D, 0)
    out = []
    for i in range(len(X)):
        others = np.argsort(np.where(np.arange(len(X)) == i, -1, D[i]), kind="stable")
        d, cum = D[i, others], np.cumsum(w[others])
        core = d[np.argmax(cum >= min_samples)] if (cum >= min_samples).any() else np.inf
        out.append(max(core, d[1] if len(X) > 1 else np.inf))
    return np.array(out)


def blobs(rng, centers, per, spread, dim=16):
    C = unit(rng.normal(size=(centers, dim)))
    X = np.concatenate([C[i] + spread * rng.normal(size=(per, dim)) for i in range(centers)])
    return unit(X), np.repeat(np.arange(centers), per)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 60),
    min_samples=st.integers(1, 6),
    weighted=st.booleans(),
    block=st.sampled_from([7, 64, 1 << 22]),
)
def test_core_distances_match_brute_force(seed, n, min_samples, weighted, block):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    w = rng.integers(1, 4, size=n).astype(float) if weighted else np.ones(n)
    with mock.patch.object(clustering, "_BLOCK_ELEMS", block):  # small blocks: the top-K merge runs
        rows, radii = core_distances(X, w, min_samples, sample_size=n)
    assert np.array_equal(rows, np.arange(n))
    np.testing.assert_allclose(radii, brute_radii(X, w, min_samples), atol=1e-9)


def test_a_heavy_text_still_needs_a_neighbour():
    X = unit([[1, 0], [0.96, 0.28], [0, 1]])
    _, radii = core_distances(X, [100, 1, 1], min_samples=8)
    assert radii[0] == pytest.approx(1 - X[0] @ X[1])  # core alone, linked at its nearest neighbour
    assert radii[2] == pytest.approx(1 - X[2] @ X[0])  # weight 8 reached only once text 0 is within reach
    _, r2 = core_distances(X, [100, 1, 1], min_samples=2)
    assert r2[2] == pytest.approx(1 - X[2] @ X[1])  # itself + its nearest neighbour
    _, fractional = core_distances(X, [0.1, 0.1, 0.1], min_samples=1)
    assert np.isinf(fractional).all()  # the weight is never reached


def test_sampling_bounds_the_work_and_the_memory():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30_000, 32)).astype(np.float32)
    tracemalloc.start()
    rows, radii = core_distances(X, None, 8, sample_size=300)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rows.size == 300 and radii.shape == (300,) and np.isfinite(radii).all()
    assert peak < 120 * 2**20  # an n × n float32 matrix would be 3.6 GB


def test_eps_follows_the_spread_of_the_data_not_a_constant():
    rng = np.random.default_rng(1)
    tight, _ = blobs(rng, 6, 40, 0.02)
    loose, _ = blobs(rng, 6, 40, 0.08)
    a, b = choose_eps(tight, None, 8), choose_eps(loose, None, 8)
    assert a.method == b.method == "quantile" and a.eps < b.eps / 3
    _, radii = core_distances(loose, None, 8)
    assert b.eps == pytest.approx(float(np.quantile(radii, 0.5)))
    assert b.details["kdist_q50"] == pytest.approx(b.eps) and b.details["sampled"] == len(loose)
    # DBSCAN at the chosen eps finds the blobs in both cases (a fixed eps cannot: see below).
    for X, choice in ((tight, a), (loose, b)):
        labels = dbscan_cosine(X, None, eps=choice.eps, min_samples=8)
        assert labels.max() + 1 == 6
    assert (dbscan_cosine(loose, None, eps=a.eps, min_samples=8) == -1).mean() > 0.5  # tight eps: all noise


def test_knee_method_and_fallbacks():
    rng = np.random.default_rng(2)
    X, _ = blobs(rng, 4, 50, 0.1)
    noise = unit(rng.normal(size=(20, 16)))
    knee = choose_eps(np.concatenate([X, noise]), None, 5, method="knee")
    assert knee.method == "knee" and knee.eps == pytest.approx(knee.details["kdist_knee"])
    assert knee.details["kdist_q10"] <= knee.eps <= knee.details["kdist_q90"] * 1.5
    one = choose_eps(unit([[1, 0]]), None, 3)
    assert one.method == "fallback" and one.eps == clustering.EPS_MAX
    with pytest.raises(ValueError, match="method"):
        choose_eps(X, None, 3, method="elbow")
    with pytest.raises(ValueError, match="quantile"):
        choose_eps(X, None, 3, quantile=1.0)
    meta = EpsChoice(0.3, "quantile", {"kdist_q50": 0.3, "n": 5}).metadata()
    assert meta["eps_chosen"] == 0.3 and meta["eps_from_data"] is True and meta["eps_kdist_q50"] == 0.3


def on_circle(degrees, jitter_degrees=0.0, rng=None):
    """Points at these angles on a great circle, with Gaussian jitter (sd in degrees) in and out of it."""
    t = np.radians(np.asarray(degrees, dtype=float))
    z = np.radians(jitter_degrees) * rng.normal(size=t.size) if jitter_degrees else np.zeros(t.size)
    if jitter_degrees:
        t = t + np.radians(jitter_degrees) * rng.normal(size=t.size)
    return unit(np.stack([np.cos(t), np.sin(t), z], axis=1))


def chained(rng, per=40):
    """Two tight blobs (0° and 60°) joined by a bridge of points every 2°: one DBSCAN cluster."""
    A = on_circle(np.zeros(per), 0.3, rng)
    B = on_circle(np.full(per, 60.0), 0.3, rng)
    bridge = on_circle(np.arange(2, 59, 2))
    X = np.concatenate([A, bridge, B])
    truth = np.array([0] * per + [-1] * len(bridge) + [1] * per)
    return X, truth


def test_guard_splits_a_chained_cluster_and_keeps_a_tight_one():
    rng = np.random.default_rng(3)
    X, truth = chained(rng)
    eps = 1 - np.cos(np.radians(2.2))
    labels = dbscan_cosine(X, None, eps=eps, min_samples=3)
    assert labels.max() == 0 and (labels == 0).all()  # chained: one cluster spans both blobs
    guarded, report = guard_chaining(X, None, labels, radius=eps, min_samples=3)
    assert isinstance(report, GuardReport) and report.clusters_in == 1 and report.clusters_split == 1
    assert report.clusters_out >= 2 and report.texts_to_noise >= 20
    for blob in (0, 1):
        members = guarded[truth == blob]
        assert (members >= 0).mean() >= 0.9
    # No cluster holds members of both blobs any more.
    assert not set(guarded[truth == 0]) & set(guarded[truth == 1]) - {-1}
    assert (guarded[truth == -1] == -1).mean() > 0.8  # the bridge is noise
    # Without the guard's split (depth 0) the chain can only be trimmed around one medoid.
    _, shallow = guard_chaining(X, None, labels, radius=eps, min_samples=3, max_depth=0)
    assert shallow.clusters_split == 0 and shallow.clusters_out <= 1


def test_guard_keeps_a_big_dense_theme_whole():
    rng = np.random.default_rng(7)
    X = on_circle(np.zeros(400), 1.5, rng)  # one big theme, 400 variants
    eps = choose_eps(X, None, 8, method="knee").eps
    labels = dbscan_cosine(X, None, eps=eps, min_samples=8)
    assert labels.max() == 0
    # Its extent is far beyond one neighbour step; at its own median scale it falls into fragments,
    # which min_part_share keeps from counting as themes: one theme, never split. Its sparse tail
    # (noise at its own scale and beyond the radius from the medoid) is trimmed.
    guarded, report = guard_chaining(X, None, labels, radius=eps, min_samples=8, min_part_share=0.1)
    assert report.clusters_split == 0 and report.clusters_out == 1 and report.clusters_trimmed == 1
    assert (guarded == 0).mean() >= 0.6
    # Without the fragment floor the same theme is cut into parts: the floor is what protects it.
    _, cut = guard_chaining(X, None, labels, radius=eps, min_samples=8)
    assert cut.clusters_split >= 1
    tight = on_circle(np.zeros(30), 0.2, rng)
    lab = dbscan_cosine(tight, None, eps=0.2, min_samples=3)
    same, rep = guard_chaining(tight, None, lab, radius=0.2, min_samples=3)
    assert np.array_equal(same, lab) and (rep.clusters_split, rep.clusters_trimmed, rep.clusters_dropped) == (0, 0, 0)


def test_guard_trims_strays_and_drops_what_is_left_too_light():
    rng = np.random.default_rng(4)
    core = unit(np.array([1.0] + [0.0] * 7) + 0.01 * rng.normal(size=(10, 8)))
    strays = unit(rng.normal(size=(4, 8)))
    X = np.concatenate([core, strays])
    labels = np.zeros(len(X), dtype=int)
    out, rep = guard_chaining(X, None, labels, radius=0.05, min_samples=3, max_depth=0)
    assert rep.clusters_trimmed == 1 and rep.texts_to_noise == 4 and (out[:10] == 0).all() and (out[10:] == -1).all()
    out, rep = guard_chaining(X, None, labels, radius=0.05, min_samples=11, max_depth=0)
    assert rep.clusters_dropped == 1 and (out == -1).all()
    assert rep.metadata()["guard_clusters_dropped"] == 1
    with pytest.raises(ValueError, match="labels"):
        guard_chaining(X, None, labels[:-1], radius=0.05, min_samples=3)


def test_hdbscan_finds_blobs_and_caps_its_input():
    rng = np.random.default_rng(5)
    X, truth = blobs(rng, 3, 30, 0.05)
    labels, details = hdbscan_cosine(X, None, 5)
    assert labels.max() + 1 == 3 and details["hdbscan_texts"] == 90
    for c in range(3):
        assert len(set(truth[labels == c])) == 1
    w = np.ones(len(X))
    w[::3] = 10  # the heaviest third is clustered
    capped, det = hdbscan_cosine(X, w, 5, max_texts=30, attach_eps=0.1)
    assert det["hdbscan_texts"] == 30 and det["hdbscan_attached"] > 0
    assert (capped[::3] >= 0).mean() > 0.8
    unattached, det = hdbscan_cosine(X, w, 5, max_texts=30)
    assert det["hdbscan_attached"] == 0 and (unattached[1::3] == -1).all()
    assert (hdbscan_cosine(X[:3], None, 5)[0] == -1).all()


def test_loop_config_chooses_eps_or_keeps_the_override():
    import pandas as pd

    from autonomath_pipelines.loops.loop_a_hallucination_guard import GuardClusteringConfig
    from autonomath_pipelines.loops.text_clustering import cluster_with_config

    rng = np.random.default_rng(6)
    X, truth = blobs(rng, 3, 20, 0.05)
    frame = pd.DataFrame(
        {"text": [f"t{i}" for i in range(len(X))], "weight": 1.0, "vector": list(X.astype(np.float32))}
    )
    clustered, meta = cluster_with_config(frame, GuardClusteringConfig())
    assert list(clustered.columns) == ["text", "weight", "vector", "cluster"]
    assert meta["eps_method"] == "quantile" and meta["param_eps_override"] is False
    assert meta["param_eps"] == meta["eps_chosen"] != 0.25 and meta["algorithm"] == "linkage"
    assert meta["algorithm_is_linkage"] == 1 and meta["linkage_texts"] == len(X)
    assert set(clustered["cluster"]) - {-1} and clustered["cluster"].max() + 1 >= 3
    _, meta = cluster_with_config(frame, GuardClusteringConfig(algorithm="dbscan", eps_method="knee", guard=True))
    assert meta["eps_method"] == "knee" and meta["algorithm"] == "dbscan"
    assert {"guard_clusters_split", "guard_clusters_dropped", "guard_texts_to_noise"} <= set(meta)
    _, meta = cluster_with_config(frame, GuardClusteringConfig(eps=0.25))
    assert meta["eps_method"] == "override" and meta["eps_chosen"] == 0.25 and meta["param_eps_override"] is True
    _, meta = cluster_with_config(frame, GuardClusteringConfig(algorithm="hdbscan"))
    assert meta["algorithm_is_hdbscan"] == 1 and meta["hdbscan_texts"] == len(X)
    empty, meta = cluster_with_config(frame.iloc[:0], GuardClusteringConfig())
    assert empty.empty and meta["eps_method"] == "empty"


def test_the_knee_recovers_separated_themes_of_varying_density_where_the_median_cuts_them():
    from sklearn.metrics import adjusted_rand_score

    from autonomath_pipelines.bench.clustering import make_data

    X, truth, w = make_data(3000, 64, 30)  # vMF-like themes, σ 0.2–0.55, Zipf weights, 15 % noise
    scores = {}
    for method in ("knee", "quantile"):
        choice = choose_eps(X, w, 5, method=method)
        labels = dbscan_cosine(X, w, eps=choice.eps, min_samples=5)
        guarded, _ = guard_chaining(X, w, labels, radius=choice.eps, min_samples=5)
        scores[method] = adjusted_rand_score(truth, guarded)
    assert scores["knee"] > 0.85 and scores["quantile"] < 0.6, scores


def test_linkage_does_not_chain_two_asks_through_the_texts_between_them():
    """A line of texts from one ask to another, each close to the next: DBSCAN links the whole line,
    average linkage at the same radius keeps the two ends apart."""
    from autonomath_pipelines.lib.clustering import linkage_cosine

    angles = np.linspace(0.0, 1.2, 60)
    X = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=1)
    step = 1 - float(X[0] @ X[1])
    dense = dbscan_cosine(X, eps=step * 2.5, min_samples=3)
    assert len(set(dense) - {-1}) == 1 and dense[0] == dense[-1]
    labels, details = linkage_cosine(X, threshold=step * 2.5, min_cluster_weight=3)
    assert labels[0] != labels[-1] and len(set(labels) - {-1}) > 2 and details["linkage_texts"] == 60


def test_linkage_is_bounded_and_attaches_the_rest_within_the_threshold():
    from autonomath_pipelines.lib.clustering import linkage_cosine

    rng = np.random.default_rng(3)
    X, truth = blobs(rng, 4, 50, 0.03)
    weights = np.ones(len(X))
    weights[::2] = 5.0  # the heavier half is clustered, the rest joins its nearest cluster
    labels, details = linkage_cosine(X, weights, threshold=0.05, min_cluster_weight=3, max_texts=100)
    assert details["linkage_texts"] == 100 and details["linkage_attached"] > 0
    assert (labels >= 0).mean() > 0.9
    for cluster in set(labels) - {-1}:
        assert len(set(truth[labels == cluster])) == 1
    light, _ = linkage_cosine(X, weights, threshold=0.05, min_cluster_weight=10_000)
    assert (light == -1).all()
