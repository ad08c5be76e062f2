"""The AutonoMath SQLite database: read-only reads, one transaction per publish."""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import dagster as dg
import pandas as pd
from pydantic import Field

from autonomath_pipelines.schema import SchemaError, ensure_output_tables, missing_schema
from autonomath_pipelines.sqlite import sqlite3

DEFAULT_DB_PATH = "data/autonomath.db"


class DatabaseMissingError(FileNotFoundError):
    """The configured AutonoMath database file does not exist."""


def default_db_path() -> str:
    return os.environ.get("AUTONOMATH_DB", DEFAULT_DB_PATH)


class AutonomathDatabase(dg.ConfigurableResource):
    """The service's SQLite database. Loops read through ``mode=ro`` connections; only publish
    steps write, each in a single ``BEGIN IMMEDIATE`` transaction."""

    path: str = Field(default_factory=default_db_path,
                      description="Path of the AutonoMath SQLite file (env AUTONOMATH_DB).")
    busy_timeout_ms: int = Field(default=30_000,
                                 description="How long a write waits for another writer before failing.")

    def resolved_path(self) -> Path:
        return Path(self.path).expanduser().resolve()

    def require_exists(self) -> Path:
        path = self.resolved_path()
        if not path.is_file():
            raise DatabaseMissingError(
                f"AutonoMath database not found at {path} "
                "(set AUTONOMATH_DB, or build the demo world with `autonomath-loops demo`)"
            )
        return path

    @contextlib.contextmanager
    def read_only(self) -> Iterator[Any]:
        """A connection that cannot write: ``mode=ro`` plus ``query_only``."""
        path = self.require_exists()
        conn = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA query_only = ON")
            yield conn
        finally:
            conn.close()

    def preflight(self, tables: Iterable[str], *, context: str = "") -> None:
        """Fail with one message naming every missing table or column among ``tables``."""
        with self.read_only() as conn:
            problems = missing_schema(conn, tables)
        if problems:
            who = f" for {context}" if context else ""
            raise SchemaError(f"AutonoMath database {self.resolved_path()} does not match the data contract{who}: "
                              + "; ".join(problems))

    def read_frame(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> pd.DataFrame:
        """Rows of ``sql`` (positional ``?`` or named ``:name`` parameters) as a DataFrame."""
        with self.read_only() as conn:
            cursor = conn.execute(sql, dict(params) if isinstance(params, Mapping) else tuple(params))
            columns = [d[0] for d in cursor.description]
            return pd.DataFrame(cursor.fetchall(), columns=columns)

    @contextlib.contextmanager
    def write_transaction(self, output_tables: Iterable[str] = ()) -> Iterator[Any]:
        """One transaction: everything inside commits together or not at all.

        Missing output tables (ours, never the service's sources) are created inside it.
        """
        path = self.require_exists()
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                ensure_output_tables(conn, output_tables)
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()


__all__ = ["AutonomathDatabase", "DatabaseMissingError", "SchemaError", "default_db_path"]
