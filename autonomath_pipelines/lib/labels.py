"""Readable cluster labels: class-based TF-IDF (as in BERTopic) over words.

Words come from a real morphological analyzer: SudachiPy with ``sudachidict_core`` (split mode C,
the longest units: 「申請期限」, 「キャリアアップ助成金」), run on each text after NFKC + casefold. Latin
words, numbers and Hangul runs come out of the same pass as whole tokens. *Content words* are
nouns, verbs, adjectives, adjectival nouns, prefixes and suffixes, and
letter runs Sudachi has no part of speech for (Hangul); particles, auxiliaries, symbols, light
verbs (する, ある, いる, なる, できる …) and English stop words are not. The terms of a text are its
runs of 1–3 *adjacent* content words (a particle, symbol or space ends a run; between two Latin
words one space is allowed: "subsidy deadline"), each the exact substring of the text from the
first word's start to the last word's end. So no term, and no label piece, starts or ends inside
a word (「アラームを表示」 gives 「アラーム」 and 「表示」, never 「ムを表示」).

Every cluster is one "class document": the weighted sum of its texts' term counts. The score of
term t in cluster c is ``tf(t, c) · log(1 + A / f(t))`` with tf the share of t among the
cluster's terms, f(t) the total count of t over all clusters and A the mean number of terms per
cluster: frequent in this cluster, rare elsewhere.

A label is built greedily from the best terms (ranked by score with a mild bonus for longer
ones): a term that is a substring of one already chosen is skipped, one that contains a chosen one
replaces it, and chosen pieces that overlap or touch are merged when the merged string is itself
a run of up to ``MERGE_MAX_WORDS`` adjacent content words of one of the cluster's texts (導入 +
補助金 → 導入補助金; it + 導入補助金 → it導入補助金): merging never leaves a word boundary either.
Up to ``top_n`` pieces are joined with " / ". Never empty: without any term the first text (the
medoid, when the caller puts it first), cut on a word boundary, or ``cluster <id>``.

``char_ngrams`` is the former analyzer (character 2–4-grams of script runs), kept as the
baseline the real-data eval compares against (its pieces cut words).
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from autonomath_pipelines.lib.textnorm import normalize_query

__all__ = ["cluster_labels", "char_ngrams", "content_terms", "word_spans", "cuts_a_word"]

_CJK = (
    "\u1100-\u11ff\u3005-\u3007\u3040-\u309f\u30a0-\u30ff\u3130-\u318f\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f"
)
_TOKEN = re.compile(f"([{_CJK}]+)|([^\\W_{_CJK}]+)")
NGRAM_MIN, NGRAM_MAX = 2, 4
#: Texts per cluster used for its label (highest weight first): bounds the cost on huge clusters.
MAX_TEXTS_PER_CLUSTER = 1000
#: Adjacent content words per c-TF-IDF term, and per merged label piece.
TERM_MAX_WORDS, MERGE_MAX_WORDS = 3, 6
_CANDIDATES = 40
_MAX_PIECE_CHARS = 24
_MAX_LABEL_CHARS = 60
_FALLBACK_CHARS = 30
_SEPARATOR = " / "
_CONTENT_POS = frozenset({"名詞", "動詞", "形容詞", "形状詞", "接頭辞", "接尾辞"})
#: Verbs/adjectives that carry no topic (light and auxiliary-like verbs), by dictionary form.
_LIGHT = frozenset(
    {
        "する",
        "ある",
        "いる",
        "なる",
        "できる",
        "れる",
        "られる",
        "くる",
        "来る",
        "いく",
        "行く",
        "おる",
        "ない",
        "いい",
        "よい",
        "くれる",
        "下さる",
        "くださる",
        "もらう",
        "しまう",
        "おく",
        "みる",
    }
)
_LATIN_WORD = re.compile(r"^[^\W_]+$")
_ASCII = re.compile(r"^[0-9a-z]+$")
_CJK_CHAR = re.compile(f"[{_CJK}]")


def char_ngrams(text: str) -> list[str]:
    """Character n-grams of one text: a kana/kanji/hangul run yields its 2–4-grams (a single
    character itself), another letter/digit run is one word (≥ 2 characters, or a number).
    The former label analyzer; the eval's baseline."""
    grams: list[str] = []
    for m in _TOKEN.finditer(normalize_query(text)):
        cjk, word = m.group(1), m.group(2)
        if cjk:
            if len(cjk) == 1:
                grams.append(cjk)
                continue
            for n in range(NGRAM_MIN, min(NGRAM_MAX, len(cjk)) + 1):
                grams.extend(cjk[i : i + n] for i in range(len(cjk) - n + 1))
        elif len(word) >= 2 or word.isdigit():
            grams.append(word)
    return grams


# ------------------------------------------------------------------------------ words (Sudachi)

_local = threading.local()


def _tokenizer():
    """One Sudachi tokenizer per thread (split mode C); the dictionary loads once per thread (~0.1 s)."""
    tok = getattr(_local, "tokenizer", None)
    if tok is None:
        from sudachipy import dictionary
        from sudachipy import tokenizer as sudachi_tokenizer

        mode = sudachi_tokenizer.Tokenizer.SplitMode.C
        sudachi_dict = dictionary.Dictionary(dict="core")
        tok = sudachi_dict.tokenizer(mode=mode) if hasattr(sudachi_dict, "tokenizer") else sudachi_dict.create(mode)
        _local.tokenizer = tok
    return tok


#: (start, end, is_content) per word of a normalized text; ``start``/``end`` are character offsets.
Word = tuple[int, int, bool]


@functools.cache
def _english_stop_words() -> frozenset[str]:
    # scikit-learn (and the SciPy it pulls in) costs ~2.5 CPU s to import: every loop run's process imports
    # this module, and only the loops that label clusters need it.
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return ENGLISH_STOP_WORDS


def _is_content(surface: str, pos: str, dict_form: str, in_english: bool) -> bool:
    if not surface.strip():
        return False
    if _ASCII.match(surface):
        # English stop words only among English words: the "it" of 「it導入補助金」 is a word.
        return (len(surface) >= 2 or surface.isdigit()) and not (in_english and surface in _english_stop_words())
    if pos in _CONTENT_POS:
        return dict_form not in _LIGHT and surface not in _LIGHT
    # Letters Sudachi has no entry or part of speech for (Hangul, other scripts) are words too.
    return pos == "補助記号" and bool(_LATIN_WORD.match(surface))


@functools.lru_cache(maxsize=65536)
def word_spans(normalized: str) -> tuple[Word, ...]:
    """The words of an already normalized text as (start, end, is_content), in order, whitespace
    excluded. Sudachi cuts Japanese; a Latin word, a number or a Hangul run is one token."""
    if not normalized:
        return ()
    out: list[Word] = []
    text = normalized[:10000]
    for m in _tokenizer().tokenize(text):
        surface = m.surface()
        if not surface.strip():
            continue
        start, end = m.begin(), m.end()
        before = text[start - 1] if start > 0 else " "
        after = text[end] if end < len(text) else " "
        in_english = not (_CJK_CHAR.match(before) or _CJK_CHAR.match(after))
        out.append((start, end, _is_content(surface, m.part_of_speech()[0], m.dictionary_form(), in_english)))
    return tuple(out)


def _runs(normalized: str, max_words: int) -> list[str]:
    """Every run of 1..max_words adjacent content words, as substrings of ``normalized``."""
    words = word_spans(normalized)
    terms: list[str] = []
    run: list[Word] = []

    def flush() -> None:
        for i in range(len(run)):
            for j in range(i, min(len(run), i + max_words)):
                piece = normalized[run[i][0] : run[j][1]]
                terms.append(piece)

    prev_end = None
    prev_latin = False
    for start, end, content in words:
        surface = normalized[start:end]
        latin = bool(_ASCII.match(surface))
        gap = normalized[prev_end:start] if prev_end is not None else ""
        adjacent = prev_end is not None and (gap == "" or (gap == " " and latin and prev_latin))
        if not content or not adjacent:
            flush()
            run = []
        if content:
            run.append((start, end, content))
        prev_end, prev_latin = end, latin
    flush()
    return terms


def content_terms(text: str) -> list[str]:
    """The c-TF-IDF terms of one text (see the module docstring); the vectorizer's analyzer."""
    return _runs(normalize_query(text), TERM_MAX_WORDS)


def cuts_a_word(piece: str, texts: Sequence[str]) -> bool:
    """True unless ``piece`` occurs in one of ``texts`` (normalized) starting and ending on word
    boundaries (Sudachi's, whitespace included). The eval's "label pieces cutting a word"."""
    piece = normalize_query(piece)
    if not piece:
        return False
    for text in texts:
        norm = normalize_query(text)
        starts = {s for s, _, _ in word_spans(norm)}
        ends = {e for _, e, _ in word_spans(norm)}
        at = norm.find(piece)
        while at >= 0:
            if at in starts and at + len(piece) in ends:
                return False
            at = norm.find(piece, at + 1)
    return True


def _fallback(texts: Sequence[str], label: int) -> str:
    """The first non-blank text; a long one is cut after its last whole word that fits."""
    for t in texts:
        t = " ".join(str(t).split())
        if not t:
            continue
        if len(t) <= _FALLBACK_CHARS:
            return t
        ends = [e for _, e, _ in word_spans(t) if e <= _FALLBACK_CHARS - 1]
        cut = max(ends) if ends else _FALLBACK_CHARS - 1
        return t[:cut].rstrip() + "…"
    return f"cluster {label}"


_PARTICLES = frozenset("のをにはがでとへもや")


def _rank_key(gram: str, score: float, chars: bool = False) -> float:
    bonus = 1.0 + 0.2 * (min(len(gram), 6) - 2)
    if chars and (gram[0] in _PARTICLES or gram[-1] in _PARTICLES):  # the former labeler's malus
        bonus *= 0.6
    return score * bonus


class _Substrings:
    """The former labeler's merge test: the merged string occurs anywhere in a text."""

    def __init__(self, texts: Sequence[str]):
        self.texts = list(texts)

    def __contains__(self, piece: object) -> bool:
        return any(str(piece) in t for t in self.texts)


def _merge_pieces(pieces: list[str], mergeable) -> list[str]:
    """Merge overlapping/touching pieces when the merged string is a run of adjacent content words
    of one of the cluster's texts (``mergeable``)."""
    merged = True
    while merged and len(pieces) > 1:
        merged = False
        for i in range(len(pieces)):
            for j in range(len(pieces)):
                if i == j:
                    continue
                a, b = pieces[i], pieces[j]
                for k in range(min(len(a), len(b)) - 1, -1, -1):
                    if k and a[-k:] != b[:k]:
                        continue
                    joined = a + b[k:]
                    if len(joined) <= _MAX_PIECE_CHARS and joined in mergeable:
                        first = min(i, j)
                        pieces = [p for q, p in enumerate(pieces) if q not in (i, j)]
                        pieces.insert(min(first, len(pieces)), joined)
                        merged = True
                    break  # only the longest overlap is tried
                if merged:
                    break
            if merged:
                break
    return pieces


def _select(ranked: list[str], mergeable, top_n: int) -> list[str]:
    chosen: list[str] = []
    for gram in ranked:
        if len(chosen) >= top_n:
            break
        if any(gram in c for c in chosen):
            continue
        inside = [c for c in chosen if c in gram]
        if inside:
            pos = chosen.index(inside[0])
            chosen = [c for c in chosen if c not in inside]
            chosen.insert(pos, gram)
        else:
            chosen.append(gram)
        chosen = _merge_pieces(chosen, mergeable)
        # A merge can make a piece contain another one: keep the longer.
        chosen = [c for c in chosen if not any(c != o and c in o for o in chosen)]
    return chosen


def cluster_labels(
    texts_by_cluster: Mapping[int, Sequence[str]],
    weights_by_cluster: Mapping[int, Sequence[float]] | None = None,
    top_n: int = 3,
    analyzer: str = "words",
) -> dict[int, str]:
    """A short readable label per cluster from its most distinctive words (runs of content words).

    texts_by_cluster: cluster id → its texts (the first one is the fallback label).
    weights_by_cluster: cluster id → one weight (count) per text; default 1 each. A cluster whose
        weights are all zero is counted with weight 1 each.
    top_n: at most this many pieces per label (after merging).
    analyzer: ``"words"`` (default, see the module docstring) or ``"chars"``, the former character
        n-gram labeler (its pieces cut words; kept as the eval's baseline).
    Deterministic; works for a single cluster and for clusters of one text.
    """
    if isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)) or top_n < 1:
        raise ValueError(f"top_n must be an integer >= 1, got {top_n!r}")
    if analyzer not in ("words", "chars"):
        raise ValueError(f"analyzer must be 'words' or 'chars', got {analyzer!r}")
    chars = analyzer == "chars"
    labels = list(texts_by_cluster)
    if not labels:
        return {}

    all_texts: list[str] = []
    rows: list[int] = []
    vals: list[float] = []
    norm_texts: dict[int, list[str]] = {}
    for ci, label in enumerate(labels):
        texts = [str(t) for t in texts_by_cluster[label]]
        if weights_by_cluster is not None and label in weights_by_cluster:
            w = np.asarray(weights_by_cluster[label], dtype=np.float64)
            if w.shape != (len(texts),):
                raise ValueError(f"cluster {label}: {len(texts)} texts but weights of shape {w.shape}")
            if not np.isfinite(w).all() or (w < 0).any():
                raise ValueError(f"cluster {label}: weights must be finite and >= 0")
            if not (w > 0).any():
                w = np.ones(len(texts))
        else:
            w = np.ones(len(texts))
        keep = np.argsort(-w, kind="stable")[:MAX_TEXTS_PER_CLUSTER]
        norm_texts[label] = [normalize_query(texts[i]) for i in keep]
        all_texts.extend(texts[i] for i in keep)
        rows.extend([ci] * len(keep))
        vals.extend(float(w[i]) for i in keep)

    out = {label: _fallback(texts_by_cluster[label], label) for label in labels}
    from sklearn.feature_extraction.text import CountVectorizer  # lazily: see _english_stop_words

    vectorizer = CountVectorizer(analyzer=char_ngrams if chars else content_terms)
    try:
        counts = vectorizer.fit_transform(all_texts)
    except ValueError:  # empty vocabulary: no text has a content word
        return out
    vocab = vectorizer.get_feature_names_out()
    membership = sp.csr_matrix((vals, (rows, np.arange(len(all_texts)))), shape=(len(labels), len(all_texts)))
    class_counts = sp.csr_matrix(membership @ counts, dtype=np.float64)  # clusters × n-grams
    per_term = np.asarray(class_counts.sum(axis=0)).ravel()
    per_class = np.asarray(class_counts.sum(axis=1)).ravel()
    mean_per_class = float(per_class.sum()) / len(labels)
    for ci, label in enumerate(labels):
        start, stop = class_counts.indptr[ci], class_counts.indptr[ci + 1]
        terms, tf = class_counts.indices[start:stop], class_counts.data[start:stop]
        if not terms.size or per_class[ci] <= 0:
            continue
        score = (tf / per_class[ci]) * np.log1p(mean_per_class / per_term[terms])
        grams = [str(g).strip() for g in vocab[terms]]
        keyed = sorted(((-_rank_key(g, s, chars), -len(g), g) for g, s in zip(grams, score) if g), key=lambda t: t)[
            :_CANDIDATES
        ]
        mergeable = (
            _Substrings(norm_texts[label])
            if chars
            else {t for text in norm_texts[label] for t in _runs(text, MERGE_MAX_WORDS)}
        )
        chosen = _select([g for _, _, g in keyed], mergeable, top_n)
        if chosen:
            text = _SEPARATOR.join(chosen)
            while len(text) > _MAX_LABEL_CHARS and len(chosen) > 1:  # drop whole pieces, never cut one
                chosen = chosen[:-1]
                text = _SEPARATOR.join(chosen)
            if len(text) > _MAX_LABEL_CHARS:
                text = text[: _MAX_LABEL_CHARS - 1] + "…"
            out[label] = text
    return out
