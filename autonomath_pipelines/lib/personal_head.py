"""Per-customer query heads (loop C): each loyal paid customer's own most requested queries.

A customer who sends the same few dozen queries every week is served best by a cache of *their*
head, not the global one. ``customer_heads`` picks each qualifying customer's top-K normalized
queries; ``replay_hit_rate`` scores a cache against the next period's requests (the share the
cache would have served), so a personal cache can be compared with a global top-K baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from autonomath_pipelines.lib.textnorm import normalize_query, query_hash

TOP_K = 20
MIN_REQUESTS = 50
HEAD_COLUMNS = ["customer_id", "rank", "query_hash", "query_text", "requests", "customer_requests", "share"]


def normalized_requests(frame: pd.DataFrame, text: str = "query_text") -> pd.DataFrame:
    """``frame`` (customer_id, query_text) with texts normalized; rows empty after normalization dropped."""
    out = frame.loc[frame[text].notna(), ["customer_id", text]].copy()
    out[text] = out[text].astype(str).map(normalize_query)
    return out[out[text] != ""].rename(columns={text: "query_text"}).reset_index(drop=True)


def customer_heads(requests: pd.DataFrame, k: int = TOP_K, min_requests: int = MIN_REQUESTS) -> pd.DataFrame:
    """Top-``k`` normalized queries per customer with at least ``min_requests`` requests.

    ``requests``: one row per request, columns customer_id and query_text (raw). Ranked by request
    count, ties by text, customers in id order: the result is deterministic. ``customer_requests``
    counts the customer's non-empty requests; ``share`` is requests / customer_requests.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    norm = normalized_requests(requests)
    if norm.empty:
        return pd.DataFrame(
            {
                c: pd.Series(dtype=object if c in ("customer_id", "query_hash", "query_text") else float)
                for c in HEAD_COLUMNS
            }
        ).astype({"rank": int, "requests": int, "customer_requests": int})
    norm["customer_id"] = norm["customer_id"].astype(str)
    totals = norm.groupby("customer_id").size()
    qualifying = totals[totals >= min_requests].index
    norm = norm[norm["customer_id"].isin(qualifying)]
    counts = norm.groupby(["customer_id", "query_text"]).size().reset_index(name="requests")
    counts = counts.sort_values(
        ["customer_id", "requests", "query_text"], ascending=[True, False, True], kind="mergesort"
    )
    counts["rank"] = counts.groupby("customer_id").cumcount() + 1
    head = counts[counts["rank"] <= k].reset_index(drop=True)
    head["customer_requests"] = head["customer_id"].map(totals).astype(int)
    head["share"] = head["requests"] / head["customer_requests"]
    head["query_hash"] = head["query_text"].map(query_hash)
    head["rank"] = head["rank"].astype(int)
    head["requests"] = head["requests"].astype(int)
    return head[HEAD_COLUMNS]


def global_head(requests: pd.DataFrame, k: int = TOP_K) -> list[str]:
    """The top-``k`` normalized queries over all requests (ties by text): the shared-cache baseline."""
    norm = normalized_requests(requests)
    if norm.empty:
        return []
    counts = norm["query_text"].value_counts().rename_axis("query_text").reset_index(name="requests")
    counts = counts.sort_values(["requests", "query_text"], ascending=[False, True], kind="mergesort")
    return list(counts["query_text"].head(k))


@dataclass(frozen=True)
class ReplayScore:
    per_customer: dict[str, float]  # customer → share of their next-period requests served
    requests: int  # next-period requests of the scored customers
    hits: int

    @property
    def micro(self) -> float:
        """Share of all scored requests served (NaN when there were none)."""
        return self.hits / self.requests if self.requests else float("nan")

    @property
    def macro(self) -> float:
        """Mean of the customers' hit rates (NaN when no customer had a next-period request)."""
        return float(np.mean(list(self.per_customer.values()))) if self.per_customer else float("nan")


def replay_hit_rate(
    cached: Mapping[str, Iterable[str]], next_requests: pd.DataFrame, customers: Iterable[str] | None = None
) -> ReplayScore:
    """Share of each customer's next-period requests whose normalized text is in their cached set.

    ``cached``: customer → normalized texts. ``next_requests``: (customer_id, query_text) raw rows.
    Scored customers: ``customers`` (default: the keys of ``cached``); a customer without
    next-period requests has no rate. A customer absent from ``cached`` has an empty cache.
    """
    scored = [str(c) for c in (cached.keys() if customers is None else customers)]
    sets = {str(c): set(v) for c, v in cached.items()}
    norm = normalized_requests(next_requests)
    norm = norm[norm["customer_id"].astype(str).isin(set(scored))]
    per_customer: dict[str, float] = {}
    hits = total = 0
    for customer, texts in norm.groupby(norm["customer_id"].astype(str))["query_text"]:
        cache = sets.get(customer, set())
        h = int(texts.isin(cache).sum())
        per_customer[customer] = h / len(texts)
        hits += h
        total += len(texts)
    return ReplayScore(dict(sorted(per_customer.items())), total, hits)


def baseline_cache(customers: Iterable[str], texts: Iterable[str]) -> dict[str, list[str]]:
    """The same global set as every customer's cache (for ``replay_hit_rate``)."""
    shared = list(texts)
    return {str(c): shared for c in customers}
