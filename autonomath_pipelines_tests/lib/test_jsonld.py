"""schema.org JSON-LD of loop B's case pages: the builder and the validator of required properties."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autonomath_pipelines.lib.jsonld import build_jsonld, dumps_jsonld, jsonld_problems


def valid(**overrides) -> dict:
    document = build_jsonld(
        name="IT導入補助金2026",
        provider="経済産業省",
        area="東京都",
        category="IT導入",
        rating_value=4.25,
        rating_count=4,
    )
    document["aggregateRating"].update(overrides)
    return document


def test_builder_output_validates_and_has_the_expected_shape():
    document = valid()
    assert jsonld_problems(dumps_jsonld(document)) == []
    assert document["@context"] == "https://schema.org" and document["@type"] == "GovernmentService"
    rating = document["aggregateRating"]
    assert rating["itemReviewed"] == {"@type": "GovernmentService", "name": "IT導入補助金2026"}
    assert (rating["worstRating"], rating["bestRating"], rating["ratingCount"]) == (1, 5, 4)
    assert document["provider"]["name"] == "経済産業省" and document["areaServed"]["name"] == "東京都"


def test_serialized_text_is_safe_inside_a_script_tag():
    text = dumps_jsonld(build_jsonld(name="x</script><script>alert(1)", rating_value=3, rating_count=3))
    assert "</" not in text
    assert json.loads(text)["name"] == "x</script><script>alert(1)"


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda d: d.pop("@context"), "@context"),
        (lambda d: d.update({"@context": "https://example.org"}), "@context"),
        (lambda d: d.pop("@type"), "@type"),
        (lambda d: d.update({"@type": "Person"}), "@type"),
        (lambda d: d.update({"name": "  "}), "name"),
        (lambda d: d.pop("aggregateRating"), "aggregateRating"),
        (lambda d: d["aggregateRating"].update({"@type": "Rating"}), "AggregateRating"),
        (lambda d: d["aggregateRating"].pop("ratingCount"), "ratingCount"),
        (lambda d: d["aggregateRating"].update({"ratingCount": 0}), "ratingCount"),
        (lambda d: d["aggregateRating"].update({"ratingCount": 2.5}), "ratingCount"),
        (lambda d: d["aggregateRating"].update({"reviewCount": True}), "reviewCount"),
        (lambda d: d["aggregateRating"].update({"ratingValue": "good"}), "ratingValue"),
        (lambda d: d["aggregateRating"].update({"ratingValue": float("nan")}), "ratingValue"),
        (lambda d: d["aggregateRating"].update({"worstRating": 5, "bestRating": 1}), "worstRating"),
        (lambda d: d["aggregateRating"].update({"itemReviewed": {"@type": "Service"}}), "itemReviewed"),
    ],
)
def test_validator_names_each_missing_or_wrong_property(mutate, problem):
    document = valid()
    mutate(document)
    problems = jsonld_problems(json.dumps(document, ensure_ascii=False))
    assert problems and any(problem in p for p in problems), problems


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", '"schema.org"'])
def test_validator_rejects_text_that_is_not_one_json_object(text):
    assert jsonld_problems(text)


def test_item_reviewed_may_be_implied_by_the_parent_item():
    document = valid()
    del document["aggregateRating"]["itemReviewed"]
    assert jsonld_problems(json.dumps(document)) == []


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)


@settings(max_examples=200, deadline=None)
@given(value=finite, worst=st.integers(0, 3), span=st.integers(1, 10))
def test_validator_rejects_rating_value_exactly_when_out_of_range(value, worst, span):
    best = worst + span
    document = valid(ratingValue=value, worstRating=worst, bestRating=best)
    problems = jsonld_problems(json.dumps(document))
    in_range = worst <= value <= best
    assert (problems == []) == in_range, (value, worst, best, problems)
    if not in_range:
        assert any("outside" in p for p in problems)


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != ""),
    rating=st.floats(min_value=1, max_value=5, allow_nan=False),
    count=st.integers(1, 10_000),
    provider=st.one_of(st.none(), st.text(max_size=20)),
    area=st.one_of(st.none(), st.text(max_size=10)),
    item_type=st.sampled_from(["GovernmentService", "Service", "Product"]),
)
def test_builder_output_always_validates_for_valid_inputs(name, rating, count, provider, area, item_type):
    text = dumps_jsonld(
        build_jsonld(
            name=name, rating_value=rating, rating_count=count, provider=provider, area=area, item_type=item_type
        )
    )
    assert jsonld_problems(text) == []
    assert "</" not in text
    assert json.loads(text)["name"] == name


def test_builder_refuses_a_type_search_engines_do_not_rate():
    with pytest.raises(ValueError):
        build_jsonld(name="x", rating_value=3, rating_count=3, item_type="Person")
