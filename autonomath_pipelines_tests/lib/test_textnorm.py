from hypothesis import given
from hypothesis import strategies as st

from autonomath_pipelines.lib.textnorm import normalize_query, query_hash, tokens


def test_full_width_and_case_fold_to_one_form():
    assert normalize_query("ＩＴ導入補助金") == normalize_query("it導入補助金") == "it導入補助金"


def test_half_width_katakana_and_ideographic_space():
    assert normalize_query("ｷｬﾘｱｱｯﾌﾟ\u3000助成金") == "キャリアアップ 助成金"


def test_whitespace_collapsed_and_controls_dropped():
    assert normalize_query("  東京都 \t 創業\u200b 補助金\n") == "東京都 創業 補助金"


def test_empty_and_blank_normalize_to_empty():
    assert normalize_query("") == normalize_query(" \u3000\t") == ""


def test_hash_is_stable_hex_sha256():
    h = query_hash("ものづくり補助金")
    assert len(h) == 64 and h == query_hash("ものづくり補助金") and h != query_hash("ものづくり 補助金")


def test_tokens_deduplicated_in_order():
    assert tokens("東京 創業 東京 it") == ["東京", "創業", "it"]


@given(st.text())
def test_normalization_is_idempotent(text):
    once = normalize_query(text)
    assert normalize_query(once) == once


@given(st.text())
def test_normalized_text_has_no_edge_or_double_spaces(text):
    normalized = normalize_query(text)
    assert normalized == normalized.strip() and "  " not in normalized
