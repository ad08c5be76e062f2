"""Cached payloads against the service's own answers (loops C and H; DESIGN §7).

A cache row is served instead of the service, so it must say what the service says. ``query_log``
records what the service answered to each request (``result_count``, ``top1_program_id``). Per
normalized query of the window:

- ``service_answered``: most of its requests (strictly more than half) got results;
- ``service_top1``: the program the service put first most often among those answered requests,
  and ``service_top1_share`` its share; the service's answer is *consistent* when that share is
  above one half (a query the service answers with a different program each time has no single
  answer to agree with);
- ``service_confidence``: the median confidence the service logged for that top-1; below
  ``CONFIDENT_AT`` the service itself marks the answer as a guess (the same line loops A and E draw).

Each candidate is then compared with its pre-executed payload, and decided:

- ``cache``: the payload answers as the service does (or the service gave no consistent top-1);
- ``withheld_service_empty``: the service answered nothing, the payload holds results — a cache
  would invent answers to a question the service declines (often a hallucination-prone ask);
- ``withheld_top1_disagrees``: the service's consistent top-1 is not the payload's top-1.

A withheld query is simply not cached: a cache miss falls through to the service, which is always
right. Two blocking gates judge the search itself: no empty payload for a query the service
answered, and a floor on the top-1 agreement rate over the queries the service answers consistently
*and* confidently (``top1_agreement``): a search that follows the service's known behaviour cannot be
expected to repeat its guesses — those are still withheld when they differ, and their agreement is
reported apart (``top1_agreement_all``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from autonomath_pipelines.lib.gates import Gate, GateResult
from autonomath_pipelines.lib.textnorm import normalize_query

SERVICE_COLUMNS = ["service_requests", "service_answered", "service_top1", "service_top1_share", "service_confidence"]
#: Service confidence below which its answer is a guess (``LowConfidenceSplit.low_confidence_below``).
CONFIDENT_AT = 0.5
CACHE = "cache"
WITHHELD_SERVICE_EMPTY = "withheld_service_empty"
WITHHELD_TOP1_DISAGREES = "withheld_top1_disagrees"
DECISIONS = (CACHE, WITHHELD_SERVICE_EMPTY, WITHHELD_TOP1_DISAGREES)
#: Default floor of the top-1 agreement gate (issue 13: cached top-1 agreement >= 95 %).
DEFAULT_AGREEMENT_FLOOR = 0.95


def service_answers(log: pd.DataFrame) -> pd.DataFrame:
    """One row per normalized query of ``log`` (columns ``query_text``, ``result_count``,
    ``top1_program_id``, ``confidence``), indexed by the normalized text, with ``SERVICE_COLUMNS``."""
    if not len(log):
        return pd.DataFrame(columns=SERVICE_COLUMNS, index=pd.Index([], name="query_text"))
    frame = pd.DataFrame(
        {
            "query_text": log["query_text"].astype(str).map(normalize_query),
            "answered": pd.to_numeric(log["result_count"], errors="coerce").fillna(0).to_numpy() > 0,
            "top1": log["top1_program_id"].where(log["top1_program_id"].notna(), None),
            "confidence": pd.to_numeric(log["confidence"], errors="coerce").to_numpy(dtype=float),
        }
    )
    frame = frame[frame["query_text"] != ""]
    grouped = frame.groupby("query_text", sort=True)
    out = pd.DataFrame({"service_requests": grouped.size(), "answered_requests": grouped["answered"].sum()})
    answered = frame[frame["answered"] & frame["top1"].notna()]
    modal = (
        answered.groupby(["query_text", "top1"])
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["query_text", "n", "top1"], ascending=[True, False, True], kind="mergesort")
        .drop_duplicates("query_text")
        .set_index("query_text")
    )
    out["service_top1"] = modal["top1"].reindex(out.index)
    out["service_top1_share"] = (
        modal["n"].reindex(out.index) / out["answered_requests"].where(out["answered_requests"] > 0)
    ).fillna(0.0)
    confidence = (
        answered.merge(modal[["top1"]], left_on=["query_text", "top1"], right_on=["query_text", "top1"])
        .groupby("query_text")["confidence"]
        .median()
    )
    out["service_confidence"] = confidence.reindex(out.index).fillna(0.0)
    out["service_answered"] = out["answered_requests"] * 2 > out["service_requests"]
    top1 = out["service_top1"].astype(object)
    out["service_top1"] = top1.where(out["service_answered"] & top1.notna(), None)
    return out[SERVICE_COLUMNS]


def with_service_answers(head: pd.DataFrame, answers: pd.DataFrame) -> pd.DataFrame:
    """``head`` (normalized ``query_text``) with the service's answer columns joined on."""
    if not len(head):
        return head.assign(
            service_requests=pd.Series(dtype=int),
            service_answered=pd.Series(dtype=bool),
            service_top1=pd.Series(dtype=object),
            service_top1_share=pd.Series(dtype=float),
            service_confidence=pd.Series(dtype=float),
        )
    joined = head.join(answers, on="query_text")
    joined["service_requests"] = joined["service_requests"].fillna(0).astype(int)
    joined["service_answered"] = joined["service_answered"].fillna(False).astype(bool)
    joined["service_top1_share"] = joined["service_top1_share"].fillna(0.0).astype(float)
    joined["service_confidence"] = joined["service_confidence"].fillna(0.0).astype(float)
    joined["service_top1"] = joined["service_top1"].astype(object).where(joined["service_top1"].notna(), None)
    return joined


def payload_top1(payload_json: str) -> str | None:
    results = json.loads(payload_json).get("results") or []
    return results[0].get("program_id") if results else None


def decide(candidates: pd.DataFrame) -> pd.DataFrame:
    """``candidates`` (``SERVICE_COLUMNS`` + ``payload_json`` + ``result_count``) with ``cached_top1``,
    ``top1_agrees`` (None where the service has no consistent top-1), ``top1_gated`` (the service's
    top-1 is consistent and confident: the agreement gate counts it) and ``cache_decision``."""
    out = candidates.copy()
    out["cached_top1"] = [payload_top1(p) for p in out["payload_json"]] if len(out) else []
    consistent = out["service_answered"] & out["service_top1"].notna() & (out["service_top1_share"] > 0.5)
    agrees = out["cached_top1"].to_numpy(dtype=object) == out["service_top1"].to_numpy(dtype=object)
    out["top1_agrees"] = pd.Series(np.where(consistent, agrees, None), index=out.index, dtype=object)
    out["top1_gated"] = consistent & (out["service_confidence"] >= CONFIDENT_AT)
    decision = np.full(len(out), CACHE, dtype=object)
    decision[(~out["service_answered"] & (out["service_requests"] > 0) & (out["result_count"] > 0)).to_numpy()] = (
        WITHHELD_SERVICE_EMPTY
    )
    decision[(consistent & ~agrees).to_numpy()] = WITHHELD_TOP1_DISAGREES
    out["cache_decision"] = decision
    return out


def agreement_summary(decided: pd.DataFrame) -> dict[str, float | int | None]:
    """Counts and rates of a decided frame, for metadata (numeric: the UI plots them per partition)."""

    def rate(mask: pd.Series) -> tuple[int, int, float | None]:
        n = int(mask.sum())
        agreeing = int(decided.loc[mask, "top1_agrees"].astype(bool).sum()) if n else 0
        return n, agreeing, (round(agreeing / n, 6) if n else None)

    empty_mask = pd.Series(dtype=bool)
    gated, gated_agreeing, gated_rate = rate(decided["top1_gated"].astype(bool) if len(decided) else empty_mask)
    comparable, agreeing, all_rate = rate(decided["top1_agrees"].notna() if len(decided) else empty_mask)
    answered = decided["service_answered"] if len(decided) else pd.Series(dtype=bool)
    empty = int((answered & (decided["result_count"] == 0)).sum()) if len(decided) else 0
    counts = decided["cache_decision"].value_counts() if len(decided) else pd.Series(dtype=int)
    return {
        "service_answered_queries": int(answered.sum()),
        "empty_payloads_for_answered": empty,
        "top1_comparable": gated,
        "top1_agreeing": gated_agreeing,
        "top1_agreement": gated_rate,
        "top1_comparable_all": comparable,
        "top1_agreement_all": all_rate,
        **{f"decision_{d}": int(counts.get(d, 0)) for d in DECISIONS},
    }


def answered_not_empty() -> Gate:
    def evaluate(frame: pd.DataFrame) -> GateResult:
        empty = frame[frame["service_answered"] & (frame["result_count"] == 0)] if len(frame) else frame
        sample = ", ".join(repr(t) for t in empty["query_text"].head(5)) if len(empty) else ""
        return GateResult(
            len(empty) == 0,
            f"{len(empty)} empty payloads for queries the service answered" + (f": {sample}" if sample else ""),
            {"empty_for_answered": len(empty)},
        )

    return Gate(
        "no_empty_payload_for_answered_query",
        "No payload is empty for a query the service answered with results in the window (query_log).",
        evaluate,
    )


def top1_agreement_floor(floor: float = DEFAULT_AGREEMENT_FLOOR) -> Gate:
    def evaluate(frame: pd.DataFrame) -> GateResult:
        summary = agreement_summary(frame)
        rate, n = summary["top1_agreement"], summary["top1_comparable"]
        meta = {
            "top1_agreement": rate,
            "top1_comparable": n,
            "floor": floor,
            "top1_agreement_all": summary["top1_agreement_all"],
        }
        if rate is None:
            return GateResult(True, "no query with a consistent, confident service top-1 to compare", meta)
        return GateResult(
            rate >= floor,
            f"cached top-1 agrees with the service's on {rate:.1%} of {n} queries "
            f"it answers consistently and confidently (floor {floor:.0%})",
            meta,
        )

    return Gate(
        "top1_agrees_with_service",
        f"The cached top-1 is the top-1 the service logged most often, for at least {floor:.0%} of the "
        f"queries the service answers consistently with confidence >= {CONFIDENT_AT}; every query whose "
        "cached top-1 differs from a consistent service top-1 is withheld from the cache.",
        evaluate,
    )
