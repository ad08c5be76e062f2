"""The operator's review actions: list, approve, reject, promote, roll back — audited, dry run by default.

Every action re-reads the candidates' status inside one ``BEGIN IMMEDIATE`` transaction, refuses the
whole request if any candidate cannot take the transition (nothing changes), and records each status
change in ``review_audit_log``. A promotion records the exact before/after state of what it touched in
``review_promotions``; file changes are atomic replacements made inside the database transaction and
undone if it fails, so a promotion lands completely or not at all.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from autonomath_pipelines.contract.schema import review_tables
from autonomath_pipelines.contract.timestamps import UTC_FORMAT
from autonomath_pipelines.lib.files import atomic_write_text
from autonomath_pipelines.lib.review_rules import (
    APPROVED,
    PENDING,
    ReviewError,
    next_status,
)
from autonomath_pipelines.resources import AutonomathDatabase
from autonomath_pipelines.review.candidates import (
    REVIEWABLES,
    Candidate,
    FileChange,
    TableChange,
    parse_candidate_id,
    reviewable,
)

#: Under the repo root while a promotion or rollback changes files: what to put back if the process
#: dies between the file renames and the database commit (``ReviewService.recover``).
JOURNAL = ".autonomath-review-journal.json"


def default_actor() -> str:
    """Who acts: ``AUTONOMATH_OPERATOR``, else the login name."""
    explicit = os.environ.get("AUTONOMATH_OPERATOR", "").strip()
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass(frozen=True)
class Transition:
    candidate: Candidate
    from_status: str
    to_status: str


@dataclass
class Outcome:
    """What an action did (``executed``) or would do (dry run)."""

    action: str
    executed: bool
    transitions: list[Transition] = field(default_factory=list)
    promotion_id: int | None = None
    changes: list[TableChange | FileChange] = field(default_factory=list)

    def describe_changes(self) -> list[str]:
        lines = []
        for change in self.changes:
            if isinstance(change, TableChange):
                lines.append(
                    f"{change.table}: {'insert' if self.action == 'promote' else 'delete'} {len(change.rows)} row(s)"
                )
                lines += [f"    {json.dumps(dict(r), ensure_ascii=False)}" for r in change.rows[:20]]
            elif change.after is None:
                lines.append(f"{change.path}: remove")
            elif change.before is None:
                lines.append(f"{change.path}: create ({len(change.after.splitlines())} lines)")
            else:
                lines.append(
                    f"{change.path}: replace ({len(change.before.splitlines())} → "
                    f"{len(change.after.splitlines())} lines)"
                )
        return lines


@dataclass(frozen=True)
class Promotion:
    promotion_id: int
    promoted_at: str
    actor: str
    loop_id: str
    target: str
    candidate_ids: tuple[str, ...]
    state: str
    rolled_back_at: str | None
    rolled_back_by: str | None
    dagster_run_id: str | None


class ReviewService:
    """Review actions over one AutonoMath database and one service repo (for the file targets)."""

    def __init__(
        self,
        database: AutonomathDatabase,
        repo_root: str | Path,
        *,
        actor: str | None = None,
        dagster_run_id: str | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ):
        self.database = database
        self.repo = Path(repo_root).expanduser().resolve()
        self.actor = actor or default_actor()
        self.dagster_run_id = dagster_run_id
        self.clock = clock
        self._journal_token: str | None = None

    def _now(self) -> str:
        return self.clock().astimezone(dt.timezone.utc).strftime(UTC_FORMAT)

    # ------------------------------------------------------------------------------------ reading

    def list(
        self,
        loop: str | None = None,
        *,
        status: str | None = None,
        partition: str | None = None,
        limit: int | None = None,
    ) -> list[Candidate]:
        """Candidates of one loop (or every reviewable loop), filtered; ordered by loop then id."""
        loops = [reviewable(loop)] if loop else list(REVIEWABLES.values())
        with self.database.read_only() as conn:
            found = [c for r in loops for c in r.candidates(conn, self.repo)]
        found = [
            c
            for c in found
            if (status is None or c.status == status) and (partition is None or c.partition_key == partition)
        ]
        return found[:limit] if limit is not None else found

    def show(self, candidate_id: str) -> Candidate:
        with self.database.read_only() as conn:
            return self._get(conn, [candidate_id])[0]

    def promotions(self, loop: str | None = None) -> list[Promotion]:
        loop_id = reviewable(loop).spec.loop_id if loop else None
        with self.database.read_only() as conn:
            if not _has_table(conn, "review_promotions"):
                return []
            rows = conn.execute(
                "SELECT promotion_id, promoted_at, actor, loop_id, target, candidate_refs, state, rolled_back_at, "
                "rolled_back_by, dagster_run_id FROM review_promotions WHERE ? IS NULL OR loop_id = ? "
                "ORDER BY promotion_id",
                (loop_id, loop_id),
            ).fetchall()
        return [Promotion(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), *r[6:]) for r in rows]

    def _get(self, conn, candidate_ids: Sequence[str]) -> list[Candidate]:
        """The candidates with these ids (duplicates dropped, order kept); unknown ids are an error."""
        by_loop: dict[str, dict[str, Candidate]] = {}
        out, missing = [], []
        for candidate_id in dict.fromkeys(candidate_ids):
            loop, ref = parse_candidate_id(candidate_id)
            if loop.letter not in by_loop:
                by_loop[loop.letter] = {c.ref: c for c in loop.candidates(conn, self.repo)}
            found = by_loop[loop.letter].get(ref)
            (out.append(found) if found else missing.append(candidate_id))
        if missing:
            raise ReviewError(f"unknown candidate(s): {', '.join(missing)} (see `autonomath-loops review list`)")
        return out

    def _select(
        self,
        conn,
        ids: Sequence[str] | None,
        loop: str | None,
        status: str,
        partition: str | None,
        min_score: float | None,
        limit: int | None,
    ) -> list[Candidate]:
        if ids:
            if partition or min_score is not None:
                raise ReviewError("give candidate ids or a filter (--loop/--partition/--min-score), not both")
            return self._get(conn, ids)
        if not loop:
            raise ReviewError("name the candidates: ids (e.g. A:12) or --loop with an optional filter")
        chosen = [
            c
            for c in reviewable(loop).candidates(conn, self.repo)
            if c.status == status
            and (partition is None or c.partition_key == partition)
            and (min_score is None or (c.score is not None and c.score >= min_score))
        ]
        return chosen[:limit] if limit is not None else chosen

    # ---------------------------------------------------------------------------------- decisions

    def decide(
        self,
        action: str,
        ids: Sequence[str] | None = None,
        *,
        loop: str | None = None,
        partition: str | None = None,
        min_score: float | None = None,
        limit: int | None = None,
        reason: str | None = None,
        execute: bool = False,
    ) -> Outcome:
        """Approve or reject candidates by id or by filter (a filter selects pending candidates)."""
        if action not in ("approve", "reject"):
            raise ReviewError(f"decide() takes approve or reject, not {action!r}")
        reason = (reason or "").strip() or None
        if action == "reject" and reason is None:
            raise ReviewError("a rejection needs a reason (--reason)")
        with self._transaction(execute) as conn:
            chosen = self._select(conn, ids, loop, PENDING, partition, min_score, limit)
            outcome = Outcome(
                action,
                executed=execute,
                transitions=[Transition(c, c.status, next_status(action, c.id, c.status)) for c in chosen],
            )
            if execute:
                now = self._now()
                for t in outcome.transitions:
                    self._set_status(conn, t, now, action, reason=reason)
        return outcome

    # ---------------------------------------------------------------------------------- promotion

    def promote(self, ids: Sequence[str] | None = None, *, loop: str | None = None, execute: bool = False) -> Outcome:
        """Promote approved candidates of one loop into production, in one transaction."""
        applied: list[tuple[Path, str | None]] = []
        try:
            with self._transaction(execute) as conn:
                outcome = self._promote(conn, ids, loop, execute, applied)
        except BaseException:
            _restore(applied)  # the transaction did not commit: files go back too
            self._journal().unlink(missing_ok=True)  # (kept if putting them back failed: recover() retries)
            raise
        finally:
            self._journal_token = None
        self._journal().unlink(missing_ok=True)  # committed: nothing to put back any more
        return outcome

    def _promote(self, conn, ids, loop, execute, applied) -> Outcome:
        chosen = self._select(conn, ids, loop, APPROVED, None, None, None)
        if not chosen:
            raise ReviewError(f"no approved candidates{' of loop ' + loop if loop else ''} to promote")
        loops = {c.loop_id for c in chosen}
        if len(loops) > 1:
            raise ReviewError(f"promote one loop at a time (got candidates of {', '.join(sorted(loops))})")
        target = reviewable(chosen[0].loop_id)
        transitions = [Transition(c, c.status, next_status("promote", c.id, c.status)) for c in chosen]
        now = self._now()
        changes = target.changes(conn, self.repo, chosen, now)
        outcome = Outcome("promote", executed=execute, transitions=transitions, changes=changes)
        if not execute:
            return outcome
        before, after = self._states(conn, changes)
        self._journal_token = uuid.uuid4().hex if after.get("files") else None
        outcome.promotion_id = conn.execute(
            "INSERT INTO review_promotions (promoted_at, actor, loop_id, target, candidate_refs, before_json, "
            "after_json, state, dagster_run_id) VALUES (?, ?, ?, ?, ?, ?, ?, 'applied', ?)",
            (
                now,
                self.actor,
                target.spec.loop_id,
                target.target,
                json.dumps([c.id for c in chosen]),
                json.dumps(before, ensure_ascii=False),
                json.dumps(after, ensure_ascii=False),
                self.dagster_run_id,
            ),
        ).lastrowid
        for t in transitions:
            self._set_status(conn, t, now, "promote", promotion_id=outcome.promotion_id)
        for change in changes:
            if isinstance(change, TableChange):
                _insert_rows(conn, change.table, change.rows)
        applied += self._apply_files([(c.path, c.after) for c in changes if isinstance(c, FileChange)])
        return outcome

    def rollback(self, promotion_id: int, *, execute: bool = False) -> Outcome:
        """Restore the exact state before promotion ``promotion_id``; refused if anything changed since."""
        applied: list[tuple[Path, str | None]] = []
        try:
            with self._transaction(execute) as conn:
                outcome = self._rollback(conn, int(promotion_id), execute, applied)
        except BaseException:
            _restore(applied)
            self._journal().unlink(missing_ok=True)
            raise
        finally:
            self._journal_token = None
        self._journal().unlink(missing_ok=True)
        return outcome

    def _rollback(self, conn, promotion_id: int, execute: bool, applied) -> Outcome:
        if not _has_table(conn, "review_promotions"):
            raise ReviewError(f"no promotion {promotion_id}: nothing has been promoted yet")
        row = conn.execute(
            "SELECT loop_id, candidate_refs, before_json, after_json, state, rolled_back_at, rolled_back_by "
            "FROM review_promotions WHERE promotion_id = ?",
            (int(promotion_id),),
        ).fetchone()
        if row is None:
            raise ReviewError(f"no promotion {promotion_id} (see `autonomath-loops review promotions`)")
        loop_id, refs, before, after, state, rolled_back_at, rolled_back_by = row
        if state == "rolled_back":
            raise ReviewError(
                f"promotion {promotion_id} was already rolled back at {rolled_back_at} by {rolled_back_by}"
            )
        before, after = json.loads(before), json.loads(after)
        drift = self._drift(conn, after)
        if drift:
            raise ReviewError(
                f"cannot roll back promotion {promotion_id}: "
                + "; ".join(drift)
                + " — changed since the promotion; restore by hand or promote again"
            )
        candidates = self._get(conn, json.loads(refs))
        transitions = [Transition(c, c.status, next_status("rollback", c.id, c.status)) for c in candidates]
        changes: list[TableChange | FileChange] = []
        if "table" in after:
            changes.append(TableChange(after["table"], after["key"][0], tuple(after["rows"])))
        for path, text in after.get("files", {}).items():
            changes.append(FileChange(path, text, before["files"][path]))
        outcome = Outcome(
            "rollback", executed=execute, transitions=transitions, promotion_id=int(promotion_id), changes=changes
        )
        if not execute:
            return outcome
        now = self._now()
        self._journal_token = uuid.uuid4().hex if after.get("files") else None
        conn.execute(
            "UPDATE review_promotions SET state = 'rolled_back', rolled_back_at = ?, rolled_back_by = ? "
            "WHERE promotion_id = ?",
            (now, self.actor, int(promotion_id)),
        )
        for t in transitions:
            self._set_status(conn, t, now, "rollback", promotion_id=int(promotion_id))
        if "table" in after:
            key = after["key"][0]
            conn.executemany(f"DELETE FROM {after['table']} WHERE {key} = ?", [(r[key],) for r in after["rows"]])
            _insert_rows(conn, before["table"], before["rows"])
        applied += self._apply_files(list(before.get("files", {}).items()))
        return outcome

    # ------------------------------------------------------------------------------------ helpers

    def _transaction(self, execute: bool):
        """A write transaction when executing; a read-only connection for a dry run (which writes nothing)."""
        tables = review_tables() + [r.table for r in REVIEWABLES.values() if hasattr(r, "table")]
        if execute:
            self.recover()
            return self.database.write_transaction(output_tables=tables)
        return self.database.read_only()

    def _set_status(
        self, conn, t: Transition, now: str, action: str, *, reason: str | None = None, promotion_id: int | None = None
    ) -> None:
        loop = reviewable(t.candidate.loop_id)
        loop.set_status(conn, t.candidate, t.to_status, now)
        conn.execute(
            "INSERT INTO review_audit_log (ts, actor, action, loop_id, candidate_id, from_status, to_status, reason, "
            "proposed_at, promotion_id, dagster_run_id, detail_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                now,
                self.actor,
                action,
                t.candidate.loop_id,
                t.candidate.id,
                t.from_status,
                t.to_status,
                reason,
                t.candidate.proposed_at,
                promotion_id,
                self.dagster_run_id,
                json.dumps(
                    {
                        "summary": t.candidate.summary,
                        "partition_key": t.candidate.partition_key,
                        **({"journal": self._journal_token} if self._journal_token else {}),
                    },
                    ensure_ascii=False,
                ),
            ),
        )

    def _states(self, conn, changes: Sequence[TableChange | FileChange]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The promotion record's before/after: rows at the inserted keys (none before), file texts."""
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        for change in changes:
            if isinstance(change, TableChange):
                keys = [r[change.key] for r in change.rows]
                before.update(change.state(_rows_by_key(conn, change.table, change.key, keys)))
                after.update(change.state(change.rows))
            else:
                before.setdefault("files", {})[change.path] = change.before
                after.setdefault("files", {})[change.path] = change.after
        if before.get("rows"):
            raise ReviewError(f"{before['table']} already has rows with the keys this promotion would insert")
        return before, after

    def _drift(self, conn, after: dict[str, Any]) -> list[str]:
        """What differs now from the state a promotion left (empty: safe to roll back)."""
        problems = []
        if "table" in after:
            key = after["key"][0]
            now_rows = {r[key]: r for r in _rows_by_key(conn, after["table"], key, [r[key] for r in after["rows"]])}
            for expected in after["rows"]:
                current = now_rows.get(expected[key])
                if current is None:
                    problems.append(f"{after['table']} row {key}={expected[key]} was deleted")
                elif dict(current) != dict(expected):
                    problems.append(f"{after['table']} row {key}={expected[key]} was modified")
        for path, text in after.get("files", {}).items():
            current = _read_text(self.repo / path)
            if current != text:
                problems.append(
                    f"{path} was {'removed' if current is None else 'recreated' if text is None else 'edited'}"
                )
        return problems

    def _journal(self) -> Path:
        return self.repo / JOURNAL

    def recover(self) -> bool:
        """Finish what a process killed mid-promotion left: if its transaction committed (its audit rows
        carry the journal's token) the journal is just removed, else the files are put back as they
        were. True when a journal was found."""
        path = self._journal()
        if not path.exists():
            return False
        journal = json.loads(path.read_text(encoding="utf-8"))
        with self.database.read_only() as conn:
            committed = (
                _has_table(conn, "review_audit_log")
                and conn.execute(
                    "SELECT 1 FROM review_audit_log WHERE json_extract(detail_json, '$.journal') = ? LIMIT 1",
                    (journal.get("token"),),
                ).fetchone()
                is not None
            )
        if not committed:
            _restore([(self.repo / relative, text) for relative, text in journal["files"].items()])
        path.unlink(missing_ok=True)
        return True

    def _apply_files(self, writes: Iterable[tuple[str, str | None]]) -> list[tuple[Path, str | None]]:
        """Write (or remove, for None) each file atomically; returns what to put back to undo it. On a
        failure midway the files already written are put back before the error propagates."""
        done: list[tuple[Path, str | None]] = []
        # Writes before removals: a write that fails (disk full) then leaves nothing to put back.
        ordered = sorted(writes, key=lambda write: write[1] is None)
        if ordered:
            journal = {
                "token": self._journal_token,
                "files": {relative: _read_text(self.repo / relative) for relative, _ in ordered},
            }
            atomic_write_text(self._journal(), json.dumps(journal, ensure_ascii=False))
        try:
            for relative, text in ordered:
                path = self.repo / relative
                previous = _read_text(path)
                if text is None:
                    path.unlink(missing_ok=True)
                else:
                    atomic_write_text(path, text)
                done.append((path, previous))
        except BaseException:
            _restore(done)
            raise
        return done


def _restore(done: list[tuple[Path, str | None]]) -> None:
    for path, previous in reversed(done):
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_text(path, previous)
    done.clear()


def _has_table(conn, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _read_text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def _rows_by_key(conn, table: str, key: str, keys: Sequence[Any]) -> list[dict[str, Any]]:
    if not keys:
        return []
    cursor = conn.execute(
        f"SELECT * FROM {table} WHERE {key} IN ({', '.join('?' * len(keys))}) ORDER BY {key}", tuple(keys)
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


def _insert_rows(conn, table: str, rows: Sequence[dict[str, Any]]) -> None:
    for row in rows:
        columns = list(row)
        conn.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            tuple(row[c] for c in columns),
        )
