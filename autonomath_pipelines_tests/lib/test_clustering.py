import math
import tracemalloc
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.cluster import DBSCAN

from autonomath_pipelines.lib import clustering
from autonomath_pipelines.lib.clustering import (
    ClusterParams,
    ClusterSummary,
    cluster_texts,
    dbscan_cosine,
    nearest_similarity,
    summarize_clusters,
)


def sklearn_labels(X, w, eps, min_samples):
    return DBSCAN(eps=eps, min_samples=min_samples, metric="cosine", algorithm="brute").fit(X, sample_weight=w).labels_


def same_partition(a, b) -> bool:
    """Equal up to a relabelling of clusters, with the same noise set."""
    a, b = np.asarray(a), np.asarray(b)
    if not np.array_equal(a == -1, b == -1):
        return False
    pairs = set(zip(a[a >= 0].tolist(), b[b >= 0].tolist()))
    return len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})


def on_circle(degrees) -> np.ndarray:
    """Unit vectors in the plane: cosine distance between two is 1 - cos(angle difference)."""
    r = np.radians(np.asarray(degrees, dtype=float))
    return np.column_stack([np.cos(r), np.sin(r)])


def blobs(seed: int, n: int, d: int, k: int, spread: float, noise: float = 0.1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = rng.integers(0, k, n)
    X = centres[truth] + spread * rng.standard_normal((n, d)) / math.sqrt(d)
    far = rng.random(n) < noise
    X[far] = rng.standard_normal((int(far.sum()), d))
    return X.astype(dtype)


# ------------------------------------------------------------------------ sklearn agreement


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 45),
    d=st.integers(2, 6),
    eps=st.floats(0.005, 1.2),
    min_samples=st.integers(1, 7),
    weight_kind=st.sampled_from(["none", "ints", "quarters"]),
)
def test_equals_sklearn_on_small_random_inputs(seed, n, d, eps, min_samples, weight_kind):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if weight_kind == "none":
        w = None
    elif weight_kind == "ints":
        w = rng.integers(0, 5, n).astype(float)
        w[0] += 1  # sklearn refuses all-zero weights
    else:
        w = rng.integers(1, 12, n) / 4.0
    ours = dbscan_cosine(X, w, eps=eps, min_samples=min_samples)
    ref = sklearn_labels(X, w, eps, min_samples)
    assert same_partition(ours, ref)
    # Stronger: same numbering too (clusters in order of their first core point, like sklearn).
    assert np.array_equal(ours, ref)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    eps=st.sampled_from([0.02, 0.05, 0.1, 0.2, 0.35]),
    min_samples=st.integers(1, 6),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_pruned_plan_equals_sklearn(seed, eps, min_samples, dtype):
    """Force the pivot/group pruning path (normally n >= 2048) on small clustered inputs."""
    rng = np.random.default_rng(seed)
    X = blobs(
        seed,
        int(rng.integers(60, 260)),
        int(rng.integers(3, 12)),
        int(rng.integers(2, 9)),
        spread=float(rng.uniform(0.05, 0.6)),
        noise=0.15,
        dtype=dtype,
    )
    w = rng.integers(1, 4, X.shape[0]).astype(float)
    with mock.patch.object(clustering, "_GROUPING_MIN_N", 16):
        ours = dbscan_cosine(X, w, eps=eps, min_samples=min_samples)
    assert np.array_equal(ours, sklearn_labels(X, w, eps, min_samples))


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_sklearn_at_grouping_scale(seed):
    X = blobs(seed, 3000, 24, 25, spread=0.35, noise=0.08, dtype=np.float32)
    w = np.random.default_rng(seed).integers(1, 4, 3000).astype(float)
    Xs, plan = clustering._plan(clustering._unit_rows(X), 0.08)
    assert plan.groups > 1  # the pruning path is what is tested here
    ours = dbscan_cosine(X, w, eps=0.08, min_samples=5)
    ref = sklearn_labels(X, w, 0.08, 5)
    assert np.array_equal(ours, ref)
    assert len(set(ref)) > 10 and (ref == -1).any()


def test_border_points_match_sklearn():
    # Two dense arcs (cores) and points reachable from one or both of them only as borders.
    degrees = [
        0,
        1,
        2,
        3,  # cluster A cores
        10,  # border shared by A and B (within eps of 3 and 17 only)
        17,
        18,
        19,
        20,  # cluster B cores
        26,  # border of B only
        90,
    ]  # noise
    X = on_circle(degrees)
    eps = 1 - math.cos(math.radians(7.5))
    ours = dbscan_cosine(X, eps=eps, min_samples=4)
    ref = sklearn_labels(X, None, eps, 4)
    assert np.array_equal(ours, ref)
    assert ours.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, -1]  # shared border joins the earlier cluster


def test_eps_of_two_or_more_links_everything_like_sklearn():
    X = on_circle([0, 90, 180, 270])
    for eps in (2.0, 3.0):
        assert np.array_equal(dbscan_cosine(X, eps=eps, min_samples=4), sklearn_labels(X, None, eps, 4))
        assert dbscan_cosine(X, eps=eps, min_samples=4).tolist() == [0, 0, 0, 0]


@settings(max_examples=200, deadline=None)
@given(
    eps=st.one_of(st.floats(1e-12, 1.9999999), st.sampled_from([0.5, 1.0, 1.5, 1e-300])),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_similarity_threshold_is_sklearns_distance_test(eps, dtype, seed):
    """``s >= t`` decides exactly like sklearn's ``fl(1 - s) <= eps`` for every float s."""
    t = clustering._similarity_threshold(eps, dtype)
    below = np.nextafter(t, dtype(-np.inf))
    assert (dtype(1) - t) <= eps and not ((dtype(1) - below) <= eps)
    s = np.concatenate([np.random.default_rng(seed).uniform(-1, 1, 200), [t, below, 1, -1]]).astype(dtype)
    d = -s
    d += 1
    assert np.array_equal(s >= t, d <= eps)
    assert clustering._similarity_threshold(2.0, dtype) is None


# --------------------------------------------------------------------------- semantics


def test_far_away_point_stays_noise():
    X = np.vstack([on_circle([0, 1, 2, 3, 4]), [[0.0, 1.0]]])
    labels = dbscan_cosine(X, eps=0.01, min_samples=3)
    assert labels.tolist() == [0, 0, 0, 0, 0, -1]
    summaries = summarize_clusters(list("abcdef"), X, None, labels)
    assert [s.label for s in summaries] == [0]
    assert 5 not in summaries[0].members


def test_weights_make_a_single_frequent_text_its_own_core():
    X = on_circle([0, 60, 120])
    assert dbscan_cosine(X, [5, 1, 1], eps=0.01, min_samples=5).tolist() == [0, -1, -1]
    assert dbscan_cosine(X, [4, 1, 1], eps=0.01, min_samples=5).tolist() == [-1, -1, -1]
    # Weight makes a core whose light neighbour becomes a border point.
    X2 = on_circle([0, 2, 90])
    assert dbscan_cosine(X2, [5, 1, 1], eps=0.01, min_samples=5).tolist() == [0, 0, -1]


def test_empty_and_single_inputs():
    assert dbscan_cosine(np.zeros((0, 8)), eps=0.1, min_samples=2).shape == (0,)
    assert dbscan_cosine(np.ones((1, 8)), eps=0.1, min_samples=2).tolist() == [-1]
    assert dbscan_cosine(np.ones((1, 8)), eps=0.1, min_samples=1).tolist() == [0]
    assert dbscan_cosine(np.ones((1, 8)), [3.0], eps=0.1, min_samples=3).tolist() == [0]
    assert summarize_clusters([], np.zeros((0, 8)), None, np.zeros(0, int)) == []


def test_deterministic_and_permutation_invariant_partition():
    X = blobs(3, 400, 8, 6, spread=0.5, noise=0.2)
    w = np.random.default_rng(3).integers(1, 3, 400).astype(float)
    a = dbscan_cosine(X, w, eps=0.12, min_samples=4)
    assert np.array_equal(a, dbscan_cosine(X, w, eps=0.12, min_samples=4))
    perm = np.random.default_rng(4).permutation(400)
    b = np.empty_like(a)
    b[perm] = dbscan_cosine(X[perm], w[perm], eps=0.12, min_samples=4)
    # Noise and the partition of core points do not depend on the order; a border point may join
    # another cluster it borders (DBSCAN's own order dependence), never noise or a far cluster.
    assert np.array_equal(a == -1, b == -1)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    dist = 1 - Xn @ Xn.T
    counts = ((dist <= 0.12) * w[None, :]).sum(axis=1)
    core = counts >= 4
    assert same_partition(np.where(core, a, -1), np.where(core, b, -1))
    for i in np.flatnonzero(~core & (a >= 0)):
        near_core = np.flatnonzero(core & (dist[i] <= 0.12))
        assert b[i] in set(b[near_core].tolist())


def test_scale_of_rows_does_not_matter():
    X = blobs(5, 200, 6, 4, spread=0.4)
    scale = np.random.default_rng(5).uniform(0.1, 10, (200, 1))
    assert np.array_equal(dbscan_cosine(X, eps=0.1, min_samples=3), dbscan_cosine(X * scale, eps=0.1, min_samples=3))


def test_max_neighbors_does_not_change_the_result():
    X = blobs(6, 300, 6, 3, spread=0.3)
    base = dbscan_cosine(X, eps=0.1, min_samples=3)
    assert np.array_equal(base, dbscan_cosine(X, eps=0.1, min_samples=3, max_neighbors=2))


def test_dense_cluster_memory_stays_bounded():
    """6,000 near-identical texts: 36 M neighbour pairs that sklearn would list; we never do."""
    rng = np.random.default_rng(7)
    X = (np.ones((6000, 32)) + 0.01 * rng.standard_normal((6000, 32))).astype(np.float32)
    tracemalloc.start()
    try:
        labels = dbscan_cosine(X, eps=0.05, min_samples=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (labels == 0).all()
    assert peak < 64 * 2**20  # a neighbour list would need 36e6 × 8 B ≈ 290 MB


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([[1.0, np.nan]]), "finite"),
        (np.array([[0.0, 0.0], [1.0, 0.0]]), "zero norm"),
        (np.ones(4), "2-D"),
        (np.array([["a", "b"]]), "numeric"),
    ],
)
def test_invalid_vectors_raise(bad, message):
    with pytest.raises(ValueError, match=message):
        dbscan_cosine(bad, eps=0.1, min_samples=2)


def test_invalid_arguments_raise():
    X = on_circle([0, 1, 2])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        dbscan_cosine(X, [1, 1], eps=0.1, min_samples=2)
    with pytest.raises(ValueError, match=">= 0"):
        dbscan_cosine(X, [1, -1, 1], eps=0.1, min_samples=2)
    with pytest.raises(ValueError, match="finite"):
        dbscan_cosine(X, [1, np.inf, 1], eps=0.1, min_samples=2)
    for eps in (0, -0.1, float("nan"), float("inf"), "0.1"):
        with pytest.raises(ValueError, match="eps"):
            dbscan_cosine(X, eps=eps, min_samples=2)
    for ms in (0, 1.5, True):
        with pytest.raises(ValueError, match="min_samples"):
            dbscan_cosine(X, eps=0.1, min_samples=ms)
    with pytest.raises(ValueError, match="max_neighbors"):
        dbscan_cosine(X, eps=0.1, min_samples=2, max_neighbors=0)


def test_cluster_params_validate():
    p = ClusterParams(eps=0.2, min_samples=3, min_cluster_size=4, max_neighbors=50)
    assert (p.eps, p.min_samples, p.min_cluster_size, p.max_neighbors) == (0.2, 3, 4.0, 50)
    for kwargs in (
        {"eps": 0},
        {"eps": 0.1, "min_samples": 0},
        {"eps": 0.1, "min_cluster_size": -1},
        {"eps": 0.1, "max_neighbors": 0},
        {"eps": 0.1, "min_cluster_size": float("nan")},
    ):
        with pytest.raises(ValueError):
            ClusterParams(**kwargs)


# ------------------------------------------------------------------------ nearest similarity


def test_nearest_similarity_matches_brute_force():
    rng = np.random.default_rng(8)
    X, R = rng.standard_normal((50, 5)), rng.standard_normal((7, 5))
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Rn = R / np.linalg.norm(R, axis=1, keepdims=True)
    assert np.allclose(nearest_similarity(X, R), (Xn @ Rn.T).max(axis=1))
    with mock.patch.object(clustering, "_BLOCK_ELEMS", 4):  # many tiny blocks
        assert np.allclose(nearest_similarity(X, R), (Xn @ Rn.T).max(axis=1))


def test_nearest_similarity_edges():
    X = on_circle([0, 90])
    assert nearest_similarity(X, np.zeros((0, 2))).tolist() == [-1.0, -1.0]
    assert nearest_similarity(np.zeros((0, 2)), X).shape == (0,)
    assert np.allclose(nearest_similarity(X, X), 1.0)
    with pytest.raises(ValueError, match="dims"):
        nearest_similarity(X, np.ones((1, 3)))


# ---------------------------------------------------------------------------- summaries


def weighted_medoid_brute(V, w):
    Vn = V / np.linalg.norm(V, axis=1, keepdims=True)
    cost = ((1 - Vn @ Vn.T) * w[None, :]).sum(axis=1)
    return int(np.argmin(cost))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), k=st.integers(1, 5), n_examples=st.integers(1, 6))
def test_summaries_properties(seed, n, k, n_examples):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    w = rng.integers(1, 6, n).astype(float)
    labels = rng.integers(-1, k, n)
    texts = [f"テキスト{i % 7} query{i}" for i in range(n)]
    summaries = summarize_clusters(texts, X, w, labels, n_examples=n_examples)
    assert sorted(s.label for s in summaries) == sorted(set(labels[labels >= 0].tolist()))
    keys = [(-s.size * s.density, -s.size, s.label) for s in summaries]
    assert keys == sorted(keys)
    for s in summaries:
        members = np.flatnonzero(labels == s.label)
        assert list(s.members) == members.tolist()
        assert s.medoid in s.members and s.medoid_text == texts[s.medoid]
        medoid_cost = ((1 - _cos(X[s.medoid], X[members])) * w[members]).sum()
        best = members[weighted_medoid_brute(X[members], w[members])]
        best_cost = ((1 - _cos(X[best], X[members])) * w[members]).sum()
        assert medoid_cost <= best_cost + 1e-9
        assert -1.0 <= s.density <= 1.0
        assert s.size == pytest.approx(w[members].sum()) and s.n_texts == members.size
        assert 1 <= len(s.examples) <= n_examples and len(set(s.examples)) == len(s.examples)
        assert s.examples[0] == s.medoid_text
        assert all(labels[i] == s.label for i in s.example_indices)
        assert isinstance(s.label_text, str) and s.label_text.strip()


def _cos(v, M):
    return (M / np.linalg.norm(M, axis=1, keepdims=True)) @ (v / np.linalg.norm(v))


def test_summary_medoid_density_and_examples():
    X = on_circle([0, 10, 20, 200, 201])
    texts = ["補助金 申請", "補助金 申請方法", "補助金 申請 期限", "far", "far too"]
    labels = np.array([0, 0, 0, -1, -1])
    (s,) = summarize_clusters(texts, X, [1, 1, 1, 9, 9], labels, n_examples=5)
    assert s.medoid == 1 and s.n_texts == 3 and s.size == 3.0
    assert s.density == pytest.approx((1 + 2 * math.cos(math.radians(10))) / 3)
    assert s.examples[0] == "補助金 申請方法" and set(s.examples) == set(texts[:3])
    # A heavy member pulls the medoid (fewest weighted distance to the cluster).
    (s2,) = summarize_clusters(texts, X, [10, 1, 1, 1, 1], labels)
    assert s2.medoid == 0
    assert s2.as_record()["members"] == [0, 1, 2]


def test_summaries_order_and_single_text_cluster():
    X = on_circle([0, 1, 90, 180, 181, 182])
    labels = np.array([1, 1, 0, 2, 2, 2])
    w = [1, 1, 50, 1, 1, 1]
    out = summarize_clusters(["a1", "a2", "big", "c1", "c2", "c3"], X, w, labels)
    assert [s.label for s in out] == [0, 2, 1]
    assert out[0].density == 1.0 and out[0].n_texts == 1 and out[0].label_text


def test_summarize_validates():
    X = on_circle([0, 1])
    with pytest.raises(ValueError, match="texts"):
        summarize_clusters(["a"], X, None, [0, 0])
    with pytest.raises(ValueError, match="labels"):
        summarize_clusters(["a", "b"], X, None, [0])
    with pytest.raises(ValueError, match="n_examples"):
        summarize_clusters(["a", "b"], X, None, [0, 0], n_examples=0)


def test_cluster_texts_drops_small_clusters():
    X = on_circle([0, 1, 2, 90, 91, 180])
    texts = ["it導入補助金", "it導入補助金 期限", "it導入補助金 いつ", "創業", "創業 東京", "x"]
    labels, summaries = cluster_texts(
        texts, X, [1, 1, 1, 1, 1, 1], ClusterParams(eps=0.01, min_samples=2, min_cluster_size=3)
    )
    assert labels.tolist() == [0, 0, 0, 1, 1, -1]
    assert [s.label for s in summaries] == [0]
    assert isinstance(summaries[0], ClusterSummary) and "導入" in summaries[0].label_text


def test_benchmark_smoke(tmp_path):
    from autonomath_pipelines.bench.clustering import cluster_sizes, run_clustering_benchmark

    assert cluster_sizes(1000, 10).sum() == 1000 and cluster_sizes(1000, 10)[0] == cluster_sizes(1000, 10).max()
    lines: list[str] = []
    report = run_clustering_benchmark(sizes=(300, 600), dims=16, clusters=4, out_dir=str(tmp_path), say=lines.append)
    assert (tmp_path / "bench_clustering.json").exists() and (tmp_path / "bench_clustering.png").exists()
    assert [(r["method"], r["n"]) for r in report["results"]] == [("ours", 300), ("ours", 600), ("sklearn_brute", 300)]
    assert report["brute_comparison"]["identical_labels"] is True
    assert report["targets"] is None and any("wrote" in line for line in lines)
