"""The planted truth of a demo world: what each loop should find, next to the database as ``<db>.truth.json``.

``truth_doc`` gathers it once every stage has run: the intents, their surface forms and row counts, the
hallucination families, planted aliases, loop J's gold candidates, loyal customers, the last day's top
texts, and what the stages recorded on the way (forecast bias, failure modes, feedback labels, success
groups, channels, source liveness). Its keys are documented in ``demo.world``'s docstring.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from autonomath_pipelines.contract.timestamps import iso_from_epoch as iso
from autonomath_pipelines.demo import text as tx
from autonomath_pipelines.demo.common import DAY, HALL, INTENT_KIND_NAMES, SURFACE_KIND_NAMES, ZIPF_EXPONENT, World
from autonomath_pipelines.lib.textnorm import normalize_query

TRUTH_VERSION = 1


def truth_path(db_path: str | os.PathLike) -> Path:
    """The planted-truth sidecar of a demo database: ``<db_path>.truth.json``."""
    p = Path(db_path)
    return p.with_name(p.name + ".truth.json")


def load_truth(db_path: str | os.PathLike) -> dict:
    return json.loads(truth_path(db_path).read_text(encoding="utf-8"))


def hallucination_family_of(truth: dict) -> dict[str, str]:
    """Normalized text → id of the planted hallucination family it belongs to: the family's texts
    and every surface form of its intent (paraphrases, typos, widths)."""
    family_of: dict[str, str] = {}
    for family in truth["hallucination_families"]:
        forms = list(family["texts"]) + [f["text"] for f in truth["paraphrase_groups"].get(family["intent_id"], [])]
        for text in forms:
            family_of[normalize_query(text)] = family["id"]
    return family_of


def truth_doc(w: World) -> dict:
    """The truth document of a built world (``w.counts`` filled), less ``built_by``."""
    n_int = len(w.int_p)
    n_surf = len(w.s_int)
    surf_n = np.bincount(w.q_surf, minlength=n_surf)
    last14 = w.q_ts >= w.t_end - 14 * DAY
    surf_n14 = np.bincount(w.q_surf[last14], minlength=n_surf)
    progs = w.programs
    t: dict = {
        "version": TRUTH_VERSION,
        "scale": w.sc.name,
        "seed": w.seed,
        "as_of": w.as_of.isoformat(),
        "window_start": iso(w.t_start),
        "window_end": iso(w.t_end),
        "days": w.sc.days,
        "zipf_exponent": ZIPF_EXPONENT,
        "row_counts": dict(w.counts),
    }
    t["intents"] = [
        {
            "id": w.int_ids[i],
            "kind": INTENT_KIND_NAMES[w.int_kind[i]],
            "text": w.int_text[i],
            "program_id": progs[w.int_prog[i]].pid if w.int_prog[i] >= 0 else None,
            "family": w.families[w.int_family[i]][0] if w.int_family[i] >= 0 else None,
            "p": float(w.int_p[i]),
            "rank": i + 1,
        }
        for i in range(n_int)
    ]
    groups: dict[str, list] = {}
    for s_ in range(n_surf):
        groups.setdefault(w.int_ids[w.s_int[s_]], []).append(
            {"text": w.s_text[s_], "kind": SURFACE_KIND_NAMES[w.s_kind[s_]], "n": int(surf_n[s_])}
        )
    t["paraphrase_groups"] = groups
    fam_int = {int(w.int_family[i]): i for i in range(n_int) if w.int_kind[i] == HALL}
    fam_rows = np.bincount(w.int_family[w.q_intent][w.int_kind[w.q_intent] == HALL], minlength=max(1, len(w.families)))
    t["hallucination_families"] = [
        {
            "id": fid,
            "label": label,
            "guard_pattern": guard,
            "texts": [g["text"] for g in groups[w.int_ids[fam_int[fi]]]],
            "intent_id": w.int_ids[fam_int[fi]],
            "covered_by_guard": fi in w.guard_covered,
            "guard_patterns": w.guard_covered.get(fi, []),
            "decoy_program_ids": [progs[int(d)].pid for d in w.decoys[fi]],
            "rows": int(fam_rows[fi]),
            "feedback_ids": w.fam_feedback.get(fi, []),
        }
        for fi, (fid, label, guard, _texts) in enumerate(w.families)
    ]
    t["planted_aliases"] = [
        {
            "program_id": progs[d["program"]].pid,
            "surface": w.s_text[d["surface_idx"]],
            "lang": d["lang"],
            "kind": d["kind"],
            "in_am_alias": d["in_am_alias"],
            "intent_id": w.int_ids[d["intent"]],
            "rows": int(surf_n[d["surface_idx"]]),
            "rows_last_14d": int(surf_n14[d["surface_idx"]]),
        }
        for d in w.planted
    ]
    # loop J's rule on the last 30 days
    last30 = (w.q_ts >= w.t_end - 30 * DAY) & (w.q_conf >= 0.85) & (w.q_top1 >= 0)
    norm_of_surface = {}
    norm_ids = np.empty(n_surf, dtype=np.int64)
    norm_texts: list[str] = []
    for s_ in range(n_surf):
        k = tx.normalize(w.s_text[s_])
        if k not in norm_of_surface:
            norm_of_surface[k] = len(norm_texts)
            norm_texts.append(k)
        norm_ids[s_] = norm_of_surface[k]
    df = pd.DataFrame({"q": norm_ids[w.q_surf[last30]], "top1": w.q_top1[last30], "s": w.q_sess[last30]})
    g = df.groupby(["q", "top1"], sort=True)["s"].nunique().reset_index()
    g = g[g["s"] >= 5].sort_values(["s", "q", "top1"], ascending=[False, True, True], kind="stable")
    t["gold_candidates"] = [
        {"query_text": norm_texts[q], "program_id": progs[p].pid, "sessions": int(s)}
        for q, p, s in g.itertuples(index=False)
    ]
    last30_all = w.q_ts >= w.t_end - 30 * DAY
    kc = np.bincount(w.q_key[last30_all], minlength=len(w.keys))
    for d, k in zip(w.loyal_truth, w.loyal_keys):
        d["requests_last_30d"] = int(kc[k])
    t["loyal_customers"] = w.loyal_truth
    for key in (
        "forecast_bias_days",
        "pooled_bias_mean",
        "pooled_bias_sd",
        "forecast_noise_sd_days",
        "forecast_observed",
        "failure_modes",
        "error_modes",
        "error_malformed",
        "deploy_versions",
        "error_formats",
        "feedback_labels",
        "success_groups",
        "channels",
        "changed_sources",
        "gone_sources",
        "noisy_sources",
    ):
        t[key] = w.truth[key]
    last_day = w.q_ts >= w.t_end - DAY
    c = np.bincount(w.q_surf[last_day], minlength=n_surf)
    top = np.lexsort((np.arange(n_surf), -c))[:200]
    t["last_day_top_texts"] = [[w.s_text[s_], int(c[s_])] for s_ in top.tolist() if c[s_] > 0]
    return t
