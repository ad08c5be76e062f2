"""lib/gold.py: the gold-expansion rule and the gold YAML schema."""

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autonomath_pipelines.lib import gold
from autonomath_pipelines.lib.textnorm import normalize_query


def rows(*records):
    return pd.DataFrame(records, columns=["query_text", "session_id", "top1_program_id", "confidence"])


def test_text_in_five_sessions_with_one_program_is_proposed_with_evidence():
    frame = rows(
        *[("ＩＴ導入補助金", f"s{i}", "P1", 0.9) for i in range(5)],
        ("it導入補助金", "s0", "P1", 0.95),
        ("it導入補助金", "s9", "P2", 0.4),
    )  # low-confidence rows are not evidence either way
    out = gold.propose_gold(frame)
    assert out[["query", "expected_program_id", "sessions", "requests"]].values.tolist() == [
        ["it導入補助金", "P1", 5, 6]
    ]
    assert out["mean_confidence"].item() == pytest.approx((0.9 * 5 + 0.95) / 6, abs=1e-4)
    assert out["id"].item() == gold.proposal_id("IT導入補助金")


def test_two_programs_too_few_sessions_and_existing_gold_are_not_proposed():
    frame = rows(
        *[("a", f"s{i}", "P1", 0.9) for i in range(6)],
        ("a", "s7", "P2", 0.86),
        *[("b", "s1", "P1", 0.9) for _ in range(10)],
        *[("b", f"s{i}", "P1", 0.9) for i in range(2, 5)],
        *[("c", f"s{i}", "P3", 0.9) for i in range(5)],
        *[("d", f"s{i}", None, 0.9) for i in range(5)],
    )
    assert gold.propose_gold(frame)["query"].tolist() == ["c"]
    assert gold.propose_gold(frame, existing=["Ｃ"]).empty


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "A", "ａ", "b", "c d", "c  d"]),
            st.integers(0, 8),
            st.sampled_from(["P1", "P2", None]),
            st.floats(0, 1),
        ),
        max_size=80,
    )
)
def test_rule_never_proposes_a_mixed_or_thin_text(records):
    frame = rows(*[(q, f"s{s}", p, c) for q, s, p, c in records])
    out = gold.propose_gold(frame)
    high = frame[frame["confidence"] >= gold.MIN_CONFIDENCE].assign(q=lambda d: d["query_text"].map(normalize_query))
    for r in out.itertuples():
        mine = high[high["q"] == r.query]
        assert mine["top1_program_id"].notna().all() and set(mine["top1_program_id"]) == {r.expected_program_id}
        assert mine["session_id"].nunique() == r.sessions >= gold.MIN_SESSIONS
    assert not out["query"].duplicated().any()


texts = st.text(min_size=1, max_size=20).map(normalize_query).filter(bool)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            texts,
            st.text(min_size=1, max_size=8).filter(str.strip),
            st.none() | st.text(max_size=10),
            st.integers(5, 10_000),
            st.floats(0.85, 1.0),
        ),
        max_size=12,
        unique_by=lambda t: t[0],
    )
)
def test_yaml_round_trips(entries):
    items = tuple(
        gold.GoldItem(
            id=f"x{i}",
            query=q,
            expected_program_id=p,
            note=n,
            status="pending_review",
            evidence={"sessions": s, "mean_confidence": round(c, 4)},
        )
        for i, (q, p, n, s, c) in enumerate(entries)
    )
    original = gold.GoldFile(
        items=items, status="pending_review", provenance={"run_id": "r1", "partition_key": "2026-10-01"}
    )
    text = gold.render_gold(original, header="a header\nline two")
    assert text.startswith("# a header\n# line two\n")
    assert gold.parse_gold(text) == original
    assert gold.render_gold(gold.parse_gold(text), header="a header\nline two") == text


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("items: [", "not valid YAML"),
        ("- 1", "top level must be a mapping"),
        ("version: 2\nitems: []", "'version' must be 1"),
        ("version: 1", "'items' must be a list"),
        ("version: 1\nitems: []\nextra: 1", "unknown top-level keys"),
        ("version: 1\nitems:\n- {id: a, query: q}", "expected_program_id must be a non-empty string"),
        ("version: 1\nitems:\n- {id: a, query: q, expected_program_id: P1, typo: 1}", "unknown keys ['typo']"),
        (
            "version: 1\nitems:\n- {id: a, query: Q, expected_program_id: P1}\n- {id: b, query: q, "
            "expected_program_id: P2}",
            "duplicates items[0] after normalization",
        ),
        (
            "version: 1\nitems:\n- {id: a, query: q, expected_program_id: P1}\n- {id: a, query: r, "
            "expected_program_id: P2}",
            "is not unique",
        ),
    ],
)
def test_malformed_gold_names_the_file(text, fragment, tmp_path):
    path = tmp_path / "gold.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(gold.GoldFormatError) as err:
        gold.load_gold(path)
    assert str(path) in str(err.value) and fragment in str(err.value)


def test_missing_gold_is_none_and_shipped_gold_parses():
    from pathlib import Path

    assert gold.load_gold(Path("/nonexistent/gold.yaml")) is None
    shipped = gold.load_gold(Path(__file__).parents[2] / "evals" / "gold.yaml")
    assert 40 <= len(shipped.items) <= 80
    assert all(i.expected_program_id.startswith("P") for i in shipped.items)


def test_gates():
    frame = pd.DataFrame({"query": ["a", "b"], "expected_program_id": ["P1", "P9"]})
    good = gold.render_gold(gold.GoldFile(items=(gold.GoldItem("1", "a", "P1"), gold.GoldItem("2", "b", "P9"))))
    results = {g.name: g.evaluate(frame) for g in gold.candidate_gates(good, frozenset({"b"}), frozenset({"P1"}))}
    assert results["yaml_parses"].passed
    assert not results["not_in_gold_set"].passed and results["not_in_gold_set"].metadata["already_in_gold"] == 1
    assert not results["program_ids_exist"].passed and "P9" in results["program_ids_exist"].description
    broken = {
        g.name: g.evaluate(frame)
        for g in gold.candidate_gates("version: 1\nitems: 3", frozenset(), frozenset({"P1", "P9"}))
    }
    assert not broken["yaml_parses"].passed and broken["not_in_gold_set"].passed and broken["program_ids_exist"].passed


def evidence_in_chunks(frame: pd.DataFrame, size: int) -> gold.EvidenceCounter:
    counter = gold.EvidenceCounter()
    high = frame[frame["confidence"] >= gold.MIN_CONFIDENCE]
    for start in range(0, len(high), size):
        counter.add(high.iloc[start : start + size])
    return counter


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "A", "ａ", "b", "c d", "c  d", "Ｃ　Ｄ", "  "]),
            st.integers(0, 8),
            st.sampled_from(["P1", "P2", None]),
            st.floats(0, 1),
        ),
        max_size=80,
    ),
    st.integers(1, 30),
)
def test_evidence_counted_in_chunks_equals_the_rows(records, size):
    frame = rows(*[(q, f"s{s}", p, c) for q, s, p, c in records])
    expected = gold.text_evidence(frame[frame["confidence"] >= gold.MIN_CONFIDENCE])
    counter = evidence_in_chunks(frame, size)
    got = counter.evidence()
    pd.testing.assert_frame_equal(
        got.drop(columns="confidence_sum"), expected.drop(columns="confidence_sum"), check_dtype=False
    )
    assert got["confidence_sum"].to_numpy() == pytest.approx(expected["confidence_sum"].to_numpy())
    assert gold.choose_gold(got)["query"].tolist() == gold.propose_gold(frame)["query"].tolist()
    assert counter.distinct_texts == frame.loc[frame["confidence"] >= gold.MIN_CONFIDENCE, "query_text"].nunique()


def test_a_session_asking_two_forms_in_two_chunks_counts_once_and_a_later_second_program_spoils_the_text():
    frame = rows(
        *[("ＩＴ導入", f"s{i}", "P1", 0.9) for i in range(3)],
        *[("it導入", f"s{i}", "P1", 0.9) for i in (0, 3, 4)],
        *[("single", f"s{i}", "P2", 0.9) for i in range(5)],
        ("single", "s9", "P3", 0.9),
    )
    evidence = evidence_in_chunks(frame, 4).evidence()
    assert dict(zip(evidence["query"], evidence["sessions"])) == {"it導入": 5}
