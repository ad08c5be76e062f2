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


def evidence_through_sqlite(frame: pd.DataFrame, min_confidence: float = gold.MIN_CONFIDENCE) -> pd.DataFrame:
    """``evidence_from_raw_texts`` the way loop J reads it: per raw text in SQLite, sessions of texts
    with several forms asked again."""
    import json

    from autonomath_pipelines.contract.sqlite import sqlite3

    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE query_log (id INTEGER PRIMARY KEY, query_text TEXT, session_id TEXT, "
        "top1_program_id TEXT, confidence REAL)"
    )
    conn.executemany(
        "INSERT INTO query_log (query_text, session_id, top1_program_id, confidence) VALUES (?, ?, ?, ?)",
        frame[["query_text", "session_id", "top1_program_id", "confidence"]].itertuples(index=False),
    )
    where, params = "confidence >= ?", (min_confidence,)
    cursor = conn.execute(gold.RAW_TEXTS_SQL.format(where=where), params)
    raw = pd.DataFrame(cursor.fetchall(), columns=[c[0] for c in cursor.description])
    asked = []

    def sessions_of(texts):
        asked.append(list(texts))
        return conn.execute(
            f"SELECT DISTINCT query_text, session_id FROM query_log WHERE {where} AND query_text IN "
            "(SELECT value FROM json_each(?))",
            (*params, json.dumps(texts)),
        ).fetchall()

    evidence = gold.evidence_from_raw_texts(raw, sessions_of)
    evidence.attrs["asked"] = asked
    return evidence


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
    )
)
def test_evidence_counted_per_raw_text_in_sql_equals_the_rows(records):
    frame = rows(*[(q, f"s{s}", p, c) for q, s, p, c in records])
    expected = gold.text_evidence(frame[frame["confidence"] >= gold.MIN_CONFIDENCE])
    got = evidence_through_sqlite(frame)
    pd.testing.assert_frame_equal(
        got.drop(columns="confidence_sum"), expected.drop(columns="confidence_sum"), check_dtype=False
    )
    assert got["confidence_sum"].to_numpy() == pytest.approx(expected["confidence_sum"].to_numpy())
    assert gold.choose_gold(got)["query"].tolist() == gold.propose_gold(frame)["query"].tolist()


def test_sessions_of_a_text_with_several_forms_are_a_union_not_a_sum():
    # Session s0 asks both forms: 5 distinct sessions, not 6; only that text's forms are asked again.
    frame = rows(
        *[("ＩＴ導入", f"s{i}", "P1", 0.9) for i in range(3)],
        *[("it導入", f"s{i}", "P1", 0.9) for i in (0, 3, 4)],
        *[("single", f"s{i}", "P2", 0.9) for i in range(5)],
    )
    evidence = evidence_through_sqlite(frame)
    assert dict(zip(evidence["query"], evidence["sessions"])) == {"it導入": 5, "single": 5}
    assert evidence.attrs["asked"] == [["it導入", "ＩＴ導入"]]
