"""Quality gates over candidate frames: pure predicates the loops run as blocking asset checks.

Each gate returns a ``GateResult``; the Dagster shell turns it into an ``AssetCheckResult``.
Loops that write caches (C, H) share the payload/TTL/key gates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from autonomath_pipelines.lib.payload import payload_problems
from autonomath_pipelines.lib.textnorm import normalize_query, query_hash


@dataclass(frozen=True)
class GateResult:
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Gate:
    name: str
    description: str  # shown in the UI as the check's description
    evaluate: Callable[[pd.DataFrame], GateResult]


def row_cap(cap: int) -> Gate:
    def evaluate(frame: pd.DataFrame) -> GateResult:
        return GateResult(len(frame) <= cap, f"{len(frame)} rows (cap {cap})", {"rows": len(frame), "cap": cap})

    return Gate("rows_within_cap", f"At most {cap} rows per run.", evaluate)


def payloads_valid(column: str = "payload_json", label: str = "query_text") -> Gate:
    def evaluate(frame: pd.DataFrame) -> GateResult:
        bad = [
            (lbl, problems[0])
            for lbl, payload in zip(frame[label], frame[column])
            if (problems := payload_problems(payload))
        ]
        sample = "; ".join(f"{lbl!r}: {why}" for lbl, why in bad[:5])
        return GateResult(
            not bad, f"{len(bad)} invalid payloads" + (f": {sample}" if bad else ""), {"invalid": len(bad)}
        )

    return Gate("payloads_valid", "Every payload is valid JSON of the shape the API serves.", evaluate)


def ttl_in_future(now_iso: Callable[[], str], column: str = "ttl_until") -> Gate:
    def evaluate(frame: pd.DataFrame) -> GateResult:
        now = now_iso()
        expired = int((frame[column] <= now).sum()) if len(frame) else 0
        return GateResult(expired == 0, f"{expired} rows with {column} <= {now}", {"expired": expired})

    return Gate("ttl_in_future", "Every row's TTL lies in the future (an expired entry is never served).", evaluate)


def cache_keys_sound(text: str = "query_text", key: str = "query_hash", scope: tuple[str, ...] = ()) -> Gate:
    """No empty query; each key is the hash of its normalized text and unique (within ``scope``)."""

    def evaluate(frame: pd.DataFrame) -> GateResult:
        empty = int((frame[text].astype(str).str.strip() == "").sum()) if len(frame) else 0
        mismatched = sum(query_hash(normalize_query(t)) != h for t, h in zip(frame[text], frame[key]))
        duplicated = int(frame.duplicated(list(scope) + [key]).sum()) if len(frame) else 0
        return GateResult(
            empty == mismatched == duplicated == 0,
            f"{empty} empty queries, {mismatched} keys not matching their text, {duplicated} duplicate keys",
            {"empty": empty, "mismatched": mismatched, "duplicated": duplicated},
        )

    return Gate(
        "cache_keys_sound", "No empty query; every key is the hash of its normalized text, and unique.", evaluate
    )


def all_pending_review(column: str = "status") -> Gate:
    def evaluate(frame: pd.DataFrame) -> GateResult:
        other = int((frame[column] != "pending_review").sum()) if len(frame) else 0
        return GateResult(other == 0, f"{other} rows not pending_review", {"not_pending": other})

    return Gate("all_pending_review", "Every candidate awaits operator review (status pending_review).", evaluate)


def non_empty_text(column: str) -> Gate:
    def evaluate(frame: pd.DataFrame) -> GateResult:
        empty = int((frame[column].fillna("").astype(str).str.strip() == "").sum()) if len(frame) else 0
        return GateResult(empty == 0, f"{empty} rows with an empty {column}", {"empty": empty})

    return Gate(f"no_empty_{column}", f"No candidate has an empty {column}.", evaluate)


def values_in(column: str, allowed: frozenset | set, name: str, description: str) -> Gate:
    def evaluate(frame: pd.DataFrame) -> GateResult:
        bad = sorted({v for v in frame[column] if v not in allowed}) if len(frame) else []
        return GateResult(
            not bad,
            f"{len(bad)} unexpected {column} values" + (f": {bad[:5]}" if bad else ""),
            {"unexpected": len(bad)},
        )

    return Gate(name, description, evaluate)


def pairs_absent(columns: tuple[str, str], present: frozenset | set, name: str, description: str) -> Gate:
    def evaluate(frame: pd.DataFrame) -> GateResult:
        clash = [pair for pair in zip(frame[columns[0]], frame[columns[1]]) if pair in present] if len(frame) else []
        return GateResult(
            not clash,
            f"{len(clash)} rows already present" + (f": {clash[:3]}" if clash else ""),
            {"already_present": len(clash)},
        )

    return Gate(name, description, evaluate)


# ------------------------------------------------------------------ guard-pattern content (loop A)

#: Function words that carry no theme on their own (English, plus Japanese particles / copulas).
_STOP_WORDS = frozenset(
    "a an and or but not no the of to in on at for by with from as is are was were be been it its this that "
    "these those i you he she we they me my your our what which who how why when where do does did can "
    "の を に は が で と へ も や か な だ です ます".split()
)
#: A run of letters or ideographs (any script); digits, punctuation, symbols and quotes are not words.
_WORD = re.compile(r"[^\W\d_]+")
#: Fewest letters/ideographs, outside stop-words, a guard pattern must hold.
MIN_PATTERN_CONTENT_CHARS = 2


def pattern_content_problem(pattern: object) -> str | None:
    """Why ``pattern`` cannot be a guard pattern (it carries no content), or None when it can.

    Content = the NFKC-folded pattern's runs of letters/ideographs that are not stop-words; it must
    hold at least ``MIN_PATTERN_CONTENT_CHARS`` characters. ``*``, ``)``, ``and`` and ``"" ""`` fail.
    """
    if not isinstance(pattern, str):
        return f"not text ({type(pattern).__name__})"
    words = _WORD.findall(normalize_query(pattern))
    content = [w for w in words if w not in _STOP_WORDS]
    if not words:
        return "no letters or ideographs"
    if not content:
        return "only stop-words"
    if sum(len(w) for w in content) < MIN_PATTERN_CONTENT_CHARS:
        return f"fewer than {MIN_PATTERN_CONTENT_CHARS} content characters"
    return None


def patterns_carry_content(column: str = "pattern") -> Gate:
    def evaluate(frame: pd.DataFrame) -> GateResult:
        bad = [(p, why) for p in (frame[column] if len(frame) else []) if (why := pattern_content_problem(p))]
        sample = "; ".join(f"{p!r}: {why}" for p, why in bad[:5])
        return GateResult(
            not bad,
            f"{len(bad)} patterns without content" + (f": {sample}" if bad else ""),
            {"without_content": len(bad)},
        )

    return Gate(
        "patterns_carry_content",
        "Every pattern holds letters or ideographs beyond stop-words "
        f"(at least {MIN_PATTERN_CONTENT_CHARS} characters).",
        evaluate,
    )
