"""The shape loops A and E share: texts → cached embeddings → weighted DBSCAN → cluster summaries.

Vectors travel between assets as a Parquet list column (``vector``), one row per unique text.
"""

from typing import Any, Sequence

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from autonomath_pipelines.lib.clustering import ClusterParams, dbscan_cosine
from autonomath_pipelines.resources import EmbeddingModel


class LowConfidenceSplit(dg.Config):
    """How loops A and E divide low-confidence answers between them (one definition, so they never overlap):
    at most ``single_program_max_results`` results → the answer points to one program → loop E (alias);
    more results, or none → loop A (hallucination)."""

    low_confidence_below: float = Field(default=0.5, description="Answers below this confidence are suspect.")
    single_program_max_results: int = Field(default=2, description="A low-confidence answer with at most this "
                                            "many results points to one program (loop E), more: loop A.")


class ClusteringConfig(dg.Config):
    """DBSCAN parameters (cosine distance on unit vectors; weights are request counts)."""

    eps: float = Field(description="Neighbourhood radius as cosine distance (1 - similarity).")
    min_samples: int = Field(description="Summed weight (requests) a core point's neighbourhood needs.")

    def params(self) -> ClusterParams:
        return ClusterParams(eps=self.eps, min_samples=self.min_samples, min_cluster_size=0.0)

    def metadata(self) -> dict[str, Any]:
        return {"param_eps": float(self.eps), "param_min_samples": int(self.min_samples)}


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


def cluster_frame(frame: pd.DataFrame, params: ClusterParams, weight_column: str = "weight") -> pd.DataFrame:
    """``frame`` (one row per text, with ``vector``) plus its DBSCAN ``cluster`` label (-1 = noise)."""
    weights = frame[weight_column].to_numpy(dtype=float)
    if len(frame) == 1:
        # One text is its own neighbourhood: core (cluster 0) iff its weight reaches min_samples.
        return frame.assign(cluster=[0 if weights[0] >= params.min_samples else -1])
    labels = dbscan_cosine(stack_vectors(frame), weights, eps=params.eps, min_samples=params.min_samples)
    return frame.assign(cluster=labels.astype(int))


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
