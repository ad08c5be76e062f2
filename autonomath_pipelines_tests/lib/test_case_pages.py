"""Loop B's case pages (lib/case_pages.py): rendering, escaping and the gates, without Dagster."""

import datetime as dt

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from autonomath_pipelines.lib.case_pages import (
    Period,
    consent_only,
    front_matter,
    jsonld_valid,
    markdown_renders,
    no_group_below_k,
    no_injected_markup,
    render_page,
    template_markup,
)
from autonomath_pipelines.lib.markdown_safety import markup_counts

K = 3


# ----------------------------------------------------------------------------------------- gates


def test_gates_catch_a_non_consented_contribution_a_small_group_and_a_broken_page():
    frame = pd.DataFrame(
        {
            "program_id": ["P001"],
            "prefecture_code": ["13"],
            "group_size": [4],
            "rating_count": [4],
            "min_group_size": [3],
            "page_path": ["site/blog/case-P001-13.md"],
            "markdown": ["---\ntitle: x\ndate: '2026-10-31'\n---\n{}"],
            "jsonld": ["{}"],
        }
    )
    assert consent_only({("P001", "13"): 4})(frame).passed
    assert not consent_only({("P001", "13"): 3})(frame).passed
    assert no_group_below_k(frame).passed
    assert not no_group_below_k(frame.assign(group_size=2)).passed
    assert markdown_renders(frame).passed
    assert not markdown_renders(frame.assign(markdown=["---\ntitle: [unclosed\n---\n{}"])).passed
    assert not markdown_renders(frame.assign(markdown=[""])).passed
    assert not markdown_renders(frame.assign(markdown=["no front matter {}"])).passed


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(lambda s: s.strip() != "")


@settings(max_examples=40, deadline=None)
@given(
    name=names,
    agency=names,
    prefecture=names,
    size=st.integers(3, 50),
    rating=st.floats(1, 5),
    amount=st.one_of(st.none(), st.integers(0, 10**10)),
)
def test_any_group_renders_a_page_that_passes_the_gates(name, agency, prefecture, size, rating, amount):
    window = oct_window()
    group = {
        "program_id": "P001",
        "prefecture_code": "13",
        "program_name": name,
        "agency": agency,
        "category": "IT導入",
        "prefecture_name": prefecture,
        "group_size": size,
        "adopted_count": size,
        "applied_count": 0,
        "not_adopted_count": 0,
        "adoption_rate": 1.0,
        "adopted_amount_total_jpy": amount,
        "adopted_amount_mean_jpy": amount,
        "rating_value": round(rating, 2),
        "rating_count": size,
    }
    markdown, jsonld = render_page(group, window=window, min_group_size=K)
    frame = pd.DataFrame({"page_path": ["site/blog/case-P001-13.md"], "markdown": [markdown], "jsonld": [jsonld]})
    assert jsonld_valid(frame).passed and markdown_renders(frame).passed
    meta = front_matter(markdown)
    assert (meta["program_name"], meta["agency"], meta["prefecture"], meta["date"]) == (
        name,
        agency,
        prefecture,
        "2026-10-31",
    )


# ------------------------------------------------------------------------------ hostile program text

HOSTILE_NAME = "![t](http://evil.example/t.png) [申請](http://evil.example/) <img src=x> <http://evil.example>"


def oct_window() -> Period:
    """October 2026 in JST."""
    return Period(
        dt.datetime(2026, 9, 30, 15, tzinfo=dt.timezone.utc), dt.datetime(2026, 10, 31, 15, tzinfo=dt.timezone.utc)
    )


def a_group(**texts) -> dict:
    return {
        "program_id": "P001",
        "prefecture_code": "13",
        "program_name": "IT導入補助金",
        "agency": "経済産業省",
        "category": "IT導入",
        "prefecture_name": "東京都",
        "group_size": 4,
        "adopted_count": 3,
        "applied_count": 1,
        "not_adopted_count": 0,
        "adoption_rate": 1.0,
        "adopted_amount_total_jpy": 3_000_000,
        "adopted_amount_mean_jpy": 1_000_000,
        "rating_value": 4.25,
        "rating_count": 4,
        **texts,
    }


def test_a_hostile_program_name_renders_no_image_link_or_html():

    markdown, _ = render_page(
        a_group(program_name=HOSTILE_NAME, agency="<b>省</b>"), window=oct_window(), min_group_size=K
    )
    html = MarkdownIt("commonmark").enable("table").render(markdown.split("\n---\n", 1)[1])
    body = html.split('<script type="application/ld+json">')[0]
    assert "<img" not in body and "<a " not in body and "<b>" not in body
    assert "![t](http://evil.example/t.png)" in html  # still readable, as text
    assert front_matter(markdown)["program_name"] == HOSTILE_NAME


def test_markup_gate_names_the_page_and_what_it_found():

    markdown, _ = render_page(a_group(), window=oct_window(), min_group_size=K)
    clean = pd.DataFrame({"page_path": ["site/blog/case-P001-13.md"], "markdown": [markdown]})
    assert no_injected_markup(clean).passed
    hostile = clean.assign(
        markdown=[markdown.replace("IT導入補助金」", "![t](http://evil.example/t.png)」") + "\n<div>x</div>\n"]
    )
    outcome = no_injected_markup(hostile)
    assert not outcome.passed
    assert "site/blog/case-P001-13.md" in outcome.description and "1 image" in outcome.description
    assert "1 html_block" in outcome.description and outcome.metadata["pages_with_injected_markup"] == 1


@settings(max_examples=60, deadline=None)
@given(
    texts=st.fixed_dictionaries({field: names for field in ("program_name", "agency", "category", "prefecture_name")}),
    amount=st.one_of(st.none(), st.integers(0, 10**10)),
)
def test_any_text_in_any_field_adds_no_markup_beyond_the_template(texts, amount):

    group = a_group(**texts, adopted_amount_total_jpy=amount, adopted_amount_mean_jpy=amount)
    markdown, jsonld = render_page(group, window=oct_window(), min_group_size=K)
    assert markup_counts(markdown) == template_markup() == {"html_block": 1}
    meta = front_matter(markdown)
    assert (meta["program_name"], meta["agency"], meta["category"], meta["prefecture"]) == (
        texts["program_name"],
        texts["agency"],
        texts["category"],
        texts["prefecture_name"],
    )
    assert jsonld in markdown
