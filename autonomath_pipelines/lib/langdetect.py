"""Language of a short surface form by its scripts (loop E). No model: Unicode blocks + rules.

Codes (the ones ``am_alias.lang`` uses): ``ja`` (kanji with or without kana), ``ja-Kana`` (kana
only: a reading), ``ja-Latn`` (romaji), ``en``, ``zh``, ``ko``, and ``und`` when no letter is there.

- hangul anywhere dominant → ``ko``
- any hiragana/katakana → ``ja`` (``ja-Kana`` when there is nothing but kana)
- two or more simplified-only characters → ``zh`` (even around a kana place name)
- han only: simplified-only characters (补, 导, 业 …) → ``zh``; Japanese-only forms (県, 円, 対 …)
  → ``ja``; otherwise the caller's context (the program is Japanese: ``ja``)
- latin only: romaji when most words parse as Hepburn syllables → ``ja-Latn``, else ``en``
"""

from __future__ import annotations

import re
import unicodedata

LANGS = frozenset({"ja", "ja-Kana", "ja-Latn", "en", "zh", "ko", "und"})

# Characters that exist only in simplified Chinese (Japanese writes 補, 導, 業, 県 …). A sample of the
# frequent ones in subsidy vocabulary is enough: one is decisive.
SIMPLIFIED_ONLY = frozenset(
    "补导业发东县规划设备贷资务奖农统计训练员经济环节护续书报达运营转让进认证费项赁给贺铺儿创"
    "开关门问间们这个为对应该车专兴产广电话动劳疗卫药乐习办传买卖实现态过边远还扩确选择况际险"
    "级线组织结构约红绿罗职联脑荐获评识详说请读调贸贵购赞轻辆输韩页顾领风飞马鱼鸡齐纳码绍盘"
)
# Japanese shinjitai / kokuji that simplified Chinese writes differently: decisive for ja.
JAPANESE_ONLY = frozenset("県円対発拡経済営労働図広従売読駅関単歳戦浜沢畑込働峠栃潟岡塚")

_ROMAJI_WORD = re.compile(
    r"^(?:(?:kk|ss|tt|pp|cch|tch)?(?:ky|gy|sh|ch|ny|hy|by|py|my|ry|ts|dz|j|f|[kgsztdnhbpmyrw])?"
    r"(?:[aeiou]|ā|ī|ū|ē|ō)|n(?![aeiouy]))+$"
)


def script_counts(text: str) -> dict[str, int]:
    counts = {"hiragana": 0, "katakana": 0, "han": 0, "hangul": 0, "latin": 0}
    for ch in unicodedata.normalize("NFKC", text):
        code = ord(ch)
        if 0x3040 <= code <= 0x309F:
            counts["hiragana"] += 1
        elif 0x30A0 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF:
            if ch != "・" and ch != "ー":
                counts["katakana"] += 1
        elif 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF or ch == "々":
            counts["han"] += 1
        elif 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
            counts["hangul"] += 1
        elif ch.isascii() and ch.isalpha() or ch in "āīūēō":
            counts["latin"] += 1
    return counts


def _romaji_coverage(word: str) -> float:
    """Share of ``word`` covered by its longest suffix that parses as romaji (``it`` + ``donyuhojokin``)."""
    for start in range(len(word)):
        if _ROMAJI_WORD.match(word[start:]):
            return (len(word) - start) / len(word)
    return 0.0


def is_romaji(text: str) -> bool:
    """Most latin words of ``text`` parse as Hepburn syllables (``hojokin``, ``monodukuri``)."""
    words = [w for w in re.findall(r"[a-zāīūēō]+", text.casefold()) if len(w) >= 2]
    if not words:
        return False
    parsed = [w for w in words if _romaji_coverage(w) >= 0.7]
    # Short English words (“do”, “no”, “me”) parse too: require a long parsed word and a majority.
    return len(parsed) * 3 >= len(words) * 2 and any(len(w) >= 5 for w in parsed)


def detect_lang(text: str, han_context: str = "ja") -> str:
    """Language code of ``text`` (see module doc). ``han_context`` decides han-only text."""
    counts = script_counts(text)
    kana = counts["hiragana"] + counts["katakana"]
    letters = sum(counts.values())
    if letters == 0:
        return "und"
    if counts["hangul"] and counts["hangul"] >= max(kana, counts["han"]):
        return "ko"
    simplified = sum(ch in SIMPLIFIED_ONLY for ch in unicodedata.normalize("NFKC", text))
    if simplified >= 2:
        return "zh"  # Chinese text that keeps a Japanese place name in kana (いわき市 空置店铺利用补助金)
    if kana:
        # Kana only is a reading (ja-Kana); with kanji or latin (JAPANブランド) it is a name.
        return "ja" if counts["han"] or counts["latin"] else "ja-Kana"
    if counts["han"]:
        chars = set(unicodedata.normalize("NFKC", text))
        if chars & SIMPLIFIED_ONLY:
            return "zh"
        if chars & JAPANESE_ONLY:
            return "ja"
        return han_context
    return "ja-Latn" if is_romaji(text) else "en"
