"""Scores of loop output against the demo world's planted truth (pure functions)."""

from __future__ import annotations

from collections import Counter
from typing import Hashable, Sequence

from sklearn.metrics import adjusted_rand_score


def ari_with_noise(truth: Sequence[Hashable], predicted: Sequence[int]) -> float:
    """Adjusted Rand index where every noise point (-1) is its own singleton cluster."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} truth labels but {len(predicted)} predictions")
    if not truth:
        return float("nan")
    relabeled = [p if p != -1 else f"noise-{i}" for i, p in enumerate(predicted)]
    return float(adjusted_rand_score([str(t) for t in truth], [str(p) for p in relabeled]))


def purity(truth: Sequence[Hashable], predicted: Sequence[int]) -> float:
    """Share of clustered points (noise excluded) whose cluster's majority truth label is theirs."""
    clusters: dict[int, Counter] = {}
    for t, p in zip(truth, predicted):
        if p != -1:
            clusters.setdefault(p, Counter())[t] += 1
    clustered = sum(sum(c.values()) for c in clusters.values())
    return sum(c.most_common(1)[0][1] for c in clusters.values()) / clustered if clustered else float("nan")


def precision_recall(proposed: set, relevant: set) -> tuple[float, float]:
    """(precision, recall) of a proposed set against the relevant set; NaN where undefined."""
    hits = len(proposed & relevant)
    precision = hits / len(proposed) if proposed else float("nan")
    recall = hits / len(relevant) if relevant else float("nan")
    return precision, recall
