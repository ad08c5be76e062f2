"""Loop A's suspect texts: the window's badly answered asks, one row per normalized text.

A text is kept when at least ``min_suspect_share`` of its requests in the window were answered badly
(zero results, or a low-confidence answer that pins no program), or when customers reported it
without it being asked at all. A report on a text that is usually answered well points at stale
data, not a hallucination.
"""

from __future__ import annotations

import pandas as pd

from autonomath_pipelines.lib.textnorm import normalize_query

TEXT_COLUMNS = ["text", "requests", "text_requests", "suspect_share", "reports", "sessions", "weight", "comments"]


def suspect_texts(
    snapshot: pd.DataFrame, *, feedback_weight: float, min_suspect_share: float
) -> tuple[pd.DataFrame, int]:
    """The unique normalized texts of ``snapshot`` (loop A's snapshot: ``source``, ``text``,
    ``session_id``, ``comment``, ``text_requests``) with requests, reports, sessions, up to three
    comments and their weight (requests + ``feedback_weight`` × reports), heaviest first; and how
    many texts were left out as mostly answered well."""
    snapshot = snapshot.assign(raw=snapshot["text"].astype(str))
    snapshot["text"] = snapshot["raw"].map(normalize_query)
    snapshot = snapshot[snapshot["text"] != ""]
    if snapshot.empty:
        return pd.DataFrame(columns=TEXT_COLUMNS), 0
    is_report = snapshot["source"] == "wrong_answer_feedback"
    texts = (
        snapshot.assign(request=~is_report, report=is_report)
        .groupby("text", sort=True)
        .agg(
            requests=("request", "sum"),
            reports=("report", "sum"),
            sessions=("session_id", "nunique"),
            comments=("comment", lambda c: list(dict.fromkeys(x for x in c if isinstance(x, str)))[:3]),
        )
        .reset_index()
    )
    # Each raw text carries how often it was asked in the window at all; its normalized form sums them.
    asked = snapshot[~is_report].drop_duplicates("raw").groupby("text")["text_requests"].sum()
    texts["text_requests"] = texts["text"].map(asked).fillna(0).astype(int)
    texts["suspect_share"] = (texts["requests"] / texts["text_requests"].where(texts["text_requests"] > 0)).fillna(1.0)
    keep = (texts["suspect_share"] >= min_suspect_share) | ((texts["reports"] > 0) & (texts["text_requests"] == 0))
    dropped = int((~keep).sum())
    texts = texts[keep].copy()
    texts["weight"] = texts["requests"] + feedback_weight * texts["reports"]
    texts = texts.sort_values(["weight", "text"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    return texts[TEXT_COLUMNS], dropped
