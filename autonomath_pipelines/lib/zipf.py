"""Zipf head of a day's queries (loop H): which normalized queries to pre-compute.

Query traffic is Zipf-like: frequency ∝ rank^-s. The head (top-k normalized texts) covers a share
of all requests far above k / unique; that share is what a warm cache can serve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from autonomath_pipelines.lib.textnorm import normalize_query, query_hash

HEAD_COLUMNS = ["rank", "query_hash", "query_text", "requests", "share", "cumulative_share"]


@dataclass(frozen=True)
class ZipfHead:
    head: pd.DataFrame  # HEAD_COLUMNS, rank 1 = most frequent
    requests: int  # all requests in the window (non-empty after normalization)
    unique_queries: int
    exponent: float  # fitted s; NaN when fewer than 3 distinct frequencies
    coverage: float  # share of requests whose normalized text is in the head

    def summary(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "unique_queries": self.unique_queries,
            "head_size": len(self.head),
            "zipf_exponent": self.exponent,
            "head_coverage": self.coverage,
        }


def fit_zipf_exponent(frequencies: np.ndarray, max_rank: int = 1000) -> float:
    """Least-squares slope of log(frequency) on log(rank) over the top ranks, as a positive s.

    Fitted on the top ``max_rank`` ranks only: the tail of a finite sample is flattened by
    singletons and would bias s towards 0.
    """
    freq = np.sort(np.asarray(frequencies, dtype=float))[::-1][:max_rank]
    freq = freq[freq > 0]
    if len(freq) < 3 or np.all(freq == freq[0]):
        return float("nan")
    ranks = np.arange(1, len(freq) + 1, dtype=float)
    slope, _ = np.polyfit(np.log(ranks), np.log(freq), 1)
    return float(-slope)


def zipf_head(query_texts: pd.Series, k: int = 200) -> ZipfHead:
    """Top-``k`` normalized queries by request count (ties broken by text, so deterministic)."""
    if k < 1:
        raise ValueError(f"head size must be >= 1, got {k}")
    normalized = query_texts.dropna().astype(str).map(normalize_query)
    normalized = normalized[normalized != ""]
    counts = normalized.value_counts()
    total = int(counts.sum())
    if total == 0:
        return ZipfHead(pd.DataFrame(columns=HEAD_COLUMNS), 0, 0, float("nan"), 0.0)
    ordered = (
        counts.rename_axis("query_text")
        .reset_index(name="requests")
        .sort_values(["requests", "query_text"], ascending=[False, True], kind="mergesort")
    )
    head = ordered.head(k).reset_index(drop=True)
    head.insert(0, "rank", np.arange(1, len(head) + 1))
    head.insert(1, "query_hash", head["query_text"].map(query_hash))
    head["share"] = head["requests"] / total
    head["cumulative_share"] = head["share"].cumsum()
    return ZipfHead(
        head=head[HEAD_COLUMNS],
        requests=total,
        unique_queries=int(len(counts)),
        exponent=fit_zipf_exponent(counts.to_numpy()),
        coverage=float(head["requests"].sum() / total),
    )
