"""What can be reviewed, per loop: where its candidates live and what promoting them changes.

Reviewable loops and their production targets (DESIGN §1: loops never write these themselves):

========  ===============================  ===========================================================
loop      candidates                       promotion
========  ===============================  ===========================================================
A         hallucination_guard_candidates   rows inserted into ``hallucination_guard``
B         seo_testimonial_candidates       the page written to ``site/blog/case-<program>-<pref>.md``
E         alias_candidates                 rows inserted into ``am_alias``
G         tests/properties/_candidates/    the completed stub moved to ``tests/properties/``
J         evals/_candidates/*.yaml         items appended to ``evals/gold.yaml``
========  ===============================  ===========================================================

Candidate ids are ``<letter>:<ref>``: ``A:12`` (candidate_id), ``G:<failure mode>``,
``J:<YYYY-MM>/<item id>``. Table-backed candidates keep their status in their own table; file-backed
ones in ``review_file_candidates``. A promotion is described by a ``Change`` list whose ``before``
and ``after`` are the exact states a rollback checks and restores.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from autonomath_pipelines.catalog import LoopSpec, loop_spec
from autonomath_pipelines.contract.timestamps import iso_from_epoch
from autonomath_pipelines.lib import gold as goldlib
from autonomath_pipelines.lib import property_stubs as stubs
from autonomath_pipelines.lib.files import is_safe_file_name
from autonomath_pipelines.lib.review_rules import (
    PENDING,
    ReviewError,
    append_gold_items,
    gold_item_from_proposal,
    next_gold_ids,
    stub_completion_problems,
)

#: The file targets, from the catalog: where each loop's candidate files live, and where promotion puts them.
PAGE_DIR = loop_spec("B").promotes_to
STUB_CANDIDATES, STUB_TARGET = loop_spec("G").candidates_folder, loop_spec("G").promotes_to
GOLD_CANDIDATES, GOLD_PATH = loop_spec("J").candidates_folder, loop_spec("J").promotes_to

FILE_STATUS_TABLE = "review_file_candidates"


@dataclass(frozen=True)
class Candidate:
    """One reviewable proposal, whatever loop and storage it comes from."""

    id: str  # 'A:12'
    loop_id: str
    ref: str  # the id within the loop: '12', '2026-10/cand-…', '<failure mode>'
    status: str
    partition_key: str | None
    proposed_at: str | None
    summary: str  # one line for listings
    score: float | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    #: What promotion needs (the row or the file text); not shown in listings.
    fields: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class TableChange:
    """Rows a promotion inserts into a production table (``before``: the rows at those keys, none)."""

    table: str
    key: str
    rows: tuple[Mapping[str, Any], ...]

    def state(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {"table": self.table, "key": [self.key], "rows": [dict(r) for r in rows]}


@dataclass(frozen=True)
class FileChange:
    """A file under the repo root a promotion writes (``after``) or removes (``after`` None)."""

    path: str  # relative to the repo root
    before: str | None
    after: str | None


def _iso_mtime(path: Path) -> str:
    return iso_from_epoch(path.stat().st_mtime)


def _table_exists(conn, table: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None
    )


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"unparsed": text}
    return value if isinstance(value, dict) else {"value": value}


def _next_id(conn, table: str, column: str) -> int:
    return int(conn.execute(f"SELECT COALESCE(MAX({column}), 0) + 1 FROM {table}").fetchone()[0])


# ------------------------------------------------------------------------------------- base class


class Reviewable:
    """A loop whose candidates the operator reviews. Subclasses say where they live and how they promote."""

    spec: LoopSpec
    #: Where promotion writes, for listings and the promotion record ('table:am_alias', 'file:evals/gold.yaml').
    target: str

    @property
    def letter(self) -> str:
        return self.spec.letter

    def candidate_id(self, ref: str) -> str:
        return f"{self.letter}:{ref}"

    def candidates(self, conn, repo: Path) -> list[Candidate]:
        raise NotImplementedError

    def set_status(self, conn, candidate: Candidate, status: str, now: str) -> None:
        raise NotImplementedError

    def changes(self, conn, repo: Path, candidates: Sequence[Candidate], now: str) -> list[TableChange | FileChange]:
        """What promoting ``candidates`` (all approved, this loop) changes; refuses what cannot be promoted."""
        raise NotImplementedError


class TableReviewable(Reviewable):
    """Candidates in a loop's output table, keyed by ``candidate_id``, status in the same table."""

    table: str
    columns: tuple[str, ...]

    def candidates(self, conn, repo: Path) -> list[Candidate]:
        if not _table_exists(conn, self.table):
            return []
        cursor = conn.execute(
            f"SELECT candidate_id, status, partition_key, created_at, evidence_json, "
            f"{', '.join(self.columns)} FROM {self.table} ORDER BY candidate_id"
        )
        names = [d[0] for d in cursor.description]
        return [self.candidate(dict(zip(names, row))) for row in cursor]

    def candidate(self, row: Mapping[str, Any]) -> Candidate:
        raise NotImplementedError

    def set_status(self, conn, candidate: Candidate, status: str, now: str) -> None:
        conn.execute(f"UPDATE {self.table} SET status = ? WHERE candidate_id = ?", (status, int(candidate.ref)))


class FileReviewable(Reviewable):
    """Candidates in files; their status in ``review_file_candidates`` (``pending_review`` until decided)."""

    def file_statuses(self, conn) -> dict[str, tuple[str, str]]:
        if not _table_exists(conn, FILE_STATUS_TABLE):
            return {}
        rows = conn.execute(
            f"SELECT candidate_ref, status, proposed_at FROM {FILE_STATUS_TABLE} WHERE loop_id = ?",
            (self.spec.loop_id,),
        )
        return {ref: (status, proposed_at) for ref, status, proposed_at in rows}

    def with_status(self, conn, found: list[Candidate]) -> list[Candidate]:
        """``found`` (from the files) with their recorded status; decided candidates whose file is gone
        (e.g. a promoted stub was moved) are listed from the status table alone."""
        statuses = self.file_statuses(conn)
        out = []
        for c in found:
            status, proposed_at = statuses.get(c.ref, (PENDING, c.proposed_at))
            out.append(
                Candidate(
                    c.id,
                    c.loop_id,
                    c.ref,
                    status,
                    c.partition_key,
                    proposed_at,
                    c.summary,
                    c.score,
                    c.evidence,
                    c.fields,
                )
            )
        seen = {c.ref for c in found}
        for ref, (status, proposed_at) in sorted(statuses.items()):
            if ref not in seen:
                out.append(
                    Candidate(
                        self.candidate_id(ref),
                        self.spec.loop_id,
                        ref,
                        status,
                        None,
                        proposed_at,
                        "(no longer in a candidate file)",
                    )
                )
        return out

    def set_status(self, conn, candidate: Candidate, status: str, now: str) -> None:
        conn.execute(
            f"INSERT INTO {FILE_STATUS_TABLE} (loop_id, candidate_ref, status, proposed_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (loop_id, candidate_ref) DO UPDATE SET status = excluded.status, "
            "updated_at = excluded.updated_at",
            (self.spec.loop_id, candidate.ref, status, candidate.proposed_at or now, now),
        )


# ------------------------------------------------------------------------------------------ loops


class GuardPatterns(TableReviewable):
    spec = loop_spec("loop_a_hallucination_guard")
    table = "hallucination_guard_candidates"
    target = "table:hallucination_guard"
    columns = ("pattern", "label", "cluster_size", "score")

    def candidate(self, row):
        return Candidate(
            self.candidate_id(str(row["candidate_id"])),
            self.spec.loop_id,
            str(row["candidate_id"]),
            row["status"],
            row["partition_key"],
            row["created_at"],
            f"{row['pattern']}  [{row['label']}] size {row['cluster_size']}",
            row["score"],
            _json(row["evidence_json"]),
            {"pattern": row["pattern"], "label": row["label"]},
        )

    def changes(self, conn, repo, candidates, now):
        existing = {p for (p,) in conn.execute("SELECT pattern FROM hallucination_guard")}
        rows, next_id = [], _next_id(conn, "hallucination_guard", "id")
        for c in candidates:
            pattern = c.fields["pattern"]
            if pattern in existing:
                raise ReviewError(f"cannot promote {c.id}: hallucination_guard already has the pattern {pattern!r}")
            existing.add(pattern)
            rows.append(
                {
                    "id": next_id,
                    "pattern": pattern,
                    "label": c.fields["label"],
                    "created_at": now,
                    "source": f"promoted:{c.id}",
                }
            )
            next_id += 1
        return [TableChange("hallucination_guard", "id", tuple(rows))]


class Aliases(TableReviewable):
    spec = loop_spec("loop_e_alias_expansion")
    table = "alias_candidates"
    target = "table:am_alias"
    columns = ("entity_id", "surface", "lang", "source", "score")

    def candidate(self, row):
        return Candidate(
            self.candidate_id(str(row["candidate_id"])),
            self.spec.loop_id,
            str(row["candidate_id"]),
            row["status"],
            row["partition_key"],
            row["created_at"],
            f"{row['surface']} → {row['entity_id']} ({row['lang']})",
            row["score"],
            _json(row["evidence_json"]),
            {"entity_id": row["entity_id"], "surface": row["surface"], "lang": row["lang"]},
        )

    def changes(self, conn, repo, candidates, now):
        rows, next_id, seen = [], _next_id(conn, "am_alias", "alias_id"), set()
        for c in candidates:
            key = (c.fields["entity_id"], c.fields["surface"])
            taken = conn.execute("SELECT alias_id FROM am_alias WHERE entity_id = ? AND surface = ?", key).fetchone()
            if taken is not None or key in seen:
                raise ReviewError(f"cannot promote {c.id}: am_alias already has {key[1]!r} for {key[0]}")
            seen.add(key)
            rows.append(
                {
                    "alias_id": next_id,
                    "entity_id": key[0],
                    "surface": key[1],
                    "lang": c.fields["lang"],
                    "source": f"promoted:{c.id}",
                    "created_at": now,
                }
            )
            next_id += 1
        return [TableChange("am_alias", "alias_id", tuple(rows))]


class TestimonialPages(TableReviewable):
    spec = loop_spec("loop_b_testimonial_seo")
    table = "seo_testimonial_candidates"
    target = f"file:{PAGE_DIR}/"
    columns = ("program_id", "prefecture_code", "page_path", "markdown", "group_size")

    def candidate(self, row):
        return Candidate(
            self.candidate_id(str(row["candidate_id"])),
            self.spec.loop_id,
            str(row["candidate_id"]),
            row["status"],
            row["partition_key"],
            row["created_at"],
            f"{row['page_path']} (group of {row['group_size']})",
            None,
            _json(row["evidence_json"]),
            {"page_path": row["page_path"], "markdown": row["markdown"]},
        )

    def changes(self, conn, repo, candidates, now):
        changes, paths = [], set()
        for c in candidates:
            page = str(c.fields["page_path"])
            folder, _, name = page.rpartition("/")
            if folder != PAGE_DIR or not is_safe_file_name(name):
                raise ReviewError(f"cannot promote {c.id}: page path {page!r} is not a file in {PAGE_DIR}/")
            if page in paths:
                raise ReviewError(f"cannot promote {c.id}: another candidate of this promotion also writes {page}")
            paths.add(page)
            changes.append(FileChange(page, _read(repo / page), c.fields["markdown"]))
        return changes


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


class PropertyStubs(FileReviewable):
    spec = loop_spec("loop_g_invariant_expansion")
    target = f"file:{STUB_TARGET}/"

    def candidates(self, conn, repo):
        folder = repo / STUB_CANDIDATES
        found = []
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
            text = path.read_text(encoding="utf-8")
            marker = stubs.MARKER.search(text)
            if marker is None:
                continue  # the operator's own helper files are not candidates
            partition = stubs.PARTITION_MARKER.search(text)
            occurrences = re.search(r"^#\s*occurrences:\s*(\d+)", text, re.MULTILINE)
            problems = stub_completion_problems(text, str(path))
            found.append(
                Candidate(
                    self.candidate_id(marker.group(1)),
                    self.spec.loop_id,
                    marker.group(1),
                    PENDING,
                    partition.group(1) if partition else None,
                    _iso_mtime(path),
                    f"{path.name} ({'complete' if not problems else 'stub: ' + '; '.join(problems)})",
                    float(occurrences.group(1)) if occurrences else None,
                    {
                        "file": f"{STUB_CANDIDATES}/{path.name}",
                        **({"occurrences": int(occurrences.group(1))} if occurrences else {}),
                    },
                    {"name": path.name, "text": text},
                )
            )
        return self.with_status(conn, found)

    def changes(self, conn, repo, candidates, now):
        changes = []
        for c in candidates:
            if "name" not in c.fields:
                raise ReviewError(f"cannot promote {c.id}: its stub is no longer in {STUB_CANDIDATES}/")
            name, text = c.fields["name"], c.fields["text"]
            problems = stub_completion_problems(text, name)
            if problems:
                raise ReviewError(
                    f"cannot promote {c.id}: {STUB_CANDIDATES}/{name} is not completed — "
                    + "; ".join(problems)
                    + ". Complete it (a real property, no xfail), then promote."
                )
            target = f"{STUB_TARGET}/{name}"
            if (repo / target).exists():
                raise ReviewError(f"cannot promote {c.id}: {target} already exists")
            changes += [FileChange(f"{STUB_CANDIDATES}/{name}", text, None), FileChange(target, None, text)]
        return changes


class GoldProposals(FileReviewable):
    spec = loop_spec("loop_j_gold_expansion")
    target = f"file:{GOLD_PATH}"

    def candidates(self, conn, repo):
        folder = repo / GOLD_CANDIDATES
        found = []
        for path in sorted(folder.glob("gold_proposed_*.yaml")) if folder.is_dir() else []:
            month = path.stem.removeprefix("gold_proposed_")
            try:
                proposals = goldlib.parse_gold(path.read_text(encoding="utf-8"), source=str(path))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ReviewError(f"cannot read loop J candidates: {exc}") from exc
            partition = str((proposals.provenance or {}).get("partition_key") or month)
            for item in proposals.items:
                ref = f"{month}/{item.id}"
                evidence = dict(item.evidence or {})
                found.append(
                    Candidate(
                        self.candidate_id(ref),
                        self.spec.loop_id,
                        ref,
                        PENDING,
                        partition,
                        _iso_mtime(path),
                        f"{item.query} → {item.expected_program_id}",
                        float(evidence.get("sessions", 0)) or None,
                        evidence,
                        {
                            "query": item.query,
                            "expected_program_id": item.expected_program_id,
                            "month": month,
                            "item_id": item.id,
                        },
                    )
                )
        return self.with_status(conn, found)

    def changes(self, conn, repo, candidates, now):
        for c in candidates:
            if "query" not in c.fields:
                raise ReviewError(f"cannot promote {c.id}: it is no longer in a candidate file")
        path = repo / GOLD_PATH
        before = _read(path)
        existing = goldlib.parse_gold(before, str(path)).items if before else ()
        ids = next_gold_ids([item.id for item in existing], len(candidates))
        items = [
            gold_item_from_proposal(
                c.fields,
                new_id,
                note=f"promoted from loop J {c.fields['month']} "
                f"({c.fields['item_id']}, {c.evidence.get('sessions', '?')} sessions)",
            )
            for c, new_id in zip(candidates, ids)
        ]
        try:
            after = append_gold_items(before, items, source=GOLD_PATH)
        except ReviewError as exc:
            raise ReviewError(f"cannot promote {', '.join(c.id for c in candidates)}: {exc}") from exc
        return [FileChange(GOLD_PATH, before, after)]


#: Reviewable loops by letter, in catalog order.
REVIEWABLES: dict[str, Reviewable] = {
    r.letter: r for r in (GuardPatterns(), TestimonialPages(), Aliases(), PropertyStubs(), GoldProposals())
}


def reviewable(name: str) -> Reviewable:
    """The reviewable loop named by letter (``A``) or loop id; a clear error for any other loop."""
    for r in REVIEWABLES.values():
        if name.upper() == r.letter or name == r.spec.loop_id:
            return r
    try:
        spec = loop_spec(name)
    except KeyError:
        raise ReviewError(
            f"unknown loop {name!r}; reviewable loops: "
            + ", ".join(f"{r.letter} ({r.spec.loop_id})" for r in REVIEWABLES.values())
        ) from None
    raise ReviewError(
        f"loop {spec.letter} ({spec.loop_id}) is not reviewable: its output "
        f"({', '.join(spec.writes)}) has no production table or file to promote into; "
        f"reviewable loops: {', '.join(REVIEWABLES)}"
    )


def parse_candidate_id(candidate_id: str) -> tuple[Reviewable, str]:
    letter, sep, ref = candidate_id.partition(":")
    if not sep or not ref:
        raise ReviewError(
            f"bad candidate id {candidate_id!r}: expected <loop letter>:<id>, e.g. A:12 or J:2026-10/cand-1a2b3c4d5e6f"
        )
    return reviewable(letter), ref
