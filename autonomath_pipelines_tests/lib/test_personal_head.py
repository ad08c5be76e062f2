import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autonomath_pipelines.lib.personal_head import (
    baseline_cache,
    customer_heads,
    global_head,
    replay_hit_rate,
)
from autonomath_pipelines.lib.textnorm import normalize_query, query_hash


def frame(rows):
    return pd.DataFrame(rows, columns=["customer_id", "query_text"])


def test_top_k_per_customer_with_normalized_counts_and_text_ties():
    rows = (
        [("c1", "ＩＴ導入補助金")] * 3
        + [("c1", "it導入補助金 ")] * 2
        + [("c1", "b")] * 2
        + [("c1", "a")] * 2
        + [("c1", "z")]
        + [("c2", "x")] * 4
    )
    heads = customer_heads(frame(rows), k=3, min_requests=5)
    assert list(heads["customer_id"]) == ["c1"] * 3  # c2 has only 4 requests
    assert list(heads["query_text"]) == ["it導入補助金", "a", "b"]
    assert list(heads["requests"]) == [5, 2, 2] and list(heads["rank"]) == [1, 2, 3]
    assert set(heads["customer_requests"]) == {10}
    assert heads["share"].tolist() == pytest.approx([0.5, 0.2, 0.2])
    assert all(heads["query_hash"] == heads["query_text"].map(query_hash))


def test_empty_input_and_blank_queries():
    assert customer_heads(frame([])).empty
    assert customer_heads(frame([("c", "  ")] * 100), min_requests=1).empty
    assert global_head(frame([])) == []


def test_replay_scores_personal_and_global_caches():
    cached = {"c1": ["a", "b"], "c2": ["x"]}
    following = frame([("c1", "A"), ("c1", "b"), ("c1", "q"), ("c1", "q"), ("c2", "x"), ("c3", "a")])
    score = replay_hit_rate(cached, following)
    assert score.per_customer == {"c1": 0.5, "c2": 1.0}  # c3 is not scored
    assert score.hits == 3 and score.requests == 5 and score.micro == pytest.approx(0.6)
    assert score.macro == pytest.approx(0.75)
    base = replay_hit_rate(baseline_cache(["c1", "c2"], ["q"]), following)
    assert base.per_customer == {"c1": 0.5, "c2": 0.0}
    empty = replay_hit_rate({"c9": ["a"]}, following)
    assert empty.requests == 0 and math.isnan(empty.micro) and math.isnan(empty.macro)


def test_global_head_ranks_by_count_then_text():
    rows = [("c1", "b")] * 2 + [("c2", "a")] * 2 + [("c3", "c")] * 3
    assert global_head(frame(rows), k=2) == ["c", "a"]


requests_strategy = st.lists(
    st.tuples(
        st.sampled_from(["c1", "c2", "c3", "c4"]),
        st.sampled_from(["a", "A", "b", "ｂ", "c", "d e", "d  e", "f", "g", "h", " ", "補助金"]),
    ),
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(requests_strategy, st.integers(1, 6), st.integers(0, 30))
def test_heads_properties(rows, k, threshold):
    heads = customer_heads(frame(rows), k=k, min_requests=threshold)
    norm = frame(rows).assign(query_text=lambda f: f["query_text"].map(normalize_query))
    norm = norm[norm["query_text"] != ""]
    totals = norm.groupby("customer_id").size()
    # never more than k per customer; only customers at or above the threshold
    assert (heads.groupby("customer_id").size() <= k).all()
    assert set(heads["customer_id"]) == {c for c, n in totals.items() if n >= threshold}
    # each customer's head is exactly the top-k by (count desc, text asc)
    for customer, group in heads.groupby("customer_id"):
        counts = norm[norm["customer_id"] == customer]["query_text"].value_counts()
        expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        assert list(zip(group["query_text"], group["requests"])) == expected
        assert list(group["rank"]) == list(range(1, len(group) + 1))
    # deterministic: input order does not matter
    shuffled = customer_heads(frame(list(reversed(rows))), k=k, min_requests=threshold)
    pd.testing.assert_frame_equal(heads.reset_index(drop=True), shuffled.reset_index(drop=True))


@settings(max_examples=40, deadline=None)
@given(requests_strategy, requests_strategy)
def test_replay_rates_are_shares(rows, following):
    heads = customer_heads(frame(rows), k=3, min_requests=1)
    cached = {c: list(g) for c, g in heads.groupby("customer_id")["query_text"]}
    score = replay_hit_rate(cached, frame(following))
    assert 0 <= score.hits <= score.requests
    assert all(0.0 <= r <= 1.0 for r in score.per_customer.values())
    assert set(score.per_customer) <= set(cached)


def test_rejects_non_positive_k():
    with pytest.raises(ValueError):
        customer_heads(frame([("c", "a")]), k=0)
