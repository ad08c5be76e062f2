"""Cluster labels on word boundaries (SudachiPy + sudachidict_core), c-TF-IDF over content words."""

from hypothesis import given, settings
from hypothesis import strategies as st

from autonomath_pipelines.lib.labels import cluster_labels, content_terms, cuts_a_word, word_spans
from autonomath_pipelines.lib.textnorm import normalize_query

ALARMS = {
    0: ["アラームを表示して", "アラームを表示", "全部のアラームを表示して", "アラームを見せて"],
    1: ["アラームを消して", "アラームを削除", "アラームを全部消して", "アラーム削除して"],
    2: ["天気を教えて", "明日の天気", "今日の天気を教えて"],
}


def pieces(label: str) -> list[str]:
    return label.split(" / ")


def test_terms_are_runs_of_whole_content_words():
    assert content_terms("アラームを表示して") == ["アラーム", "表示"]  # particles and する are not words here
    assert "ムを表示" not in content_terms("アラームを表示して")
    assert set(content_terms("ＩＴ導入補助金 申請期限")) == {
        "it",
        "導入",
        "補助金",
        "it導入",
        "導入補助金",
        "it導入補助金",
        "申請期限",
    }
    # English: whitespace-separated words, stop words dropped, one space allowed inside a term.
    assert content_terms("please cancel all the alarms") == ["cancel", "alarms"]  # please/all/the: stop words
    assert content_terms("subsidy deadline") == ["subsidy", "subsidy deadline", "deadline"]
    assert content_terms("소상공인 지원금 신청") == ["소상공인", "지원금", "신청"]
    assert content_terms("") == [] and content_terms("。、！？") == []


def test_word_spans_and_the_cut_test():
    spans = word_spans(normalize_query("アラームを表示して"))
    assert [(s, e) for s, e, _ in spans] == [(0, 4), (4, 5), (5, 7), (7, 8), (8, 9)]
    assert [c for _, _, c in spans] == [True, False, True, False, False]
    texts = ["アラームを表示して"]
    assert (
        cuts_a_word("ムを表示", texts)
        and cuts_a_word("アラ", texts)
        and cuts_a_word("表示し", ["表示しました"]) is False
    )
    assert not cuts_a_word("アラーム", texts) and not cuts_a_word("アラームを表示", texts)
    assert cuts_a_word("larm", ["cancel alarm"]) and not cuts_a_word("cancel alarm", ["cancel alarm"])


def test_labels_never_cut_words_where_the_character_ngram_labels_do():
    words = cluster_labels(ALARMS)
    for c, label in words.items():
        assert not any(cuts_a_word(p, ALARMS[c]) for p in pieces(label)), label
    assert "表示" in pieces(words[0]) and ("削除" in words[1] or "消し" in words[1]) and "天気" in words[2]
    # The former analyzer on the same clusters: at least one piece starts or ends inside a word.
    chars = cluster_labels(ALARMS, analyzer="chars")
    assert any(cuts_a_word(p, ALARMS[c]) for c, label in chars.items() for p in pieces(label)), chars


def test_merged_pieces_stay_on_word_boundaries():
    clusters = {
        0: ["it導入補助金 申請期限", "it導入補助金の締め切り", "it導入補助金 いつまで"],
        1: ["ものづくり補助金 対象経費", "ものづくり補助金 経費"],
    }
    labels = cluster_labels(clusters)
    assert pieces(labels[0])[0] == "it導入補助金"
    assert "ものづくり補助金" in pieces(labels[1]) or "ものづくり" in pieces(labels[1])
    for c, label in labels.items():
        assert not any(cuts_a_word(p, clusters[c]) for p in pieces(label))


def test_long_fallback_is_cut_after_a_whole_word():
    from autonomath_pipelines.lib.labels import _fallback

    text = "持続化給付金の再給付はいつから申請できますか教えてくださいお願いします"
    cut = _fallback([text], 0)
    assert cut.endswith("…") and len(cut) <= 30
    assert text.startswith(cut[:-1]) and not cuts_a_word(cut[:-1], [text])
    assert _fallback(["。。。"], 3) == "。。。" and _fallback(["", " "], 3) == "cluster 3"


WORDS = [
    "アラーム",
    "天気",
    "補助金",
    "申請",
    "期限",
    "東京都",
    "創業",
    "助成金",
    "表示",
    "削除",
    "予約",
    "会議",
    "カレンダー",
    "音楽",
    "subsidy",
    "deadline",
    "alarm",
    "music",
    "it",
    "2026",
    "明日",
    "来週",
    "経費",
]
GLUE = ["", "を", "の", "に", "は", "で", " ", "して", "を教えて", "、", "？"]


@st.composite
def request(draw):
    parts = draw(st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(GLUE)), min_size=1, max_size=5))
    return "".join(w + g for w, g in parts)


@settings(max_examples=60, deadline=None)
@given(
    clusters=st.dictionaries(st.integers(0, 20), st.lists(request(), min_size=1, max_size=6), min_size=1, max_size=5),
    top_n=st.integers(1, 4),
)
def test_no_label_piece_starts_or_ends_inside_a_word(clusters, top_n):
    labels = cluster_labels(clusters, top_n=top_n)
    assert set(labels) == set(clusters)
    for c, label in labels.items():
        if label.endswith("…"):  # the truncated fallback of a long medoid (never a c-TF-IDF piece)
            continue
        for piece in pieces(label):
            assert not cuts_a_word(piece, clusters[c]), (piece, clusters[c])
