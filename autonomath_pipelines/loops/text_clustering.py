"""The shape loops A and E share: texts → cached embeddings → weighted DBSCAN → cluster summaries.

Vectors travel between assets as a Parquet list column (``vector``), one row per unique text.

Clustering (``ClusteringConfig``, ``cluster_with_config``): eps comes from the window's own
neighbour distances (the knee of the sorted k-NN distance curve, ``lib.clustering.choose_eps``)
unless the operator sets a number; DBSCAN (or
HDBSCAN, ``algorithm="hdbscan"``) runs; then the chaining guard splits, trims or drops clusters
whose members stray too far from the medoid (``lib.clustering.guard_chaining``, radius = the eps in
use × ``guard_radius_factor``). The chosen eps, its method, the algorithm and the guard's counts go
into the asset metadata as numbers.
"""

from typing import Any, Literal, Sequence

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from autonomath_pipelines.lib.clustering import (
    EPS_SAMPLE_SIZE,
    HDBSCAN_MAX_TEXTS,
    LINKAGE_MAX_TEXTS,
    ClusterParams,
    EpsChoice,
    GuardReport,
    choose_eps,
    dbscan_cosine,
    guard_chaining,
    hdbscan_cosine,
    linkage_cosine,
)
from autonomath_pipelines.resources import EmbeddingModel


class LowConfidenceSplit(dg.Config):
    """How loops A and E divide low-confidence answers between them (one definition, so they never overlap):
    at most ``single_program_max_results`` results → the answer points to one program → loop E (alias);
    more results, or none → loop A (hallucination)."""

    low_confidence_below: float = Field(default=0.5, description="Answers below this confidence are suspect.")
    single_program_max_results: int = Field(
        default=2,
        description="A low-confidence answer with at most this "
        "many results points to one program (loop E), more: loop A.",
    )


class ClusteringConfig(dg.Config):
    """Clustering of a loop's texts (cosine distance on unit vectors; weights are request counts)."""

    eps: float | None = Field(
        default=None,
        description="Neighbourhood radius as cosine distance (1 - similarity). "
        "None (default): chosen from the window's own k-nearest-neighbour distances for the "
        "model in use (see eps_method); a number is an operator override, used as is.",
    )
    min_samples: int = Field(
        description="Summed weight (requests) a core point's neighbourhood needs; also the k of "
        "the k-nearest-neighbour distances eps is chosen from."
    )
    eps_method: Literal["quantile", "knee"] = Field(
        default="knee",
        description="How eps is chosen when eps is None: a quantile of the sorted k-NN distance curve, or its knee.",
    )
    eps_quantile: float = Field(
        default=0.5,
        gt=0.0,
        lt=1.0,
        description="With eps_method='quantile': share of the window's texts dense enough to be core points.",
    )
    eps_sample_size: int = Field(
        default=EPS_SAMPLE_SIZE,
        ge=10,
        description="Texts whose k-NN distances are measured (each against all texts) when choosing eps.",
    )
    algorithm: Literal["dbscan", "hdbscan", "linkage"] = Field(
        default="dbscan",
        description="'dbscan' (exact, weighted, bounded memory), 'hdbscan' (sklearn, unweighted, "
        f"at most {HDBSCAN_MAX_TEXTS} heaviest texts; the rest join a cluster within eps of it) or 'linkage' "
        f"(average linkage cut at eps, at most {LINKAGE_MAX_TEXTS} heaviest texts, the rest join within eps; "
        "clusters lighter than linkage_min_weight are noise; no chaining by construction).",
    )
    linkage_min_weight: float = Field(
        default=3.0, gt=0.0, description="With algorithm='linkage': least summed weight (requests) of a cluster."
    )
    guard: bool = Field(
        default=True, description="Split, trim or drop clusters whose members stray too far from the medoid (chaining)."
    )
    guard_radius_factor: float = Field(default=1.0, gt=0.0, description="Guard radius = eps in use × this.")
    guard_spread_quantile: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        description="A cluster is spread when this "
        "weighted share of its members is not within the radius of its medoid.",
    )
    guard_max_depth: int = Field(default=3, ge=0, description="Levels of splitting a chained cluster.")

    def params(self, eps: float | None = None) -> ClusterParams:
        """DBSCAN parameters with ``eps`` (the chosen one), or the override."""
        value = eps if eps is not None else self.eps
        if value is None:
            raise ValueError("eps is chosen from the data: call resolve_eps first (or set eps)")
        return ClusterParams(eps=value, min_samples=self.min_samples, min_cluster_size=0.0)

    def resolve_eps(self, vectors: np.ndarray, weights: np.ndarray | None) -> EpsChoice:
        """The override, or eps chosen from these vectors."""
        if self.eps is not None:
            return EpsChoice(float(self.eps), "override", {})
        return choose_eps(
            vectors,
            weights,
            self.min_samples,
            method=self.eps_method,
            quantile=self.eps_quantile,
            sample_size=self.eps_sample_size,
        )

    def metadata(self, choice: EpsChoice | None = None) -> dict[str, Any]:
        eps = choice.eps if choice is not None else self.eps
        out: dict[str, Any] = {
            "param_eps": float(eps) if eps is not None else float("nan"),
            "param_eps_override": self.eps is not None,
            "param_min_samples": int(self.min_samples),
            "algorithm": self.algorithm,
            "algorithm_is_hdbscan": int(self.algorithm == "hdbscan"),
            "algorithm_is_linkage": int(self.algorithm == "linkage"),
            "param_guard": bool(self.guard),
        }
        if choice is not None:
            out.update(choice.metadata())
        return out


#: Characters of a text that reach the encoder. Query texts over ``MAX_QUERY_CHARS`` are skipped as
#: malformed before this point; the cap guards everything else (production guard patterns, aliases):
#: one 100 kB text costs the encoder seconds, and its first thousand characters carry its meaning.
MAX_EMBED_CHARS = 1000


def embed_texts(embeddings: EmbeddingModel, texts: Sequence[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Vectors for ``texts`` (each cut to ``MAX_EMBED_CHARS``) through the shared cache, and the
    metadata every embedding asset reports."""
    capped = [t[:MAX_EMBED_CHARS] for t in texts]
    batch = embeddings.embed(capped)
    return batch.vectors, {
        "embedding_model": embeddings.model,
        "texts": len(texts),
        "texts_capped": sum(len(t) > MAX_EMBED_CHARS for t in texts),
        "texts_embedded": batch.cache_misses,
        "cache_hits": batch.cache_hits,
        "cache_hit_rate": float(batch.hit_rate),
    }


def with_vectors(frame: pd.DataFrame, vectors: np.ndarray) -> pd.DataFrame:
    return frame.assign(vector=list(np.asarray(vectors, dtype=np.float32)))


def stack_vectors(frame: pd.DataFrame, dim: int | None = None) -> np.ndarray:
    if frame.empty:
        return np.zeros((0, dim or 0), dtype=np.float32)
    return np.stack([np.asarray(v, dtype=np.float32) for v in frame["vector"]])


def cluster_labels(
    vectors: np.ndarray,
    weights: np.ndarray,
    params: ClusterParams,
    *,
    config: ClusteringConfig | None = None,
    reports: list | None = None,
) -> np.ndarray:
    """Each text's cluster label (-1 = noise), for the texts' unit ``vectors`` and ``weights``.

    With only ``params``: plain weighted DBSCAN at ``params.eps``. With ``config``: its algorithm and
    chaining guard too (``params.eps`` is then the eps in use); each guard's ``GuardReport`` (and the
    HDBSCAN details) is appended to ``reports`` when given.
    """
    if len(weights) == 0:
        return np.zeros(0, dtype=int)
    if len(weights) == 1:
        # One text is its own neighbourhood: core (cluster 0) iff its weight reaches min_samples.
        return np.array([0 if weights[0] >= params.min_samples else -1])
    if config is not None and config.algorithm == "hdbscan":
        labels, details = hdbscan_cosine(vectors, weights, params.min_samples, attach_eps=params.eps)
        if reports is not None:
            reports.append(details)
    elif config is not None and config.algorithm == "linkage":
        labels, details = linkage_cosine(
            vectors, weights, threshold=params.eps, min_cluster_weight=config.linkage_min_weight
        )
        if reports is not None:
            reports.append(details)
    else:
        labels = dbscan_cosine(vectors, weights, eps=params.eps, min_samples=params.min_samples)
    if config is not None and config.guard and (labels >= 0).any():
        labels, report = guard_chaining(
            vectors,
            weights,
            labels,
            radius=params.eps * config.guard_radius_factor,
            min_samples=params.min_samples,
            max_depth=config.guard_max_depth,
            spread_quantile=config.guard_spread_quantile,
            sample_size=config.eps_sample_size,
        )
        if reports is not None:
            reports.append(report)
    return np.asarray(labels).astype(int)


def cluster_frame(
    frame: pd.DataFrame,
    params: ClusterParams,
    weight_column: str = "weight",
    *,
    config: ClusteringConfig | None = None,
    reports: list | None = None,
) -> pd.DataFrame:
    """``frame`` (one row per text, with ``vector``) plus its ``cluster`` label (``cluster_labels``)."""
    if len(frame) == 0:
        return frame.assign(cluster=pd.Series(dtype=int))
    weights = frame[weight_column].to_numpy(dtype=float)
    return frame.assign(cluster=cluster_labels(stack_vectors(frame), weights, params, config=config, reports=reports))


def guard_metadata(reports: list) -> dict[str, Any]:
    """Summed guard counts (and HDBSCAN sizes) over the ``reports`` that ``cluster_frame`` collected."""
    out = {
        "guard_clusters_in": 0,
        "guard_clusters_out": 0,
        "guard_clusters_split": 0,
        "guard_clusters_trimmed": 0,
        "guard_clusters_dropped": 0,
        "guard_texts_to_noise": 0,
    }
    for report in reports:
        if isinstance(report, GuardReport):
            for key, value in report.metadata().items():
                if key != "guard_radius":
                    out[key] += value
            out["guard_radius"] = report.radius
        elif isinstance(report, dict):
            for key, value in report.items():
                if key in ("hdbscan_cap", "linkage_cap"):
                    out[key] = int(value)
                else:
                    out[key] = out.get(key, 0) + int(value)
    return out


def cluster_with_config(
    frame: pd.DataFrame, config: ClusteringConfig, weight_column: str = "weight", group_by: str | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Choose eps on the whole frame (or take the override), cluster (per ``group_by`` group when
    given, e.g. loop E's programs), guard, and return the clustered frame and its metadata."""
    vectors = stack_vectors(frame)
    weights = frame[weight_column].to_numpy(dtype=float) if len(frame) else np.zeros(0)
    if len(frame):
        choice = config.resolve_eps(vectors, weights)
    elif config.eps is not None:
        choice = EpsChoice(float(config.eps), "override", {})
    else:
        choice = EpsChoice(float("nan"), "empty", {})
    reports: list = []
    if not len(frame):
        clustered = frame.assign(cluster=pd.Series(dtype=int))
    else:
        params = config.params(choice.eps)
        if group_by is None:
            clustered = cluster_frame(frame, params, weight_column, config=config, reports=reports)
        else:
            # Groups in key order, each in frame order (what concatenating the groupby's groups gives),
            # labelled on slices of the vectors stacked once: loop E has tens of thousands of programs.
            groups = frame.groupby(group_by, sort=True).indices
            positions = [groups[key] for key in sorted(groups)]
            labels = [
                cluster_labels(vectors[rows], weights[rows], params, config=config, reports=reports)
                for rows in positions
            ]
            order = np.concatenate(positions) if positions else np.zeros(0, dtype=int)
            clustered = (
                frame.iloc[order]
                .reset_index(drop=True)
                .assign(cluster=np.concatenate(labels) if labels else np.zeros(0, dtype=int))
            )
    return clustered, {**config.metadata(choice), **guard_metadata(reports)}


def clustering_metadata(clustered: pd.DataFrame, weight_column: str = "weight") -> dict[str, Any]:
    """Numbers the UI plots for a clustering run: clusters found, and how much stayed noise."""
    if clustered.empty:
        return {"clusters": 0, "noise_texts_share": 0.0, "noise_weight_share": 0.0}
    noise = clustered["cluster"] == -1
    weights = clustered[weight_column].astype(float)
    return {
        "clusters": int(clustered.loc[~noise, "cluster"].nunique()),
        "noise_texts_share": float(noise.mean()),
        "noise_weight_share": float(weights[noise].sum() / weights.sum()) if weights.sum() else 0.0,
    }
