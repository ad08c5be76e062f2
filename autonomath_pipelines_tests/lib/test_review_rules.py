"""The review status machine, appending to the gold set, and completed-stub detection."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autonomath_pipelines.lib.gold import GoldItem, parse_gold
from autonomath_pipelines.lib.review_rules import (
    ACTIONS,
    STATUSES,
    TRANSITIONS,
    GoldAppendError,
    IllegalTransition,
    ReviewError,
    append_gold_items,
    next_gold_ids,
    next_status,
    stub_completion_problems,
)
from autonomath_pipelines.lib.textnorm import normalize_query

EXPECTED = {
    ("approve", "pending_review"): "approved",
    ("reject", "pending_review"): "rejected",
    ("promote", "approved"): "promoted",
    ("rollback", "promoted"): "rolled_back",
}


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("status", STATUSES)
def test_every_transition_is_allowed_or_refused_with_the_reason(action, status):
    if (action, status) in EXPECTED:
        assert next_status(action, "A:7", status) == EXPECTED[(action, status)]
        return
    with pytest.raises(IllegalTransition) as refused:
        next_status(action, "A:7", status)
    message = str(refused.value)
    assert "A:7" in message and status in message and action in message


def test_the_machine_is_the_documented_one():
    assert {(a, s): t for a, m in TRANSITIONS.items() for s, t in m.items()} == EXPECTED


def test_unknown_action_is_an_error():
    with pytest.raises(ReviewError, match="unknown review action"):
        next_status("delete", "A:1", "pending_review")


def test_next_gold_ids_follow_the_highest_and_keep_the_padding():
    assert next_gold_ids(["g0001", "g0060", "custom"], 2) == ["g0061", "g0062"]
    assert next_gold_ids([], 1) == ["g0001"]
    assert next_gold_ids(["g00009"], 1) == ["g00010"]


GOLD = """# a comment the operator wrote
version: 1
description: demo   # trailing comment
items:
- id: g0001
  query: IT導入補助金
  expected_program_id: P000209
  note: keep me exactly
"""


def _item(n: int, query: str) -> GoldItem:
    return GoldItem(id=f"g{n:04d}", query=query, expected_program_id="P000001", note="promoted")


def test_append_keeps_every_existing_byte_and_parses_to_old_plus_new():
    new = [_item(2, "ものづくり補助金"), _item(3, "事業再構築: 補助金 #2")]
    text = append_gold_items(GOLD, new)
    assert text.startswith(GOLD)
    parsed = parse_gold(text)
    assert [i.id for i in parsed.items] == ["g0001", "g0002", "g0003"]
    assert parsed.items[2].query == "事業再構築: 補助金 #2"


def test_append_follows_indented_items_and_flow_style_empty_lists():
    indented = "version: 1\nitems:\n  - id: g0001\n    query: a b c\n    expected_program_id: P1\n"
    assert parse_gold(append_gold_items(indented, [_item(2, "x y z")])).items[1].id == "g0002"
    empty = "version: 1\nitems: []\n"
    assert [i.id for i in parse_gold(append_gold_items(empty, [_item(1, "x y z")])).items] == ["g0001"]


def test_append_refuses_when_items_is_not_the_last_key():
    text = "version: 1\nitems:\n- id: g0001\n  query: a b c\n  expected_program_id: P1\ndescription: after items\n"
    with pytest.raises(GoldAppendError, match="last top-level key"):
        append_gold_items(text, [_item(2, "x y z")])


def test_append_refuses_a_query_already_in_the_gold_set_after_normalization():
    with pytest.raises(ReviewError, match="already has the query"):
        append_gold_items(GOLD, [_item(2, "ＩＴ導入補助金")])


def test_append_to_a_missing_file_creates_one():
    assert [i.id for i in parse_gold(append_gold_items(None, [_item(1, "x y z")])).items] == ["g0001"]


queries = st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=5).filter(
    lambda qs: (
        all(normalize_query(q) for q in qs)
        and len({normalize_query(q) for q in qs}) == len(qs)
        and normalize_query("IT導入補助金") not in {normalize_query(q) for q in qs}
    )
)


@settings(max_examples=60, deadline=None)
@given(queries)
def test_append_never_changes_existing_content_whatever_the_text(new_queries):
    items = [_item(n + 2, q) for n, q in enumerate(new_queries)]
    text = append_gold_items(GOLD, items)
    assert text.startswith(GOLD)
    assert parse_gold(text).items == parse_gold(GOLD).items + tuple(items)


STUB = """import pytest
pytestmark = pytest.mark.xfail(strict=True, reason="complete me")


def test_x(value):
    raise NotImplementedError("write the property")
"""


def test_a_fresh_stub_is_not_complete_and_says_why():
    problems = stub_completion_problems(STUB)
    assert any("xfail" in p for p in problems) and any("NotImplementedError" in p for p in problems)


def test_a_completed_stub_has_no_problems_and_broken_code_has_one():
    done = "def test_x():\n    assert 1 + 1 == 2\n"
    assert stub_completion_problems(done) == []
    assert any("does not compile" in p for p in stub_completion_problems("def test_x(:\n"))
