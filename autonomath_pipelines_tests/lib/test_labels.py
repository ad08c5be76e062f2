import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autonomath_pipelines.lib.labels import char_ngrams, cluster_labels

CLUSTERS = {
    0: ["IT導入補助金 申請期限", "it導入補助金の締め切り", "IT導入補助金 いつまで", "it導入補助金 申請期限 2026"],
    1: ["東京都 創業助成金", "東京 創業 助成金 条件", "創業助成金 東京都 対象者"],
    2: ["ものづくり補助金 対象経費", "ものづくり補助金 経費 対象", "ものづくり 補助金 対象になる経費"],
    3: ["small business subsidy deadline", "subsidy deadline for small business", "deadline of subsidy"],
    4: ["中小企业补贴 申请条件", "中小企业 补贴 条件"],
    5: ["소상공인 지원금 신청", "소상공인 지원금 신청 방법"],
}


def pieces(label: str) -> list[str]:
    return label.split(" / ")


def test_char_ngrams_need_no_tokenizer():
    grams = char_ngrams("ＩＴ導入補助金 申請")
    assert "it" in grams and "導入" in grams and "導入補助" in grams and "申請" in grams
    assert all(g.strip() == g and g for g in grams)
    assert max(len(g) for g in grams if g != "it") == 4
    assert char_ngrams("税") == ["税"] and char_ngrams("a b") == [] and char_ngrams("2026") == ["2026"]


def test_labels_name_what_is_distinctive_per_cluster():
    labels = cluster_labels(CLUSTERS)
    assert set(labels) == set(CLUSTERS)
    assert pieces(labels[0])[0] == "it導入補助金"  # merged from overlapping n-grams
    assert "創業" in labels[1] and "導入" not in labels[1]
    assert "ものづくり" in labels[2]
    assert "subsidy" in labels[3] and "deadline" in labels[3]
    assert "中小企业" in labels[4]
    assert "소상공인" in labels[5]


def test_no_piece_is_a_substring_of_another_and_at_most_top_n():
    for top_n in (1, 2, 3, 5):
        for label in cluster_labels(CLUSTERS, top_n=top_n).values():
            ps = pieces(label)
            assert 1 <= len(ps) <= top_n
            assert not any(a != b and a in b for a in ps for b in ps)
            assert all(p.strip() == p and p for p in ps)


def test_weights_steer_the_label():
    texts = {0: ["創業 融資", "雇用 助成金"], 1: ["ものづくり 補助金"]}
    assert pieces(cluster_labels(texts, {0: [50, 1], 1: [1]}, top_n=1)[0]) == ["創業"]
    assert pieces(cluster_labels(texts, {0: [1, 50], 1: [1]}, top_n=1)[0])[0] in {"雇用", "助成金"}


def test_single_cluster_single_text_and_fallbacks():
    assert cluster_labels({7: ["キャリアアップ助成金"]}) == {7: "キャリアアップ助成金"}
    assert cluster_labels({0: ["???", "!!"]}) == {0: "???"}  # no n-gram: first text
    assert cluster_labels({3: ["", "   "]}) == {3: "cluster 3"}
    long_symbols = "-" * 80
    assert cluster_labels({1: [long_symbols]})[1] == "-" * 29 + "…"
    assert cluster_labels({}) == {}
    # All-zero weights count as equal weights.
    assert cluster_labels({0: ["創業 融資"]}, {0: [0.0]}) == cluster_labels({0: ["創業 融資"]})


def test_validation():
    with pytest.raises(ValueError, match="top_n"):
        cluster_labels({0: ["a"]}, top_n=0)
    with pytest.raises(ValueError, match="weights"):
        cluster_labels({0: ["a", "b"]}, {0: [1]})
    with pytest.raises(ValueError, match="weights"):
        cluster_labels({0: ["a"]}, {0: [-1]})


_text = st.text(alphabet=st.sampled_from(list("補助金創業東京都申請期限 itabc의지원금中小企业！?、。 ")), max_size=20)


@settings(max_examples=80, deadline=None)
@given(
    clusters=st.dictionaries(st.integers(-5, 50), st.lists(_text, min_size=1, max_size=6), min_size=1, max_size=6),
    top_n=st.integers(1, 4),
)
def test_labels_are_never_empty_and_deterministic(clusters, top_n):
    a = cluster_labels(clusters, top_n=top_n)
    assert set(a) == set(clusters)
    assert all(isinstance(v, str) and v.strip() for v in a.values())
    assert all(len(v) <= 60 for v in a.values())
    assert a == cluster_labels(dict(clusters), top_n=top_n)
