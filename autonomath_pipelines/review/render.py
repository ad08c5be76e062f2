"""Review listings and outcomes as text lines (CLI) and Markdown (the Dagster review job)."""

from __future__ import annotations

import json
from typing import Sequence

from autonomath_pipelines.review.candidates import Candidate
from autonomath_pipelines.review.service import Outcome, Promotion

SUMMARY_WIDTH = 70


def _clip(text: str, width: int = SUMMARY_WIDTH) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def candidate_lines(candidates: Sequence[Candidate]) -> list[str]:
    if not candidates:
        return ["no candidates match"]
    lines = [f"{'id':<28} {'status':<14} {'partition':<12} {'score':>7}  summary"]
    for c in candidates:
        score = f"{c.score:.3g}" if c.score is not None else "-"
        lines.append(f"{c.id:<28} {c.status:<14} {c.partition_key or '-':<12} {score:>7}  {_clip(c.summary)}")
    return lines


def candidate_detail(c: Candidate) -> list[str]:
    return [
        f"{c.id}  ({c.loop_id})",
        f"  status:      {c.status}",
        f"  partition:   {c.partition_key or '-'}",
        f"  proposed at: {c.proposed_at or '-'}",
        f"  score:       {c.score if c.score is not None else '-'}",
        f"  summary:     {c.summary}",
        "  evidence:",
        *("    " + line for line in json.dumps(dict(c.evidence), ensure_ascii=False, indent=2).splitlines()),
    ]


def outcome_lines(outcome: Outcome) -> list[str]:
    verb = {"approve": "approved", "reject": "rejected", "promote": "promoted", "rollback": "rolled back"}[
        outcome.action
    ]
    head = (
        f"{verb} {len(outcome.transitions)} candidate(s)"
        if outcome.executed
        else f"dry run: would have {verb} {len(outcome.transitions)} candidate(s); nothing changed (add --execute)"
    )
    if outcome.promotion_id is not None:
        head += f" — promotion {outcome.promotion_id}"
    lines = [head]
    lines += [
        f"  {t.candidate.id:<28} {t.from_status} → {t.to_status}  {_clip(t.candidate.summary, 50)}"
        for t in outcome.transitions
    ]
    lines += ["  " + line for line in outcome.describe_changes()]
    return lines


def promotion_lines(promotions: Sequence[Promotion]) -> list[str]:
    if not promotions:
        return ["no promotions yet"]
    lines = [f"{'id':>4}  {'promoted at':<20} {'actor':<12} {'loop':<28} {'state':<12} candidates"]
    for p in promotions:
        state = p.state if p.state == "applied" else f"rolled back {p.rolled_back_at} by {p.rolled_back_by}"
        lines.append(
            f"{p.promotion_id:>4}  {p.promoted_at:<20} {_clip(p.actor, 12):<12} {p.loop_id:<28} "
            f"{state:<12} {_clip(', '.join(p.candidate_ids), 60)}"
        )
    return lines


def markdown(lines: Sequence[str]) -> str:
    return "```\n" + "\n".join(lines) + "\n```"
