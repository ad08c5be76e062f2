"""Which themes are one ask: reformulations within a session, and the themes a run keeps.

A customer who gets no answer rephrases: ``メタバース 出店 補助金`` and, a minute later,
``仮想空間 出店 助成金 全額``. Their embeddings can be further apart than two unrelated asks (on the
production demo world: docs/architecture.md, loop A), but the two texts share sessions far more
often than chance. Two themes are *linked* when
the number of sessions asking both is improbably high under independence: with ``n_a`` and ``n_b``
sessions asking each theme out of ``N`` sessions, the shared count is compared with a Poisson of
mean ``n_a·n_b/N`` (one-sided tail). Counts are of sessions, not requests, so one customer retrying
the same text many times does not link anything.

:func:`select_themes` then walks the themes best first: a theme is *covered* when its medoid is
near an existing pattern (or equal to one) or it is linked to a covered theme — a rephrasing of an
ask the guard already answers; it is a *duplicate* when its medoid is near, or it is linked to, a
theme this run already proposes; otherwise it is *proposed*, up to ``max_candidates``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

LINK_COLUMNS = ["theme_a", "theme_b", "shared_sessions", "expected_sessions", "p_value"]
DECISIONS = ("proposed", "covered", "duplicate", "over_cap")


def session_links(
    session_ids: Sequence[object], themes: Sequence[int], *, min_shared_sessions: int = 3, max_p_value: float = 1e-3
) -> pd.DataFrame:
    """Pairs of themes asked together in sessions more often than chance (``LINK_COLUMNS``,
    ``theme_a < theme_b``, most significant first).

    ``session_ids[i]`` asked theme ``themes[i]`` (one row per request; a theme < 0, or a missing
    or empty session id, is left out). ``N`` is the number of distinct sessions kept.
    """
    if min_shared_sessions < 1:
        raise ValueError(f"min_shared_sessions must be >= 1, got {min_shared_sessions}")
    if not 0.0 < max_p_value <= 1.0:
        raise ValueError(f"max_p_value must be in (0, 1], got {max_p_value}")
    if len(session_ids) != len(themes):
        raise ValueError(f"{len(session_ids)} session ids for {len(themes)} themes")
    frame = pd.DataFrame(
        {
            "session": pd.Series(list(session_ids), dtype=object),
            "theme": pd.to_numeric(pd.Series(list(themes), dtype=object), errors="coerce"),
        }
    )
    keep = frame["session"].map(lambda s: isinstance(s, str) and s != "") & (frame["theme"] >= 0)
    frame = frame[keep].drop_duplicates()
    if frame.empty:
        return pd.DataFrame(columns=LINK_COLUMNS)
    session_codes, _ = pd.factorize(frame["session"])
    theme_codes, theme_values = pd.factorize(frame["theme"].astype(np.int64), sort=True)
    n_sessions = int(session_codes.max()) + 1
    incidence = sparse.csr_matrix(
        (np.ones(len(frame), np.int64), (session_codes, theme_codes)), shape=(n_sessions, len(theme_values))
    )
    per_theme = np.asarray(incidence.sum(axis=0)).ravel()
    shared = sparse.triu(incidence.T @ incidence, k=1).tocoo()
    enough = shared.data >= min_shared_sessions
    a, b, count = shared.row[enough], shared.col[enough], shared.data[enough]
    expected = per_theme[a] * per_theme[b] / n_sessions
    from scipy.stats import poisson  # ~1.5 CPU s to import, which every loop run's process would pay

    p_value = poisson.sf(count - 1, expected)
    links = pd.DataFrame(
        {
            "theme_a": theme_values[a].astype(np.int64),
            "theme_b": theme_values[b].astype(np.int64),
            "shared_sessions": count.astype(np.int64),
            "expected_sessions": expected,
            "p_value": p_value,
        },
        columns=LINK_COLUMNS,
    )
    links = links[links["p_value"] <= max_p_value]
    return links.sort_values(["p_value", "theme_a", "theme_b"], kind="mergesort").reset_index(drop=True)


def _linked_groups(themes: list[int], links: pd.DataFrame) -> dict[int, set[int]]:
    """Each theme's other themes in its connected component of links (reformulation is transitive:
    a rephrased b, b rephrased c, all three are one ask)."""
    parent = {t: t for t in themes}

    def root(t: int) -> int:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for a, b in zip(links["theme_a"].astype(int), links["theme_b"].astype(int)):
        if a in parent and b in parent:
            parent[root(a)] = root(b)
    members: dict[int, set[int]] = {}
    for t in themes:
        members.setdefault(root(t), set()).add(t)
    return {t: members[root(t)] - {t} for t in themes}


@dataclass(frozen=True)
class ThemeDecision:
    """What :func:`select_themes` decided for one theme, and why."""

    theme: int
    decision: str  # one of DECISIONS
    nearest_existing_similarity: float
    reason: str  # empty for a proposal
    related_theme: int | None  # the theme it rephrases or repeats, if that is the reason
    reformulations: tuple[int, ...]  # for a proposal: the linked themes folded into it


def select_themes(
    themes: Sequence[int],
    medoid_texts: Sequence[str],
    medoid_vectors: np.ndarray,
    existing_patterns: Sequence[str],
    existing_vectors: np.ndarray,
    links: pd.DataFrame,
    *,
    near_similarity: float,
    max_candidates: int,
) -> list[ThemeDecision]:
    """One decision per theme, in the given order (best first). ``existing_*``: guard patterns and
    earlier candidates, normalized text and unit vectors; ``links``: :func:`session_links`."""
    if len(themes) != len(medoid_texts) or len(themes) != len(medoid_vectors):
        raise ValueError("themes, medoid texts and medoid vectors must have one row per theme")
    if not len(themes):
        return []
    linked = _linked_groups([int(t) for t in themes], links)
    vectors = np.asarray(medoid_vectors, dtype=np.float64).reshape(len(themes), -1)
    existing = np.asarray(existing_vectors, dtype=np.float64)
    to_existing = (vectors @ existing.T).max(axis=1) if existing.size and len(themes) else np.full(len(themes), -1.0)
    existing_texts = set(existing_patterns)
    position = {int(t): i for i, t in enumerate(themes)}

    covered = {
        int(t)
        for t, text, sim in zip(themes, medoid_texts, to_existing)
        if sim >= near_similarity or text in existing_texts
    }
    decisions: list[ThemeDecision] = []
    proposed: list[int] = []
    folded: dict[int, list[int]] = {}
    for theme, text, sim in zip(themes, medoid_texts, to_existing):
        theme = int(theme)
        related, reason, decision = None, "", "proposed"
        if theme in covered:
            decision = "covered"
            reason = (
                "medoid is an existing pattern"
                if text in existing_texts
                else f"medoid {sim:.2f} similar to an existing pattern"
            )
        elif linked[theme] & covered:
            decision, related = "covered", min(linked[theme] & covered, key=position.__getitem__)
            reason = "asked in the same sessions as a covered theme"
        else:
            near = [p for p in proposed if float(vectors[position[theme]] @ vectors[position[p]]) >= near_similarity]
            rephrased = [p for p in proposed if p in linked[theme]]
            if near or rephrased:
                decision, related = "duplicate", (near or rephrased)[0]
                reason = (
                    "medoid near a better theme of this run"
                    if near
                    else "asked in the same sessions as a better theme of this run"
                )
                folded.setdefault(related, []).append(theme)
            elif len(proposed) >= max_candidates:
                decision, reason = "over_cap", f"beyond max_candidates {max_candidates}"
            else:
                proposed.append(theme)
        decisions.append(ThemeDecision(theme, decision, float(sim), reason, related, ()))
    return [
        ThemeDecision(
            d.theme,
            d.decision,
            d.nearest_existing_similarity,
            d.reason,
            d.related_theme,
            tuple(folded.get(d.theme, ())),
        )
        for d in decisions
    ]
