"""Readable cluster labels: class-based TF-IDF (as in BERTopic) over character n-grams.

Japanese has no spaces, so no word tokenizer is used. Each text (NFKC + casefold) is cut into
script runs: a run of kana/kanji/hangul yields its character n-grams of 2–4 characters (a
single-character run yields itself); a run of other letters/digits (Latin, Cyrillic, numbers) is
one word, kept when it has at least two characters or is a number. Every cluster is one "class
document": the weighted sum of its texts' n-gram counts. The score of n-gram t in cluster c is

    tf(t, c) · log(1 + A / f(t))

with tf the share of t among the cluster's n-grams, f(t) the total count of t over all clusters
and A the mean number of n-grams per cluster: frequent in this cluster, rare elsewhere.

A label is built greedily from the best n-grams (ranked by score, with a mild bonus for longer
ones and a malus for n-grams that start or end with a particle such as の/を/に): an n-gram that
is a substring of one already chosen is skipped, one that contains a chosen one replaces it, and
chosen pieces that overlap or touch are merged when the merged string occurs in one of the
cluster's texts (導入補助 + 入補助金 → 導入補助金; it + 導入補助金 → it導入補助金). Up to
``top_n`` pieces are joined with " / ". Never empty: without any n-gram the first text (the
medoid, when the caller puts it first) truncated, or ``cluster <id>``.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer

from autonomath_pipelines.lib.textnorm import normalize_query

__all__ = ["cluster_labels", "char_ngrams"]

_CJK = ("\u1100-\u11ff\u3005-\u3007\u3040-\u309f\u30a0-\u30ff\u3130-\u318f\u31f0-\u31ff"
        "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f")
_TOKEN = re.compile(f"([{_CJK}]+)|([^\\W_{_CJK}]+)")
_PARTICLES = frozenset("のをにはがでとへもや")
NGRAM_MIN, NGRAM_MAX = 2, 4
#: Texts per cluster used for its label (highest weight first): bounds the cost on huge clusters.
MAX_TEXTS_PER_CLUSTER = 1000
_CANDIDATES = 40
_MAX_PIECE_CHARS = 24
_MAX_LABEL_CHARS = 60
_FALLBACK_CHARS = 30
_SEPARATOR = " / "


def char_ngrams(text: str) -> list[str]:
    """The n-grams of one text (see the module docstring); the analyzer of the vectorizer."""
    grams: list[str] = []
    for m in _TOKEN.finditer(normalize_query(text)):
        cjk, word = m.group(1), m.group(2)
        if cjk:
            if len(cjk) == 1:
                grams.append(cjk)
                continue
            for n in range(NGRAM_MIN, min(NGRAM_MAX, len(cjk)) + 1):
                grams.extend(cjk[i:i + n] for i in range(len(cjk) - n + 1))
        elif len(word) >= 2 or word.isdigit():
            grams.append(word)
    return grams


def _fallback(texts: Sequence[str], label: int) -> str:
    for t in texts:
        t = " ".join(str(t).split())
        if t:
            return t if len(t) <= _FALLBACK_CHARS else t[:_FALLBACK_CHARS - 1] + "…"
    return f"cluster {label}"


def _rank_key(gram: str, score: float) -> float:
    bonus = 1.0 + 0.2 * (min(len(gram), 6) - 2)
    if gram[0] in _PARTICLES or gram[-1] in _PARTICLES:
        bonus *= 0.6
    return score * bonus


def _merge_pieces(pieces: list[str], texts: Sequence[str]) -> list[str]:
    """Merge overlapping/touching pieces when the merged string occurs in a text."""
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
                    if len(joined) <= _MAX_PIECE_CHARS and any(joined in t for t in texts):
                        first = min(i, j)
                        pieces = [p for q, p in enumerate(pieces) if q not in (i, j)]
                        pieces.insert(min(first, len(pieces)), joined)
                        merged = True
                    break           # only the longest overlap is tried
                if merged:
                    break
            if merged:
                break
    return pieces


def _select(ranked: list[str], texts: Sequence[str], top_n: int) -> list[str]:
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
        chosen = _merge_pieces(chosen, texts)
        # A merge can make a piece contain another one: keep the longer.
        chosen = [c for c in chosen if not any(c != o and c in o for o in chosen)]
    return chosen


def cluster_labels(texts_by_cluster: Mapping[int, Sequence[str]],
                   weights_by_cluster: Mapping[int, Sequence[float]] | None = None,
                   top_n: int = 3) -> dict[int, str]:
    """A short readable label per cluster from its most distinctive character n-grams.

    texts_by_cluster: cluster id → its texts (the first one is the fallback label).
    weights_by_cluster: cluster id → one weight (count) per text; default 1 each. A cluster whose
        weights are all zero is counted with weight 1 each.
    top_n: at most this many pieces per label (after merging).
    Deterministic; works for a single cluster and for clusters of one text.
    """
    if isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)) or top_n < 1:
        raise ValueError(f"top_n must be an integer >= 1, got {top_n!r}")
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
    vectorizer = CountVectorizer(analyzer=char_ngrams)
    try:
        counts = vectorizer.fit_transform(all_texts)
    except ValueError:          # empty vocabulary: no text has an n-gram
        return out
    vocab = vectorizer.get_feature_names_out()
    membership = sp.csr_matrix((vals, (rows, np.arange(len(all_texts)))), shape=(len(labels), len(all_texts)))
    class_counts = sp.csr_matrix(membership @ counts, dtype=np.float64)      # clusters × n-grams
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
        keyed = sorted(((-_rank_key(g, s), -len(g), g) for g, s in zip(grams, score) if g),
                       key=lambda t: t)[:_CANDIDATES]
        chosen = _select([g for _, _, g in keyed], norm_texts[label], top_n)
        if chosen:
            text = _SEPARATOR.join(chosen)
            if len(text) > _MAX_LABEL_CHARS:
                text = text[:_MAX_LABEL_CHARS - 1] + "…"
            out[label] = text
    return out
