"""Benchmark of ``lib.clustering.dbscan_cosine`` at 10k and 100k texts (DESIGN §7: bounded at 100k).

    .venv/bin/python -m autonomath_pipelines.bench.clustering [--sizes 10000,100000] [--out-dir DIR]

Data: ``clusters`` synthetic themes of unit vectors in ``dims`` dimensions, von Mises–Fisher-like
(a random unit centre plus isotropic gaussian noise of norm ≈ σ, renormalised), cluster sizes
Zipf-distributed (s = 1: the largest holds ~17 % of the points), the largest 5 % of clusters very
dense (σ = 0.2), the others σ ∈ [0.25, 0.55]; plus 5 % uniform noise points on the sphere; input
order shuffled; weights are Zipf query counts (``zipf(2)``, capped at 1000). With eps = 0.25 and
min_samples = 5 a cluster's pairs (cosine distance ≈ σ²/(1+σ²) ≤ 0.24) are neighbours, themes
(distance ≈ 1) and noise are not.

Each run happens in a fresh subprocess, so its peak RSS (``VmHWM`` of the child, which
includes the interpreter, numpy/sklearn and the data itself — reported separately as
``data_rss_mb``) belongs to that run alone. At the smallest size sklearn's brute-force
``DBSCAN(metric="cosine", algorithm="brute")`` runs too, in its own subprocess, on the same data;
its labels are compared with ours (ARI and exact equality).

Reported per run: wall and CPU seconds of ``dbscan_cosine`` alone (imports and data generation
excluded), peak RSS, clusters found (``multi``: those with >= 2 texts — a noise point whose own
count is >= min_samples is, correctly, a singleton cluster), noise share, ARI against the
generating labels (noise as one class), the load average before the run (the host is shared;
multi-threaded BLAS slows down sharply when the cores are oversubscribed), and, untimed in the
above, ``summarize_clusters`` on synthetic Japanese-looking texts.

Writes ``<out_dir>/bench_clustering.json`` and ``<out_dir>/bench_clustering.png`` (time and peak
memory vs n, log-log, with linear and quadratic reference lines) and prints a table. Exit code 0
when the benchmark ran (a missed target is reported, not a failure), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from autonomath_pipelines.bench.process import peak_rss_mb, rss_mb, run_child

Say = Callable[[str], None]

EPS = 0.25
MIN_SAMPLES = 5
NOISE_SHARE = 0.05
ZIPF_S = 1.0
DENSE_SHARE = 0.05
SEED = 20260101
TARGET_SIZE = 100_000
TARGET_WALL_S = 60.0
TARGET_PEAK_MB = 2048.0
JSON_NAME, PNG_NAME = "bench_clustering.json", "bench_clustering.png"


# ------------------------------------------------------------------------------------ data


def cluster_sizes(n_clustered: int, clusters: int, s: float = ZIPF_S) -> np.ndarray:
    """Zipf sizes (rank^-s) summing to ``n_clustered``, each >= 1, largest first."""
    p = 1.0 / np.arange(1, clusters + 1) ** s
    sizes = np.maximum(1, np.floor(p / p.sum() * n_clustered)).astype(np.int64)
    diff = n_clustered - int(sizes.sum())
    sizes[0] += diff  # rounding remainder to the largest cluster
    return sizes


def make_data(n: int, dims: int, clusters: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors float32 (n, dims) unit rows, true labels (-1 = noise), weights) — deterministic."""
    rng = np.random.default_rng(seed)
    n_noise = int(round(n * NOISE_SHARE))
    sizes = cluster_sizes(n - n_noise, clusters)
    centres = rng.standard_normal((clusters, dims))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sigma = rng.uniform(0.25, 0.55, clusters)
    sigma[: max(1, int(round(clusters * DENSE_SHARE)))] = 0.2  # the largest are very dense
    truth = np.concatenate([np.repeat(np.arange(clusters), sizes), np.full(n_noise, -1)])
    truth = truth[rng.permutation(n)]
    X = np.empty((n, dims), dtype=np.float32)
    step = 8192
    for a in range(0, n, step):
        t = truth[a : a + step]
        g = rng.standard_normal((t.size, dims))
        is_noise = t < 0
        block = np.where(
            is_noise[:, None], g, centres[np.maximum(t, 0)] + sigma[np.maximum(t, 0)][:, None] * g / np.sqrt(dims)
        )
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        X[a : a + step] = block
    weights = np.minimum(rng.zipf(2.0, n), 1000).astype(np.float64)
    return X, truth, weights


# ----------------------------------------------------------------------------------- child


def make_texts(truth: np.ndarray, seed: int = SEED) -> list[str]:
    """Japanese-looking unique texts: each theme has three characteristic words, noise has none."""
    rng = np.random.default_rng(seed + 1)
    kanji = np.array([chr(c) for c in range(0x4E00, 0x4E00 + 2000)])
    vocab = ["".join(rng.choice(kanji, int(rng.integers(2, 4)))) for _ in range(3000)]
    n_themes = int(truth.max()) + 1 if truth.size and truth.max() >= 0 else 0
    themes = [[vocab[j] for j in rng.choice(len(vocab), 3, replace=False)] for _ in range(n_themes)]
    texts = []
    for i, t in enumerate(truth):
        words = [themes[t][j] for j in rng.choice(3, 2, replace=False)] if t >= 0 else []
        words += [vocab[j] for j in rng.choice(len(vocab), int(rng.integers(1, 3)))]
        texts.append(" ".join(words) + f" {i}")
    return texts


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measured run in this (fresh) process; prints nothing but the JSON result."""
    from sklearn.cluster import DBSCAN
    from sklearn.metrics import adjusted_rand_score

    from autonomath_pipelines.lib.clustering import dbscan_cosine, summarize_clusters

    X, truth, weights = make_data(spec["n"], spec["dims"], spec["clusters"], spec["seed"])
    data_rss = rss_mb()
    cpu0, t0 = time.process_time(), time.perf_counter()  # imports are done: only the run is timed
    if spec["method"] == "ours":
        labels = dbscan_cosine(X, weights, eps=spec["eps"], min_samples=spec["min_samples"])
    else:
        labels = (
            DBSCAN(eps=spec["eps"], min_samples=spec["min_samples"], metric="cosine", algorithm="brute")
            .fit(X, sample_weight=weights)
            .labels_
        )
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak = peak_rss_mb()
    np.save(spec["labels_path"], labels)
    extra: dict[str, Any] = {}
    if spec["method"] == "ours":
        # Not part of wall/cpu/peak above: the summaries loop A builds from the labels.
        texts = make_texts(truth, spec["seed"])
        t1 = time.perf_counter()
        summaries = summarize_clusters(texts, X, weights, labels)
        extra = {
            "summarize_s": time.perf_counter() - t1,
            "summaries": len(summaries),
            "peak_rss_after_summaries_mb": peak_rss_mb(),
            "example_labels": [s.label_text for s in summaries[:3]],
        }
    sizes = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0, int)
    from threadpoolctl import threadpool_info

    blas_threads = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return {
        **extra,
        "method": spec["method"],
        "n": spec["n"],
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": peak,
        "data_rss_mb": data_rss,
        "clusters_found": int(labels.max() + 1) if labels.size else 0,
        "multi_text_clusters": int(np.count_nonzero(sizes >= 2)),
        "noise_share": float(np.mean(labels == -1)),
        "blas_threads": blas_threads[:1],
        "load_avg_1min_after": os.getloadavg()[0],
        "ari_truth": float(adjusted_rand_score(truth, labels)),
        "true_clusters": int(spec["clusters"]),
        "true_noise_share": float(np.mean(truth == -1)),
    }


# ---------------------------------------------------------------------------------- report


def _row(r: dict[str, Any]) -> str:
    return (
        f"{r['n']:>8,d}  {r['method']:<13} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} {r['peak_rss_mb']:>9.0f}"
        f" {r['data_rss_mb']:>8.0f} {r['clusters_found']:>8d} {100 * r['noise_share']:>6.1f}%"
        f" {r['ari_truth']:>7.3f} {r['multi_text_clusters']:>6d}"
    )


HEADER = (
    f"{'n':>8}  {'method':<13} {'wall s':>8} {'cpu s':>8} {'peak MB':>9} {'data MB':>8}"
    f" {'clusters':>8} {'noise':>7} {'ARI':>7} {'multi':>6}"
)


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    from autonomath_pipelines.lib.plots import pyplot

    plt = pyplot()

    ours = sorted((r for r in results if r["method"] == "ours"), key=lambda r: r["n"])
    brute = [r for r in results if r["method"] == "sklearn_brute"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, key, unit, target in (
        (axes[0], "wall_s", "wall time (s)", TARGET_WALL_S),
        (axes[1], "peak_rss_mb", "peak RSS (MB)", TARGET_PEAK_MB),
    ):
        ns = np.array([r["n"] for r in ours], dtype=float)
        ys = np.array([r[key] for r in ours], dtype=float)
        ax.loglog(ns, ys, "o-", color="C0", label="dbscan_cosine (pruned blocks)")
        for x, y in zip(ns, ys):
            ax.annotate(
                f"{y:.1f} s" if key == "wall_s" else f"{y:.0f} MB",
                (x, y),
                textcoords="offset points",
                xytext=(6, -12),
                fontsize=8,
                color="C0",
            )
        if key == "peak_rss_mb":
            ax.loglog(
                ns,
                [r["data_rss_mb"] for r in ours],
                "^:",
                color="C2",
                alpha=0.7,
                label="of which interpreter + libraries + input data",
            )
        if key == "wall_s":
            cs = np.array([r["cpu_s"] for r in ours], dtype=float)
            ax.loglog(ns, cs, "s--", color="C0", alpha=0.5, label="dbscan_cosine CPU s")
        if brute:
            ax.loglog(
                [r["n"] for r in brute],
                [r[key] for r in brute],
                "x",
                color="C3",
                ms=10,
                mew=2,
                label="sklearn DBSCAN brute cosine",
            )
            for r in brute:
                ax.annotate(
                    f"{r[key]:.1f} s" if key == "wall_s" else f"{r[key]:.0f} MB",
                    (r["n"], r[key]),
                    textcoords="offset points",
                    xytext=(8, 4),
                    fontsize=8,
                    color="C3",
                )
        if len(ns):
            ref_n = np.geomspace(ns.min(), max(ns.max(), TARGET_SIZE), 20)
            ax.loglog(ref_n, ys[0] * ref_n / ns[0], ":", color="grey", label="linear in n (reference)")
            ax.loglog(ref_n, ys[0] * (ref_n / ns[0]) ** 2, ":", color="C1", alpha=0.6, label="quadratic in n")
        ax.axhline(target, color="C3", lw=0.8, ls="--", label=f"target at {TARGET_SIZE:,}")
        ax.set_xlabel("texts (n)")
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("DBSCAN (cosine) on synthetic Zipf themes: cost vs n", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_clustering_benchmark(
    sizes: tuple[int, ...] = (10_000, 100_000),
    dims: int = 384,
    clusters: int = 200,
    out_dir: str = "reports/bench",
    say: Say = print,
    *,
    brute: bool = True,
    seed: int = SEED,
) -> dict[str, Any]:
    """Run every size (and sklearn brute force at the smallest) in fresh subprocesses; write files."""
    sizes = tuple(sorted(int(s) for s in sizes))
    if not sizes or sizes[0] < 1 or dims < 2 or clusters < 1:
        raise ValueError("sizes must be positive, dims >= 2, clusters >= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    import sklearn

    results: list[dict[str, Any]] = []
    comparison: dict[str, Any] = {}
    say(
        f"clustering benchmark: sizes {', '.join(f'{s:,}' for s in sizes)}, {dims} dims, {clusters} themes, "
        f"eps {EPS}, min_samples {MIN_SAMPLES}, {os.cpu_count()} cores"
    )
    say(HEADER)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(n, "ours") for n in sizes] + ([(sizes[0], "sklearn_brute")] if brute else [])
        for i, (n, method) in enumerate(jobs, 1):
            spec = {
                "n": n,
                "dims": dims,
                "clusters": clusters,
                "seed": seed,
                "eps": EPS,
                "min_samples": MIN_SAMPLES,
                "method": method,
                "labels_path": str(Path(tmp) / f"{method}_{n}.npy"),
            }
            load = os.getloadavg()[0]
            say(f"  [{i}/{len(jobs)}] {method} n={n:,} (load average {load:.1f}) ...")
            r = run_child("autonomath_pipelines.bench.clustering", spec, f"{spec['method']} n={spec['n']}")
            r["load_avg_1min_before"] = load
            results.append(r)
            say(_row(r))
            if "summarize_s" in r:
                say(
                    f"{'':>10}summarize_clusters: {r['summaries']} summaries in {r['summarize_s']:.1f} s, "
                    f"peak {r['peak_rss_after_summaries_mb']:.0f} MB"
                )
        if brute:
            from sklearn.metrics import adjusted_rand_score

            a = np.load(Path(tmp) / f"ours_{sizes[0]}.npy")
            b = np.load(Path(tmp) / f"sklearn_brute_{sizes[0]}.npy")
            ours_small = next(r for r in results if r["method"] == "ours" and r["n"] == sizes[0])
            brute_small = next(r for r in results if r["method"] == "sklearn_brute")
            comparison = {
                "n": sizes[0],
                "ari_ours_vs_sklearn": float(adjusted_rand_score(b, a)),
                "identical_labels": bool(np.array_equal(a, b)),
                "speedup_wall": brute_small["wall_s"] / ours_small["wall_s"],
                "memory_ratio": brute_small["peak_rss_mb"] / ours_small["peak_rss_mb"],
            }
            say(
                f"  n={sizes[0]:,}: ours vs sklearn brute: ARI {comparison['ari_ours_vs_sklearn']:.4f}, "
                f"identical labels {comparison['identical_labels']}, "
                f"{comparison['speedup_wall']:.1f}× faster, {comparison['memory_ratio']:.1f}× less peak memory"
            )

    target_run = next((r for r in results if r["method"] == "ours" and r["n"] == TARGET_SIZE), None)
    targets = None
    if target_run:
        targets = {
            "n": TARGET_SIZE,
            "wall_s": TARGET_WALL_S,
            "peak_rss_mb": TARGET_PEAK_MB,
            "wall_ok": target_run["wall_s"] <= TARGET_WALL_S,
            "memory_ok": target_run["peak_rss_mb"] <= TARGET_PEAK_MB,
        }
        say(
            f"  target at {TARGET_SIZE:,}: wall {target_run['wall_s']:.1f} s (≤ {TARGET_WALL_S:.0f}: "
            f"{'ok' if targets['wall_ok'] else 'MISSED'}), peak {target_run['peak_rss_mb']:.0f} MB "
            f"(≤ {TARGET_PEAK_MB:.0f}: {'ok' if targets['memory_ok'] else 'MISSED'})"
        )
    report = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "numpy": np.__version__,
            "sklearn": sklearn.__version__,
        },
        "data": {
            "dims": dims,
            "clusters": clusters,
            "noise_share": NOISE_SHARE,
            "zipf_s": ZIPF_S,
            "dense_share": DENSE_SHARE,
            "seed": seed,
            "weights": "zipf(2) counts capped at 1000",
        },
        "params": {"eps": EPS, "min_samples": MIN_SAMPLES},
        "notes": "peak_rss_mb = VmHWM of a fresh child (interpreter + libraries + data + run); "
        "data_rss_mb = RSS after generating the data, before the run. ARI counts noise (-1) as one "
        "class; noise points whose own weight is >= min_samples are (correctly) singleton clusters, "
        "hence clusters_found > true clusters. The host is shared: load_avg_* show contention "
        "(multi-threaded BLAS slows down sharply when the 2 cores are oversubscribed).",
        "results": results,
        "brute_comparison": comparison,
        "targets": targets,
    }
    (out / JSON_NAME).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    _plot(results, out / PNG_NAME)
    say(f"  wrote {out / JSON_NAME} and {out / PNG_NAME}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autonomath_pipelines.bench.clustering", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated n (default 10000,100000)")
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--out-dir", default="reports/bench")
    parser.add_argument("--no-brute", action="store_true", help="skip sklearn brute force at the smallest size")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    try:
        sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
        run_clustering_benchmark(sizes, args.dims, args.clusters, args.out_dir, brute=not args.no_brute)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
