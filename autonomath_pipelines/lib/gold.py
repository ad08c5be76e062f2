"""Gold-set expansion (loop J), pure: which asked queries are safe gold rows, and the gold YAML schema.

The rule (DESIGN §5, loop J). Over the window's ``query_log`` rows, a query text (after
``normalize_query``) becomes a gold proposal when:

* its **high-confidence rows** — every row of the text in the window with ``confidence >= 0.85``
  (``min_confidence``) — come from at least 5 distinct sessions (``min_sessions``), and
* **every** one of those high-confidence rows has the same, non-null top-1 program.

Rows of the text below the threshold are not evidence either way: a low-confidence answer is the
service being unsure, not a different truth, and loop E treats them as a vocabulary gap. A
high-confidence row without a top-1 (cannot normally happen) disqualifies the text. Texts already
in the gold set (compared after normalization) are never proposed again.

Evidence per proposal: distinct sessions, requests (high-confidence rows) and their mean confidence.

Gold YAML schema, version 1 (``evals/gold.yaml`` and the candidate files in ``evals/_candidates``)::

    version: 1                      # required, integer 1
    description: ...                # optional, free text
    status: pending_review          # optional (candidate files carry it)
    provenance: {...}               # optional mapping (candidate files: loop, run, partition, window, code)
    items:                          # required list (may be empty)
      - id: g0001                   # required, non-empty string, unique in the file
        query: ものづくり補助金        # required, non-empty string; compared after normalize_query,
                                    #   unique in the file after normalization
        expected_program_id: P000108  # required, non-empty string: the expected top-1 program
        note: ...                   # optional string
        status: pending_review      # optional string (candidates)
        evidence: {sessions: 12, requests: 30, mean_confidence: 0.93}  # optional mapping (candidates)

Unknown keys are an error, so a typo never silently drops a field.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import yaml

from autonomath_pipelines.lib.gates import Gate, GateResult
from autonomath_pipelines.lib.textnorm import normalize_query

SCHEMA_VERSION = 1
MIN_CONFIDENCE = 0.85
MIN_SESSIONS = 5
TOP_LEVEL_KEYS = frozenset({"version", "description", "status", "provenance", "items"})
ITEM_KEYS = frozenset({"id", "query", "expected_program_id", "note", "status", "evidence"})
REQUIRED_ITEM_KEYS = ("id", "query", "expected_program_id")
PROPOSAL_COLUMNS = ["id", "query", "expected_program_id", "sessions", "requests", "mean_confidence"]


class GoldFormatError(ValueError):
    """A gold YAML file that does not follow the schema; the message names the file."""


@dataclass(frozen=True)
class GoldItem:
    id: str
    query: str
    expected_program_id: str
    note: str | None = None
    status: str | None = None
    evidence: Mapping[str, Any] | None = field(default=None, compare=True, hash=False)


@dataclass(frozen=True)
class GoldFile:
    items: tuple[GoldItem, ...] = ()
    version: int = SCHEMA_VERSION
    description: str | None = None
    status: str | None = None
    provenance: Mapping[str, Any] | None = field(default=None, hash=False)

    def normalized_queries(self) -> frozenset[str]:
        return frozenset(normalize_query(item.query) for item in self.items)


# ------------------------------------------------------------------------------------ the rule


def proposal_id(query: str) -> str:
    """Stable id of a proposal: the same normalized text gets the same id in every run and month."""
    return "cand-" + hashlib.sha256(normalize_query(query).encode("utf-8")).hexdigest()[:12]


#: The rule's evidence, one row per normalized text whose every high-confidence answer in the window
#: names the same program: that program, the distinct sessions and requests, and the confidences' sum.
EVIDENCE_COLUMNS = ["query", "program", "sessions", "requests", "confidence_sum"]


def text_evidence(rows: pd.DataFrame) -> pd.DataFrame:
    """The rule's evidence (``EVIDENCE_COLUMNS``) from query rows already at the confidence threshold
    (columns ``query_text``, ``session_id``, ``top1_program_id``, ``confidence``)."""
    if rows.empty:
        return pd.DataFrame(columns=EVIDENCE_COLUMNS)
    texts = rows["query_text"].astype(str)
    unique = pd.unique(texts)
    normalized = dict(zip(unique, (normalize_query(t) for t in unique)))
    frame = pd.DataFrame(
        {
            "query": texts.map(normalized).to_numpy(),
            "program": rows["top1_program_id"].to_numpy(dtype=object),
            "session": rows["session_id"].astype(str).to_numpy(),
            "confidence": rows["confidence"].astype(float).to_numpy(),
        }
    )
    frame = frame[frame["query"] != ""]
    frame["has_program"] = frame["program"].notna()
    grouped = frame.groupby("query", sort=True).agg(
        programs=("program", "nunique"),
        all_have_program=("has_program", "all"),
        program=("program", "first"),
        sessions=("session", "nunique"),
        requests=("session", "size"),
        confidence_sum=("confidence", "sum"),
    )
    consistent = grouped[(grouped["programs"] == 1) & grouped["all_have_program"]].reset_index()
    return consistent[EVIDENCE_COLUMNS].reset_index(drop=True)


class EvidenceCounter:
    """The rule's evidence (``text_evidence``) counted over query rows fed in chunks, holding per
    normalized text only its counts and its distinct sessions as 64-bit hashes: a month of a busy
    service is millions of rows, which never sit in memory at once.

    ``add(chunk)`` takes rows already at the confidence threshold (the columns of ``text_evidence``);
    ``evidence()`` gives what ``text_evidence`` gives over all of them (two sessions whose 64-bit
    hashes collide would count once: with a few million sessions, odds below one in a million)."""

    def __init__(self) -> None:
        self._text_code: dict[str, int] = {}  # raw text -> normalized text code (-1: empty)
        self._queries: dict[str, int] = {}  # normalized text -> code
        self._program_code: dict[str, int] = {}  # program id -> code (an unanswered row: -1)
        self._requests = np.zeros(0, dtype=np.int64)
        self._confidence = np.zeros(0, dtype=np.float64)
        self._lowest = np.zeros(0, dtype=np.int64)  # per text, the least and greatest program code:
        self._highest = np.zeros(0, dtype=np.int64)  # equal and >= 0 when one program answered every row
        self._pairs: list[pd.DataFrame] = []  # distinct (text, session hash) of each chunk

    @staticmethod
    def _codes(values: pd.Series, table: dict, encode) -> np.ndarray:
        """Each value's code in ``table``, new values encoded on first sight (one call per distinct value)."""
        positions, uniques = pd.factorize(values.to_numpy(dtype=object))
        codes = np.empty(len(uniques), dtype=np.int64)
        for i, value in enumerate(uniques):
            code = table.get(value)
            if code is None:
                code = table[value] = encode(value)
            codes[i] = code
        return codes[positions]

    def _new_query(self, raw: str) -> int:
        query = normalize_query(raw)
        if not query:
            return -1
        return self._queries.setdefault(query, len(self._queries))

    def add(self, rows: pd.DataFrame) -> None:
        if rows.empty:
            return
        codes = self._codes(rows["query_text"].astype(str), self._text_code, self._new_query)
        answered = rows["top1_program_id"].notna().to_numpy()
        program_codes = np.full(len(rows), -1, dtype=np.int64)
        program_codes[answered] = self._codes(
            rows.loc[answered, "top1_program_id"].astype(str), self._program_code, lambda _: len(self._program_code)
        )
        keep = codes >= 0
        codes, program_codes = codes[keep], program_codes[keep]
        n = len(self._queries)
        grow = n - len(self._requests)
        if grow:
            self._requests = np.concatenate([self._requests, np.zeros(grow, dtype=np.int64)])
            self._confidence = np.concatenate([self._confidence, np.zeros(grow)])
            self._lowest = np.concatenate([self._lowest, np.full(grow, np.iinfo(np.int64).max)])
            self._highest = np.concatenate([self._highest, np.full(grow, -2, dtype=np.int64)])
        self._requests += np.bincount(codes, minlength=n)
        self._confidence += np.bincount(codes, weights=rows["confidence"].astype(float).to_numpy()[keep], minlength=n)
        np.minimum.at(self._lowest, codes, program_codes)
        np.maximum.at(self._highest, codes, program_codes)
        sessions = pd.util.hash_array(rows["session_id"].astype(str).to_numpy(dtype=object)[keep])
        self._pairs.append(pd.DataFrame({"code": codes, "session": sessions}).drop_duplicates())

    @property
    def distinct_texts(self) -> int:
        """Distinct raw texts added so far."""
        return len(self._text_code)

    def evidence(self) -> pd.DataFrame:
        consistent = np.flatnonzero((self._lowest == self._highest) & (self._lowest >= 0))
        if not len(consistent):
            return pd.DataFrame(columns=EVIDENCE_COLUMNS)
        pairs = pd.concat(self._pairs, ignore_index=True)
        pairs = pairs[pairs["code"].isin(consistent)].drop_duplicates()
        sessions = pairs.groupby("code")["session"].size()
        query_of = np.empty(len(self._queries), dtype=object)
        query_of[list(self._queries.values())] = list(self._queries)
        program_of = np.empty(len(self._program_code), dtype=object)
        program_of[list(self._program_code.values())] = list(self._program_code)
        evidence = pd.DataFrame(
            {
                "query": query_of[consistent],
                "program": program_of[self._lowest[consistent]],
                "sessions": sessions.reindex(consistent).fillna(0).astype(int).to_numpy(),
                "requests": self._requests[consistent],
                "confidence_sum": self._confidence[consistent],
            },
            columns=EVIDENCE_COLUMNS,
        )
        return evidence.sort_values("query", kind="mergesort").reset_index(drop=True)


def choose_gold(
    evidence: pd.DataFrame, existing: Iterable[str] = (), *, min_sessions: int = MIN_SESSIONS
) -> pd.DataFrame:
    """Gold proposals from the rule's evidence: texts asked in at least ``min_sessions`` sessions, best
    evidence first (sessions desc, then text). ``existing``: gold queries (normalized here) that are
    never proposed again."""
    existing_norm = {normalize_query(q) for q in existing}
    chosen = evidence[(evidence["sessions"] >= min_sessions) & ~evidence["query"].isin(list(existing_norm))]
    out = pd.DataFrame(
        {
            "id": [proposal_id(q) for q in chosen["query"]],
            "query": chosen["query"].astype(str),
            "expected_program_id": chosen["program"].astype(str),
            "sessions": chosen["sessions"].astype(int),
            "requests": chosen["requests"].astype(int),
            "mean_confidence": (chosen["confidence_sum"].astype(float) / chosen["requests"].astype(int)).round(4),
        },
        columns=PROPOSAL_COLUMNS,
    )
    return out.sort_values(["sessions", "query"], ascending=[False, True], kind="mergesort").reset_index(drop=True)


def propose_gold(
    rows: pd.DataFrame,
    existing: Iterable[str] = (),
    *,
    min_confidence: float = MIN_CONFIDENCE,
    min_sessions: int = MIN_SESSIONS,
) -> pd.DataFrame:
    """Gold proposals from query rows (columns ``query_text``, ``session_id``, ``top1_program_id``,
    ``confidence``), best evidence first (sessions desc, then text). ``existing``: gold queries
    (normalized here) that are never proposed again."""
    high = rows[rows["confidence"].astype(float) >= min_confidence]
    return choose_gold(text_evidence(high), existing, min_sessions=min_sessions)


# ------------------------------------------------------------------------------------ YAML


def _item_dict(item: GoldItem) -> dict[str, Any]:
    out: dict[str, Any] = {"id": item.id, "query": item.query, "expected_program_id": item.expected_program_id}
    for key in ("note", "status"):
        if getattr(item, key) is not None:
            out[key] = getattr(item, key)
    if item.evidence is not None:
        out["evidence"] = dict(item.evidence)
    return out


def render_gold(gold: GoldFile, header: str = "") -> str:
    """YAML text of ``gold`` (UTF-8, Japanese unescaped, keys in schema order); ``header`` lines become
    ``#`` comments at the top. Deterministic: the same input renders the same text."""
    document: dict[str, Any] = {"version": gold.version}
    for key in ("description", "status"):
        if getattr(gold, key) is not None:
            document[key] = getattr(gold, key)
    if gold.provenance is not None:
        document["provenance"] = dict(gold.provenance)
    document["items"] = [_item_dict(item) for item in gold.items]
    body = yaml.safe_dump(document, allow_unicode=True, sort_keys=False, default_flow_style=False, width=1000)
    if yaml.safe_load(body) != document:  # PyYAML writes some line-break characters (U+0085, U+2028) raw
        body = yaml.safe_dump(document, allow_unicode=False, sort_keys=False, default_flow_style=False, width=1000)
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) if header else ""
    return comments + body


def _fail(source: str, message: str) -> GoldFormatError:
    return GoldFormatError(f"{source}: {message}")


def _optional_str(value: Any, source: str, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _fail(source, f"{where} must be a string, got {type(value).__name__}")
    return value


def parse_gold(text: str, source: str = "<gold yaml>") -> GoldFile:
    """Parse and validate gold YAML; any deviation from the schema raises ``GoldFormatError`` naming ``source``."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Not chained: the operator's one-line root cause must be this error, which names the file.
        raise _fail(source, "not valid YAML: " + " ".join(str(exc).split())) from None
    if not isinstance(document, dict):
        raise _fail(source, f"top level must be a mapping with 'version' and 'items', got {type(document).__name__}")
    unknown = sorted(set(map(str, document)) - TOP_LEVEL_KEYS)
    if unknown:
        raise _fail(source, f"unknown top-level keys {unknown}; allowed: {sorted(TOP_LEVEL_KEYS)}")
    version = document.get("version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise _fail(source, f"'version' must be {SCHEMA_VERSION}, got {version!r}")
    raw_items = document.get("items")
    if not isinstance(raw_items, list):
        raise _fail(source, f"'items' must be a list, got {type(raw_items).__name__}")
    provenance = document.get("provenance")
    if provenance is not None and not isinstance(provenance, dict):
        raise _fail(source, "'provenance' must be a mapping")
    items, ids, queries = [], set(), {}
    for index, raw in enumerate(raw_items):
        where = f"items[{index}]"
        if not isinstance(raw, dict):
            raise _fail(source, f"{where} must be a mapping, got {type(raw).__name__}")
        unknown = sorted(set(map(str, raw)) - ITEM_KEYS)
        if unknown:
            raise _fail(source, f"{where} has unknown keys {unknown}; allowed: {sorted(ITEM_KEYS)}")
        for key in REQUIRED_ITEM_KEYS:
            value = raw.get(key)
            if not isinstance(value, str) or not value.strip():
                raise _fail(source, f"{where}.{key} must be a non-empty string, got {value!r}")
        if raw["id"] in ids:
            raise _fail(source, f"{where}.id {raw['id']!r} is not unique")
        ids.add(raw["id"])
        normalized = normalize_query(raw["query"])
        if not normalized:
            raise _fail(source, f"{where}.query {raw['query']!r} is empty after normalization")
        if normalized in queries:
            raise _fail(source, f"{where}.query {raw['query']!r} duplicates {queries[normalized]} after normalization")
        queries[normalized] = where
        evidence = raw.get("evidence")
        if evidence is not None and not isinstance(evidence, dict):
            raise _fail(source, f"{where}.evidence must be a mapping")
        items.append(
            GoldItem(
                id=raw["id"],
                query=raw["query"],
                expected_program_id=raw["expected_program_id"],
                note=_optional_str(raw.get("note"), source, f"{where}.note"),
                status=_optional_str(raw.get("status"), source, f"{where}.status"),
                evidence=evidence,
            )
        )
    return GoldFile(
        items=tuple(items),
        version=SCHEMA_VERSION,
        description=_optional_str(document.get("description"), source, "'description'"),
        status=_optional_str(document.get("status"), source, "'status'"),
        provenance=provenance,
    )


def load_gold(path: Path) -> GoldFile | None:
    """The gold file at ``path``; ``None`` when it does not exist (the caller logs it). Malformed →
    ``GoldFormatError`` naming the file."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GoldFormatError(f"{path}: not UTF-8 text: {exc}") from None
    return parse_gold(text, source=str(path))


def proposals_file(
    proposals: pd.DataFrame,
    provenance: Mapping[str, Any],
    *,
    status: str = "pending_review",
    description: str | None = None,
) -> GoldFile:
    """The candidate file of a run: every proposal pending review, with its evidence as fields."""
    items = tuple(
        GoldItem(
            id=str(r.id),
            query=str(r.query),
            expected_program_id=str(r.expected_program_id),
            status=status,
            evidence={
                "sessions": int(r.sessions),
                "requests": int(r.requests),
                "mean_confidence": round(float(r.mean_confidence), 4),
            },
        )
        for r in proposals.itertuples(index=False)
    )
    return GoldFile(items=items, description=description, status=status, provenance=dict(provenance))


# ------------------------------------------------------------------------------------ gates


def candidate_gates(
    rendered: str, gold_queries: frozenset, program_ids: frozenset | None, source: str = "rendered candidates"
) -> tuple[Gate, ...]:
    """Blocking gates over the proposals frame (columns ``query``, ``expected_program_id``) and the
    YAML text rendered from it. ``program_ids`` is ``None`` only for declaring the checks."""

    def yaml_parses(frame: pd.DataFrame) -> GateResult:
        try:
            parsed = parse_gold(rendered, source)
        except GoldFormatError as exc:
            return GateResult(False, str(exc)[:500], {"parses": False})
        same = [(i.query, i.expected_program_id) for i in parsed.items] == list(
            zip(frame["query"], frame["expected_program_id"])
        )
        return GateResult(
            same,
            f"rendered YAML parses with {len(parsed.items)} items"
            + ("" if same else f", but the frame has {len(frame)} rows or other values"),
            {"parses": True, "items": len(parsed.items), "matches_frame": same},
        )

    def not_in_gold(frame: pd.DataFrame) -> GateResult:
        clash = [q for q in frame["query"] if normalize_query(str(q)) in gold_queries] if len(frame) else []
        duplicated = int(frame["query"].map(lambda q: normalize_query(str(q))).duplicated().sum()) if len(frame) else 0
        return GateResult(
            not clash and not duplicated,
            f"{len(clash)} rows already in the gold set, {duplicated} duplicated rows"
            + (f": {clash[:3]}" if clash else ""),
            {"already_in_gold": len(clash), "duplicated": duplicated},
        )

    def programs_exist(frame: pd.DataFrame) -> GateResult:
        known = program_ids or frozenset()
        missing = sorted({p for p in frame["expected_program_id"] if p not in known}) if len(frame) else []
        return GateResult(
            not missing,
            f"{len(missing)} unknown program ids" + (f": {missing[:5]}" if missing else ""),
            {"unknown_programs": len(missing)},
        )

    return (
        Gate(
            "yaml_parses",
            "The rendered candidate YAML parses under the gold schema and carries exactly the rows.",
            yaml_parses,
        ),
        Gate("not_in_gold_set", "No row duplicates the gold set (after normalization) or another row.", not_in_gold),
        Gate("program_ids_exist", "Every expected_program_id exists in `programs` (read at run time).", programs_exist),
    )
