"""Text helpers of the demo world: readings from wapuro romaji, width variants, typos.

All functions are pure and deterministic; the random ones take a ``numpy.random.Generator``.
"""

from __future__ import annotations

import unicodedata

import numpy as np

# The truth must count queries exactly as the loops do: one normalization for both.
from autonomath_pipelines.lib.textnorm import normalize_query as normalize  # noqa: F401

_VOWELS = "aiueo"

# syllable (wapuro) → katakana
_KANA: dict[str, str] = {
    "a": "ア",
    "i": "イ",
    "u": "ウ",
    "e": "エ",
    "o": "オ",
    "ka": "カ",
    "ki": "キ",
    "ku": "ク",
    "ke": "ケ",
    "ko": "コ",
    "ga": "ガ",
    "gi": "ギ",
    "gu": "グ",
    "ge": "ゲ",
    "go": "ゴ",
    "sa": "サ",
    "shi": "シ",
    "si": "シ",
    "su": "ス",
    "se": "セ",
    "so": "ソ",
    "za": "ザ",
    "ji": "ジ",
    "zi": "ジ",
    "zu": "ズ",
    "ze": "ゼ",
    "zo": "ゾ",
    "ta": "タ",
    "chi": "チ",
    "ti": "チ",
    "tsu": "ツ",
    "tu": "ツ",
    "te": "テ",
    "to": "ト",
    "da": "ダ",
    "di": "ヂ",
    "du": "ヅ",
    "de": "デ",
    "do": "ド",
    "na": "ナ",
    "ni": "ニ",
    "nu": "ヌ",
    "ne": "ネ",
    "no": "ノ",
    "ha": "ハ",
    "hi": "ヒ",
    "fu": "フ",
    "hu": "フ",
    "he": "ヘ",
    "ho": "ホ",
    "ba": "バ",
    "bi": "ビ",
    "bu": "ブ",
    "be": "ベ",
    "bo": "ボ",
    "pa": "パ",
    "pi": "ピ",
    "pu": "プ",
    "pe": "ペ",
    "po": "ポ",
    "ma": "マ",
    "mi": "ミ",
    "mu": "ム",
    "me": "メ",
    "mo": "モ",
    "ya": "ヤ",
    "yu": "ユ",
    "yo": "ヨ",
    "ra": "ラ",
    "ri": "リ",
    "ru": "ル",
    "re": "レ",
    "ro": "ロ",
    "wa": "ワ",
    "wo": "ヲ",
    "kya": "キャ",
    "kyu": "キュ",
    "kyo": "キョ",
    "gya": "ギャ",
    "gyu": "ギュ",
    "gyo": "ギョ",
    "sha": "シャ",
    "shu": "シュ",
    "sho": "ショ",
    "she": "シェ",
    "ja": "ジャ",
    "ju": "ジュ",
    "jo": "ジョ",
    "je": "ジェ",
    "cha": "チャ",
    "chu": "チュ",
    "cho": "チョ",
    "che": "チェ",
    "nya": "ニャ",
    "nyu": "ニュ",
    "nyo": "ニョ",
    "hya": "ヒャ",
    "hyu": "ヒュ",
    "hyo": "ヒョ",
    "bya": "ビャ",
    "byu": "ビュ",
    "byo": "ビョ",
    "pya": "ピャ",
    "pyu": "ピュ",
    "pyo": "ピョ",
    "mya": "ミャ",
    "myu": "ミュ",
    "myo": "ミョ",
    "rya": "リャ",
    "ryu": "リュ",
    "ryo": "リョ",
    "fa": "ファ",
    "fi": "フィ",
    "fe": "フェ",
    "fo": "フォ",
    "thi": "ティ",
    "dhi": "ディ",
    "wi": "ウィ",
    "we": "ウェ",
    "va": "ヴァ",
    "vi": "ヴィ",
    "vu": "ヴ",
    "ve": "ヴェ",
    "vo": "ヴォ",
    "n": "ン",
    "xtsu": "ッ",
    "-": "ー",
}


def syllables(reading: str) -> list[str]:
    """Split a wapuro reading into syllable keys of ``_KANA`` (spaces kept as ``' '``)."""
    s = reading.lower()
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c in " -":
            out.append(c)
            i += 1
            continue
        if c == "'":
            i += 1
            continue
        if c == "n" and (i + 1 == len(s) or (s[i + 1] not in _VOWELS and s[i + 1] != "y")):
            out.append("n")
            i += 1
            continue
        if i + 1 < len(s) and c == s[i + 1] and c not in _VOWELS and c != "n":
            out.append("xtsu")
            i += 1
            continue
        if s.startswith("tch", i):
            out.append("xtsu")
            i += 1
            continue
        for size in (3, 2, 1):
            chunk = s[i : i + size]
            if len(chunk) == size and chunk in _KANA and chunk not in ("n", "xtsu", "-"):
                out.append(chunk)
                i += size
                break
        else:
            raise ValueError(f"cannot read {reading!r} at {s[i:]!r}")
    return out


def katakana(reading: str) -> str:
    """Katakana reading of a wapuro string, spaces dropped: ``setsubi toushi`` → セツビトウシ."""
    return "".join(_KANA[t] for t in syllables(reading) if t != " ")


def hiragana(kata: str) -> str:
    return "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in kata)


def hepburn(reading: str) -> str:
    """Simplified Hepburn as people type it: long vowels dropped (``toukyou`` → ``tokyo``)."""
    s = reading.replace("-", "").replace("'", "")
    for a, b in (("ou", "o"), ("oo", "o"), ("uu", "u"), ("du", "zu"), ("di", "ji")):
        s = s.replace(a, b)
    return s


# --- hangul transcription of Japanese syllables (for place names) ------------------------------
_INITIAL = {
    "": 11,
    "k": 0,
    "g": 0,
    "s": 9,
    "sh": 9,
    "z": 12,
    "j": 12,
    "t": 3,
    "ts": 10,
    "ch": 12,
    "d": 3,
    "n": 2,
    "h": 18,
    "f": 18,
    "b": 7,
    "p": 17,
    "m": 6,
    "y": 11,
    "r": 5,
    "w": 11,
}
_ASPIRATED = {"k": 15, "t": 16, "ch": 14}
_PLAIN_V = {"a": 0, "i": 20, "u": 13, "e": 5, "o": 8}
_GLIDE_V = {"a": 2, "u": 17, "o": 12, "e": 7, "i": 20}


def hangul(reading: str) -> str:
    """Korean transcription of a wapuro reading (``yokohama`` → 요코하마, ``sapporo`` → 삿포로)."""
    out: list[list[int] | str] = []  # [initial, vowel, final] or ' '
    word_start = True
    prev_vowel = ""
    for tok in syllables(reading):
        if tok == " ":
            out.append(" ")
            word_start = True
            prev_vowel = ""
            continue
        if tok == "-":
            continue
        if tok in ("n", "xtsu"):
            if out and isinstance(out[-1], list):
                out[-1][2] = 4 if tok == "n" else 19
            continue
        vowel = tok[-1]
        cons = tok[:-1]
        if cons == "" and ((vowel == "u" and prev_vowel in ("o", "u")) or (vowel == "o" and prev_vowel == "o")):
            continue  # long vowel: not written in Korean
        glide = False
        if cons.endswith("y") and cons != "y":
            cons, glide = cons[:-1], True
        if cons == "y":
            glide = True
        if cons in ("sh", "ch", "j") and vowel != "i":
            glide = cons == "sh"
        initial = _INITIAL.get(cons, 11)
        if not word_start and cons in _ASPIRATED:
            initial = _ASPIRATED[cons]
        v = (_GLIDE_V if glide else _PLAIN_V)[vowel]
        if cons in ("s", "z", "ts") and vowel == "u":
            v = 18  # ㅡ: 스, 즈, 쓰
        if cons == "w" and vowel == "a":
            v = 9  # 와
        out.append([initial, v, 0])
        word_start = False
        prev_vowel = vowel
    return "".join(x if isinstance(x, str) else chr(0xAC00 + (x[0] * 21 + x[1]) * 28 + x[2]) for x in out)


# --- width variants ---------------------------------------------------------------------------
def to_fullwidth(text: str) -> str:
    """ASCII → full-width forms, space → ideographic space (ＩＴ導入補助金２０２６)."""
    return "".join("\u3000" if c == " " else chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _build_halfwidth() -> dict[str, str]:
    table: dict[str, str] = {}
    for code in range(0xFF61, 0xFFA0):
        half = chr(code)
        full = unicodedata.normalize("NFKC", half)
        if len(full) == 1 and full not in table:
            table[full] = half
    for full in list(table):
        for mark, half_mark in (("\u3099", "ﾞ"), ("\u309a", "ﾟ")):
            composed = unicodedata.normalize("NFC", full + mark)
            if len(composed) == 1 and composed not in table:
                table[composed] = table[full] + half_mark
    return table


_HALFWIDTH = _build_halfwidth()


def to_halfwidth_kana(text: str) -> str:
    """Katakana → half-width katakana (キャリアアップ → ｷｬﾘｱｱｯﾌﾟ); other characters unchanged."""
    return "".join(_HALFWIDTH.get(c, c) if "ァ" <= c <= "ヺ" or c == "ー" else c for c in text)


def has_katakana(text: str) -> bool:
    return any("ァ" <= c <= "ヺ" for c in text)


def to_fullwidth_alnum(text: str) -> str:
    """ASCII letters and digits → full-width (ＤＸ推進, 令和８年度); everything else unchanged."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


#: Real program names carry a subtitle between wave dashes, both the full-width tilde and U+301C.
WAVE_DASHES = ("～", "〜")
CIRCLED = "①②③"


def published_form(name: str, subtitle: str, rng: np.random.Generator) -> str:
    """``name`` as an agency's page publishes it, as real program names are (a fixture of the forms that
    defeat a search which folds only the query): full-width letters and digits, half-width katakana,
    a 「～subtitle～」 between wave dashes, a circled number for a funding strand. Most names stay plain."""
    if any(c.isascii() and c.isalnum() for c in name) and rng.random() < 0.35:
        name = to_fullwidth_alnum(name)
    if has_katakana(name) and rng.random() < 0.08:
        name = to_halfwidth_kana(name)
    if subtitle and rng.random() < 0.05:
        dash = WAVE_DASHES[int(rng.integers(len(WAVE_DASHES)))]
        name = f"{name}{dash}{subtitle}{dash}"
    if rng.random() < 0.03:
        name = f"{name}{CIRCLED[int(rng.integers(len(CIRCLED)))]}"
    return name


# --- typos ------------------------------------------------------------------------------------
NEAR_MISS: dict[str, str] = {
    "補": "捕",
    "助": "肋",
    "金": "均",
    "成": "戒",
    "援": "緩",
    "業": "叢",
    "設": "説",
    "備": "傭",
    "投": "役",
    "資": "貸",
    "創": "倉",
    "導": "道",
    "入": "人",
    "促": "足",
    "進": "准",
    "給": "紿",
    "付": "附",
    "新": "親",
    "規": "現",
    "小": "少",
    "持": "待",
    "続": "統",
    "構": "講",
    "築": "策",
    "雇": "顧",
    "開": "閑",
    "事": "亊",
    "奨": "奬",
    "励": "勵",
    "住": "往",
    "宅": "宇",
    "農": "濃",
    "承": "丞",
    "継": "断",
    "産": "彦",
    "省": "劣",
    "域": "城",
    "商": "啇",
    "店": "占",
    "街": "衝",
    "ー": "-",
    "ッ": "ツ",
    "ャ": "ヤ",
    "ュ": "ユ",
    "ョ": "ヨ",
    "ジ": "シ",
    "ガ": "カ",
    "ド": "ト",
    "ブ": "フ",
    "グ": "ク",
    "づ": "ず",
    "ぢ": "じ",
    "を": "お",
    "ゃ": "や",
}


def typo(text: str, rng: np.random.Generator) -> str:
    """One near-miss substitution, dropped, duplicated or swapped character (never the same text)."""
    chars = list(text)
    positions = [i for i, c in enumerate(chars) if not c.isspace()]
    if len(positions) < 3:
        return text + text[-1]
    near = [i for i in positions if chars[i] in NEAR_MISS]
    op = rng.choice(4, p=[0.45, 0.2, 0.15, 0.2])
    if op == 0 and near:
        i = near[int(rng.integers(len(near)))]
        chars[i] = NEAR_MISS[chars[i]]
    elif op == 1 or (op == 0 and not near):
        i = positions[int(rng.integers(1, len(positions)))]
        del chars[i]
    elif op == 2:
        i = positions[int(rng.integers(len(positions)))]
        chars.insert(i, chars[i])
    else:
        i = positions[int(rng.integers(len(positions) - 1))]
        j = i + 1
        if chars[j].isspace() or chars[i] == chars[j]:
            chars.insert(i, chars[i])
        else:
            chars[i], chars[j] = chars[j], chars[i]
    out = "".join(chars)
    return out if out != text else text + text[-1]
