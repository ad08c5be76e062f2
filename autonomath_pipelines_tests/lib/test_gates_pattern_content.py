"""Issue 14 defect 7: a guard pattern must carry content (letters/ideographs beyond stop-words)."""

import unicodedata

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from autonomath_pipelines.lib import gates
from autonomath_pipelines.lib.textnorm import normalize_query
from autonomath_pipelines.loops import loop_a_hallucination_guard as loop_a


@pytest.mark.parametrize("pattern", ["*", ")", "and", '"" ""', "", "   ", "の", "123", "it is", "？！", None])
def test_degenerate_patterns_are_named(pattern):
    assert gates.pattern_content_problem(pattern) is not None


@pytest.mark.parametrize("pattern", ["ものづくり補助金", "アラーム", "cancel all alarms", "DX 支援", "ＩＴ導入"])
def test_real_patterns_pass(pattern):
    assert gates.pattern_content_problem(pattern) is None


def test_loop_a_blocks_contentless_candidates():
    frame = pd.DataFrame(
        {
            "pattern": ["ものづくり補助金", "*", ")", "and", '"" ""'],
            "status": ["pending_review"] * 5,
            "nearest_existing_similarity": [0.0] * 5,
            "near_threshold": [0.85] * 5,
        }
    )
    results = {g.name: g.evaluate(frame) for g in loop_a.CANDIDATE_GATES}
    gate = results["patterns_carry_content"]
    assert not gate.passed
    assert gate.metadata["without_content"] == 4
    assert "'*'" in gate.description


@given(st.text(max_size=40))
def test_accepted_patterns_hold_enough_letters(pattern):
    if gates.pattern_content_problem(pattern) is None:
        # Counted on the text as loop A folds it (NFKC + casefold: "ß" becomes "ss").
        letters = [c for c in normalize_query(pattern) if unicodedata.category(c)[0] in "LM"]
        assert len(letters) >= gates.MIN_PATTERN_CONTENT_CHARS
