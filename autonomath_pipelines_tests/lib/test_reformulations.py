"""Themes that are one ask: session links (Poisson) and the per-theme decisions of loop A."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autonomath_pipelines.lib.reformulations import LINK_COLUMNS, select_themes, session_links


def sessions_asking(pairs: list[tuple[str, int]]) -> tuple[list[str], list[int]]:
    return [s for s, _ in pairs], [t for _, t in pairs]


def background(n_sessions: int, themes=(10, 11, 12, 13), seed=0) -> list[tuple[str, int]]:
    """Sessions that each ask one random theme: nothing is asked together."""
    rng = np.random.default_rng(seed)
    return [(f"bg{i}", int(rng.choice(themes))) for i in range(n_sessions)]


def test_a_rephrasing_shared_by_many_sessions_is_linked_and_chance_overlap_is_not():
    rows = background(400)
    rows += [(f"r{i}", 1) for i in range(20)] + [(f"r{i}", 2) for i in range(12)]  # 12 sessions ask 1 then 2
    rows += [(f"x{i}", 3) for i in range(30)] + [(f"x{i}", 10) for i in range(2)]  # 2 shared of 30 × ~100
    links = session_links(*sessions_asking(rows))
    assert list(links.columns) == LINK_COLUMNS
    assert links[["theme_a", "theme_b", "shared_sessions"]].values.tolist() == [[1, 2, 12]]
    assert links["expected_sessions"].iloc[0] == pytest.approx(20 * 12 / (400 + 20 + 30))
    assert links["p_value"].iloc[0] < 1e-12


def test_sessions_are_counted_once_however_often_they_retry():
    rows = [("s1", 1)] * 50 + [("s1", 2)] * 50 + background(200)
    assert session_links(*sessions_asking(rows), min_shared_sessions=2).empty
    assert session_links(*sessions_asking(rows), min_shared_sessions=1, max_p_value=1.0)[
        "shared_sessions"
    ].tolist() == [1]


def test_rows_without_a_session_or_a_theme_are_left_out():
    rows = [(None, 1), ("", 1), ("s1", -1), ("s1", 1)] + [(f"r{i}", t) for i in range(10) for t in (5, 6)]
    session_ids, themes = sessions_asking(rows)
    links = session_links(session_ids, themes, min_shared_sessions=1, max_p_value=1.0)
    assert links[["theme_a", "theme_b", "shared_sessions"]].values.tolist() == [[5, 6, 10]]
    assert session_links([], []).empty and session_links([None, None], [1, 2]).empty


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_shared_sessions": 0}, "min_shared_sessions"),
        ({"max_p_value": 0.0}, "max_p_value"),
        ({"max_p_value": 1.5}, "max_p_value"),
    ],
)
def test_bad_thresholds_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        session_links(["s"], [1], **kwargs)


def test_lengths_must_match():
    with pytest.raises(ValueError, match="2 session ids for 1 themes"):
        session_links(["a", "b"], [1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(-1, 6)), max_size=200), st.randoms(use_true_random=False))
def test_links_do_not_depend_on_row_order_and_are_well_formed(rows, rnd):
    session_ids, themes = [f"s{s}" for s, _ in rows], [t for _, t in rows]
    links = session_links(session_ids, themes, min_shared_sessions=1, max_p_value=1.0)
    order = list(range(len(rows)))
    rnd.shuffle(order)
    shuffled = session_links(
        [session_ids[i] for i in order], [themes[i] for i in order], min_shared_sessions=1, max_p_value=1.0
    )
    pd.testing.assert_frame_equal(links, shuffled)
    asked = pd.DataFrame({"s": session_ids, "t": themes}).query("t >= 0").drop_duplicates()
    per_theme = asked.groupby("t")["s"].nunique()
    for row in links.itertuples():
        assert row.theme_a < row.theme_b and 0.0 <= row.p_value <= 1.0
        both = set(asked[asked.t == row.theme_a].s) & set(asked[asked.t == row.theme_b].s)
        assert row.shared_sessions == len(both) <= min(per_theme[row.theme_a], per_theme[row.theme_b])


# ------------------------------------------------------------------------------------ select_themes


def unit(*rows):
    m = np.array(rows, dtype=float)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def links_of(*pairs):
    return pd.DataFrame([(a, b, 5, 0.1, 1e-6) for a, b in pairs], columns=LINK_COLUMNS)


def decide(links=(), existing=(("guarded ask", (1, 0, 0, 0)),), max_candidates=10, themes=None):
    # Theme 0 is near the guard; 1, 2, 3 point elsewhere, each far from the others.
    themes = themes or [
        (0, "guarded ask", (1, 0.05, 0, 0)),
        (1, "one", (0, 1, 0, 0)),
        (2, "two", (0, 0, 1, 0)),
        (3, "three", (0, 0, 0, 1)),
    ]
    return select_themes(
        [t for t, _, _ in themes],
        [x for _, x, _ in themes],
        unit(*[v for _, _, v in themes]),
        [p for p, _ in existing],
        unit(*[v for _, v in existing]) if existing else np.zeros((0, 4)),
        links_of(*links),
        near_similarity=0.85,
        max_candidates=max_candidates,
    )


def test_without_links_only_the_theme_near_a_guard_is_dropped():
    decisions = decide()
    assert [d.decision for d in decisions] == ["covered", "proposed", "proposed", "proposed"]
    assert decisions[0].reason == "medoid is an existing pattern" and decisions[1].reason == ""


def test_a_rephrasing_of_a_covered_theme_is_covered():
    decisions = decide(links=[(0, 2)])
    assert [d.decision for d in decisions] == ["covered", "proposed", "covered", "proposed"]
    assert decisions[2].related_theme == 0 and "same sessions as a covered theme" in decisions[2].reason


def test_a_rephrasing_of_a_better_proposal_is_folded_into_it():
    decisions = decide(links=[(1, 3)])
    assert [d.decision for d in decisions] == ["covered", "proposed", "proposed", "duplicate"]
    assert decisions[3].related_theme == 1 and decisions[1].reformulations == (3,)


def test_rephrasing_is_transitive():
    decisions = decide(links=[(0, 1), (1, 3)])  # 3 rephrases 1, which rephrases the guarded 0
    assert [d.decision for d in decisions] == ["covered", "covered", "proposed", "covered"]


def test_a_theme_near_a_better_proposal_is_a_duplicate():
    themes = [(1, "one", (0, 1, 0, 0)), (2, "one again", (0, 1, 0.1, 0))]
    decisions = decide(existing=(), themes=themes)
    assert [d.decision for d in decisions] == ["proposed", "duplicate"]
    assert decisions[1].reason == "medoid near a better theme of this run" and decisions[0].reformulations == (2,)


def test_the_cap_counts_proposals_only():
    decisions = decide(links=[(1, 2)], max_candidates=1)
    assert [d.decision for d in decisions] == ["covered", "proposed", "duplicate", "over_cap"]


def test_no_themes():
    assert decide(themes=[(0, "x", (1, 0, 0, 0))])[0].decision == "covered"
    assert (
        select_themes(
            [], [], np.zeros((0, 0)), [], np.zeros((0, 0)), links_of(), near_similarity=0.85, max_candidates=5
        )
        == []
    )
