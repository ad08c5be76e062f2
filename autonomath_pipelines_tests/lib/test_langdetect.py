import pytest
from hypothesis import given
from hypothesis import strategies as st

from autonomath_pipelines.lib.langdetect import LANGS, detect_lang, is_romaji


@pytest.mark.parametrize(
    "text, lang",
    [
        ("IT導入補助金", "ja"),
        ("ものづくり補助金 申請方法", "ja"),
        ("テンジカイシュッテンジョセイキン", "ja-Kana"),
        ("あいてぃーどうにゅうほじょきん", "ja-Kana"),
        ("ｷｬﾘｱｱｯﾌﾟ", "ja-Kana"),
        ("monodukuri hojokin", "ja-Latn"),
        ("datsutanso koufukin", "ja-Latn"),
        ("kanagawa kosodate shien hojokin", "ja-Latn"),
        ("IT introduction subsidy", "en"),
        ("yatsushiro shopping street revitalization support program", "en"),
        ("child-rearing support benefit shizuoka", "en"),
        ("高知县农业机械导入补助金", "zh"),
        ("IT导入补助金", "zh"),
        ("いわき市 空置店铺利用补助金", "zh"),
        ("후쿠오카현 창업 보조금", "ko"),
        ("IT 도입 보조금", "ko"),
        ("愛媛県 創業", "ja"),
        ("創業支援", "ja"),
        ("12345 !!", "und"),
        ("", "und"),
    ],
)
def test_script_heuristic_on_every_script(text, lang):
    assert detect_lang(text) == lang


def test_han_only_without_decisive_characters_follows_context():
    assert detect_lang("創業支援", han_context="zh") == "zh"
    assert detect_lang("創業支援", han_context="ja") == "ja"


def test_romaji_needs_a_long_parsed_word():
    assert not is_romaji("do no me")
    assert is_romaji("hojokin")
    assert not is_romaji("subsidy program")


@given(st.text(max_size=40))
def test_always_returns_a_known_code(text):
    assert detect_lang(text) in LANGS
