import hashlib
import shutil

import pytest

from autonomath_pipelines.resources import AutonomathDatabase, DatabaseMissingError
from autonomath_pipelines.sqlite import sqlite3


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
        for statement in ("DELETE FROM programs", "INSERT INTO query_cache (query_hash) VALUES ('x')",
                          "CREATE TABLE x (a)"):
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
    sqlite3.connect(str(path)).close()
    db = AutonomathDatabase(path=str(path))
    with db.write_transaction(output_tables=["query_cache"]) as conn:
        conn.execute("SELECT COUNT(*) FROM query_cache").fetchone()
    from autonomath_pipelines.schema import SchemaError

    with pytest.raises(SchemaError, match="refusing to create source table query_log"):
        with db.write_transaction(output_tables=["query_log"]):
            pass


def test_database_path_defaults_to_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTONOMATH_DB", str(tmp_path / "x.db"))
    assert AutonomathDatabase().resolved_path() == tmp_path / "x.db"
