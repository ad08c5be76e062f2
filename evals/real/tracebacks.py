"""Section G of the real-data eval: does loop G parse and group tracebacks it did not generate?

Layout under ``data_dir``::

    tracebacks/<corpus>/traces.jsonl   one JSON object a line: {"text": <the logged trace>, "label": <group>}
                                       (other keys are kept as information only)
    tracebacks/<corpus>/corpus.json    optional: {"in_app_prefixes": [...]} (default: loop G's default)

``label`` is the corpus author's grouping (same bug → same label). ``evals/real/tracebacks_corpus.py``
builds one such corpus from the real output of every CPython 3.8–3.13 on the machine.

Rows per corpus: ``parse_rate`` (share of traces that get a fingerprint; target ≥ 0.99) and
``grouping_ari`` twice, against the ``type only`` and the ``type + normalized message`` baselines
(both read off the last exception line of the cleaned trace; target: above the baseline).
"""

from __future__ import annotations

import json
import pathlib

from autonomath_pipelines.lib import stacktrace as st
from autonomath_pipelines.lib.scoring import ari_with_noise

SECTION = "G"
PARSE_RATE_TARGET = 0.99


def load_corpus(folder: pathlib.Path) -> tuple[list[dict], tuple[str, ...] | None]:
    """The corpus's rows and in-app prefixes; a line that is not a JSON object with ``text`` and
    ``label`` is an error naming the file and line."""
    rows = []
    with open(folder / "traces.jsonl", encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{folder / 'traces.jsonl'}:{number}: not JSON ({exc})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) or "label" not in row:
                raise ValueError(f"{folder / 'traces.jsonl'}:{number}: needs a string 'text' and a 'label'")
            rows.append(row)
    prefixes = None
    meta = folder / "corpus.json"
    if meta.is_file():
        listed = json.loads(meta.read_text(encoding="utf-8")).get("in_app_prefixes")
        if listed is not None:
            if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
                raise ValueError(f"{meta}: in_app_prefixes must be a list of strings")
            prefixes = tuple(listed)
    return rows, prefixes


def last_exception_line(text: str) -> tuple[str, str]:
    """(type, message) of the last exception line of the cleaned trace: what a grep-level tool sees."""
    for line in reversed(st.clean_lines(st.unescape_json(text) if isinstance(text, str) else "")):
        match = st._EXCEPTION.match(line.strip())
        if match and not line[:1].isspace() and ("." in match.group("type") or match.group("type")[:1].isupper()):
            return match.group("type"), match.group("message") or ""
    return "", ""


def _codes(keys: list[str | None]) -> list[int]:
    codes: dict[str, int] = {}
    return [-1 if k is None else codes.setdefault(k, len(codes)) for k in keys]


def evaluate_rows(rows: list[dict], in_app_prefixes=None, corpus: str = "") -> list[dict]:
    from autonomath_pipelines.lib.failure_modes import DEFAULT_IN_APP_PREFIXES

    prefixes = DEFAULT_IN_APP_PREFIXES if in_app_prefixes is None else in_app_prefixes
    labels = [str(r["label"]) for r in rows]
    fingerprints = [st.fingerprint(r["text"], in_app_prefixes=prefixes) for r in rows]
    keys = [fp.key if fp else None for fp in fingerprints]
    lines = [last_exception_line(r["text"]) for r in rows]
    type_only = [t or None for t, _ in lines]
    type_message = [f"{t}|{st.normalize_message(m)}" if t else None for t, m in lines]
    n = len(rows)
    parse_rate = sum(k is not None for k in keys) / n if n else float("nan")
    ari = ari_with_noise(labels, _codes(keys)) if n else float("nan")
    out = [
        {
            "section": SECTION,
            "corpus": corpus,
            "metric": "parse_rate",
            "value": parse_rate,
            "baseline": None,
            "target": f"≥ {PARSE_RATE_TARGET}",
            "verdict": "pass" if parse_rate >= PARSE_RATE_TARGET else "FAIL",
            "n": n,
        }
    ]
    for name, baseline_keys in (("type only", type_only), ("type + normalized message", type_message)):
        base = ari_with_noise(labels, _codes(baseline_keys)) if n else float("nan")
        out.append(
            {
                "section": SECTION,
                "corpus": corpus,
                "metric": f"grouping_ari vs {name}",
                "value": ari,
                "baseline": base,
                "target": "> baseline",
                "verdict": "pass" if ari > base else "FAIL",
                "n": n,
            }
        )
    return out


def evaluate(data_dir: pathlib.Path) -> list[dict]:
    """One block of rows per corpus under ``data_dir/tracebacks``; none when the folder is missing."""
    root = pathlib.Path(data_dir) / "tracebacks"
    if not root.is_dir():
        return [
            {
                "section": SECTION,
                "corpus": "(none)",
                "metric": "skipped",
                "value": None,
                "baseline": None,
                "target": None,
                "verdict": "info",
                "n": 0,
            }
        ]
    rows: list[dict] = []
    for folder in sorted(p for p in root.iterdir() if (p / "traces.jsonl").is_file()):
        corpus_rows, prefixes = load_corpus(folder)
        rows.extend(evaluate_rows(corpus_rows, prefixes, corpus=folder.name))
    return rows
