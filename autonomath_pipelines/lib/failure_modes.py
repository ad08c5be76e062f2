"""Loop G's failure modes: the window's errors grouped by Sentry-style fingerprint of their root cause,
and programs with repeated wrong-answer reports (``lib/stacktrace.py`` parses and fingerprints)."""

from __future__ import annotations

import pandas as pd

from autonomath_pipelines.lib import stacktrace as st

#: Where the service's package is deployed (its Docker image); notebook cells are always in-app.
DEFAULT_IN_APP_PREFIXES = ("/srv/autonomath/app/",)

GROUP_COLUMNS = [
    "mode",
    "kind",
    "fingerprint",
    "exc_type",
    "count",
    "first_seen",
    "last_seen",
    "endpoints",
    "sample_trace",
    "messages",
    "example_inputs",
    "ids",
]


def assign_fingerprints(errors: pd.DataFrame, in_app_prefixes=DEFAULT_IN_APP_PREFIXES) -> pd.DataFrame:
    """``errors`` with ``mode``/``fingerprint``/``exc_type``: each trace by its root cause's Sentry-style
    fingerprint; a trace cut before its first exception line joins the largest group whose full frame
    sequence starts with its own (else mode None)."""
    parsed = [st.parse_traceback(t) for t in errors["traceback"]]
    fps = [
        st.fingerprint(p, fallback_type=e if isinstance(e, str) else None, in_app_prefixes=in_app_prefixes)
        for p, e in zip(parsed, errors["exception_type"])
    ]
    whole = [fp is not None for fp in fps]
    modes: list[str | None] = [fp.name if fp and ok else None for fp, ok in zip(fps, whole)]
    sequences: dict[tuple[str, ...], dict[str, int]] = {}
    for p, mode in zip(parsed, modes):
        if mode:
            counts = sequences.setdefault(st.all_frames(p), {})
            counts[mode] = counts.get(mode, 0) + 1
    for i, (p, mode) in enumerate(zip(parsed, modes)):
        if mode is None:
            prefix = st.all_frames(p)
            if prefix and prefix[-1] == "#":
                prefix = prefix[:-1]
            best: dict[str, int] = {}
            for seq, counts in sequences.items():
                if prefix and seq[: len(prefix)] == prefix:
                    for m, c in counts.items():
                        best[m] = best.get(m, 0) + c
            if best:
                modes[i] = max(sorted(best), key=best.get)
    by_name = {fp.name: fp for fp, ok in zip(fps, whole) if fp and ok}
    out = errors.copy()
    out["mode"] = modes
    out["fingerprint"] = [by_name[m].key if m in by_name else None for m in modes]
    out["exc_type"] = [by_name[m].exc_type if m in by_name else None for m in modes]
    return out


def error_groups(errors: pd.DataFrame, in_app_prefixes) -> list[dict]:
    """One group per fingerprint of ``errors``: count, first/last seen, endpoints, a sample trace,
    the distinct messages and the literals quoted in them (example inputs), and the row ids."""
    rows = []
    if errors.empty:
        return rows
    assigned = assign_fingerprints(errors, in_app_prefixes)
    for mode, members in assigned[assigned["mode"].notna()].groupby("mode", sort=True):
        members = members.sort_values(["ts", "id"], kind="mergesort")
        messages = list(dict.fromkeys(m for m in members["message"] if isinstance(m, str) and m))
        literals = list(dict.fromkeys(x for m in messages for x in st.message_literals(m)))
        rows.append(
            {
                "mode": mode,
                "kind": "exception",
                "fingerprint": members["fingerprint"].iloc[0],
                "exc_type": members["exc_type"].iloc[0],
                "count": len(members),
                "first_seen": members["ts"].iloc[0],
                "last_seen": members["ts"].iloc[-1],
                "endpoints": sorted(set(members["endpoint"].dropna())),
                "sample_trace": next((t for t, c in zip(members["traceback"], members["fingerprint"]) if c), ""),
                "messages": messages[:5],
                "example_inputs": literals[:5],
                "ids": [int(i) for i in members["id"]],
            }
        )
    return rows


def feedback_groups(feedback: pd.DataFrame, min_reports: int) -> list[dict]:
    """One group per program with at least ``min_reports`` wrong-answer reports in ``feedback``."""
    rows = []
    for program_id, members in feedback.groupby("program_id", sort=True):
        if len(members) < min_reports:
            continue
        members = members.sort_values(["ts", "id"], kind="mergesort")
        queries = list(dict.fromkeys(q for q in members["query_text"] if isinstance(q, str) and q))
        comments = list(dict.fromkeys(c for c in members["message"] if isinstance(c, str) and c))
        rows.append(
            {
                "mode": f"wrong_answer_{st.slug(str(program_id))}"[: st.NAME_MAX],
                "kind": "wrong_answer",
                "fingerprint": f"wrong_answer|{program_id}",
                "exc_type": None,
                "count": len(members),
                "first_seen": members["ts"].iloc[0],
                "last_seen": members["ts"].iloc[-1],
                "endpoints": [f"program {program_id}"],
                "sample_trace": "\n".join(comments[:3]),
                "messages": comments[:5],
                "example_inputs": queries[:5],
                "ids": [int(i) for i in members["id"]],
            }
        )
    return rows
