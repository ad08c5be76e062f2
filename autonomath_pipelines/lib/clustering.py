"""Density clustering of embedded texts (loop A themes, loop E alias surfaces).

Inputs are unique normalized texts with counts (queries repeat, Zipf), embedded as vectors by a
sentence model. Distances are cosine: ``1 - u·v`` on unit vectors.

``dbscan_cosine``
    Exactly ``sklearn.cluster.DBSCAN(metric="cosine", algorithm="brute")`` with ``sample_weight``,
    labels included, but in memory bounded by ``O(n·(d + pivots))`` plus one fixed-size distance
    block, whatever the density. No neighbour graph is ever materialised:

    1. *Plan.* A few deterministic spherical k-means steps give ``K ≈ 2√n`` (≤ 256) pivots.
       Each point joins its nearest pivot's group unless it is farther than a radius set from
       ``eps`` and the data's typical angle; such points are the *residual*. For every group and
       pivot the interval of member angles is kept. Angles obey the triangle inequality, so
       (a) two groups whose intervals on some pivot are more than ``arccos(1 - eps)`` apart have
       no pair within eps: their distances are never computed (residual points are tested one by
       one against groups the same way); (b) two groups whose outer angles to some pivot sum to
       less than ``arccos(1 - eps)`` have *every* pair within eps ("sure" groups, e.g. a theme of
       near-duplicate queries): their distances are not computed either, each row just counts
       the group's total weight and is linked to it. Both bounds carry a slack larger than any
       float error, so they never change a decision; they only save work. Without structure (or
       for n < 2048, or eps near 1) nothing is pruned and the scan is blocked brute force: still
       bounded memory, ``O(n²·d)`` time.
    2. *One scan.* Each group's rows, in blocks of at most ``_BLOCK_ELEMS`` similarities
       (16 MB in float32), are multiplied (BLAS) against the groups it may reach. Neighbours are
       ``s >= t`` with ``t`` the exact float threshold equivalent to sklearn's ``1 - s <= eps``.
       From a block we take each row's exact weighted neighbour count (its core status: summed
       weight of the eps-neighbourhood, itself included, ``>= min_samples``) and link it, by a
       vectorised union–find, to every already-scanned core neighbour. Every core–core pair is
       therefore linked when the later of its two rows is scanned: clusters are the exact
       connected components of core points, however dense, and nothing is stored per pair.
    3. *Borders.* Rows of non-core points that have a neighbour are scanned once more against
       the final core points; each joins the cluster of its core neighbours with the lowest
       number — sklearn's rule (its expansion reaches a shared border point from the earliest
       cluster first). Everything else is noise (-1) and is never forced into a cluster.

    Labels are numbered by each cluster's lowest input index of a core point (0, 1, ...), which is
    the order in which sklearn discovers clusters; hence the labels equal sklearn's, not only up
    to a permutation. The only input-order dependence of DBSCAN itself remains: a border point
    within ``eps`` of two clusters joins the lower-numbered one. Core points and noise do not
    depend on the order. No randomness anywhere.

    Cost (benchmark, ``bench_clustering``, 384 dims, 200 Zipf themes, 2 cores): 100k texts in
    ~6 s and ~0.8 GB peak RSS (process total); sklearn's brute force needs O(n²) memory. BLAS
    threads follow the process settings (threadpoolctl / ``OPENBLAS_NUM_THREADS``); when the cores
    are oversubscribed, one BLAS thread is faster than two (measured 9.8 s vs 19.9 s at 100k).

``summarize_clusters``
    Medoid, density, examples and a readable label per cluster (``labels.cluster_labels``).

``nearest_similarity``
    Max cosine similarity of each vector to a reference set (existing guard patterns / aliases),
    in blocks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from autonomath_pipelines.lib.labels import cluster_labels

__all__ = [
    "ClusterParams",
    "EpsChoice",
    "GuardReport",
    "choose_eps",
    "core_distances",
    "guard_chaining",
    "hdbscan_cosine",
    "ClusterSummary",
    "cluster_texts",
    "dbscan_cosine",
    "nearest_similarity",
    "summarize_clusters",
]

#: Distances computed per block (rows × candidate columns): 4 Mi entries, 16 MB in float32.
_BLOCK_ELEMS = 1 << 22
#: Below this many points the pruning plan costs more than it saves: one group, blocked brute force.
_GROUPING_MIN_N = 2048
_MAX_PIVOTS = 256
_KMEANS_STEPS = 3
#: Slack on computed cosines for the pruning bounds: at least this, and at least 2·d·(machine
#: epsilon), above the worst-case rounding error of a d-dimensional dot product of unit vectors
#: (typical errors are ~1e-6 in float32). It only affects how much is pruned, never a decision.
_COS_SLACK = 1e-4
#: Above this angle (radians) for arccos(1 - eps) the pivots cannot prune anything useful.
_MAX_PRUNING_ANGLE = math.radians(80.0)


# ---------------------------------------------------------------------------------- validation


def _unit_rows(vectors: Any, name: str = "vectors") -> np.ndarray:
    """A C-contiguous float32/float64 copy of ``vectors`` with every row scaled to unit norm.

    float32 input stays float32 (as sklearn does); anything else becomes float64. Rows are always
    renormalised (cosine distance does not depend on the norm); zero, infinite or NaN rows raise.
    """
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_texts, dims), got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    dtype = np.float32 if arr.dtype == np.float32 else np.float64
    out = np.array(arr, dtype=dtype, order="C", copy=True)
    if out.shape[0] == 0:
        return out
    if out.shape[1] == 0:
        raise ValueError(f"{name} have 0 dimensions")
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise ValueError(f"{name} must be finite; row {bad} has NaN or infinity")
    norms = np.sqrt(np.einsum("ij,ij->i", out, out))
    odd = ~(np.isfinite(norms) & (norms > 0))
    if odd.any():  # squares over/underflowed: rescale those rows by their max |x|
        peak = np.abs(out[odd]).max(axis=1)
        out[odd] /= np.where(peak > 0, peak, 1)[:, None]
        norms[odd] = np.sqrt(np.einsum("ij,ij->i", out[odd], out[odd]))
    if not (norms > 0).all():
        bad = int(np.flatnonzero(~(norms > 0))[0])
        raise ValueError(f"{name} row {bad} has zero norm (no direction, cosine undefined)")
    out /= norms[:, None]
    return out


def _weights(weights: Any, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"weights must have shape ({n},) to match the vectors, got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("weights must be finite")
    if (w < 0).any():
        raise ValueError("weights must be >= 0 (they are counts)")
    return w


def _check_eps(eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)):
        raise ValueError(f"eps must be a number, got {eps!r}")
    eps = float(eps)
    if not (eps > 0) or not math.isfinite(eps):
        raise ValueError(f"eps must be a finite cosine distance > 0, got {eps}")
    return eps


def _check_min_samples(min_samples: Any) -> int:
    if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)) or min_samples < 1:
        raise ValueError(f"min_samples must be an integer >= 1, got {min_samples!r}")
    return int(min_samples)


def _check_max_neighbors(max_neighbors: Any) -> int | None:
    if max_neighbors is None:
        return None
    if isinstance(max_neighbors, bool) or not isinstance(max_neighbors, (int, np.integer)) or max_neighbors < 1:
        raise ValueError(f"max_neighbors must be None or an integer >= 1, got {max_neighbors!r}")
    return int(max_neighbors)


@dataclass(frozen=True)
class ClusterParams:
    """Clustering settings of a loop.

    eps: cosine distance (``1 - similarity``) within which two texts are neighbours; depends on
        the embedding model (multilingual-e5 compresses similarities towards 1, so it needs a
        smaller eps than MiniLM-type models).
    min_samples: summed weight (count) of an eps-neighbourhood, the point itself included, that
        makes a point core (sklearn's definition).
    min_cluster_size: smallest summed weight of a cluster worth a candidate (``cluster_texts``
        drops smaller ones; their texts are reported as unclustered).
    max_neighbors: accepted for API stability; ``dbscan_cosine`` never stores a neighbour graph, so
        no cap is needed to bound memory and the value does not change the result (see there).
    """

    eps: float
    min_samples: int = 3
    min_cluster_size: float = 3.0
    max_neighbors: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", _check_eps(self.eps))
        object.__setattr__(self, "min_samples", _check_min_samples(self.min_samples))
        mcs = self.min_cluster_size
        if (
            isinstance(mcs, bool)
            or not isinstance(mcs, (int, float, np.integer, np.floating))
            or not math.isfinite(float(mcs))
            or mcs < 0
        ):
            raise ValueError(f"min_cluster_size must be a finite number >= 0, got {mcs!r}")
        object.__setattr__(self, "min_cluster_size", float(mcs))
        object.__setattr__(self, "max_neighbors", _check_max_neighbors(self.max_neighbors))


# ------------------------------------------------------------------------------- union–find


def _find(parent: np.ndarray, idx: np.ndarray) -> np.ndarray:
    r = parent[idx]
    while True:
        rr = parent[r]
        if np.array_equal(rr, r):
            return r
        r = rr


def _compress(parent: np.ndarray) -> None:
    while True:
        pp = parent[parent]
        if np.array_equal(pp, parent):
            return
        parent[:] = pp


def _union(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Merge the sets of a[i] and b[i] for all i. Larger roots are hooked under smaller ones, so a
    root is always the smallest element of its set (``parent[i] <= i``); terminates because every
    round hooks at least one root."""
    while a.size:
        ra, rb = _find(parent, a), _find(parent, b)
        differ = ra != rb
        if not differ.any():
            return
        a, b, ra, rb = a[differ], b[differ], ra[differ], rb[differ]
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))


# ------------------------------------------------------------------------------ pruning plan


@dataclass
class _Task:
    """Rows ``[row_start, row_stop)`` (positions in group order) and the columns they may reach."""

    row_start: int
    row_stop: int
    runs: list[tuple[int, int]]  # contiguous column ranges whose distances are computed
    extra: np.ndarray  # further single column positions (residual points)
    #: Column ranges certainly within eps of every row (no distances computed).
    sure_runs: list[tuple[int, int]] = field(default_factory=list)

    def columns(self) -> np.ndarray:
        parts = [np.arange(a, b, dtype=np.int64) for a, b in self.runs]
        parts.append(self.extra.astype(np.int64, copy=False))
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def sure_columns(self) -> np.ndarray:
        parts = [np.arange(a, b, dtype=np.int64) for a, b in self.sure_runs]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)


@dataclass
class _Plan:
    perm: np.ndarray  # position -> input index
    tasks: list[_Task]
    groups: int
    residual: int


def _nearest_pivot(X: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = X.shape[0]
    assign = np.empty(n, dtype=np.int64)
    best = np.empty(n, dtype=X.dtype)
    step = max(1, _BLOCK_ELEMS // max(1, C.shape[0]))
    for a in range(0, n, step):
        block = X[a : a + step] @ C.T
        assign[a : a + step] = block.argmax(axis=1)
        best[a : a + step] = block[np.arange(block.shape[0]), assign[a : a + step]]
    return assign, best


def _pivots(X: np.ndarray, k: int) -> np.ndarray:
    """Deterministic spherical k-means: strided initial sample, ``_KMEANS_STEPS`` Lloyd steps."""
    n = X.shape[0]
    C = X[np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))].copy()
    for _ in range(_KMEANS_STEPS):
        assign, _ = _nearest_pivot(X, C)
        onehot = sp.csr_matrix((np.ones(n, dtype=X.dtype), (assign, np.arange(n))), shape=(C.shape[0], n))
        sums = np.asarray(onehot @ X, dtype=np.float64)
        norms = np.linalg.norm(sums, axis=1)
        keep = norms > 0
        C[keep] = (sums[keep] / norms[keep, None]).astype(X.dtype)
    return C


def _merge_runs(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if b <= a:
            continue
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _plan(X: np.ndarray, eps: float) -> tuple[np.ndarray, _Plan]:
    """Group the points for pruning; returns the vectors in group order and the plan."""
    n = X.shape[0]
    slack = max(_COS_SLACK, 2 * X.shape[1] * float(np.finfo(X.dtype).eps))
    theta_max = math.acos(min(1.0, max(-1.0, 1.0 - eps - slack)))
    theta_sure = math.acos(min(1.0, max(-1.0, 1.0 - eps + slack)))
    if n < _GROUPING_MIN_N or theta_max > _MAX_PRUNING_ANGLE:
        perm = np.arange(n, dtype=np.int64)
        return X, _Plan(perm, [_Task(0, n, [(0, n)], np.empty(0, np.int64))], groups=1, residual=0)

    k = int(min(_MAX_PIVOTS, max(16, round(2 * math.sqrt(n)))))
    C = _pivots(X, k)
    assign, best = _nearest_pivot(X, C)
    own_angle = np.arccos(np.clip(best.astype(np.float64) + slack, -1.0, 1.0))

    # Typical angle between a point and a pivot that is not its own: what "unrelated" looks like
    # in this embedding space (90° for isotropic data, less for anisotropic sentence models).
    sample = X[np.linspace(0, n - 1, min(n, 2000)).round().astype(np.int64)] @ C.T
    typical = math.acos(float(np.clip(np.median(sample), -1.0, 1.0)))
    radius = max(typical - theta_max - math.radians(3.0), theta_max)
    residual_mask = own_angle > radius

    group_of = np.where(residual_mask, C.shape[0], assign)  # residual sorts last
    perm = np.argsort(group_of, kind="stable")
    Xs = X[perm]
    gsorted = group_of[perm]
    pivots_used = np.unique(gsorted[gsorted < C.shape[0]])
    G = pivots_used.size
    bounds = np.searchsorted(gsorted, pivots_used)
    n_grouped = int(np.count_nonzero(~residual_mask))
    starts = np.append(bounds, n_grouped)

    # Cosine of every point to every pivot, in group order (n × K).
    A = np.empty((n, C.shape[0]), dtype=X.dtype)
    step = max(1, _BLOCK_ELEMS // C.shape[0])
    for a in range(0, n, step):
        np.matmul(Xs[a : a + step], C.T, out=A[a : a + step])

    def lo_angle(cos_max: np.ndarray) -> np.ndarray:
        return np.arccos(np.clip(cos_max.astype(np.float64) + slack, -1.0, 1.0))

    def hi_angle(cos_min: np.ndarray) -> np.ndarray:
        return np.arccos(np.clip(cos_min.astype(np.float64) - slack, -1.0, 1.0))

    tasks: list[_Task] = []
    res_start = n_grouped
    n_res = n - n_grouped
    if G:
        lo = lo_angle(np.maximum.reduceat(A[:n_grouped], bounds, axis=0))  # G × K
        hi = hi_angle(np.minimum.reduceat(A[:n_grouped], bounds, axis=0))
        cand = np.empty((G, G), dtype=bool)
        gc = max(1, (1 << 20) // (G * C.shape[0]))  # ≤ 1 Mi angles (8 MB) per temporary
        for a in range(0, G, gc):
            gap = np.maximum(lo[None, :, :] - hi[a : a + gc, None, :], lo[a : a + gc, None, :] - hi[None, :, :])
            cand[a : a + gc] = gap.max(axis=2) <= theta_max
        cand |= cand.T  # the bound is symmetric; guard against rounding asymmetry

        # Upper bound: θ(x, y) <= θ(x, p) + θ(p, y) for every pivot p. Groups whose members are all
        # within theta_sure of each other need no distances (tight near-duplicate themes).
        sure = np.zeros((G, G), dtype=bool)
        if theta_sure > 0:
            for a in range(0, G, gc):
                sure[a : a + gc] = (hi[a : a + gc, None, :] + hi[None, :, :]).min(axis=2) <= theta_sure
            sure &= sure.T

        # Residual point × group: bound on the group's own pivot and on the point's nearest pivot.
        res_cand = np.zeros((n_res, G), dtype=bool)
        own = pivots_used  # pivot of group g
        lo_own, hi_own = lo[np.arange(G), own], hi[np.arange(G), own]
        rc = max(1, (1 << 19) // G)
        for a in range(0, n_res, rc):
            Ares = A[res_start + a : res_start + a + rc]
            rows = np.arange(Ares.shape[0])
            a_own = Ares[:, own]
            gap = np.maximum(lo_own[None, :] - hi_angle(a_own), lo_angle(a_own) - hi_own[None, :])
            near = Ares.argmax(axis=1)
            a_near = Ares[rows, near][:, None]
            gap = np.maximum(gap, np.maximum(lo[:, near].T - hi_angle(a_near), lo_angle(a_near) - hi[:, near].T))
            res_cand[a : a + rc] = gap <= theta_max

        for g in range(G):
            runs = _merge_runs([(int(starts[h]), int(starts[h + 1])) for h in np.flatnonzero(cand[g] & ~sure[g])])
            sure_runs = _merge_runs([(int(starts[h]), int(starts[h + 1])) for h in np.flatnonzero(sure[g])])
            extra = np.flatnonzero(res_cand[:, g]) + res_start
            if extra.size > n_res // 2:
                runs = _merge_runs(runs + [(res_start, n)])
                extra = np.empty(0, np.int64)
            tasks.append(_Task(int(starts[g]), int(starts[g + 1]), runs, extra, sure_runs))
    else:
        res_cand = np.zeros((n_res, 0), dtype=bool)

    # Residual rows in chunks: all residual columns plus the groups any row of the chunk may reach.
    chunk = 256
    for a in range(0, n_res, chunk):
        hit = np.flatnonzero(res_cand[a : a + chunk].any(axis=0)) if G else np.empty(0, np.int64)
        runs = _merge_runs([(int(starts[h]), int(starts[h + 1])) for h in hit] + [(res_start, n)])
        tasks.append(_Task(res_start + a, min(n, res_start + a + chunk), runs, np.empty(0, np.int64)))
    return Xs, _Plan(perm, tasks, groups=G, residual=n_res)


# ------------------------------------------------------------------------------------ DBSCAN


def dbscan_cosine(
    vectors: Any, weights: Any = None, *, eps: float, min_samples: int, max_neighbors: int | None = None
) -> np.ndarray:
    """DBSCAN with cosine distance and sample weights; labels as ``np.intp``, -1 = noise.

    Same result as ``sklearn.cluster.DBSCAN(eps=eps, min_samples=min_samples, metric="cosine",
    algorithm="brute").fit(vectors, sample_weight=weights).labels_`` (cores, borders, noise and
    label numbers), in bounded memory; see the module docstring for the method.

    vectors: (n, d) array; rows are renormalised to unit length (zero/NaN/inf rows raise
        ``ValueError``). float32 input is computed in float32, anything else in float64.
    weights: (n,) non-negative counts; default 1 each. A point is core when the summed weight of
        its eps-neighbourhood, itself included, is ``>= min_samples``: a single text asked
        ``min_samples`` times is a cluster on its own.
    eps: cosine distance ``1 - u·v``, > 0 (values >= 2 make every pair neighbours).
    max_neighbors: accepted for API stability and validated (None or int >= 1), but it changes
        nothing: the scan never holds a neighbour list (core status comes from exact weighted
        counts, links go straight into a union–find), so dense clusters need no cap to keep memory
        bounded and the result is exact DBSCAN.

    Labels are numbered by each cluster's smallest input index of a core point (sklearn's order).
    """
    X = _unit_rows(vectors)
    n = X.shape[0]
    w = _weights(weights, n)
    eps = _check_eps(eps)
    min_samples = _check_min_samples(min_samples)
    _check_max_neighbors(max_neighbors)
    if n == 0:
        return np.empty(0, dtype=np.intp)
    Xs, plan = _plan(X, eps)
    del X
    return _Scan(Xs, w[plan.perm], eps, min_samples, plan).run()


def _similarity_threshold(eps: float, dtype: Any) -> Any:
    """The smallest similarity ``s`` (in ``dtype``) with ``fl(1 - s) <= eps``; None when eps >= 2.

    sklearn decides ``d <= eps`` on ``d = fl(1 - s)`` (cosine_distances: S *= -1; S += 1), with eps
    a Python float, which NumPy compares in the array's dtype. ``fl(1 - s)`` is monotone in ``s``,
    so that decision is exactly ``s >= t`` for the ``t`` found here: one pass instead of three,
    and the same decision as sklearn's for the same similarity value. (The similarity itself can
    differ in the last bit between two BLAS calls of different shapes, which matters only for a
    pair whose distance equals eps to the last bit.)
    """
    if eps >= 2.0:
        return None
    dt = np.dtype(dtype).type
    one, e = dt(1), dt(eps)

    def within(s: Any) -> bool:
        return bool(one - s <= e)

    lo, hi = dt(-2), one  # within(-2) is False (eps < 2), within(1) is True
    while True:  # bisection over floats: ends on adjacent lo < hi
        mid = dt((lo + hi) / dt(2))
        if mid == lo or mid == hi:
            return hi
        if within(mid):
            hi = mid
        else:
            lo = mid


class _Scan:
    """The blocked scan over a plan; everything is indexed by position (group order)."""

    def __init__(self, Xs: np.ndarray, ws: np.ndarray, eps: float, min_samples: int, plan: _Plan):
        self.X, self.w, self.eps, self.min_samples, self.plan = Xs, ws, eps, min_samples, plan
        n = Xs.shape[0]
        integral = bool(np.all(ws == np.round(ws))) and float(ws.sum()) < 2.0**24
        # Sums run in the vectors' dtype (BLAS on the spent similarity buffer) when that is exact:
        # integer counts below 2**24 are exact in float32; anything else is summed in float64.
        self.count_dtype = Xs.dtype if (integral or Xs.dtype == np.float64) else np.float64
        self.wc = ws.astype(self.count_dtype)
        self.counts = np.zeros(n, dtype=np.float64)
        self.core = np.zeros(n, dtype=bool)
        self.scanned = np.zeros(n, dtype=bool)
        self.parent = np.arange(n, dtype=np.int64)
        self.threshold = _similarity_threshold(eps, Xs.dtype)
        csum = np.concatenate([[0.0], np.cumsum(ws)])
        self.sure_weight = [float(sum(csum[b] - csum[a] for a, b in t.sure_runs)) for t in plan.tasks]

    def _distances(
        self, rows: np.ndarray | slice, cols: np.ndarray, task: _Task, extra_X: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boolean (m × r) matrix: column j within eps of row i; and the spent float buffer."""
        Xq = self.X[rows]
        m, r = cols.size, Xq.shape[0]
        S = np.empty((m, r), dtype=self.X.dtype)
        off = 0
        for a, b in task.runs:
            np.matmul(self.X[a:b], Xq.T, out=S[off : off + b - a])
            off += b - a
        if extra_X is not None and extra_X.shape[0]:
            np.matmul(extra_X, Xq.T, out=S[off:])
        if self.threshold is None:  # eps >= 2: sklearn clips distances to [0, 2]
            return np.ones((m, r), dtype=bool), S
        return S >= self.threshold, S

    def _weighted_counts(self, wcols: np.ndarray, mask: np.ndarray, buf: np.ndarray) -> np.ndarray:
        """Σ_j w_j·mask[j, i] per row i, via BLAS on the spent distance buffer (no new m × r array)."""
        if buf.dtype == wcols.dtype:
            np.copyto(buf, mask)
            return wcols @ buf
        return wcols @ mask

    def _row_chunks(self, n_rows: int, m: int) -> int:
        return max(8, min(n_rows, _BLOCK_ELEMS // max(1, m)))

    def run(self) -> np.ndarray:
        for task, sure_weight in zip(self.plan.tasks, self.sure_weight):
            self._scan_task(task, sure_weight)
        _compress(self.parent)
        return self._labels()

    def _scan_task(self, task: _Task, sure_weight: float) -> None:
        cols = task.columns()
        sure_cols = task.sure_columns()
        extra_X = self.X[task.extra] if task.extra.size else None
        wcols = self.wc[cols]
        step = self._row_chunks(task.row_stop - task.row_start, cols.size)
        for a in range(task.row_start, task.row_stop, step):
            b = min(task.row_stop, a + step)
            rows = np.arange(a, b)
            if cols.size:
                mask, buf = self._distances(slice(a, b), cols, task, extra_X)
                counts = self._weighted_counts(wcols, mask, buf).astype(np.float64)
                del buf
            else:
                mask, counts = np.zeros((0, b - a), dtype=bool), np.zeros(b - a)
            counts += sure_weight
            self.counts[a:b] = counts
            core = counts >= self.min_samples
            self.core[a:b] = core
            self.scanned[a:b] = True
            if not core.any():
                continue
            if sure_cols.size:
                # Every core row here neighbours every scanned core point of the sure groups:
                # one star joins them all.
                v = sure_cols[self.scanned[sure_cols] & self.core[sure_cols]]
                if v.size:
                    rv = np.unique(_find(self.parent, v))
                    anchor = np.full(rows[core].size + rv.size, rv[0])
                    _union(self.parent, np.concatenate([rows[core], rv]), anchor)
                    _compress(self.parent)
            if not cols.size:
                continue
            # Link each core row to every scanned core neighbour (this chunk's rows included).
            valid = np.flatnonzero(self.scanned[cols] & self.core[cols])
            if not valid.size:
                continue
            roots = _find(self.parent, cols[valid])
            order = np.argsort(roots, kind="stable")
            valid, roots = valid[order], roots[order]
            seg = np.flatnonzero(np.r_[True, roots[1:] != roots[:-1]])
            sub = mask[valid] if core.all() else mask[valid][:, core]
            touches = np.logical_or.reduceat(sub, seg, axis=0)  # segments × core rows
            u, x = np.nonzero(touches)
            _union(self.parent, rows[core][x], roots[seg[u]])
            _compress(self.parent)

    def _labels(self) -> np.ndarray:
        n = self.X.shape[0]
        perm = self.plan.perm
        big = np.iinfo(np.int64).max
        # Cluster key = smallest input index of a core point in the component.
        key_of_root = np.full(n, big, dtype=np.int64)
        core_pos = np.flatnonzero(self.core)
        np.minimum.at(key_of_root, self.parent[core_pos], perm[core_pos])
        key = np.full(n, -1, dtype=np.int64)
        key[core_pos] = key_of_root[self.parent[core_pos]]

        # Border candidates: non-core rows with a neighbour other than themselves.
        positive = self.w[self.w > 0]
        if positive.size < self.w.size:  # zero weights hide neighbours from the counts
            maybe = ~self.core
        else:
            maybe = ~self.core & (self.counts - self.w > 0.5 * positive.min())
        if maybe.any() and core_pos.size:
            border = np.full(n, big, dtype=np.int64)
            for task in self.plan.tasks:
                rows = np.flatnonzero(maybe[task.row_start : task.row_stop]) + task.row_start
                if rows.size:
                    self._assign_borders(task, rows, key, border)
            found = border < big
            key[found] = border[found]

        labels_pos = np.full(n, -1, dtype=np.intp)
        has = key >= 0
        if has.any():
            _, inverse = np.unique(key[has], return_inverse=True)
            labels_pos[has] = inverse
        labels = np.empty(n, dtype=np.intp)
        labels[perm] = labels_pos
        return labels

    def _assign_borders(self, task: _Task, rows: np.ndarray, key: np.ndarray, border: np.ndarray) -> None:
        """border[r] = lowest cluster key among the core eps-neighbours of each non-core row r."""
        sure_cols = task.sure_columns()
        sure_core = sure_cols[self.core[sure_cols]]
        if sure_core.size:  # every sure column is a neighbour of every row
            np.minimum.at(border, rows, int(key[sure_core].min()))
        cols = task.columns()
        valid = np.flatnonzero(self.core[cols])
        if not valid.size:
            return
        extra_X = self.X[task.extra] if task.extra.size else None
        ckey = key[cols[valid]]
        order = np.argsort(ckey, kind="stable")
        valid, ckey = valid[order], ckey[order]
        step = self._row_chunks(rows.size, cols.size)
        for a in range(0, rows.size, step):
            r = rows[a : a + step]
            mask, _ = self._distances(r, cols, task, extra_X)
            sub = np.ascontiguousarray(mask[valid].T)  # rows × core columns by key
            hit = sub.any(axis=1)
            first = sub.argmax(axis=1)
            np.minimum.at(border, r[hit], ckey[first[hit]])


# ------------------------------------------------------------------------ nearest similarity


def nearest_similarity(vectors: Any, reference_vectors: Any) -> np.ndarray:
    """For each row of ``vectors``, the max cosine similarity to any row of ``reference_vectors``.

    Both sides are renormalised; computed in blocks of at most ``_BLOCK_ELEMS`` similarities.
    An empty reference gives -1.0 for every vector (nothing is near). float64 result.
    """
    X = _unit_rows(vectors, "vectors")
    R = _unit_rows(reference_vectors, "reference_vectors")
    n, m = X.shape[0], R.shape[0]
    out = np.full(n, -1.0, dtype=np.float64)
    if n == 0 or m == 0:
        return out
    if X.shape[1] != R.shape[1]:
        raise ValueError(f"vectors have {X.shape[1]} dims but reference_vectors have {R.shape[1]}")
    if X.dtype != R.dtype:
        X, R = X.astype(np.float64), R.astype(np.float64)
    rstep = max(1, min(m, _BLOCK_ELEMS))
    qstep = max(1, _BLOCK_ELEMS // min(m, rstep))
    for a in range(0, n, qstep):
        best = np.full(min(n, a + qstep) - a, -np.inf)
        for c in range(0, m, rstep):
            best = np.maximum(best, (X[a : a + qstep] @ R[c : c + rstep].T).max(axis=1))
        out[a : a + qstep] = np.clip(best, -1.0, 1.0)
    return out


# ------------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class ClusterSummary:
    """One cluster of texts.

    label: the DBSCAN label. members: input indices, ascending. size: summed weight (requests).
    n_texts: number of distinct texts. medoid: input index of the medoid, the member with the
    smallest weighted sum of cosine distances to the cluster (= largest ``v_i·Σ_j w_j v_j``).
    density: weighted mean cosine similarity of the members (medoid included) to the medoid, in
    [-1, 1]; 1.0 for a single text. examples: up to ``n_examples`` distinct texts, the medoid
    first, then by weight, closeness to the medoid, index. label_text: a short readable label.
    """

    label: int
    members: tuple[int, ...]
    size: float
    n_texts: int
    medoid: int
    medoid_text: str
    density: float
    examples: tuple[str, ...]
    example_indices: tuple[int, ...]
    label_text: str

    @property
    def score(self) -> float:
        """The ordering key: size × density."""
        return self.size * self.density

    def as_record(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists instead of tuples), e.g. for evidence_json."""
        rec = asdict(self)
        rec["members"] = list(self.members)
        rec["examples"] = list(self.examples)
        rec["example_indices"] = list(self.example_indices)
        rec["score"] = self.score
        return rec


def summarize_clusters(
    texts: Sequence[str], vectors: Any, weights: Any, labels: Any, *, n_examples: int = 5
) -> list[ClusterSummary]:
    """Summaries of every cluster (label >= 0), ordered by size × density descending.

    Ties are broken by size descending, then label ascending. Noise (label < 0) is never
    summarised. ``weights=None`` means 1 each. O(m·d) per cluster of m texts (medoid via the
    weighted centroid sum), plus one c-TF-IDF pass over all clustered texts for the labels.
    """
    texts = list(texts)
    X = _unit_rows(vectors)
    n = X.shape[0]
    if len(texts) != n:
        raise ValueError(f"{len(texts)} texts but {n} vectors")
    w = _weights(weights, n)
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {lab.shape}")
    if lab.size and lab.dtype.kind not in "iu":
        if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)):
            raise ValueError("labels must be integers")
    lab = lab.astype(np.int64)
    if isinstance(n_examples, bool) or not isinstance(n_examples, (int, np.integer)) or n_examples < 1:
        raise ValueError(f"n_examples must be an integer >= 1, got {n_examples!r}")

    drafts: list[dict[str, Any]] = []
    order = np.argsort(lab, kind="stable")
    sorted_lab = lab[order]
    cluster_ids = np.unique(sorted_lab[sorted_lab >= 0])
    for c in cluster_ids:
        lo, hi = np.searchsorted(sorted_lab, [c, c + 1])
        idx = np.sort(order[lo:hi])
        V = X[idx].astype(np.float64)
        wm = w[idx]
        total = float(wm.sum())
        eff = wm if total > 0 else np.ones_like(wm)  # all-zero weights: treat as equal
        centroid = eff @ V
        sims_sum = V @ centroid
        mi = int(np.argmax(sims_sum))  # ties: lowest input index
        to_medoid = np.clip(V @ V[mi], -1.0, 1.0)
        density = float(np.clip((eff @ to_medoid) / eff.sum(), -1.0, 1.0))
        rank = np.lexsort((idx, -to_medoid, -wm))  # weight desc, closeness desc, index asc
        ex_idx: list[int] = [int(idx[mi])]
        seen = {texts[idx[mi]]}
        for j in rank:
            if len(ex_idx) >= n_examples:
                break
            t = texts[idx[j]]
            if t not in seen:
                seen.add(t)
                ex_idx.append(int(idx[j]))
        # For the label: the medoid first (the fallback label), then the others by weight.
        label_order = [mi] + [int(j) for j in np.lexsort((idx, -wm)) if j != mi]
        drafts.append(
            dict(
                label=int(c),
                members=tuple(int(i) for i in idx),
                size=total,
                n_texts=int(idx.size),
                medoid=int(idx[mi]),
                medoid_text=texts[idx[mi]],
                density=density,
                examples=tuple(texts[i] for i in ex_idx),
                example_indices=tuple(ex_idx),
                _label_texts=[texts[idx[j]] for j in label_order],
                _label_weights=[float(wm[j]) for j in label_order],
            )
        )

    names = (
        cluster_labels(
            {d["label"]: d["_label_texts"] for d in drafts}, {d["label"]: d["_label_weights"] for d in drafts}
        )
        if drafts
        else {}
    )
    summaries = [
        ClusterSummary(**{k: v for k, v in d.items() if not k.startswith("_")}, label_text=names[d["label"]])
        for d in drafts
    ]
    summaries.sort(key=lambda s: (-s.score, -s.size, s.label))
    return summaries


def cluster_texts(
    texts: Sequence[str], vectors: Any, weights: Any, params: ClusterParams, *, n_examples: int = 5
) -> tuple[np.ndarray, list[ClusterSummary]]:
    """DBSCAN + summaries, keeping clusters whose size (summed weight) >= ``min_cluster_size``.

    Returns the raw DBSCAN labels (small clusters keep their label there) and the kept summaries.
    """
    labels = dbscan_cosine(
        vectors, weights, eps=params.eps, min_samples=params.min_samples, max_neighbors=params.max_neighbors
    )
    summaries = summarize_clusters(texts, vectors, weights, labels, n_examples=n_examples)
    return labels, [s for s in summaries if s.size >= params.min_cluster_size]


# ------------------------------------------------------------------- eps from the data itself

#: Texts whose neighbour distances are measured when choosing eps (each against *all* texts).
EPS_SAMPLE_SIZE = 1000
EPS_METHODS = ("quantile", "knee")
#: eps is kept inside [EPS_MIN, EPS_MAX] whatever the data (cosine distances; 1e-6 is above float32 rounding).
EPS_MIN, EPS_MAX = 1e-6, 1.0


@dataclass(frozen=True)
class EpsChoice:
    """The eps a clustering run used and how it was obtained.

    method: ``"quantile"`` / ``"knee"`` (chosen from the data, see ``choose_eps``), ``"override"``
        (a number from the config) or ``"fallback"`` (fewer than two measurable texts: ``EPS_MAX``,
        which clusters nothing that DBSCAN would not). details: plain numbers for asset metadata.
    """

    eps: float
    method: str
    details: dict[str, Any] = field(default_factory=dict)

    def metadata(self, prefix: str = "eps") -> dict[str, Any]:
        out: dict[str, Any] = {
            f"{prefix}_chosen": float(self.eps),
            f"{prefix}_method": self.method,
            f"{prefix}_from_data": self.method in EPS_METHODS,
        }
        for key, value in self.details.items():
            if isinstance(value, (bool, int, float, np.integer, np.floating)) and not isinstance(value, bool):
                out[f"{prefix}_{key}"] = float(value)
        return out


def _sample_rows(n: int, size: int) -> np.ndarray:
    """``size`` row indices spread evenly over ``0..n-1`` (deterministic; all rows when n <= size)."""
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, size).round().astype(np.int64))


def core_distances(
    vectors: Any, weights: Any = None, min_samples: int = 8, *, sample_size: int = EPS_SAMPLE_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Each sampled text's *linking radius*: the smallest cosine distance r at which it would be a
    DBSCAN core point (summed weight within r, itself included, ``>= min_samples``) **and** have at
    least one other text within r (a text heavy enough to be core alone still needs a neighbour to
    join anything). The k-nearest-neighbour distance with k tied to ``min_samples``, weighted as
    DBSCAN weighs. ``inf`` when the weight is never reached (weights < 1) or n == 1.

    Returns (sample indices, radii). Memory: the sample's top-K (K ≤ 2·min_samples + 1) per row
    plus one block of at most ``_BLOCK_ELEMS / 8`` similarities — never n × n. Time O(s·n·d).
    """
    X = _unit_rows(vectors)
    n = X.shape[0]
    w = _weights(weights, n)
    min_samples = _check_min_samples(min_samples)
    rows = _sample_rows(n, max(1, int(sample_size)))
    if n == 0:
        return rows, np.zeros(0)
    K = int(min(n, 2 * min_samples + 1))
    radii = np.full(rows.size, np.inf)
    budget = max(1, _BLOCK_ELEMS // 8)  # similarities per block (4 MB in float64)
    cstep = max(1, min(n, budget // max(1, min(rows.size, 64))))
    rstep = max(1, min(rows.size, budget // cstep))
    for a in range(0, rows.size, rstep):
        q = rows[a : a + rstep]
        best_s = np.full((q.size, K), -np.inf)
        best_i = np.zeros((q.size, K), dtype=np.int64)
        for c in range(0, n, cstep):
            S = np.asarray(X[q] @ X[c : c + cstep].T, dtype=np.float64)
            own = (q >= c) & (q < c + S.shape[1])
            S[np.flatnonzero(own), q[own] - c] = 2.0  # the text itself first, always
            k = min(K, S.shape[1])
            top = (
                np.argpartition(-S, k - 1, axis=1)[:, :k]
                if S.shape[1] > k
                else np.broadcast_to(np.arange(S.shape[1]), S.shape)
            )
            cand_s = np.concatenate([best_s, np.take_along_axis(S, top, axis=1)], axis=1)
            cand_i = np.concatenate([best_i, top + c], axis=1)
            keep = np.argpartition(-cand_s, K - 1, axis=1)[:, :K]
            best_s = np.take_along_axis(cand_s, keep, axis=1)
            best_i = np.take_along_axis(cand_i, keep, axis=1)
            del S, top
        order = np.argsort(-best_s, axis=1, kind="stable")
        best_s = np.take_along_axis(best_s, order, axis=1)
        best_i = np.take_along_axis(best_i, order, axis=1)
        dist = np.clip(1.0 - best_s, 0.0, 2.0)
        dist[:, 0] = 0.0  # the text itself
        cum = np.cumsum(w[best_i], axis=1)
        reached = cum >= min_samples
        first = np.where(reached.any(axis=1), reached.argmax(axis=1), -1)
        core_r = np.where(first >= 0, dist[np.arange(q.size), np.maximum(first, 0)], np.inf)
        nn1 = dist[:, 1] if K > 1 else np.full(q.size, np.inf)
        radii[a : a + rstep] = np.maximum(core_r, nn1)
    return rows, radii


def _knee(sorted_values: np.ndarray) -> tuple[float, float]:
    """Kneedle on an ascending curve: the point farthest below the chord of the normalised curve.
    Returns (value, position in [0, 1])."""
    y = sorted_values
    if y.size < 3 or y[-1] <= y[0]:
        return float(y[-1]), 1.0
    x = np.linspace(0.0, 1.0, y.size)
    yn = (y - y[0]) / (y[-1] - y[0])
    i = int(np.argmax(x - yn))
    return float(y[i]), float(x[i])


def choose_eps(
    vectors: Any,
    weights: Any = None,
    min_samples: int = 8,
    *,
    method: str = "quantile",
    quantile: float = 0.5,
    sample_size: int = EPS_SAMPLE_SIZE,
) -> EpsChoice:
    """eps from the window's own neighbour distances, for whatever model made the vectors.

    The curve is the sorted linking radii of ``core_distances`` (k-NN distance with k tied to
    ``min_samples``, on a deterministic sample of at most ``sample_size`` texts, each measured
    against all texts: bounded memory at 100k texts).

    ``method="knee"`` (the loops' default, with the chaining guard after it): the knee of the
    sorted curve (Kneedle: the point farthest below the chord of the normalised curve), the
    classic DBSCAN heuristic. It sits where the dense texts end and the sparse tail begins, so it
    follows the model (MiniLM, USE and e5 spread their cosines very differently) and the data. On
    well-separated themes of varying density (``bench_clustering``'s data) it recovers them
    (ARI 0.98 at 20k texts); on intent sets whose intents overlap (HWU64, Alexa ja-JP) it chains
    them into few clusters, which ``guard_chaining`` then splits (see the real-data eval).
    ``method="quantile"``: eps = the ``quantile`` of the curve (0.5: about half of the texts are
    dense enough to be core). Purer clusters on overlapping intents, but it cuts themes of lower
    density than the median into fragments (ARI 0.29 on the same benchmark data); the guard
    uses it inside a cluster to find the cluster's parts.

    details: n, sampled, quantiles q10/q25/q50/q75/q90 of the curve, the knee value and position.
    Fewer than 2 texts, or no finite radius: method "fallback" with eps = EPS_MAX.
    """
    if method not in EPS_METHODS:
        raise ValueError(f"eps method must be one of {EPS_METHODS}, got {method!r}")
    if not (0.0 < float(quantile) < 1.0):
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    rows, radii = core_distances(vectors, weights, min_samples, sample_size=sample_size)
    finite = np.sort(radii[np.isfinite(radii)])
    details: dict[str, Any] = {
        "n": int(np.asarray(vectors).shape[0]) if np.ndim(vectors) == 2 else 0,
        "sampled": int(rows.size),
        "finite": int(finite.size),
    }
    if finite.size < 2:
        details["reason_too_few_texts"] = 1
        return EpsChoice(EPS_MAX, "fallback", details)
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        details[f"kdist_q{int(q * 100)}"] = float(np.quantile(finite, q))
    knee_value, knee_at = _knee(finite)
    details["kdist_knee"], details["kdist_knee_at"] = knee_value, knee_at
    if method == "knee":
        eps = knee_value
    else:
        eps = float(np.quantile(finite, float(quantile)))
        details["quantile"] = float(quantile)
    return EpsChoice(float(np.clip(eps, EPS_MIN, EPS_MAX)), method, details)


# ------------------------------------------------------------------------- chaining guard


@dataclass(frozen=True)
class GuardReport:
    """What ``guard_chaining`` did: clusters looked at, split (into ≥ 2 parts), trimmed (strays
    beyond the radius sent to noise), dropped (nothing dense enough left), and texts sent to noise."""

    radius: float
    clusters_in: int = 0
    clusters_out: int = 0
    clusters_split: int = 0
    clusters_trimmed: int = 0
    clusters_dropped: int = 0
    texts_to_noise: int = 0

    def metadata(self, prefix: str = "guard") -> dict[str, Any]:
        return {f"{prefix}_{k}": (float(v) if k == "radius" else int(v)) for k, v in asdict(self).items()}


def _medoid_distances(V: np.ndarray, w: np.ndarray) -> tuple[int, np.ndarray]:
    eff = w if w.sum() > 0 else np.ones_like(w)
    m = int(np.argmax(V @ (eff @ V)))
    return m, np.clip(1.0 - V @ V[m], 0.0, 2.0)


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values, kind="stable")
    v, cw = values[order], np.cumsum(weights[order])
    if cw[-1] <= 0:
        return float(np.quantile(values, q))
    return float(v[min(v.size - 1, int(np.searchsorted(cw, q * cw[-1])))])


def guard_chaining(
    vectors: Any,
    weights: Any,
    labels: Any,
    *,
    radius: float,
    min_samples: int,
    split_quantile: float = 0.5,
    max_depth: int = 3,
    spread_quantile: float = 0.9,
    min_part_share: float = 0.0,
    attach_radius: float | None = None,
    sample_size: int = EPS_SAMPLE_SIZE,
) -> tuple[np.ndarray, GuardReport]:
    """Split or drop clusters whose members stray too far from their medoid (DBSCAN chaining).

    A cluster's *spread* is the weighted ``spread_quantile`` (0.9) of its members' cosine distance
    to the medoid. ``radius`` is relative to the data: the loops pass the eps in use (chosen from
    the k-NN distance curve) × ``guard_radius_factor``, i.e. a theme keeps 90 % of its weight
    within one neighbour radius of its centre. A cluster within the radius is kept as is.
    Otherwise:

    1. *Split*: DBSCAN again on the cluster alone, with eps = the ``split_quantile`` of the
       cluster's own linking radii (``choose_eps`` on its members: a chained cluster is denser
       inside its parts than across the links between them). Parts lighter than
       ``max(min_samples, min_part_share × cluster weight)`` count as fragments, not parts (default
       share 0: on HWU64 a chained cluster holds dozens of intents of 2–5 % each; a share > 0
       protects one big uniform theme from being cut into fragments). When that gives ≥ 2 parts, members
       the split left as noise rejoin the nearest part's medoid if within ``radius``; each part is
       checked again, up to ``max_depth`` levels.
    2. When it gives one dense body (a big theme whose extent exceeds one neighbour step, not a
       chain), the body is kept with its fragments and the fringe within ``radius`` of its medoid
       (*trim* when some members are left out).
    3. Otherwise (too light to split, or no dense body at its own scale) the cluster keeps the
       members within ``radius`` of its medoid (*trim*); when the kept weight is below
       ``min_samples`` the whole cluster becomes noise (*drop*).

    ``attach_radius`` (default ``radius``): how near a part's medoid a split's noise must be to rejoin.
    Returns new labels (numbered by lowest member index, noise -1) and a ``GuardReport``.
    Memory O(m·d) per cluster plus ``dbscan_cosine``'s bounds; deterministic.
    """
    X = _unit_rows(vectors)
    n = X.shape[0]
    w = _weights(weights, n)
    lab = np.asarray(labels).astype(np.int64)
    if lab.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {lab.shape}")
    radius = _check_eps(radius)
    attach = radius if attach_radius is None else _check_eps(attach_radius)
    min_samples = _check_min_samples(min_samples)
    out = np.full(n, -1, dtype=np.int64)
    counts = {"split": 0, "trimmed": 0, "dropped": 0}
    next_id = [0]

    def emit(idx: np.ndarray) -> None:
        out[idx] = next_id[0]
        next_id[0] += 1

    def visit(idx: np.ndarray, depth: int) -> None:
        V, wm = X[idx], w[idx]
        m, d = _medoid_distances(V, wm)
        if _weighted_quantile(d, wm, spread_quantile) <= radius:
            emit(idx)
            return
        if depth < max_depth and idx.size >= 2 and wm.sum() >= 2 * min_samples:
            sub_eps = choose_eps(V, wm, min_samples, quantile=split_quantile, sample_size=sample_size).eps
            sub = dbscan_cosine(V, wm, eps=sub_eps, min_samples=min_samples)
            # Parts lighter than min_part_share of the cluster are fragments, not themes.
            floor = max(float(min_samples), min_part_share * float(wm.sum()))
            big = [s for s in range(int(sub.max()) + 1) if wm[sub == s].sum() >= floor]
            relabel = np.full(int(sub.max()) + 2, -1, dtype=np.int64)
            relabel[np.array(big, dtype=np.int64)] = np.arange(len(big))
            dense = sub >= 0
            sub = relabel[sub]  # -1 stays -1 (index -1 is the last slot)
            parts = len(big)
            if parts >= 2:
                counts["split"] += 1
                medoids = np.stack([V[sub == s][_medoid_distances(V[sub == s], wm[sub == s])[0]] for s in range(parts)])
                rest = np.flatnonzero(sub == -1)
                if rest.size:
                    S = V[rest] @ medoids.T
                    near = (1.0 - S.max(axis=1)) <= attach
                    sub[rest[near]] = S.argmax(axis=1)[near]
                for s in range(parts):
                    visit(idx[sub == s], depth + 1)
                return
            if parts == 1:
                # One dense body at the cluster's own scale (a big theme, not a chain): keep it, its
                # fragments, and the fringe within the radius of its medoid; the rest are strays.
                body = sub == 0
                bm = _medoid_distances(V[body], wm[body])[0]
                keep = dense | ((1.0 - V @ V[np.flatnonzero(body)[bm]]) <= radius)
                if not keep.all():
                    counts["trimmed"] += 1
                emit(idx[keep])
                return
        keep = d <= radius
        if wm[keep].sum() < min_samples:
            counts["dropped"] += 1
            return
        counts["trimmed"] += 1
        emit(idx[keep])

    clusters = np.unique(lab[lab >= 0])
    for c in clusters:
        visit(np.flatnonzero(lab == c), 0)
    # Renumber by lowest member index, as dbscan_cosine numbers its clusters.
    final = np.full(n, -1, dtype=np.intp)
    has = out >= 0
    if has.any():
        firsts = {}
        for i in np.flatnonzero(has):
            firsts.setdefault(int(out[i]), i)
        order = {c: k for k, c in enumerate(sorted(firsts, key=firsts.get))}
        final[has] = [order[int(c)] for c in out[has]]
    report = GuardReport(
        radius=radius,
        clusters_in=int(clusters.size),
        clusters_out=len(set(final[has].tolist())),
        clusters_split=counts["split"],
        clusters_trimmed=counts["trimmed"],
        clusters_dropped=counts["dropped"],
        texts_to_noise=int(((lab >= 0) & (final < 0)).sum()),
    )
    return final, report


# ------------------------------------------------------------------------------- HDBSCAN

#: HDBSCAN (sklearn) needs O(n²) time and, in high dimensions, O(n²) memory: at most this many texts
#: go into it (the heaviest by weight); 4000 × 4000 float64 distances are 128 MB.
HDBSCAN_MAX_TEXTS = 4000


def _heaviest(w: np.ndarray, max_texts: int) -> np.ndarray:
    """Indices (sorted) of the ``max_texts`` heaviest texts, ties by index; all when there are fewer."""
    n = w.size
    return np.sort(np.lexsort((np.arange(n), -w))[:max_texts]) if n > max_texts else np.arange(n)


def _attach_to_nearest(X: np.ndarray, labels: np.ndarray, keep: np.ndarray, radius: float) -> int:
    """Give every text outside ``keep`` the label of its nearest clustered text of ``keep`` when within
    ``radius`` (cosine), blockwise; returns how many joined."""
    rest = np.setdiff1d(np.arange(X.shape[0]), keep)
    clustered = keep[labels[keep] >= 0]
    attached = 0
    if not clustered.size:
        return attached
    step = max(1, _BLOCK_ELEMS // clustered.size)
    for a in range(0, rest.size, step):
        r = rest[a : a + step]
        S = X[r] @ X[clustered].T
        j = S.argmax(axis=1)
        near = (1.0 - S[np.arange(r.size), j]) <= radius
        labels[r[near]] = labels[clustered[j[near]]]
        attached += int(near.sum())
    return attached


def _renumber_by_first_member(labels: np.ndarray) -> None:
    """Number clusters 0, 1, … in the order of their lowest member index (in place; -1 stays noise)."""
    has = labels >= 0
    if has.any():
        old, first = np.unique(labels[has], return_index=True)
        order = old[np.argsort(np.flatnonzero(has)[first])]
        remap = np.full(int(old.max()) + 1, -1, dtype=np.intp)
        remap[order] = np.arange(order.size)
        labels[has] = remap[labels[has]]


def hdbscan_cosine(
    vectors: Any,
    weights: Any = None,
    min_samples: int = 8,
    *,
    min_cluster_size: int | None = None,
    max_texts: int = HDBSCAN_MAX_TEXTS,
    attach_eps: float | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """``sklearn.cluster.HDBSCAN`` on cosine geometry, on bounded input.

    Euclidean distance on unit vectors is ``sqrt(2·cosine distance)``, a monotone map, so
    HDBSCAN's hierarchy over it is the cosine hierarchy. sklearn's HDBSCAN takes no sample weights:
    weights only decide which texts are clustered when there are more than ``max_texts`` (the
    heaviest, ties by index: the texts that matter for the loops). Every other text joins the
    cluster of its nearest clustered text when within ``attach_eps`` (cosine; None: stays noise).
    min_cluster_size: in texts (default ``max(2, min_samples)``).
    Returns labels (-1 noise, numbered by lowest member index) and details for metadata.
    """
    from sklearn.cluster import HDBSCAN

    X = _unit_rows(vectors)
    n = X.shape[0]
    w = _weights(weights, n)
    min_samples = _check_min_samples(min_samples)
    mcs = max(2, int(min_cluster_size if min_cluster_size is not None else min_samples))
    labels = np.full(n, -1, dtype=np.intp)
    details: dict[str, Any] = {"hdbscan_texts": 0, "hdbscan_cap": int(max_texts), "hdbscan_attached": 0}
    if n < max(2, mcs):
        return labels, details
    keep = _heaviest(w, max_texts)
    details["hdbscan_texts"] = int(keep.size)
    model = HDBSCAN(min_cluster_size=mcs, min_samples=min(min_samples, keep.size), metric="euclidean", copy=True)
    labels[keep] = model.fit_predict(X[keep].astype(np.float64))
    if keep.size < n and attach_eps is not None:
        details["hdbscan_attached"] = _attach_to_nearest(X, labels, keep, attach_eps)
    _renumber_by_first_member(labels)
    return labels, details


# ------------------------------------------------------------------------- average linkage

#: Most texts average-linkage clustering takes at once (O(n²) distances: 4,000 texts ≈ 64 MB).
LINKAGE_MAX_TEXTS = 4000


def linkage_cosine(
    vectors: Any,
    weights: Any = None,
    *,
    threshold: float,
    min_cluster_weight: float = 3.0,
    max_texts: int = LINKAGE_MAX_TEXTS,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Average-linkage agglomerative clustering on cosine distance, cut at ``threshold``.

    Density clustering links a chain of close pairs into one cluster, so two asks that share their
    nouns ("cancel all alarms" / "show all alarms") merge through the texts between them. Average
    linkage joins two groups only when their texts are, *on average*, within ``threshold`` of each
    other: no chain can carry a cluster further. The loops cut at the eps chosen from the window's
    own k-NN distances (``choose_eps(method="quantile")``: the median k-NN distance, a scale that
    follows the model and the data). A cluster whose summed weight (requests) is below
    ``min_cluster_weight`` is noise.

    Bounded: at most ``max_texts`` texts (the heaviest, ties by index) are clustered; every other
    text joins the cluster of its nearest clustered text when within ``threshold``, else noise.
    Returns labels (-1 noise, numbered by lowest member index) and details for metadata.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    X = _unit_rows(vectors)
    n = X.shape[0]
    w = _weights(weights, n)
    threshold = _check_eps(threshold)
    labels = np.full(n, -1, dtype=np.intp)
    details: dict[str, Any] = {"linkage_texts": 0, "linkage_cap": int(max_texts), "linkage_attached": 0}
    if n == 0:
        return labels, details
    keep = _heaviest(w, max_texts)
    details["linkage_texts"] = int(keep.size)
    if keep.size == 1:
        labels[keep] = 0
    else:
        Z = linkage(X[keep].astype(np.float64), method="average", metric="cosine")
        labels[keep] = fcluster(Z, t=threshold, criterion="distance") - 1
    if keep.size < n:
        details["linkage_attached"] = _attach_to_nearest(X, labels, keep, threshold)
    clustered = labels >= 0
    if clustered.any():
        mass = np.bincount(labels[clustered], weights=w[clustered])
        labels[clustered & (mass[np.maximum(labels, 0)] < float(min_cluster_weight))] = -1
    _renumber_by_first_member(labels)
    return labels, details
