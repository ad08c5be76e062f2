"""Search section of the real-data eval (evals/real/search.py) on the committed mixed-forms fixture."""

import pathlib

import pytest

from evals.real import search as section

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "evals" / "real" / "fixtures"


def test_fixture_names_are_found_in_every_variant_and_the_old_search_is_not():
    rows = {r["metric"]: r for r in section.evaluate(FIXTURES) if r["corpus"] == "mixed_forms"}
    recall = rows["recall@10, exact names in width/kana variants"]
    assert recall["value"] == 1.0 and recall["verdict"] == "pass" and recall["n"] >= 60
    # The search before issue 13 (raw index, every token required) misses names published in raw forms.
    assert recall["baseline"] < 0.9
    assert rows["empty-answer share, exact names"]["value"] == 0.0
    generic = rows["recall@10, name + a generic word (助成金/支援)"]
    assert generic["value"] > generic["baseline"] and generic["value"] >= 0.9


def test_variants_cover_the_forms_people_type():
    forms = section.variants("ＤＸ推進事業～第２期～")
    assert forms["nfkc"] == "DX推進事業~第2期~" and forms["other wave dash"] == "ＤＸ推進事業〜第２期〜"
    assert "ｻｰﾋﾞｽ" in section.variants("サービス")["half-width"]


def test_missing_folder_is_skipped_and_a_bad_header_is_named(tmp_path):
    assert section.evaluate(tmp_path)[0]["verdict"] == "info"
    corpus = tmp_path / "search" / "broken"
    corpus.mkdir(parents=True)
    (corpus / "programs.csv").write_text("id,title\n1,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"programs\.csv: lacks columns \['name', 'program_id'\]"):
        section.evaluate(tmp_path)
