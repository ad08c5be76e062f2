import hashlib
import re
import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.resources import AutonomathDatabase, DatabaseMissingError


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_missing_database_is_named(tmp_path):
    with pytest.raises(DatabaseMissingError, match="not found at .*nope.db"):
        AutonomathDatabase(path=str(tmp_path / "nope.db")).read_frame("SELECT 1")


def test_read_only_connection_cannot_write(programs_db, tmp_path):
    path = tmp_path / "copy.db"
    shutil.copyfile(programs_db, path)
    before = digest(path)
    with AutonomathDatabase(path=str(path)).read_only() as conn:
        for statement in (
            "DELETE FROM programs",
            "INSERT INTO query_cache (query_hash) VALUES ('x')",
            "CREATE TABLE x (a)",
        ):
            with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|query_only"):
                conn.execute(statement)
    assert digest(path) == before


def test_write_transaction_rolls_back_everything_on_error(programs_db, tmp_path):
    path = tmp_path / "copy.db"
    shutil.copyfile(programs_db, path)
    db = AutonomathDatabase(path=str(path))
    with pytest.raises(RuntimeError, match="boom"):
        with db.write_transaction() as conn:
            conn.execute("DELETE FROM programs")
            raise RuntimeError("boom")
    assert len(db.read_frame("SELECT * FROM programs")) == 6


def test_write_transaction_creates_missing_output_tables_only(tmp_path):
    path = tmp_path / "bare.db"
    with sqlite3.connect(str(path)) as conn:  # a database with no tables (not a 0-byte file, which is refused)
        conn.execute("CREATE TABLE t (a)")
        conn.execute("DROP TABLE t")
    db = AutonomathDatabase(path=str(path))
    with db.write_transaction(output_tables=["query_cache"]) as conn:
        conn.execute("SELECT COUNT(*) FROM query_cache").fetchone()
    from autonomath_pipelines.contract.schema import SchemaError

    with pytest.raises(SchemaError, match="refusing to create source table query_log"):
        with db.write_transaction(output_tables=["query_log"]):
            pass


def test_database_path_defaults_to_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTONOMATH_DB", str(tmp_path / "x.db"))
    assert AutonomathDatabase().resolved_path() == tmp_path / "x.db"


def test_read_only_connection_cannot_attach_vacuum_into_or_flip_pragmas(programs_db, tmp_path):
    """``mode=ro`` + ``query_only`` alone let a read connection ATTACH a new (read-write) database
    file, ``VACUUM INTO`` a new file and switch ``query_only`` off; the authorizer refuses all three."""
    path = tmp_path / "copy.db"
    shutil.copyfile(programs_db, path)
    before = digest(path)
    with AutonomathDatabase(path=str(path)).read_only() as conn:
        for statement in (
            f"ATTACH '{tmp_path / 'a.db'}' AS a",
            f"ATTACH 'file:{tmp_path / 'b.db'}?mode=rwc' AS b",
            f"VACUUM INTO '{tmp_path / 'c.db'}'",
            "PRAGMA query_only = OFF",
            "PRAGMA writable_schema = ON",
            "PRAGMA journal_mode = WAL",
            "PRAGMA user_version = 7",
            "DETACH main",
        ):
            with pytest.raises(sqlite3.DatabaseError, match="not authorized|authorization denied"):
                conn.execute(statement)
        for statement in (
            "CREATE TEMP TABLE t (a)",
            "CREATE TEMP VIEW v AS SELECT 1",
            "UPDATE sqlite_master SET sql = ''",
            "ANALYZE",
            "VACUUM",
            "DROP TABLE programs",
            "ALTER TABLE programs ADD COLUMN x",
        ):
            with pytest.raises(
                sqlite3.DatabaseError, match="readonly|read-only|query_only|may not be modified|authorization denied"
            ):
                conn.execute(statement)
        # What the loops need still works: reads, introspection, reading a pragma.
        assert conn.execute("SELECT COUNT(*) FROM programs").fetchone() == (6,)
        assert "program_id" in [r[1] for r in conn.execute("PRAGMA table_info(programs)")]
        assert conn.execute("SELECT COUNT(*) FROM pragma_table_info('programs')").fetchone()[0] > 5
        assert conn.execute("PRAGMA query_only").fetchone() == (1,)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db"]  # no file created by ATTACH/VACUUM INTO


def test_read_only_rolls_back_what_a_killed_writer_left(programs_db, tmp_path):
    """A writer killed after its changes reached the file leaves a hot journal that a ``mode=ro``
    connection cannot roll back ("attempt to write a readonly database"); the resource's read
    connection rolls it back first and then reads the last committed state."""
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "copy.db"
    shutil.copyfile(programs_db, path)
    ready = tmp_path / "ready"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import time
from autonomath_pipelines.contract.sqlite import sqlite3
conn = sqlite3.connect({str(path)!r}, isolation_level=None)
conn.execute("PRAGMA cache_size = 1")
conn.execute("BEGIN IMMEDIATE")
conn.execute("DELETE FROM programs")
conn.executemany("INSERT INTO query_cache (query_hash, query_text, payload_json, computed_at, ttl_until, "
                 "evidence_json, loop_id, run_id, partition_key, code_version) "
                 "VALUES (?, 'q', ?, 't', 't', '{{}}', 'l', 'r', 'p', 'v')",
                 [(str(i), 'x' * 500) for i in range(2000)])
open({str(ready)!r}, 'w').close()
time.sleep(600)
""",
        ]
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        raw.execute("SELECT COUNT(*) FROM programs").fetchone()
    raw.close()
    db = AutonomathDatabase(path=str(path))
    assert len(db.read_frame("SELECT * FROM programs")) == 6
    assert len(db.read_frame("SELECT * FROM query_cache")) == 0
    assert not (tmp_path / "copy.db-journal").exists()


def test_a_write_never_creates_the_database(tmp_path, monkeypatch):
    """Even when the file vanishes after the check, the write connection (``mode=rw``) does not create it."""
    import autonomath_pipelines.resources.db as dbmod

    path = tmp_path / "gone.db"
    monkeypatch.setattr(dbmod, "database_file_problem", lambda _path: None)
    with pytest.raises(dbmod.DatabaseWriteError, match="gone.db"):
        with AutonomathDatabase(path=str(path), lock_retries=0).write_transaction():
            pass
    assert not path.exists()


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "empty file"),
        (b"hello\n", "not an SQLite database (a text file"),
        (b"SQLite for", "truncated"),
        (b"\x00\xff" * 80, "binary data"),
    ],
)
def test_bad_files_are_named_for_what_they_are(tmp_path, content, words):
    from autonomath_pipelines.resources import DatabaseFileError

    path = tmp_path / "bad.db"
    path.write_bytes(content)
    with pytest.raises(DatabaseFileError, match=f"{path}.*{re.escape(words)}"):
        AutonomathDatabase(path=str(path)).read_frame("SELECT 1")
    assert path.read_bytes() == content


@given(st.binary(max_size=300))
def test_any_bytes_without_the_header_are_refused_without_raising_otherwise(data):
    import tempfile
    from pathlib import Path

    from autonomath_pipelines.resources.db import database_file_problem

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.db"
        path.write_bytes(data)
        problem = database_file_problem(path)
    if not data.startswith(b"SQLite format 3\x00"):
        assert problem is not None
