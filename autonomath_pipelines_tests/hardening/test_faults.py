"""Faults while publishing: a run killed at the worst moment, a database another writer holds, a
disk that refuses the write. Every case ends with the outputs exactly as before (or exactly as a
clean run leaves them after the re-run), never in between, and with an error that names the path
and the reason.

The kills are real SIGKILLs of a separate process (a fork of the test process, ``drivers.Forked``)
stopped at a controlled point: inside the publish transaction after some rows were inserted, or
between two file renames.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

import autonomath_pipelines.loops.loop_g_invariant_expansion as loop_g
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.lib import files as files_module
from autonomath_pipelines.lib.files import (
    GENERATED_MARK,
    FileWriteError,
    edited_since_generated,
    mark_generated,
    replace_files,
)
from autonomath_pipelines.loops.loop_b_testimonial_seo import LOOP as LOOP_B
from autonomath_pipelines.loops.loop_b_testimonial_seo import PAGE_DIR
from autonomath_pipelines.loops.loop_g_invariant_expansion import CANDIDATES_FOLDER
from autonomath_pipelines.loops.loop_g_invariant_expansion import LOOP as LOOP_G
from autonomath_pipelines.loops.loop_h_cache_warming import LOOP as LOOP_H
from autonomath_pipelines.resources import AutonomathDatabase, DatabaseLockedError, DatabaseWriteError
from autonomath_pipelines.resources.io_manager import PartitionedParquetIOManager
from autonomath_pipelines.review import ReviewService
from autonomath_pipelines_tests.conftest import LAST_DAY
from autonomath_pipelines_tests.hardening import drivers
from autonomath_pipelines_tests.hardening.drivers import dump, rows, run_in_process, step_errors

MONTH = "2026-10-01"
#: Columns that differ between two runs of the same partition by construction.
RUN_COLUMNS = ("run_id", "computed_at", "ttl_until", "created_at", "candidate_id")


def hidden_temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp")) if folder.exists() else []


def folder_texts(folder: Path) -> dict[str, str]:
    return (
        {
            p.name: p.read_text(encoding="utf-8")
            for p in sorted(folder.glob("*"))
            if p.is_file() and not p.name.startswith(".")
        }
        if folder.exists()
        else {}
    )


# ------------------------------------------------------------------------ SIGKILL mid-publish (DB)


@pytest.mark.parametrize("spill", [False, True], ids=["in-cache", "spilled-to-file"])
def test_sigkill_inside_the_publish_transaction_leaves_the_database_as_before(small_world, tmp_path, spill):
    """Loop H is killed after deleting its partition's rows and inserting 50 of the new ones, inside
    the transaction: the database reads exactly as before; the re-run completes and equals a clean run.

    ``spilled-to-file``: the killed transaction had already written pages into the database file (as
    a publish larger than SQLite's page cache does), leaving a hot journal. A ``mode=ro`` connection
    cannot roll that back; the resource's read connection does it first."""
    assert run_in_process(LOOP_H, small_world, tmp_path, LAST_DAY).success  # the partition's old output
    before = dump(small_world)
    clean = rows(small_world, "query_cache", RUN_COLUMNS)
    ready = tmp_path / "ready"
    proc = drivers.Forked(
        run_in_process,
        LOOP_H,
        small_world,
        tmp_path,
        LAST_DAY,
        setup=lambda: drivers.pause_in_publish(50, str(ready), spill=spill),
    )
    drivers.wait_ready(proc, ready)
    journal = Path(f"{small_world}-journal")
    assert journal.exists()  # the writer's transaction is open
    drivers.sigkill(proc)
    assert journal.exists()  # ...and left behind by the kill
    if spill:
        raw = sqlite3.connect(f"file:{small_world}?mode=ro", uri=True)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):  # what the loops saw before the fix
            raw.execute("SELECT COUNT(*) FROM query_cache").fetchone()
        raw.close()

    assert dump(small_world) == before  # never in between
    if spill:
        assert not journal.exists()  # rolled back by the read connection

    rerun = run_in_process(LOOP_H, small_world, tmp_path, LAST_DAY)
    assert rerun.success, step_errors(rerun)
    # The first run was a clean run of this partition on the pristine world: the re-run equals it.
    assert rows(small_world, "query_cache", RUN_COLUMNS) == clean
    assert 150 < len(clean) <= 200


# ----------------------------------------------------------------------- SIGKILL mid-publish (files)


def test_sigkill_between_two_file_renames_leaves_each_file_old_or_new(small_world, tmp_path, monkeypatch):
    """Loop G writes its stubs as one change: killed after the first rename, every stub is whole — the
    old run's or the new run's — and the re-run completes, sweeping the dead run's temporary files."""
    folder = tmp_path / "repo" / CANDIDATES_FOLDER
    # The stubs' pytest-collection gate (a pytest subprocess per run) is loop G's own test's business.
    monkeypatch.setattr(loop_g, "collected_by_pytest", lambda files, **_: dict.fromkeys(files, True))
    original = loop_g.render_stub
    monkeypatch.setattr(loop_g, "render_stub", drivers.generation_renderer(original, "old"))
    assert run_in_process(LOOP_G, small_world, tmp_path, MONTH).success
    old = folder_texts(folder)
    assert len(old) >= 3
    new = {
        name: mark_generated(text.rpartition(GENERATED_MARK)[0].replace("# generation: old", "# generation: new"))
        for name, text in old.items()
    }

    ready = tmp_path / "ready"

    def in_the_child():
        loop_g.render_stub = drivers.generation_renderer(original, "new")
        drivers.pause_after_renames(1, str(folder), str(ready))

    proc = drivers.Forked(run_in_process, LOOP_G, small_world, tmp_path, MONTH, setup=in_the_child)
    drivers.wait_ready(proc, ready)
    drivers.sigkill(proc)

    after_kill = folder_texts(folder)
    assert set(after_kill) == set(old)
    assert all(after_kill[n] in (old[n], new[n]) for n in old)  # old or new, never partial
    assert all(not edited_since_generated(t) for t in after_kill.values())
    assert sum(after_kill[n] == new[n] for n in old) == 1  # killed between two renames
    assert hidden_temps(folder)  # the dead run's staged files

    monkeypatch.setattr(loop_g, "render_stub", drivers.generation_renderer(original, "new"))
    rerun = run_in_process(LOOP_G, small_world, tmp_path, MONTH)
    assert rerun.success, step_errors(rerun)
    assert folder_texts(folder) == new
    assert hidden_temps(folder) == []


# ------------------------------------------------------------------- SIGKILL mid-promotion (files)


def test_sigkill_during_a_file_promotion(small_world, tmp_path):
    """``review promote`` of loop B's pages (a file target), killed after the first page is renamed
    into place, inside the database transaction: the database is exactly as before (nothing promoted)
    and every page is whole; the next review action puts back the page already written (the journal
    under the repo root), so the re-run's promotion records the true "before" and rolls back fully."""
    repo = tmp_path / "repo"
    assert run_in_process(LOOP_B, small_world, tmp_path, MONTH).success
    service = ReviewService(AutonomathDatabase(path=str(small_world)), repo, actor="test")
    approved = service.decide("approve", loop="B", limit=3, execute=True).transitions
    assert len(approved) == 3
    ids = ",".join(t.candidate.id for t in approved)
    pages = {t.candidate.fields["page_path"]: t.candidate.fields["markdown"] for t in approved}
    before = dump(small_world)

    ready = tmp_path / "ready"
    proc = drivers.Forked(
        service.promote,
        ids.split(","),
        execute=True,
        setup=lambda: drivers.pause_after_renames(1, str(repo / PAGE_DIR), str(ready)),
    )
    drivers.wait_ready(proc, ready)
    drivers.sigkill(proc)

    assert dump(small_world) == before  # no promotion recorded, candidates still approved
    written = {str(p.relative_to(repo)): p.read_text(encoding="utf-8") for p in (repo / PAGE_DIR).glob("*.md")}
    assert len(written) == 1 and all(pages[path] == text for path, text in written.items())

    # The re-run completes: every page in place, one promotion recorded.
    outcome = service.promote(ids.split(","), execute=True)
    assert outcome.promotion_id is not None
    assert {str(p.relative_to(repo)): p.read_text(encoding="utf-8") for p in (repo / PAGE_DIR).glob("*.md")} == pages
    assert hidden_temps(repo) == []

    # The re-run first recovered the killed promotion's page (the journal), so its promotion recorded
    # "no page" as the before state and a rollback removes every page.
    service.rollback(outcome.promotion_id, execute=True)
    assert list((repo / PAGE_DIR).glob("*.md")) == []


# ---------------------------------------------------------------------------- database locked


def _locked_db(path: Path) -> AutonomathDatabase:
    return AutonomathDatabase(path=str(path), busy_timeout_ms=150, lock_retries=2, lock_backoff_s=0.05)


def test_publish_into_a_locked_database_fails_clearly_after_a_bounded_wait(small_world, tmp_path):
    before = dump(small_world)
    holder = sqlite3.connect(str(small_world), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the database
    try:
        started = time.monotonic()
        result = run_in_process(LOOP_H, small_world, tmp_path, LAST_DAY, database=_locked_db(small_world))
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not result.success
    [error] = step_errors(result)
    assert re.match(r"query_cache_published: \S*DatabaseLockedError: ", error), error
    assert f"AutonoMath database {small_world.resolve()} is locked by another connection" in error
    assert "3 attempt(s)" in error and "busy_timeout_ms=150, lock_retries=2" in error
    assert "nothing was written" in error and "Traceback" not in error
    assert waited < 30
    assert dump(small_world) == before


def test_write_waits_for_a_writer_that_finishes_within_the_bound(small_world):
    db = AutonomathDatabase(
        path=str(small_world), busy_timeout_ms=100, lock_retries=6, lock_backoff_s=0.1
    )  # ~7 s bound: margin on a busy CI machine
    holder = sqlite3.connect(str(small_world), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.4, lambda: holder.execute("ROLLBACK"))
    release.start()
    try:
        with db.write_transaction(["query_cache"]) as conn:
            conn.execute("DELETE FROM query_cache")
    finally:
        release.join()
        holder.close()
    assert db.read_frame("SELECT COUNT(*) AS n FROM query_cache")["n"][0] == 0


def test_lock_bound_attempts_and_settings_from_the_environment(small_world, monkeypatch):
    monkeypatch.setenv("AUTONOMATH_DB_BUSY_TIMEOUT_MS", "50")
    monkeypatch.setenv("AUTONOMATH_DB_LOCK_RETRIES", "0")
    db = AutonomathDatabase(path=str(small_world))
    assert (db.busy_timeout_ms, db.lock_retries) == (50, 0)
    assert AutonomathDatabase.model_fields["busy_timeout_ms"].default_factory is not None
    holder = sqlite3.connect(str(small_world), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseLockedError, match=r"could not start the write transaction after 1 attempt\(s\)"):
            with db.write_transaction():
                pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_commit_blocked_by_a_reader_fails_clearly_and_writes_nothing(small_world):
    """Rollback-journal mode: COMMIT needs every reader gone. A reader that never lets go makes the
    commit give up after the bound (rolled back); one that finishes in time lets it through."""
    db = AutonomathDatabase(path=str(small_world), busy_timeout_ms=100, lock_retries=1, lock_backoff_s=0.05)
    before = db.read_frame("SELECT COUNT(*) AS n FROM query_log")["n"][0]
    with db.read_only() as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM query_log").fetchone()  # holds a shared lock
        with pytest.raises(DatabaseLockedError, match="could not commit .readers kept it busy. after 2 attempt"):
            with db.write_transaction() as conn:
                conn.execute("DELETE FROM query_log")
        reader.execute("COMMIT")
    assert db.read_frame("SELECT COUNT(*) AS n FROM query_log")["n"][0] == before

    with db.read_only() as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM query_log").fetchone()
        finish = threading.Timer(0.15, lambda: reader.execute("COMMIT"))
        db_slow = AutonomathDatabase(path=str(small_world), busy_timeout_ms=100, lock_retries=6, lock_backoff_s=0.1)
        finish.start()
        with db_slow.write_transaction() as conn:
            conn.execute("DELETE FROM query_log WHERE id = (SELECT MIN(id) FROM query_log)")
        finish.join()
    assert db.read_frame("SELECT COUNT(*) AS n FROM query_log")["n"][0] == before - 1


def test_database_full_is_a_clear_error_and_nothing_is_written(small_world):
    """SQLITE_FULL (a full disk, simulated with max_page_count): SQLite may already have rolled
    back; the error still names the database and the reason, not 'cannot rollback'."""
    db = AutonomathDatabase(path=str(small_world))
    before = dump(small_world)
    with pytest.raises(
        DatabaseWriteError,
        match=r"cannot write AutonoMath database .*autonomath.db: .*full.* "
        r"\(SQLITE_FULL\).*nothing was written",
    ):
        with db.write_transaction(["query_cache"]) as conn:
            conn.execute("DELETE FROM query_cache")
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages}")
            conn.executemany(
                "INSERT INTO query_cache VALUES (?, 'q', ?, 't', 't', '{}', 'l', 'r', 'p', 'v')",
                [(f"h{i}", "x" * 2000) for i in range(2000)],
            )
    assert dump(small_world) == before


# ----------------------------------------------------------------- disk full / read-only: files


def _fail(monkeypatch, name: str, code: int, on_call: int, only=None):
    """Make ``os.<name>`` raise ``OSError(code)`` on its ``on_call``-th call (counting calls that match ``only``)."""
    real = getattr(os, name)
    calls = 0

    def failing(*args, **kwargs):
        nonlocal calls
        if only is None or only(*args):
            calls += 1
            if calls == on_call:
                raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, failing)


def _publish_files(repo: Path, files: dict[str, str], stale=()):
    from autonomath_pipelines.loops.common import FilePublishPlan, publish_files
    from autonomath_pipelines.resources import LoopSettings

    settings = LoopSettings(execute_loops=[LOOP_G.spec.loop_id], repo_root=str(repo))
    return publish_files(
        dg.build_asset_context(),
        LOOP_G.spec,
        settings,
        FilePublishPlan(folder=CANDIDATES_FOLDER, files=files, stale=list(stale)),
    )


STUBS = {
    f"test_mode_{i}.py": mark_generated(f"# autonomath-invariant: mode_{i}\n# generation: old\n") for i in range(4)
}


@pytest.mark.parametrize("fault", ["ENOSPC while staging", "EROFS on the second rename", "EACCES on a removal"])
def test_publish_files_failure_midway_changes_nothing(tmp_path, monkeypatch, fault):
    """Loop G's publish (four stubs written, one stale stub removed) hits a fault partway: the error
    names the file and the reason, and every file is exactly as before, with no temporary file left."""
    repo = tmp_path / "repo"
    folder = repo / CANDIDATES_FOLDER
    _publish_files(repo, STUBS)
    old = folder_texts(folder)
    new = {
        name: text.replace("generation: old", "generation: new")
        for name, text in STUBS.items()
        if name != "test_mode_3.py"
    }
    new["test_mode_4.py"] = mark_generated("# autonomath-invariant: mode_4\n")
    if fault.startswith("ENOSPC"):
        # Flushing the third stub to disk fails: the disk filled up while writing.
        real_fsync, calls = os.fsync, {"n": 0}

        def fsync(fd):
            if str(folder) in os.readlink(f"/proc/self/fd/{fd}"):
                calls["n"] += 1
                if calls["n"] == 3:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        expected = (
            r"cannot write \S+/_candidates/test_mode_\d\.py: No space left on device \(ENOSPC\); "
            r"no file was changed"
        )
    elif fault.startswith("EROFS"):
        _fail(monkeypatch, "replace", errno.EROFS, 2, only=lambda src, dst: str(folder) in str(dst))
        expected = (
            r"cannot replace \S+/_candidates/test_mode_\d\.py: Read-only file system \(EROFS\); "
            r"the 1 file\(s\) already replaced were restored"
        )
    else:
        real_unlink = Path.unlink

        def unlink(self, missing_ok=False):
            if self.name == "test_mode_3.py":
                raise OSError(errno.EACCES, os.strerror(errno.EACCES))
            return real_unlink(self, missing_ok=missing_ok)

        monkeypatch.setattr(Path, "unlink", unlink)
        expected = (
            r"cannot replace \S+/_candidates/test_mode_3\.py: Permission denied \(EACCES\); "
            r"the 4 file\(s\) already replaced were restored"
        )
    with pytest.raises(FileWriteError, match=expected):
        _publish_files(repo, new, stale=["test_mode_3.py"])
    monkeypatch.undo()
    assert folder_texts(folder) == old  # every file exactly as before
    assert hidden_temps(folder) == []  # no temporary file left
    _publish_files(repo, new, stale=["test_mode_3.py"])  # and the retry goes through
    assert folder_texts(folder) == new


def test_publish_files_into_a_folder_that_cannot_exist(tmp_path):
    """A real failure, no patching: the repo root lies under a regular file (ENOTDIR)."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file", encoding="utf-8")
    with pytest.raises(FileWriteError) as failure:
        _publish_files(blocker / "repo", STUBS)
    assert str(failure.value).startswith(f"cannot write {blocker}/repo/{CANDIDATES_FOLDER}/test_mode_")
    assert str(failure.value).endswith(": Not a directory (ENOTDIR); no file was changed")
    assert failure.value.errno == errno.ENOTDIR
    assert blocker.read_text(encoding="utf-8") == "a file"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_replace_files_into_a_kernel_filesystem_is_a_clear_error():
    """A real read-only place: nothing can be created under /proc."""
    with pytest.raises(
        FileWriteError,
        match=r"cannot write /proc/self/autonomath_test/x\.txt: .* \(E[A-Z]+\); "
        r"no file was changed",
    ):
        replace_files({Path("/proc/self/autonomath_test/x.txt"): "x"})


def test_orphaned_temporary_files_of_dead_processes_are_swept(tmp_path):
    target = tmp_path / "f.txt"
    dead = tmp_path / ".f.txt.999999999.abcd1234.tmp"  # no such pid
    alive = tmp_path / f".f.txt.{os.getppid()}.abcd1234.tmp"  # a live process: maybe mid-write
    other = tmp_path / ".g.txt.999999999.abcd1234.tmp"  # another file's
    for p in (dead, alive, other):
        p.write_text("partial")
    files_module.atomic_write_text(target, "whole")
    assert target.read_text() == "whole"
    assert not dead.exists() and alive.exists() and other.exists()


# -------------------------------------------------------------- disk full / read-only: Parquet


def test_parquet_write_failing_midway_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    io = PartitionedParquetIOManager(base_dir=str(tmp_path))
    path = io.path_for(dg.AssetKey("snap"), "2026-11-20")
    frame = pd.DataFrame({"a": range(1000)})
    io._write({path: frame})
    old = path.read_bytes()

    real = pd.DataFrame.to_parquet

    def half_then_full(self, target, *args, **kwargs):
        Path(target).write_bytes(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_then_full)
    with pytest.raises(
        FileWriteError,
        match=rf"cannot write {path}: No space left on device \(ENOSPC\); "
        r"no file was changed",
    ):
        io._write({path: frame.assign(a=frame["a"] * 2)})
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real)
    assert path.read_bytes() == old and hidden_temps(tmp_path) == []


def test_parquet_range_split_is_all_or_nothing(tmp_path, monkeypatch):
    io = PartitionedParquetIOManager(base_dir=str(tmp_path))
    keys = ["2026-11-18", "2026-11-19", "2026-11-20"]
    paths = {k: io.path_for(dg.AssetKey("snap"), k) for k in keys}
    io._write({paths[k]: pd.DataFrame({"partition_key": [k], "v": [0]}) for k in keys})
    old = {k: p.read_bytes() for k, p in paths.items()}
    _fail(monkeypatch, "replace", errno.EROFS, 3, only=lambda src, dst: str(dst).endswith(".parquet"))
    with pytest.raises(
        FileWriteError,
        match=r"Read-only file system \(EROFS\); the 2 file\(s\) already replaced "
        r"were restored",
    ):
        io._write({paths[k]: pd.DataFrame({"partition_key": [k], "v": [1]}) for k in keys})
    monkeypatch.undo()
    assert {k: p.read_bytes() for k, p in paths.items()} == old and hidden_temps(tmp_path) == []


def test_parquet_io_manager_under_a_file_names_the_path(tmp_path):
    blocker = tmp_path / "storage"
    blocker.write_text("not a folder")
    io = PartitionedParquetIOManager(base_dir=str(blocker))

    @dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-11-01"))
    def snap() -> pd.DataFrame:
        return pd.DataFrame({"a": [1]})

    result = dg.materialize([snap], partition_key="2026-11-03", resources={"io_manager": io}, raise_on_error=False)
    assert not result.success
    [error] = step_errors(result)
    assert f"FileWriteError: cannot write {blocker}/snap/2026-11-03.parquet: Not a directory (ENOTDIR)" in error
