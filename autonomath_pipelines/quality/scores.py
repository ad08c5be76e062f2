"""Each loop's output scored against the planted truth, or an independent recomputation, with a baseline."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.contract.timestamps import iso_utc as iso
from autonomath_pipelines.demo.world import hallucination_family_of
from autonomath_pipelines.lib.textnorm import normalize_query
from autonomath_pipelines.quality.partitions import C_REPLAY_DAYS, JST, range_keys, window_of, world_end

#: Figures of the loops' own contracts the scores need; the run configs' defaults are read from the
#: loop modules (``loop_config``), these are module constants there too.
B_K = 3
C_TOP_K = 20
G_MIN_GROUP = 5
H_HEAD = 200
I_TOP_N = 500


# ------------------------------------------------------------------------------------------ metric


@dataclass
class Metric:
    """One row of the table. ``better``: higher | lower | equal | info. The verdict is computed."""

    loop: str
    metric: str
    value: float | int | None
    baseline: float | int | None = None
    baseline_label: str = ""
    better: str = "higher"
    #: Absolute requirement besides the baseline (higher: value >= target; lower: <=; equal: ==).
    target: float | int | None = None
    unit: str = "ratio"  # ratio | days | count | jpy | tau
    verdict: str = field(default="", init=False)
    criterion: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.value = _clean(self.value)
        self.baseline = _clean(self.baseline)
        self.verdict, self.criterion = self._judge()

    def _judge(self) -> tuple[str, str]:
        if self.better == "info":
            return "info", "informational"
        if self.value is None:
            return "n/a", "not computable on this world"
        checks: list[tuple[bool, str]] = []
        ref = self.target if self.target is not None else self.baseline
        if self.better == "equal":
            return ("pass" if self.value == ref else "FAIL"), f"= {format_value(ref, self.unit)}"
        sign = 1 if self.better == "higher" else -1
        op = "≥" if self.better == "higher" else "≤"
        if self.baseline is not None:
            checks.append((sign * (self.value - self.baseline) >= 0, f"{op} baseline"))
        if self.target is not None:
            checks.append((sign * (self.value - self.target) >= 0, f"{op} {format_value(self.target, self.unit)}"))
        if not checks:
            return "info", "no baseline"
        return ("pass" if all(ok for ok, _ in checks) else "FAIL"), ", ".join(text for _, text in checks)

    def row(self) -> list[str]:
        base = "—" if self.baseline is None else format_value(self.baseline, self.unit)
        if self.baseline_label and self.baseline is not None:
            base = f"{base} ({self.baseline_label})"
        verdict = self.verdict if self.verdict in ("info", "n/a") else f"{self.verdict} ({self.criterion})"
        return [self.loop, self.metric, format_value(self.value, self.unit), base, verdict]


def _clean(value):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return None if math.isnan(value) else round(value, 6)


def format_value(value, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "count":
        return f"{int(value):,}"
    if unit == "jpy":
        return f"¥{int(value):,}"
    if unit == "days":
        return f"{value:.2f} d"
    return f"{value:.3f}"


def round_figure(value: Any, digits: int = 6):
    """JSON-stable rounding of a float (NaN → None)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else round(value, digits)


def loop_config(letter: str, name: str = "CandidatesConfig"):
    """A loop's run-config class instantiated with its defaults (what ``run_loops`` runs with)."""
    import importlib

    module = importlib.import_module(f"autonomath_pipelines.loops.{loop_spec(letter).loop_id}")
    return getattr(module, name)()


# ------------------------------------------------------------------------------------------- scores


@dataclass
class Context:
    db: Any  # AutonomathDatabase (read-only reads)
    truth: dict
    partitions: dict[str, str]

    def window(self, letter: str) -> tuple[dt.datetime, dt.datetime]:
        return window_of(letter, self.partitions[letter])

    def read(self, sql: str, params: Sequence | dict = ()) -> pd.DataFrame:
        return self.db.read_frame(sql, params)


def _norm_series(values: pd.Series) -> pd.Series:
    unique = pd.unique(values.astype(str))
    mapping = {t: normalize_query(t) for t in unique}
    return values.astype(str).map(mapping)


def _intent_programs(truth: dict) -> dict[str, set]:
    """Normalized surface text → the programs of the planted intents it was generated for
    (an empty set: a hallucination intent, i.e. no program is right)."""
    program_of = {i["id"]: i["program_id"] for i in truth["intents"]}
    out: dict[str, set] = {}
    for intent_id, forms in truth["paraphrase_groups"].items():
        for form in forms:
            programs = out.setdefault(normalize_query(form["text"]), set())
            if program_of.get(intent_id):
                programs.add(program_of[intent_id])
    return out


def ari_with_noise(truth, predicted) -> float:
    from autonomath_pipelines.lib.scoring import ari_with_noise as ari  # sklearn: imported only when scoring

    return ari(truth, predicted)


def precision_recall(proposed: set, relevant: set) -> tuple[float, float]:
    from autonomath_pipelines.lib.scoring import precision_recall as pr

    return pr(proposed, relevant)


def longest_token(text: str) -> str:
    tokens = text.split()
    return max(tokens, key=len) if tokens else text


# --- A ------------------------------------------------------------------------------------------


def score_a(out: dict[str, pd.DataFrame], ctx: Context) -> tuple[list[Metric], dict]:
    truth = ctx.truth
    family_of = hallucination_family_of(truth)
    covered = {f["id"] for f in truth["hallucination_families"] if f["covered_by_guard"]}
    texts = out["hallucination_guard_texts"]
    clusters = out["hallucination_guard_clusters"]
    candidates = out["hallucination_guard_candidates"]

    in_family = clusters[clusters["text"].isin(family_of)]
    truth_labels = [family_of[t] for t in in_family["text"]]
    ari = ari_with_noise(truth_labels, in_family["cluster"].tolist())
    ari_base = ari_with_noise(truth_labels, [longest_token(t) for t in in_family["text"]])

    config = loop_config("A")
    min_weight, cap = float(config.min_cluster_size), int(config.max_candidates)
    weights = (
        texts.assign(family=texts["text"].map(family_of)).dropna(subset=["family"]).groupby("family")["weight"].sum()
    )
    seen = set(weights.index)
    wanted = {f for f, w in weights.items() if f not in covered and w >= min_weight}

    def judge(patterns: Sequence[str]) -> tuple[float, float, float, int, int]:
        fams = [family_of.get(p) for p in patterns]
        on_target = sum(f in wanted for f in fams)
        found = set(fams) - {None}
        precision = on_target / len(fams) if fams else float("nan")
        distinct = len(found & wanted) / len(fams) if fams else float("nan")
        recall = len(found & wanted) / len(wanted) if wanted else float("nan")
        duplicates = len(fams) - len(set(f if f else p for f, p in zip(fams, patterns)))
        return precision, distinct, recall, len(found & covered), duplicates

    precision, distinct, recall, leaked, duplicates = judge(candidates["pattern"].tolist())
    k = max(len(candidates), 1)
    top = texts.sort_values(["weight", "text"], ascending=[False, True], kind="mergesort")["text"].head(k).tolist()
    b_precision, b_distinct, b_recall, b_leaked, b_duplicates = judge(top)
    metrics = [
        Metric("A", "cluster ARI on planted hallucination-family texts", ari, ari_base, "longest-token grouping"),
        Metric(
            "A",
            "candidate precision (pattern of an uncovered family)",
            precision,
            b_precision,
            f"top-{k} suspect texts",
        ),
        Metric(
            "A",
            "candidates that are a new theme (distinct uncovered family)",
            distinct,
            b_distinct,
            f"top-{k} suspect texts",
        ),
        Metric(
            "A",
            f"recall of uncovered families with weight ≥ {min_weight:g}",
            recall,
            b_recall,
            f"top-{k} suspect texts",
        ),
        Metric(
            "A",
            "covered families re-proposed (leaks)",
            leaked,
            b_leaked,
            f"top-{k} suspect texts",
            better="lower",
            target=0,
            unit="count",
        ),
    ]
    details = {
        "suspect_texts": len(texts),
        "family_texts": len(in_family),
        "families_in_window": len(seen),
        "uncovered_families_wanted": sorted(wanted),
        "covered_families_in_window": sorted(seen & covered),
        "candidates": len(candidates),
        "duplicate_themes": duplicates,
        "max_candidates": cap,
        "recall_ceiling_at_cap": round_figure(min(1.0, cap / len(wanted))) if wanted else None,
        "candidate_families": [family_of.get(p) for p in candidates["pattern"]],
        "baseline": {
            "k": k,
            "precision": round_figure(b_precision),
            "recall": round_figure(b_recall),
            "duplicates": b_duplicates,
        },
    }
    return metrics, details


# --- B ------------------------------------------------------------------------------------------

#: What the service's identifiers look like: api keys, customer, subscriber and session ids.
ID_PATTERN = re.compile(r"\b(?:am_(?:int_)?[0-9a-f]{24,28}|cus_[0-9a-f]{12}|sub_[0-9a-f]{12}|s_[0-9a-f]{16})\b")


def jsonld_errors(text: str, *, min_count: int) -> list[str]:
    """An independent validator of a case page's JSON-LD (schema.org rules a rated item must meet)."""
    try:
        doc = json.loads(text)
    except (TypeError, ValueError):
        return ["not JSON"]
    if not isinstance(doc, dict):
        return ["not an object"]
    errors = []
    if str(doc.get("@context", "")).rstrip("/") not in ("https://schema.org", "http://schema.org"):
        errors.append("@context")
    if doc.get("@type") not in ("GovernmentService", "Service", "Product"):
        errors.append("@type")
    if not isinstance(doc.get("name"), str) or not doc["name"].strip():
        errors.append("name")
    rating = doc.get("aggregateRating")
    if not isinstance(rating, dict) or rating.get("@type") != "AggregateRating":
        return errors + ["aggregateRating"]
    try:
        value, best, worst = (
            float(rating.get(k, d)) for k, d in (("ratingValue", None), ("bestRating", 5), ("worstRating", 1))
        )
    except (TypeError, ValueError):
        return errors + ["rating numbers"]
    if not (worst < best and worst <= value <= best):
        errors.append("ratingValue range")
    count = rating.get("ratingCount", rating.get("reviewCount"))
    if not isinstance(count, int) or isinstance(count, bool) or count < max(1, min_count):
        errors.append("ratingCount")
    reviewed = rating.get("itemReviewed", doc)
    if not isinstance(reviewed, dict) or not str(reviewed.get("name", "")).strip():
        errors.append("itemReviewed")
    return errors


def score_b(out: dict[str, pd.DataFrame], ctx: Context) -> tuple[list[Metric], dict]:
    pages = out["testimonial_seo_candidates"]
    start, end = ctx.window("B")
    month = start.astimezone(JST).strftime("%Y-%m")
    groups = {(g["program_id"], g["prefecture_code"]): g for g in ctx.truth["success_groups"] if g["month"] == month}
    invalid = sum(bool(jsonld_errors(text, min_count=B_K)) for text in pages["jsonld"])
    valid_share = (len(pages) - invalid) / len(pages) if len(pages) else float("nan")
    planted_sizes = [
        groups.get((p, f), {}).get("consented", 0) for p, f in zip(pages["program_id"], pages["prefecture_code"])
    ]
    size_mismatch = sum(int(a) != int(b) for a, b in zip(planted_sizes, pages["group_size"]))
    eligible = {key for key, g in groups.items() if g["consented"] >= B_K}
    paged = set(zip(pages["program_id"], pages["prefecture_code"]))
    # Identifiers: every api key, customer and subscriber id, session id; customer text: every comment.
    secrets = set(
        ctx.read(
            "SELECT api_key AS v FROM api_keys UNION SELECT customer_id FROM api_keys "
            "UNION SELECT subscriber_id FROM subscribers"
        )["v"].dropna()
    )
    comments = set(
        ctx.read(
            "SELECT DISTINCT comment AS v FROM customer_success_events WHERE comment IS NOT NULL "
            "AND ts >= ? AND ts < ?",
            (iso(start), iso(end)),
        )["v"]
    )
    blobs = [f"{m}\n{j}\n{e}" for m, j, e in zip(pages["markdown"], pages["jsonld"], pages["evidence_json"])]
    leaks = sum(
        bool(ID_PATTERN.search(blob)) or any(x in blob for x in secrets) or any(c in blob for c in comments)
        for blob in blobs
    )
    min_group = int(min(planted_sizes)) if planted_sizes else None
    metrics = [
        Metric("B", "pages whose JSON-LD validates (independent validator)", valid_share, better="equal", target=1.0),
        Metric("B", f"smallest planted consented group behind a page (k = {B_K})", min_group, B_K, "k", unit="count"),
        Metric(
            "B", "pages whose size ≠ planted consented count", size_mismatch, better="equal", target=0, unit="count"
        ),
        Metric("B", "pages with an identifier or customer comment", leaks, better="equal", target=0, unit="count"),
        Metric(
            "B",
            f"planted groups with ≥ {B_K} consented events that got a page",
            len(eligible & paged) / len(eligible) if eligible else None,
            better="equal",
            target=1.0,
        ),
    ]
    details = {
        "month": month,
        "pages": len(pages),
        "invalid_jsonld": invalid,
        "eligible_groups": len(eligible),
        "pages_not_eligible": sorted(f"{p}-{f}" for p, f in paged - eligible),
        "planted_groups_in_month": len(groups),
        "secrets_checked": len(secrets),
        "comments_checked": len(comments),
    }
    return metrics, details


# --- C ------------------------------------------------------------------------------------------


def _hit_rate(cached: dict[str, set], requests: pd.DataFrame) -> float:
    if requests.empty:
        return float("nan")
    hits = [t in cached.get(c, ()) for c, t in zip(requests["customer_id"], requests["text"])]
    return float(np.mean(hits))


def score_c(out: dict[str, pd.DataFrame], ctx: Context) -> tuple[list[Metric], dict]:
    cands = out["personalized_cache_candidates"]
    start, end = ctx.window("C")
    customers = sorted(cands["customer_id"].astype(str).unique())
    cached = {c: set(g) for c, g in cands.groupby("customer_id")["query_text"]}
    keys = ctx.read("SELECT api_key, customer_id FROM api_keys")
    owner = dict(zip(keys["api_key"], keys["customer_id"].astype(str)))
    nxt = ctx.read(
        "SELECT api_key, query_text FROM query_log WHERE ts >= ? AND ts < ?",
        (iso(end), iso(end + dt.timedelta(days=C_REPLAY_DAYS))),
    )
    nxt = nxt.assign(customer_id=nxt["api_key"].map(owner), text=_norm_series(nxt["query_text"]))
    nxt = nxt[nxt["customer_id"].isin(customers) & (nxt["text"] != "")]
    hist = ctx.read(
        "SELECT api_key, query_text, COUNT(*) AS n, MAX(ts) AS last FROM query_log "
        "WHERE ts >= ? AND ts < ? GROUP BY api_key, query_text",
        (iso(start), iso(end)),
    )
    hist = hist.assign(customer_id=hist["api_key"].map(owner), text=_norm_series(hist["query_text"]))
    mine = hist[hist["customer_id"].isin(customers) & (hist["text"] != "")]
    recent = (
        mine.groupby(["customer_id", "text"])["last"]
        .max()
        .reset_index()
        .sort_values(["customer_id", "last", "text"], ascending=[True, False, True], kind="mergesort")
    )
    recency = {c: set(g["text"].head(C_TOP_K)) for c, g in recent.groupby("customer_id")}
    totals = hist[hist["text"] != ""].groupby("text")["n"].sum().reset_index()
    top = set(totals.sort_values(["n", "text"], ascending=[False, True], kind="mergesort")["text"].head(C_TOP_K))
    personal = _hit_rate(cached, nxt)
    by_recency = _hit_rate(recency, nxt)
    by_global = _hit_rate({c: top for c in customers}, nxt)
    loyal = [lc for lc in ctx.truth["loyal_customers"]]
    window_requests = hist.groupby("customer_id")["n"].sum()
    loyal_eligible = [lc["customer_id"] for lc in loyal if window_requests.get(lc["customer_id"], 0) >= 50]
    loyal_served = [c for c in loyal_eligible if c in cached]
    fav_precision = []
    for lc in loyal:
        if lc["customer_id"] in cached:
            favs = {normalize_query(t) for t in lc["favourites"]}
            fav_precision.append(len(cached[lc["customer_id"]] & favs) / len(favs))
    metrics = [
        Metric(
            "C",
            "next-week hit rate of the personal caches",
            personal,
            by_recency,
            f"each customer's last {C_TOP_K} distinct queries",
        ),
        Metric("C", "next-week hit rate of the personal caches", personal, by_global, f"global top-{C_TOP_K}"),
        Metric(
            "C",
            "planted loyal customers (≥ 50 requests) given a cache",
            len(loyal_served) / len(loyal_eligible) if loyal_eligible else None,
            better="equal",
            target=1.0,
        ),
    ]
    details = {
        "customers": len(customers),
        "cache_rows": len(cands),
        "next_week_requests": len(nxt),
        "replay_window": [iso(end), iso(end + dt.timedelta(days=C_REPLAY_DAYS))],
        "hit_rate_recency": round_figure(by_recency),
        "hit_rate_global_top": round_figure(by_global),
        "loyal_eligible": len(loyal_eligible),
        "loyal_served": len(loyal_served),
        "loyal_favourites_cached_mean": round_figure(np.mean(fav_precision)) if fav_precision else None,
    }
    return metrics, details


# --- D ------------------------------------------------------------------------------------------


def score_d(out: dict[str, pd.DataFrame], ctx: Context) -> tuple[list[Metric], dict]:
    cands = out["forecast_accuracy_candidates"]
    rows = ctx.read(
        "SELECT p.program_id, p.round_id, p.predicted_at, r.resolved_at, "
        "(julianday(p.predicted_opens_at) - julianday(r.opens_at)) AS e "
        "FROM forecast_predictions p JOIN am_application_round r ON r.round_id = p.round_id "
        "WHERE r.status = 'resolved'"
    )
    planted = ctx.truth["forecast_bias_days"]
    world_end_iso = ctx.truth.get("window_end") or iso(world_end(dt.date.fromisoformat(ctx.truth["as_of"])))
    keys = range_keys("D", ctx.partitions["D"])
    scored, origins = [], []
    last_fit: tuple[dict, pd.Series] = ({}, pd.Series(dtype=float))
    for i, key in enumerate(keys):
        _, end = window_of("D", key)
        next_end = min(iso(window_of("D", keys[i + 1])[1]), world_end_iso) if i + 1 < len(keys) else world_end_iso
        train = rows[(rows["resolved_at"] < iso(end)) & (rows["predicted_at"] < iso(end))]
        unpooled = train.groupby("program_id")["e"].mean()  # recomputed here, not read from the loop
        mine = cands[cands["partition_key"] == key]
        loop_bias = dict(zip(mine["program_id"], mine["bias_days"].astype(float)))
        test = rows[(rows["resolved_at"] >= iso(end)) & (rows["resolved_at"] < next_end)]
        test = test[test["program_id"].isin(loop_bias)]
        scored.append(
            test.assign(
                origin=key,
                loop=test["program_id"].map(loop_bias),
                unpooled=test["program_id"].map(unpooled),
                planted=test["program_id"].map(planted),
            )
        )
        origins.append({"origin": key, "train": len(train), "held_out": len(test), "calibrated": len(loop_bias)})
        last_fit = (loop_bias, unpooled)
    held = (
        pd.concat(scored, ignore_index=True) if scored else pd.DataFrame(columns=["e", "loop", "unpooled", "planted"])
    )
    e = held["e"].to_numpy(float)

    def mae(correction: str | None) -> float:
        if not len(e):
            return float("nan")
        return float(np.mean(np.abs(e - (held[correction].to_numpy(float) if correction else 0.0))))

    loop_bias, unpooled = last_fit
    programs = [p for p in loop_bias if p in planted and p in unpooled]
    err_loop = float(np.mean([abs(loop_bias[p] - planted[p]) for p in programs])) if programs else float("nan")
    err_unpooled = float(np.mean([abs(unpooled[p] - planted[p]) for p in programs])) if programs else float("nan")
    mismatch = sum(
        abs(float(m) - float(unpooled.get(p, np.nan))) > 1e-6
        for p, m in zip(
            cands.loc[cands["partition_key"] == keys[-1], "program_id"],
            cands.loc[cands["partition_key"] == keys[-1], "mean_error_days"],
        )
    )
    metrics = [
        Metric(
            "D",
            "held-out MAE, forecasts corrected by the loop",
            mae("loop"),
            mae(None),
            "no correction",
            better="lower",
            unit="days",
        ),
        Metric(
            "D",
            "held-out MAE, forecasts corrected by the loop",
            mae("loop"),
            mae("unpooled"),
            "unpooled per-program mean",
            better="lower",
            unit="days",
        ),
        Metric(
            "D",
            "mean |estimated − planted bias| per program (last origin)",
            err_loop,
            err_unpooled,
            "unpooled per-program mean",
            better="lower",
            unit="days",
        ),
    ]
    details = {
        "origins": origins,
        "held_out_predictions": len(held),
        "held_out_programs": int(held["program_id"].nunique()) if len(held) else 0,
        "mae_none": round_figure(mae(None)),
        "mae_unpooled": round_figure(mae("unpooled")),
        "mae_loop": round_figure(mae("loop")),
        "mae_oracle_planted_bias": round_figure(mae("planted")),
        "programs_compared_to_planted": len(programs),
        "unpooled_mean_mismatches_vs_loop": int(mismatch),
    }
    return metrics, details


# --- E ------------------------------------------------------------------------------------------


def score_e(out: dict[str, pd.DataFrame], ctx: Context) -> tuple[list[Metric], dict]:
    clusters, cands = out["alias_expansion_clusters"], out["alias_expansion_candidates"]
    start, end = ctx.window("E")
    planted: dict[tuple[str, str], dict] = {}
    for a in ctx.truth["planted_aliases"]:
        key = (a["program_id"], normalize_query(a["surface"]))
        entry = planted.setdefault(key, {"in_am_alias": False, "langs": set(), "intents": set(), "kind": a["kind"]})
        entry["in_am_alias"] |= bool(a["in_am_alias"])
        entry["langs"].add(a["lang"])
        entry["intents"].add(a["intent_id"])
    rows = ctx.read(
        "SELECT top1_program_id AS program_id, query_text, COUNT(*) AS n FROM query_log "
        "WHERE ts >= ? AND ts < ? AND confidence < 0.5 AND top1_program_id IS NOT NULL "
        "AND result_count BETWEEN 1 AND 2 GROUP BY top1_program_id, query_text",
        (iso(start), iso(end)),
    )
    rows = rows.assign(surface=_norm_series(rows["query_text"]))
    counts = rows[rows["surface"] != ""].groupby(["program_id", "surface"])["n"].sum()
    relevant_1 = {k for k, v in planted.items() if not v["in_am_alias"] and counts.get(k, 0) >= 1}
    relevant_2 = {k for k in relevant_1 if counts.get(k, 0) >= 2}
    proposed = set(zip(cands["entity_id"], cands["surface"]))
    precision, recall_1 = precision_recall(proposed, relevant_1)
    _, recall_2 = precision_recall(proposed, relevant_2)
    # Baseline: every surface of the window minus am_alias and the program's name (no clustering).
    aliases = ctx.read("SELECT entity_id, surface FROM am_alias")
    names = ctx.read("SELECT program_id, name FROM programs")
    known = set(zip(aliases["entity_id"], _norm_series(aliases["surface"]))) | set(
        zip(names["program_id"], _norm_series(names["name"]))
    )
    existing_programs = set(names["program_id"])
    naive = {k for k in counts.index if k not in known and k[0] in existing_programs}
    b_precision, b_recall_1 = precision_recall(naive, relevant_1)
    _, b_recall_2 = precision_recall(naive, relevant_2)
    matched = cands[[k in planted for k in zip(cands["entity_id"], cands["surface"])]]
    lang_ok = [
        lang in planted[(e, s)]["langs"]
        for e, s, lang in zip(matched["entity_id"], matched["surface"], matched["lang"])
    ]
    lang_acc = float(np.mean(lang_ok)) if lang_ok else float("nan")
    truth_langs = [sorted(planted[(e, s)]["langs"])[0] for e, s in zip(matched["entity_id"], matched["surface"])]
    majority = max(set(truth_langs), key=truth_langs.count) if truth_langs else None
    lang_base = (
        float(np.mean([majority in planted[(e, s)]["langs"] for e, s in zip(matched["entity_id"], matched["surface"])]))
        if truth_langs
        else float("nan")
    )
    in_truth = clusters[[k in planted for k in zip(clusters["entity_id"], clusters["surface"])]]
    truth_labels = ["|".join(sorted(planted[k]["intents"])) for k in zip(in_truth["entity_id"], in_truth["surface"])]
    predicted = [f"{e}#{c}" if c != -1 else -1 for e, c in zip(in_truth["entity_id"], in_truth["cluster"])]
    ari = ari_with_noise(truth_labels, predicted)
    ari_base = ari_with_noise(truth_labels, list(in_truth["entity_id"]))
    # Alias sets: each program's planted forms together, everything else (noise answers) apart.
    keys_all = list(zip(clusters["entity_id"], clusters["surface"]))
    set_truth = [
        e if k in relevant_1 else f"noise-{i}" for i, (k, e) in enumerate(zip(keys_all, clusters["entity_id"]))
    ]
    set_ari = ari_with_noise(
        set_truth, [e if c != -1 else -1 for e, c in zip(clusters["entity_id"], clusters["cluster"])]
    )
    set_base = ari_with_noise(set_truth, list(clusters["entity_id"]))
    metrics = [
        Metric(
            "E",
            "alias precision (planted, absent from am_alias)",
            precision,
            b_precision,
            "every surface seen, no clustering",
        ),
        Metric(
            "E",
            "alias recall, planted forms with ≥ 2 rows in the window",
            recall_2,
            b_recall_2,
            "every surface seen, no clustering",
            better="info",
        ),
        Metric(
            "E",
            "alias recall, planted forms with ≥ 1 row in the window",
            recall_1,
            b_recall_1,
            "every surface seen, no clustering",
            better="info",
        ),
        Metric("E", "language accuracy of matched proposals", lang_acc, lang_base, f"always '{majority}'"),
        Metric(
            "E",
            "alias-set ARI (each program's planted forms vs noise answers)",
            set_ari,
            set_base,
            "every surface in its program's set",
        ),
        Metric(
            "E",
            "per-program cluster ARI vs planted intents (languages apart?)",
            ari,
            ari_base,
            "one cluster per program",
        ),
    ]
    cap = int(loop_config("E").max_candidates)
    details = {
        "candidates": len(cands),
        "relevant_1plus": len(relevant_1),
        "relevant_2plus": len(relevant_2),
        "max_candidates": cap,
        "recall_2plus_ceiling_at_cap": round_figure(min(1.0, cap / len(relevant_2))) if relevant_2 else None,
        "naive_surfaces": len(naive),
        "naive_precision": round_figure(b_precision),
        "proposed_but_in_am_alias": sum(1 for k in proposed if k in planted and planted[k]["in_am_alias"]),
        "proposed_not_planted": len(proposed - set(planted)),
        "recall_2plus_by_kind": {
            kind: round_figure(np.mean([k in proposed for k in relevant_2 if planted[k]["kind"] == kind]))
            for kind in sorted({planted[k]["kind"] for k in relevant_2})
        },
        "clustered_planted_surfaces": len(in_truth),
    }
    return metrics, details


# --- F ------------------------------------------------------------------------------------------

F_COLUMNS = (
    "signups_28d",
    "paid_28d",
    "charges_jpy",
    "refunds_jpy",
    "revenue_28d_jpy",
    "paying_subscribers",
    "requests_28d",
    "active_keys",
)


def channel_of(utm) -> str:
    if utm is None or (isinstance(utm, float) and math.isnan(utm)):
        return "(unknown)"
    return "(empty)" if str(utm).strip() == "" else str(utm)


def recompute_channels(ctx: Context, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """Loop F's table rebuilt in pandas from the raw rows (no shared SQL with the loop)."""
    subs = ctx.read("SELECT subscriber_id, api_key, utm_source, signed_up_at, plan FROM subscribers")
    subs["channel"] = [channel_of(u) for u in subs["utm_source"]]
    bills = ctx.read(
        "SELECT subscriber_id, event_type, amount_jpy FROM billing_events WHERE ts >= ? AND ts < ?",
        (iso(start), iso(end)),
    )
    reqs = ctx.read(
        "SELECT api_key, COUNT(*) AS n FROM query_log WHERE ts >= ? AND ts < ? GROUP BY api_key", (iso(start), iso(end))
    )
    table: dict[str, dict[str, int]] = {}

    def add(channel: str, column: str, amount: int) -> None:
        table.setdefault(channel, dict.fromkeys(F_COLUMNS, 0))[column] += int(amount)

    new = subs[(subs["signed_up_at"] >= iso(start)) & (subs["signed_up_at"] < iso(end))]
    for channel, plan in zip(new["channel"], new["plan"]):
        add(channel, "signups_28d", 1)
        add(channel, "paid_28d", plan == "paid")
    channel_by_sub = dict(zip(subs["subscriber_id"], subs["channel"]))
    payers: dict[str, set] = {}
    for sub, kind, amount in zip(bills["subscriber_id"], bills["event_type"], bills["amount_jpy"]):
        channel = channel_by_sub.get(sub, "(unattributed)")
        add(
            channel, "charges_jpy" if kind == "charge" else "refunds_jpy", amount if kind in ("charge", "refund") else 0
        )
        if kind == "charge":
            payers.setdefault(channel, set()).add(sub)
    for channel, subs_paying in payers.items():
        add(channel, "paying_subscribers", len(subs_paying))
    owners = (
        subs.dropna(subset=["api_key"])
        .sort_values(["signed_up_at", "subscriber_id"], kind="mergesort")
        .drop_duplicates("api_key", keep="last")
    )
    owner = dict(zip(owners["api_key"], owners["channel"]))
    for key, n in zip(reqs["api_key"], reqs["n"]):
        if key in owner:
            add(owner[key], "requests_28d", n)
            add(owner[key], "active_keys", 1)
    frame = pd.DataFrame.from_dict(table, orient="index").rename_axis("channel").reset_index()
    if not frame.empty:
        frame["revenue_28d_jpy"] = frame["charges_jpy"] - frame["refunds_jpy"]
    return frame


def score_f(out: dict[str, pd.DataFrame], ctx: Context) -> tuple[list[Metric], dict]:
    loop = out["channel_roi_candidates"].set_index("channel")
    start, end = ctx.window("F")
    mine = recompute_channels(ctx, start, end).set_index("channel")
    channels = sorted(set(loop.index) | set(mine.index))
    cells = mismatches = 0
    differing = []
    for channel in channels:
        for column in F_COLUMNS:
            cells += 1
            a = int(loop.loc[channel, column]) if channel in loop.index else None
            b = int(mine.loc[channel, column]) if channel in mine.index else 0
            if a != b:
                mismatches += 1
                differing.append([channel, column, a, b])
    billing = ctx.read(
        "SELECT COALESCE(SUM(CASE WHEN event_type = 'charge' THEN amount_jpy END), 0) - "
        "COALESCE(SUM(CASE WHEN event_type = 'refund' THEN amount_jpy END), 0) AS net "
        "FROM billing_events WHERE ts >= ? AND ts < ?",
        (iso(start), iso(end)),
    )["net"].iloc[0]
    planted = ctx.truth.get("channels", {})
    named = {("(null)" if c == "(unknown)" else c): r for c, r in loop.iterrows()}
    pairs = [
        (planted[c]["paid_rate"], float(r["paid_rate"]))
        for c, r in named.items()
        if c in planted and not pd.isna(r["paid_rate"])
    ]
    spearman = (
        float(pd.Series([p for p, _ in pairs]).corr(pd.Series([o for _, o in pairs]), method="spearman"))
        if len(pairs) >= 3
        else float("nan")
    )
    metrics = [
        Metric(
            "F",
            f"channel cells ≠ independent recomputation (of {cells})",
            mismatches,
            better="equal",
            target=0,
            unit="count",
        ),
        Metric(
            "F",
            "total net revenue of the channels",
            int(loop["revenue_28d_jpy"].sum()),
            int(billing),
            "Σ billing_events, no join",
            better="equal",
            unit="jpy",
        ),
        Metric("F", "paid-rate rank correlation with planted channel quality", spearman, better="info"),
    ]
    details = {
        "channels": channels,
        "cells": cells,
        "differing": differing[:20],
        "window": [iso(start), iso(end)],
        "signups": int(loop["signups_28d"].sum()),
        "channels_with_paid_rate": len(pairs),
    }
    return metrics, details


# --- G ------------------------------------------------------------------------------------------


def score_g(out: dict[str, pd.DataFrame], ctx: Context) -> tuple[list[Metric], dict]:
    groups, cands = out["invariant_expansion_groups"], out["invariant_expansion_candidates"]
    start, end = ctx.window("G")
    errors = ctx.read(
        "SELECT id, exception_type FROM error_log WHERE ts >= ? AND ts < ? ORDER BY id", (iso(start), iso(end))
    )
    truth_mode = {int(k): v for k, v in ctx.truth["error_modes"].items()}
    malformed = {int(k) for k in ctx.truth.get("error_malformed", {})}
    exc = groups[groups["kind"] == "exception"]
    group_of: dict[int, str] = {}
    for mode, ids in zip(exc["mode"], exc["ids"]):
        for i in ids:
            group_of[int(i)] = mode
    ids = errors["id"].astype(int).tolist()
    labels = [truth_mode[i] for i in ids]
    predicted = [group_of.get(i, -1) for i in ids]
    ari = ari_with_noise(labels, predicted)
    ari_base = ari_with_noise(labels, [t if isinstance(t, str) and t else -1 for t in errors["exception_type"]])
    # Majority planted mode of each loop group.
    majority: dict[str, str] = {}
    for mode in exc["mode"]:
        members = [truth_mode[i] for i, g in group_of.items() if g == mode and i in truth_mode]
        majority[mode] = max(sorted(set(members)), key=members.count) if members else ""
    counts = pd.Series(labels).value_counts()
    eligible = set(counts[counts >= G_MIN_GROUP].index)
    stubs = cands[cands["kind"] == "exception"]
    stub_modes = [majority.get(m, "") for m in stubs["mode"]]
    recall = len(set(stub_modes) & eligible) / len(eligible) if eligible else float("nan")
    precision = len(set(stub_modes) - {""}) / len(stub_modes) if stub_modes else float("nan")
    broken = [i for i in ids if i in malformed]
    placed = (
        float(np.mean([majority.get(group_of.get(i, ""), None) == truth_mode[i] for i in broken]))
        if broken
        else float("nan")
    )
    metrics = [
        Metric("G", "error grouping ARI vs planted failure modes", ari, ari_base, "group by logged exception type"),
        Metric("G", f"planted modes with ≥ {G_MIN_GROUP} errors that got a stub", recall, better="equal", target=1.0),
        Metric("G", "stubs per distinct planted mode (1 = no duplicates)", precision, better="equal", target=1.0),
        Metric("G", "truncated/headless traces placed in their mode's group", placed, better="info"),
    ]
    details = {
        "errors_in_window": len(ids),
        "groups": len(exc),
        "ungrouped_errors": sum(p == -1 for p in predicted),
        "planted_modes_in_window": int(len(counts)),
        "eligible_modes": sorted(eligible),
        "exception_stubs": len(stubs),
        "wrong_answer_stubs": int((cands["kind"] == "wrong_answer").sum()),
        "malformed_in_window": len(broken),
        "stub_modes": stub_modes,
    }
    return metrics, details


# --- H ------------------------------------------------------------------------------------------


def score_h(out: dict[str, pd.DataFrame], ctx: Context) -> tuple[list[Metric], dict]:
    cands = out["cache_warming_candidates"]
    _, end = ctx.window("H")
    cached = set(cands["query_text"])
    nxt = ctx.read(
        "SELECT query_text FROM query_log WHERE ts >= ? AND ts < ?", (iso(end), iso(end + dt.timedelta(days=1)))
    )
    nxt_text = _norm_series(nxt["query_text"])
    nxt_text = nxt_text[nxt_text != ""]
    hist = ctx.read(
        "SELECT query_text, COUNT(*) AS n, MAX(ts) AS last FROM query_log WHERE ts < ? GROUP BY query_text", (iso(end),)
    )
    hist = hist.assign(text=_norm_series(hist["query_text"]))
    hist = hist[hist["text"] != ""].groupby("text").agg(n=("n", "sum"), last=("last", "max")).reset_index()
    recency = set(hist.sort_values(["last", "text"], ascending=[False, True], kind="mergesort")["text"].head(H_HEAD))
    all_time = set(hist.sort_values(["n", "text"], ascending=[False, True], kind="mergesort")["text"].head(H_HEAD))
    counts = nxt_text.value_counts()
    oracle = set(counts.sort_index().sort_values(ascending=False, kind="mergesort").head(H_HEAD).index)

    def rate(cache: set) -> float:
        return float(nxt_text.isin(cache).mean()) if len(nxt_text) else float("nan")

    metrics = [
        Metric(
            "H", "next-day hit rate of the warmed head", rate(cached), rate(recency), f"last {H_HEAD} distinct queries"
        ),
        Metric("H", "next-day hit rate of the warmed head", rate(cached), rate(all_time), f"all-time top {H_HEAD}"),
    ]
    details = {
        "cached": len(cached),
        "next_day_requests": int(len(nxt_text)),
        "replay_day_end": iso(end + dt.timedelta(days=1)),
        "oracle_next_day_top": round_figure(rate(oracle)),
        "recency": round_figure(rate(recency)),
        "all_time": round_figure(rate(all_time)),
    }
    return metrics, details


# --- I ------------------------------------------------------------------------------------------


def recompute_priorities(ctx: Context, end: dt.datetime) -> pd.DataFrame:
    """priority = 0.6·staleness_days + 0.3·tier_weight + 0.1·change_signal, from the raw rows."""
    programs = ctx.read("SELECT program_id, source_url, tier, source_fetched_at FROM programs")
    signals = ctx.read(
        "SELECT id, source_url, observed_at, http_status, last_modified FROM source_change_signals "
        "WHERE observed_at < ?",
        (iso(end),),
    )
    signals = signals[
        (signals["http_status"] < 500)
        & (signals["http_status"] != 429)
        & signals["source_url"].isin(set(programs["source_url"]))
    ]
    latest = signals.sort_values(["source_url", "observed_at", "id"], kind="mergesort").drop_duplicates(
        "source_url", keep="last"
    )
    frame = programs.merge(latest, on="source_url", how="left")
    as_of = pd.Timestamp(end)
    fetched = pd.to_datetime(frame["source_fetched_at"], utc=True)
    stale = ((as_of - fetched).dt.total_seconds() / 86_400).clip(lower=0)
    tier = frame["tier"].map({"S": 100.0, "A": 60.0, "B": 30.0, "C": 10.0}).fillna(0.0)
    modified = pd.to_datetime(frame["last_modified"], utc=True)
    status = frame["http_status"]
    changed = (status == 200) & (modified.isna() | (modified > fetched))
    gone = status.isin([404, 410])
    change = np.where(changed | gone, 100.0, 0.0)
    frame["priority"] = 0.6 * stale + 0.3 * tier + 0.1 * change
    frame["staleness"] = stale
    return frame


def score_i(out: dict[str, pd.DataFrame], ctx: Context) -> tuple[list[Metric], dict]:
    from scipy.stats import kendalltau

    queue = out["doc_freshness_candidates"]
    _, end = ctx.window("I")
    mine = recompute_priorities(ctx, end)
    ranked = mine.sort_values(["priority", "program_id"], ascending=[False, True], kind="mergesort").drop_duplicates(
        "source_url"
    )
    n = len(queue)
    top = ranked.head(n)
    overlap = len(set(top["source_url"]) & set(queue["source_url"])) / n if n else float("nan")
    mine_by_url = ranked.set_index("source_url")["priority"]
    paired = queue.assign(independent=queue["source_url"].map(mine_by_url))
    tau = float(kendalltau(paired["priority"], paired["independent"]).statistic) if n > 1 else float("nan")
    max_diff = float((paired["priority"] - paired["independent"]).abs().max()) if n else float("nan")
    planted = {
        p
        for p, at in {**ctx.truth.get("changed_sources", {}), **ctx.truth.get("gone_sources", {})}.items()
        if at < iso(end)
    }
    queued = set(queue["program_id"])
    stale_only = set(
        mine.sort_values(["staleness", "program_id"], ascending=[False, True], kind="mergesort")
        .drop_duplicates("source_url")["program_id"]
        .head(n)
    )
    recall = len(planted & queued) / len(planted) if planted else float("nan")
    recall_base = len(planted & stale_only) / len(planted) if planted else float("nan")
    metrics = [
        Metric(
            "I", "Kendall τ, loop priority vs independent recomputation", tau, better="higher", target=0.999, unit="tau"
        ),
        Metric("I", f"top-{n} overlap with the independent ranking", overlap, better="equal", target=1.0),
        Metric("I", "planted changed/gone pages in the queue", recall, recall_base, f"staleness-only top {n}"),
    ]
    details = {
        "queued": n,
        "programs": len(mine),
        "max_abs_priority_difference": round_figure(max_diff, 9),
        "planted_changed_or_gone_before_end": len(planted),
        "as_of": iso(end),
    }
    return metrics, details


# --- J ------------------------------------------------------------------------------------------


def score_j(out: dict[str, pd.DataFrame], ctx: Context) -> tuple[list[Metric], dict]:
    cands = out["gold_expansion_candidates"]
    start, end = ctx.window("J")
    programs_of = _intent_programs(ctx.truth)
    correct = [p in programs_of.get(q, set()) for q, p in zip(cands["query"], cands["expected_program_id"])]
    precision = float(np.mean(correct)) if correct else float("nan")
    rows = ctx.read(
        "SELECT session_id, query_text, top1_program_id, confidence FROM query_log WHERE ts >= ? AND ts < ?",
        (iso(start), iso(end)),
    )
    rows = rows.assign(q=_norm_series(rows["query_text"]))
    rows = rows[rows["q"] != ""]
    config = loop_config("J")
    min_conf = float(loop_config("J", "SnapshotConfig").min_confidence)
    min_sessions, cap = int(config.min_sessions), int(config.max_candidates)
    high = rows[rows["confidence"] >= min_conf].assign(null=lambda f: f["top1_program_id"].isna().astype(int))
    g = high.groupby("q").agg(
        programs=("top1_program_id", "nunique"),
        nulls=("null", "sum"),
        sessions=("session_id", "nunique"),
        program=("top1_program_id", "first"),
    )
    eligible = g[(g["programs"] == 1) & (g["nulls"] == 0) & (g["sessions"] >= min_sessions)].reset_index()
    # The loop keeps the best-evidenced max_candidates (sessions desc, then text): so does the rule here.
    rule = eligible.sort_values(["sessions", "q"], ascending=[False, True], kind="mergesort").head(cap)
    rule_set = set(zip(rule["q"], rule["program"]))
    loop_set = set(zip(cands["query"], cands["expected_program_id"]))
    agreement = len(rule_set & loop_set) / len(rule_set | loop_set) if rule_set | loop_set else float("nan")
    # Naive: every text asked in >= 5 sessions, labelled with its most frequent top-1 (any confidence).
    answered = rows.dropna(subset=["top1_program_id"])
    sessions = answered.groupby("q")["session_id"].nunique()
    frequent = (
        answered[answered["q"].isin(sessions[sessions >= min_sessions].index)]
        .groupby(["q", "top1_program_id"])
        .size()
        .reset_index(name="n")
        .sort_values(["q", "n", "top1_program_id"], ascending=[True, False, True], kind="mergesort")
        .drop_duplicates("q")
    )
    naive_ok = [p in programs_of.get(q, set()) for q, p in zip(frequent["q"], frequent["top1_program_id"])]
    naive_precision = float(np.mean(naive_ok)) if naive_ok else float("nan")
    aligned = iso(end) == ctx.truth.get("window_end")
    planted_rule = {(c["query_text"], c["program_id"]) for c in ctx.truth.get("gold_candidates", [])}
    metrics = [
        Metric(
            "J",
            "gold-row precision vs planted intents",
            precision,
            naive_precision,
            f"≥ {min_sessions} sessions, most frequent top-1",
        ),
        Metric("J", f"agreement with the rule recomputed, best {cap} (Jaccard)", agreement, better="equal", target=1.0),
    ]
    details = {
        "proposals": len(cands),
        "wrong": [[q, p] for q, p, ok in zip(cands["query"], cands["expected_program_id"], correct) if not ok][:10],
        "rule_eligible": len(eligible),
        "rule_recomputed": len(rule_set),
        "max_candidates": cap,
        "naive_rows": len(frequent),
        "naive_wrong": int(len(naive_ok) - sum(naive_ok)),
        "planted_rule_window_aligned": aligned,
        "planted_rule_jaccard": round_figure(len(planted_rule & loop_set) / len(planted_rule | loop_set))
        if aligned and planted_rule | loop_set
        else None,
    }
    return metrics, details


SCORERS = {
    "A": score_a,
    "B": score_b,
    "C": score_c,
    "D": score_d,
    "E": score_e,
    "F": score_f,
    "G": score_g,
    "H": score_h,
    "I": score_i,
    "J": score_j,
}

NOTES = [
    "Every loop ran once through `orchestrator.run_loops` (Dagster in-process, ephemeral instance, dry run; the "
    "database's SHA-256 is the same before and after) on the partition listed above; the scores read the "
    "candidates (and A's/E's clusters, G's groups) from that run's Parquet storage.",
    "A: the truth lists the hallucination families and their texts; recall counts the uncovered families whose "
    "weight in the window (requests + weighted wrong-answer reports) reaches the loop's minimum theme size "
    "(min_cluster_size), since a family asked twice cannot be a theme; 'new theme' counts each family once (a "
    "family split over several candidates counts once). ARI: noise = singletons. The loop proposes at most "
    "max_candidates (20) a run, which bounds recall (ceiling in the JSON).",
    "B: the truth has no 'valid JSON-LD' label, so validity is an independent validator of what a rated schema.org "
    "item needs; k-anonymity is checked against the planted consented counts per program × prefecture × month.",
    "C, H: the truth records the loyal customers' favourites but not a next-period answer key, so the replay uses "
    "the world's own next week (C) / next day (H) of query_log — what the cache would actually have served.",
    "D: rolling origin — the loop runs for every month from the one by which a third of the resolved forecasts "
    "are in; each month's calibration corrects the forecasts of the rounds resolved in the following month (only "
    "programs it calibrated; the same predictions for all three corrections). The unpooled mean is recomputed "
    "from the raw rows. The planted per-program bias gives the third score (and the oracle MAE in the JSON).",
    "E: relevant = planted alias forms absent from am_alias with ≥ 1 (≥ 2) matching rows in the 14-day window "
    "(counted from query_log); a form used once is noise by design (min_samples 2), and the loop proposes at most "
    "max_candidates (500) a run, which bounds recall (ceiling in the JSON): recall is informational. "
    "The truth has no 'similar forms' grouping: the alias-set ARI puts each program's planted forms in one set and "
    "every other surface (wrong answers) alone; the intent ARI asks whether the per-program clusters follow the "
    "planted intents, i.e. whether translations of one intent land together.",
    "F: the truth has planted channel rates, not exact totals; exactness is against a pandas recomputation from "
    "subscribers, billing_events and query_log that shares no SQL with the loop.",
    "G: ARI over the error_log rows of the month (ungrouped rows = singletons); a stub's mode is the majority "
    "planted mode of its group.",
    "I: the priority is a formula, so the truth cannot rank; agreement is with an independent pandas "
    "recomputation. The planted changed/gone pages check what the change term adds over staleness alone.",
    "J: the truth's gold_candidates apply the loop's own rule, so precision uses the planted intents instead: "
    "a proposal is right when its text was generated for the program it names. The recomputed rule keeps the "
    "best-evidenced max_candidates (1000), as the loop does.",
]
