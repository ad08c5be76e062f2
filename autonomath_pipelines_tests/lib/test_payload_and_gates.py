import json

import pandas as pd

from autonomath_pipelines.lib import gates
from autonomath_pipelines.lib.payload import dumps_payload, payload_problems, search_payload
from autonomath_pipelines.lib.textnorm import query_hash

RESULT = {"program_id": "P1", "name": "n", "agency": "a", "level": "national", "prefecture_code": None, "score": 1.5}


def test_valid_payload_has_no_problems():
    assert payload_problems(dumps_payload(search_payload("q", [RESULT]))) == []
    assert payload_problems(dumps_payload(search_payload("q", []))) == []


def test_payload_serialization_is_stable():
    assert dumps_payload(search_payload("q", [RESULT])) == dumps_payload(
        json.loads(dumps_payload(search_payload("q", [RESULT])))
    )


def test_payload_problems_name_what_is_wrong():
    assert payload_problems("{not json")[0].startswith("not JSON")
    assert payload_problems("[]") == ["payload is not a JSON object"]
    bad_count = json.dumps({"query": "q", "result_count": 2, "results": [RESULT]})
    assert payload_problems(bad_count) == ["result_count 2 != 1 results"]
    nan_score = json.dumps({"query": "q", "result_count": 1, "results": [{**RESULT, "score": float("nan")}]})
    assert payload_problems(nan_score) == ["results[0].score is nan"]


def frame(texts, ttl="2999-01-01T00:00:00Z"):
    return pd.DataFrame(
        {
            "query_text": texts,
            "query_hash": [query_hash(t) for t in texts],
            "payload_json": [dumps_payload(search_payload(t, [])) for t in texts],
            "ttl_until": ttl,
        }
    )


def test_gates_pass_on_sound_rows():
    rows = frame(["a", "b"])
    for gate in (
        gates.row_cap(2),
        gates.payloads_valid(),
        gates.ttl_in_future(lambda: "2026-01-01T00:00:00Z"),
        gates.cache_keys_sound(),
    ):
        assert gate.evaluate(rows).passed, gate.name


def test_gates_fail_and_say_why():
    rows = frame(["a", "b", "b"])
    assert not gates.row_cap(2).evaluate(rows).passed
    dup = gates.cache_keys_sound().evaluate(rows)
    assert not dup.passed and dup.metadata["duplicated"] == 1
    expired = gates.ttl_in_future(lambda: "3000-01-01T00:00:00Z").evaluate(rows)
    assert not expired.passed and expired.metadata["expired"] == 3
    broken = rows.assign(payload_json=["{", "{}", "[]"])
    assert gates.payloads_valid().evaluate(broken).metadata["invalid"] == 3


def test_empty_query_and_wrong_key_are_caught():
    rows = frame(["a"])
    rows.loc[0, "query_text"] = " "
    result = gates.cache_keys_sound().evaluate(rows)
    assert not result.passed and result.metadata["empty"] == 1 and result.metadata["mismatched"] == 1


def test_gates_pass_on_empty_frame():
    rows = frame([])
    assert all(
        g.evaluate(rows).passed
        for g in (
            gates.row_cap(0),
            gates.payloads_valid(),
            gates.cache_keys_sound(),
            gates.ttl_in_future(lambda: "2026"),
        )
    )
