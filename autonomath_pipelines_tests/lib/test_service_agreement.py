"""The service's logged answers per query, and the decision whether a cached payload may stand in for them."""

import json

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from autonomath_pipelines.lib.payload import dumps_payload, search_payload
from autonomath_pipelines.lib.service_agreement import (
    CACHE,
    WITHHELD_SERVICE_EMPTY,
    WITHHELD_TOP1_DISAGREES,
    agreement_summary,
    answered_not_empty,
    decide,
    service_answers,
    top1_agreement_floor,
    with_service_answers,
)


def log(*rows):
    return pd.DataFrame(rows, columns=["query_text", "result_count", "top1_program_id", "confidence"])


def payload(*pids):
    return dumps_payload(
        search_payload(
            "q",
            [
                {"program_id": p, "name": p, "agency": "a", "level": "national", "prefecture_code": None, "score": 1.0}
                for p in pids
            ],
        )
    )


def test_service_answers_take_the_modal_top1_of_answered_requests():
    answers = service_answers(
        log(
            ("ＩＴ導入", 3, "P1", 0.9),
            ("it導入", 2, "P1", 0.8),
            ("IT導入", 1, "P2", 0.3),
            ("IT導入", 0, None, 0.0),
            ("無い制度", 0, None, 0.0),
            ("無い制度", 4, "P9", 0.2),
        )
    )
    it = answers.loc["it導入"]
    assert it.service_requests == 4 and bool(it.service_answered)
    assert (
        it.service_top1 == "P1"
        and abs(it.service_top1_share - 2 / 3) < 1e-9
        and abs(it.service_confidence - 0.85) < 1e-9
    )
    # Half the requests answered is not "answered": the service mostly declines.
    missing = answers.loc["無い制度"]
    assert not missing.service_answered and missing.service_top1 is None


def test_ties_between_top1s_break_by_program_id_so_runs_agree():
    answers = service_answers(log(("q", 1, "P2", 0.9), ("q", 1, "P1", 0.9)))
    assert answers.loc["q", "service_top1"] == "P1" and answers.loc["q", "service_top1_share"] == 0.5


def frame(rows):
    head = pd.DataFrame({"query_text": [r[0] for r in rows], "payload_json": [payload(*r[1]) for r in rows]})
    head["result_count"] = [len(r[1]) for r in rows]
    answers = service_answers(log(*[entry for r in rows for entry in r[2]]))
    return decide(with_service_answers(head, answers))


def test_decisions_follow_the_service():
    decided = frame(
        [
            ("agree", ["P1", "P2"], [("agree", 2, "P1", 0.9)]),
            ("disagree", ["P2", "P1"], [("disagree", 2, "P1", 0.9)]),
            ("declined", ["P3"], [("declined", 0, None, 0.0)]),
            ("split", ["P4"], [("split", 1, "P5", 0.9), ("split", 1, "P6", 0.9)]),
            ("unseen", ["P7"], []),
        ]
    ).set_index("query_text")
    assert decided["cache_decision"].to_dict() == {
        "agree": CACHE,
        "disagree": WITHHELD_TOP1_DISAGREES,
        "declined": WITHHELD_SERVICE_EMPTY,
        "split": CACHE,
        "unseen": CACHE,
    }
    assert decided.loc["agree", "top1_agrees"] is True and decided.loc["split", "top1_agrees"] is None


def test_guesses_are_withheld_but_not_counted_against_the_floor():
    decided = frame([("sure", ["P1"], [("sure", 1, "P1", 0.9)]), ("guess", ["P2"], [("guess", 1, "P3", 0.3)])])
    summary = agreement_summary(decided)
    assert summary["top1_agreement"] == 1.0 and summary["top1_agreement_all"] == 0.5
    assert summary["decision_withheld_top1_disagrees"] == 1
    assert top1_agreement_floor(0.95).evaluate(decided).passed


def test_gates_fail_on_empty_answers_and_low_agreement():
    decided = frame([("a", [], [("a", 3, "P1", 0.9)]), ("b", ["P2"], [("b", 3, "P1", 0.9)])])
    empty = answered_not_empty().evaluate(decided)
    assert not empty.passed and "'a'" in empty.description
    floor = top1_agreement_floor(0.95).evaluate(decided)
    assert not floor.passed and floor.metadata["top1_agreement"] == 0.0


def test_an_empty_head_passes_and_summarises_to_zero():
    decided = frame([])
    assert answered_not_empty().evaluate(decided).passed and top1_agreement_floor().evaluate(decided).passed
    assert agreement_summary(decided)["top1_agreement"] is None


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]), st.integers(0, 3), st.sampled_from(["P1", "P2", None]), st.floats(0, 1)
        ),
        max_size=30,
    ),
    st.lists(st.sampled_from(["P1", "P2", "P3"]), max_size=2),
)
def test_every_row_gets_exactly_one_known_decision(entries, cached):
    rows = [(q, cached, [e for e in entries if e[0] == q]) for q in ("a", "b", "c")]
    decided = frame(rows)
    assert set(decided["cache_decision"]) <= {CACHE, WITHHELD_SERVICE_EMPTY, WITHHELD_TOP1_DISAGREES}
    summary = agreement_summary(decided)
    assert sum(summary[f"decision_{d}"] for d in (CACHE, WITHHELD_SERVICE_EMPTY, WITHHELD_TOP1_DISAGREES)) == 3
    for row in decided.itertuples():
        if row.cache_decision == CACHE and row.top1_agrees is not None:
            assert row.top1_agrees is True
            assert json.loads(row.payload_json)["results"][0]["program_id"] == row.service_top1
