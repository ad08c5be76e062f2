"""Review actions against a small hand-made database and service repo: transitions, refusals, audit,
and promotion + rollback round trips that restore production exactly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from autonomath_pipelines.contract.schema import create_all
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.lib.gold import parse_gold
from autonomath_pipelines.resources import AutonomathDatabase
from autonomath_pipelines.review import IllegalTransition, ReviewError, ReviewService
from autonomath_pipelines.review import service as service_module

NOW = "2026-11-22T01:00:00Z"
GOLD = (Path(__file__).parents[2] / "evals" / "gold.yaml").read_text(encoding="utf-8")
PROVENANCE = "'loop_a_hallucination_guard', 'run-1', '2026-11-08', 'v1', '2026-11-16T00:00:00Z'"


def _make_db(path: Path) -> Path:
    conn = sqlite3.connect(str(path))
    create_all(conn)
    conn.execute(
        "INSERT INTO hallucination_guard VALUES (1, '既存の偽制度', 'launch', '2026-01-01T00:00:00Z', 'launch')"
    )
    conn.execute(
        "INSERT INTO am_alias VALUES (1, 'P000001', 'ものづくり補助金', 'ja', 'launch', '2026-01-01T00:00:00Z')"
    )
    for cid, pattern, score in (
        (1, "返済不要 1億円 補助金", 9.0),
        (2, "ペット 飼育費 補助金", 2.0),
        (3, "既存の偽制度", 1.0),
    ):
        conn.execute(
            "INSERT INTO hallucination_guard_candidates (candidate_id, pattern, label, cluster_size, score, "
            "evidence_json, "
            f"loop_id, run_id, partition_key, code_version, created_at) VALUES (?, ?, 'label', 5, ?, '{{}}', "
            f"{PROVENANCE})",
            (cid, pattern, score),
        )
    for cid, surface in ((1, "monozukuri"), (2, "ものづくり補助金")):
        conn.execute(
            "INSERT INTO alias_candidates (candidate_id, entity_id, surface, lang, source, score, evidence_json, "
            "loop_id, "
            "run_id, partition_key, code_version, created_at) VALUES (?, 'P000001', ?, 'ja-Latn', 'loop_e', 0.9, '{}', "
            "'loop_e_alias_expansion', 'run-2', '2026-11-08', 'v1', '2026-11-16T00:00:00Z')",
            (cid, surface),
        )
    conn.execute(
        "INSERT INTO seo_testimonial_candidates (candidate_id, program_id, prefecture_code, page_path, markdown, "
        "jsonld, "
        "group_size, evidence_json, loop_id, run_id, partition_key, code_version, created_at) VALUES (1, 'P000001', "
        "'13', "
        "'site/blog/case-P000001-13.md', '# 事例\n', '{}', 5, '{}', 'loop_b_testimonial_seo', 'run-3', '2026-10-01', "
        "'v1', "
        "'2026-11-01T01:00:00Z')"
    )
    conn.commit()
    conn.close()
    return path


STUB = """# autonomath-invariant: keyerror_lookup_0a1b2c3d
# autonomath-partition: 2026-10-01
#   occurrences: 12
import pytest

pytestmark = pytest.mark.xfail(strict=True, reason="candidate")


def test_keyerror_lookup_0a1b2c3d(value):
    raise NotImplementedError("write the property")
"""
COMPLETED = """# autonomath-invariant: keyerror_lookup_0a1b2c3d
# autonomath-partition: 2026-10-01
#   occurrences: 12


def test_keyerror_lookup_0a1b2c3d():
    assert {}.get("missing") is None
"""
PROPOSALS = """version: 1
status: pending_review
provenance: {loop_id: loop_j_gold_expansion, partition_key: '2026-10-01'}
items:
- id: cand-aaaaaaaaaaaa
  query: 給湯省エネ2026事業
  expected_program_id: P000502
  status: pending_review
  evidence: {sessions: 12, requests: 30, mean_confidence: 0.93}
- id: cand-bbbbbbbbbbbb
  query: IT導入補助金
  expected_program_id: P000209
  status: pending_review
  evidence: {sessions: 9, requests: 11, mean_confidence: 0.9}
"""


@pytest.fixture
def world(tmp_path):
    db = _make_db(tmp_path / "autonomath.db")
    repo = tmp_path / "repo"
    (repo / "evals" / "_candidates").mkdir(parents=True)
    (repo / "evals" / "gold.yaml").write_text(GOLD, encoding="utf-8")
    (repo / "evals" / "_candidates" / "gold_proposed_2026-10.yaml").write_text(PROPOSALS, encoding="utf-8")
    (repo / "tests" / "properties" / "_candidates").mkdir(parents=True)
    (repo / "tests" / "properties" / "_candidates" / "test_keyerror_lookup_0a1b2c3d.py").write_text(STUB)
    return db, repo


def _service(world, **kwargs) -> ReviewService:
    db, repo = world
    return ReviewService(AutonomathDatabase(path=str(db)), repo, actor=kwargs.pop("actor", "operator"), **kwargs)


def _table_dump(db: Path, table: str) -> list[str]:
    """The table's schema and rows as SQL text (stdlib sqlite3: pysqlite3 has no iterdump)."""
    import sqlite3 as stdlib_sqlite3

    conn = stdlib_sqlite3.connect(str(db))
    try:
        return [
            line for line in conn.iterdump() if line.startswith((f'INSERT INTO "{table}"', f"CREATE TABLE {table}"))
        ]
    finally:
        conn.close()


def _query(db: Path, sql: str, params=()) -> list[tuple]:
    conn = sqlite3.connect(str(db))
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(repo: Path) -> dict[str, str]:
    return {str(p.relative_to(repo)): _sha(p) for p in sorted(repo.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------- listing


def test_list_shows_every_reviewable_loop_with_status_and_filters(world):
    service = _service(world)
    ids = [c.id for c in service.list()]
    assert ids == [
        "A:1",
        "A:2",
        "A:3",
        "B:1",
        "E:1",
        "E:2",
        "G:keyerror_lookup_0a1b2c3d",
        "J:2026-10/cand-aaaaaaaaaaaa",
        "J:2026-10/cand-bbbbbbbbbbbb",
    ]
    assert {c.status for c in service.list()} == {"pending_review"}
    assert [c.id for c in service.list("E", partition="2026-11-08")] == ["E:1", "E:2"]
    assert service.list("A", partition="2099-01-01") == []
    assert service.show("J:2026-10/cand-aaaaaaaaaaaa").evidence["sessions"] == 12


def test_non_reviewable_and_unknown_loops_are_named(world):
    service = _service(world)
    with pytest.raises(ReviewError, match="loop D .* is not reviewable"):
        service.list("D")
    with pytest.raises(ReviewError, match="unknown loop 'Z'"):
        service.list("Z")
    with pytest.raises(ReviewError, match="unknown candidate"):
        service.show("A:99")
    with pytest.raises(ReviewError, match="bad candidate id"):
        service.show("A12")


# ------------------------------------------------------------------------------------ decisions


def test_dry_run_is_the_default_and_changes_nothing(world):
    db, repo = world
    before_db, before_tree = _sha(db), _tree(repo)
    service = _service(world)
    outcome = service.decide("approve", ["A:1", "G:keyerror_lookup_0a1b2c3d"])
    assert not outcome.executed and [t.to_status for t in outcome.transitions] == ["approved", "approved"]
    assert _sha(db) == before_db and _tree(repo) == before_tree
    assert service.show("A:1").status == "pending_review"


def test_approve_and_reject_record_who_when_what_and_why(world):
    db, _ = world
    service = _service(world, actor="yamada", dagster_run_id="run-xyz")
    service.decide("approve", ["A:1", "J:2026-10/cand-aaaaaaaaaaaa"], execute=True)
    service.decide("reject", ["A:2"], reason="too generic", execute=True)
    assert service.show("A:1").status == "approved"
    assert service.show("J:2026-10/cand-aaaaaaaaaaaa").status == "approved"
    assert service.show("A:2").status == "rejected"
    audit = _query(
        db,
        "SELECT actor, action, candidate_id, from_status, to_status, reason, proposed_at, dagster_run_id "
        "FROM review_audit_log ORDER BY audit_id",
    )
    assert audit == [
        ("yamada", "approve", "A:1", "pending_review", "approved", None, "2026-11-16T00:00:00Z", "run-xyz"),
        (
            "yamada",
            "approve",
            "J:2026-10/cand-aaaaaaaaaaaa",
            "pending_review",
            "approved",
            None,
            audit[1][6],
            "run-xyz",
        ),
        ("yamada", "reject", "A:2", "pending_review", "rejected", "too generic", "2026-11-16T00:00:00Z", "run-xyz"),
    ]


def test_filters_select_pending_candidates_only(world):
    service = _service(world)
    service.decide("reject", ["A:3"], reason="dup", execute=True)
    outcome = service.decide("approve", loop="A", min_score=1.5, execute=True)
    assert [t.candidate.id for t in outcome.transitions] == ["A:1", "A:2"]
    assert service.decide("approve", loop="A", execute=True).transitions == []


def test_a_rejection_needs_a_reason(world):
    with pytest.raises(ReviewError, match="reason"):
        _service(world).decide("reject", ["A:1"], reason="  ", execute=True)


def test_an_illegal_transition_refuses_the_whole_request(world):
    db, _ = world
    service = _service(world)
    service.decide("reject", ["A:2"], reason="no", execute=True)
    audit_rows = _query(db, "SELECT COUNT(*) FROM review_audit_log")
    with pytest.raises(IllegalTransition, match="cannot approve A:2: it is rejected"):
        service.decide("approve", ["A:1", "A:2"], execute=True)
    assert service.show("A:1").status == "pending_review"  # A:1 was not approved either
    assert _query(db, "SELECT COUNT(*) FROM review_audit_log") == audit_rows
    with pytest.raises(IllegalTransition, match="already rejected"):
        service.decide("reject", ["A:2"], reason="again", execute=True)
    with pytest.raises(IllegalTransition, match="only a candidate that is approved can be promoted"):
        service.promote(["A:1"], execute=True)
    with pytest.raises(ReviewError, match="no approved candidates"):
        service.promote(loop="A", execute=True)


# ---------------------------------------------------------------------------- promote + rollback


@pytest.mark.parametrize("letter, candidate, table", [("A", "A:1", "hallucination_guard"), ("E", "E:1", "am_alias")])
def test_table_promotion_and_rollback_restore_the_table_exactly(world, letter, candidate, table):
    db, _ = world
    service = _service(world)
    before = _table_dump(db, table)
    service.decide("approve", [candidate], execute=True)
    outcome = service.promote(loop=letter, execute=True)
    after = _table_dump(db, table)
    assert len(after) == len(before) + 1 and service.show(candidate).status == "promoted"
    assert any(f"promoted:{candidate}" in line for line in after)
    rolled = service.rollback(outcome.promotion_id, execute=True)
    assert [t.to_status for t in rolled.transitions] == ["rolled_back"]
    assert _table_dump(db, table) == before
    assert service.show(candidate).status == "rolled_back"
    actions = _query(
        db,
        "SELECT action, to_status, promotion_id FROM review_audit_log WHERE candidate_id = ? ORDER BY audit_id",
        (candidate,),
    )
    assert actions == [
        ("approve", "approved", None),
        ("promote", "promoted", outcome.promotion_id),
        ("rollback", "rolled_back", outcome.promotion_id),
    ]
    assert service.promotions()[0].state == "rolled_back"


def test_rolling_back_twice_is_refused(world):
    service = _service(world)
    service.decide("approve", ["A:1"], execute=True)
    promotion = service.promote(["A:1"], execute=True).promotion_id
    service.rollback(promotion, execute=True)
    with pytest.raises(ReviewError, match=f"promotion {promotion} was already rolled back"):
        service.rollback(promotion, execute=True)
    with pytest.raises(ReviewError, match="no promotion 99"):
        service.rollback(99, execute=True)


def test_rollback_is_refused_when_the_promoted_rows_changed_since(world):
    db, _ = world
    service = _service(world)
    service.decide("approve", ["A:1"], execute=True)
    promotion = service.promote(["A:1"], execute=True).promotion_id
    conn = sqlite3.connect(str(db))
    conn.execute("UPDATE hallucination_guard SET label = 'edited by hand' WHERE source = 'promoted:A:1'")
    conn.commit()
    conn.close()
    edited = _table_dump(db, "hallucination_guard")
    with pytest.raises(ReviewError, match="was modified"):
        service.rollback(promotion, execute=True)
    assert _table_dump(db, "hallucination_guard") == edited
    assert service.show("A:1").status == "promoted"


def test_promotion_refuses_what_production_already_has(world):
    service = _service(world)
    service.decide("approve", ["A:3", "E:2"], execute=True)
    with pytest.raises(ReviewError, match="already has the pattern"):
        service.promote(["A:3"], execute=True)
    with pytest.raises(ReviewError, match="already has 'ものづくり補助金'"):
        service.promote(["E:2"], execute=True)
    with pytest.raises(ReviewError, match="one loop at a time"):
        service.promote(["A:3", "E:2"], execute=True)
    assert service.show("A:3").status == "approved"


def test_gold_promotion_appends_and_rollback_restores_the_text_exactly(world):
    db, repo = world
    gold = repo / "evals" / "gold.yaml"
    service = _service(world)
    service.decide("approve", ["J:2026-10/cand-aaaaaaaaaaaa"], execute=True)
    promotion = service.promote(loop="J", execute=True).promotion_id
    text = gold.read_text(encoding="utf-8")
    assert text.startswith(GOLD)
    added = parse_gold(text).items[-1]
    assert (added.id, added.query, added.expected_program_id) == ("g0061", "給湯省エネ2026事業", "P000502")
    assert added.status is None and added.evidence is None
    service.rollback(promotion, execute=True)
    assert gold.read_text(encoding="utf-8") == GOLD


def test_gold_promotion_refuses_a_query_already_in_the_gold_set(world):
    service = _service(world)
    service.decide("approve", ["J:2026-10/cand-bbbbbbbbbbbb"], execute=True)
    with pytest.raises(ReviewError, match="already has the query 'IT導入補助金'"):
        service.promote(loop="J", execute=True)


def test_rollback_is_refused_when_the_gold_file_was_edited_since(world):
    _, repo = world
    service = _service(world)
    service.decide("approve", ["J:2026-10/cand-aaaaaaaaaaaa"], execute=True)
    promotion = service.promote(loop="J", execute=True).promotion_id
    gold = repo / "evals" / "gold.yaml"
    gold.write_text(gold.read_text(encoding="utf-8") + "# operator note\n", encoding="utf-8")
    with pytest.raises(ReviewError, match="evals/gold.yaml was edited"):
        service.rollback(promotion, execute=True)


def test_a_stub_is_promoted_only_when_completed_and_rollback_puts_it_back(world):
    _, repo = world
    stub = repo / "tests" / "properties" / "_candidates" / "test_keyerror_lookup_0a1b2c3d.py"
    target = repo / "tests" / "properties" / "test_keyerror_lookup_0a1b2c3d.py"
    service = _service(world)
    service.decide("approve", ["G:keyerror_lookup_0a1b2c3d"], execute=True)
    with pytest.raises(ReviewError, match="not completed .* xfail"):
        service.promote(loop="G", execute=True)
    stub.write_text(COMPLETED)
    promotion = service.promote(loop="G", execute=True).promotion_id
    assert not stub.exists() and target.read_text() == COMPLETED
    assert service.show("G:keyerror_lookup_0a1b2c3d").status == "promoted"  # listed from the status table
    service.rollback(promotion, execute=True)
    assert stub.read_text() == COMPLETED and not target.exists()


def test_page_promotion_replaces_an_earlier_page_and_rollback_restores_it(world):
    _, repo = world
    page = repo / "site" / "blog" / "case-P000001-13.md"
    page.parent.mkdir(parents=True)
    page.write_text("# last year's page\n", encoding="utf-8")
    service = _service(world)
    service.decide("approve", ["B:1"], execute=True)
    promotion = service.promote(["B:1"], execute=True).promotion_id
    assert page.read_text(encoding="utf-8") == "# 事例\n"
    service.rollback(promotion, execute=True)
    assert page.read_text(encoding="utf-8") == "# last year's page\n"


def test_a_failed_file_write_leaves_database_and_files_as_they_were(world, monkeypatch):
    db, repo = world
    service = _service(world)
    service.decide("approve", ["G:keyerror_lookup_0a1b2c3d"], execute=True)
    (repo / "tests" / "properties" / "_candidates" / "test_keyerror_lookup_0a1b2c3d.py").write_text(COMPLETED)
    before_db, before_tree = _table_dump(db, "review_promotions"), _tree(repo)

    def disk_full(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(service_module, "atomic_write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        service.promote(loop="G", execute=True)
    monkeypatch.undo()
    assert _tree(repo) == before_tree
    assert _table_dump(db, "review_promotions") == before_db
    assert service.show("G:keyerror_lookup_0a1b2c3d").status == "approved"


def test_promotion_record_keeps_the_exact_before_and_after(world):
    db, _ = world
    service = _service(world)
    service.decide("approve", ["E:1"], execute=True)
    service.promote(["E:1"], execute=True)
    target, refs, before, after = _query(
        db, "SELECT target, candidate_refs, before_json, after_json FROM review_promotions"
    )[0]
    assert target == "table:am_alias" and json.loads(refs) == ["E:1"]
    assert json.loads(before) == {"table": "am_alias", "key": ["alias_id"], "rows": []}
    row = json.loads(after)["rows"][0]
    assert (row["entity_id"], row["surface"], row["source"]) == ("P000001", "monozukuri", "promoted:E:1")


def test_the_repo_gold_file_is_untouched_by_these_tests():
    assert (Path(__file__).parents[2] / "evals" / "gold.yaml").read_text(encoding="utf-8") == GOLD


def test_a_failure_after_some_files_changed_puts_them_back(world, monkeypatch):
    db, repo = world
    stub = repo / "tests" / "properties" / "_candidates" / "test_keyerror_lookup_0a1b2c3d.py"
    service = _service(world)
    service.decide("approve", ["G:keyerror_lookup_0a1b2c3d"], execute=True)
    stub.write_text(COMPLETED)
    before_tree = _tree(repo)
    real_unlink = Path.unlink

    def read_only_candidates(self, missing_ok=False):
        if self == stub:
            raise PermissionError(13, "Permission denied", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", read_only_candidates)
    with pytest.raises(PermissionError):
        service.promote(loop="G", execute=True)  # the new test file was written, then the move failed
    monkeypatch.undo()
    assert _tree(repo) == before_tree
    assert _query(db, "SELECT COUNT(*) FROM review_promotions") == [(0,)]
    assert service.show("G:keyerror_lookup_0a1b2c3d").status == "approved"


def test_a_promotion_killed_between_its_file_writes_and_its_commit_is_undone_by_the_next_action(world, monkeypatch):
    """A crash leaves no chance to restore in-process: the journal under the repo root does it later."""
    db, repo = world
    page = repo / "site" / "blog" / "case-P000001-13.md"
    service = _service(world)
    service.decide("approve", ["B:1"], execute=True)
    real_apply = ReviewService._apply_files

    def apply_then_die(self, writes):
        real_apply(self, writes)
        raise KeyboardInterrupt("killed before COMMIT")

    monkeypatch.setattr(ReviewService, "_apply_files", apply_then_die)

    def dead(done):
        raise RuntimeError("a killed process puts nothing back")

    monkeypatch.setattr(service_module, "_restore", dead)
    with pytest.raises(RuntimeError, match="puts nothing back"):
        service.promote(["B:1"], execute=True)
    monkeypatch.undo()
    assert page.exists() and (repo / service_module.JOURNAL).exists()  # the torn state a crash leaves
    assert _service(world).recover() is True
    assert not page.exists() and not (repo / service_module.JOURNAL).exists()
    outcome = _service(world).promote(["B:1"], execute=True)  # and the promotion can be redone
    assert page.read_text(encoding="utf-8") == "# 事例\n" and outcome.promotion_id == 1
    assert not (repo / service_module.JOURNAL).exists()


def test_a_committed_promotion_keeps_its_files_when_only_the_journal_was_left(world):
    _, repo = world
    service = _service(world)
    service.decide("approve", ["B:1"], execute=True)
    service.promote(["B:1"], execute=True)
    token = json.loads(_query(world[0], "SELECT detail_json FROM review_audit_log WHERE action = 'promote'")[0][0])[
        "journal"
    ]
    (repo / service_module.JOURNAL).write_text(
        json.dumps({"token": token, "files": {"site/blog/case-P000001-13.md": None}})
    )
    assert service.recover() is True
    assert (repo / "site" / "blog" / "case-P000001-13.md").exists()
