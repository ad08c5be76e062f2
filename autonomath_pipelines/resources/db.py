"""The AutonoMath SQLite database: read-only reads, one transaction per publish.

Reads go through ``mode=ro`` connections that also refuse ``ATTACH`` and setting pragmas (an
authorizer), so a read connection cannot write to this or any other file. Writes go through
``write_transaction``: one ``BEGIN IMMEDIATE`` transaction that waits for another writer
(``busy_timeout_ms``, then ``lock_retries`` more attempts with backoff) and otherwise fails with
``DatabaseLockedError`` naming the database — nothing written. A writer killed mid-transaction
leaves a hot journal; the next read connection rolls it back first (a ``mode=ro`` connection cannot),
so the database is exactly as before the killed transaction.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import dagster as dg
import pandas as pd
from pydantic import Field

from autonomath_pipelines.contract.schema import SchemaError, ensure_output_tables, missing_schema
from autonomath_pipelines.contract.sqlite import sqlite3

DEFAULT_DB_PATH = "data/autonomath.db"
log = logging.getLogger(__name__)


class DatabaseFileError(Exception):
    """The configured AutonoMath database path is not a usable SQLite file (the request is wrong, not a loop)."""


class DatabaseMissingError(DatabaseFileError, FileNotFoundError):
    """The configured AutonoMath database file does not exist."""


class DatabaseWriteError(RuntimeError):
    """A write transaction could not complete (disk full, read-only file, ...); it was rolled back."""


class DatabaseCorruptError(DatabaseFileError, DatabaseWriteError):
    """SQLite found the file is not a database, or its pages are damaged; nothing was read or written."""


_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_BYTES = 100


def database_file_problem(path: Path) -> str | None:
    """What makes ``path`` unusable as an SQLite database, judged from the file and its 100-byte header
    (None: it looks like one). Never opens it with SQLite, which would create a missing or turn an empty
    file into a database. The size check is skipped while a ``-journal``/``-wal`` file is next to it: a
    rollback or checkpoint that SQLite has still to do may change the size legitimately."""
    if not path.exists():
        return "not found"
    if path.is_dir():
        return "is a directory, not a database file"
    if not path.is_file():
        return "is not a regular file"
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            header = fh.read(_HEADER_BYTES)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size == 0:
        return "is an empty file (0 bytes), not an SQLite database"
    if not header.startswith(_SQLITE_MAGIC):
        if _SQLITE_MAGIC.startswith(header):
            return f"is truncated ({size} bytes, shorter than the SQLite header)"
        kind = "a text file" if _looks_like_text(header) else "binary data"
        return f"is not an SQLite database ({kind}, {size} bytes, no 'SQLite format 3' header)"
    if len(header) < _HEADER_BYTES:
        return f"is truncated ({size} bytes, shorter than the {_HEADER_BYTES}-byte SQLite header)"
    raw_page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if raw_page_size == 1 else raw_page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"is corrupt (its header gives page size {raw_page_size}, not a power of two from 512 to 65536)"
    if any(Path(f"{path}{suffix}").exists() for suffix in ("-journal", "-wal")):
        return None
    header_pages = int.from_bytes(header[28:32], "big")
    header_valid = header_pages > 0 and header[24:28] == header[92:96]
    if size % page_size or (header_valid and size < header_pages * page_size):
        expected = f"; its header says {header_pages} pages = {header_pages * page_size} bytes" if header_valid else ""
        return (
            f"is truncated or corrupt ({size} bytes, not whole {page_size}-byte pages{expected})"
            if size % page_size
            else f"is truncated ({size} bytes{expected})"
        )
    return None


def _looks_like_text(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character cut at the end of the sample is still text.
        try:
            text = data[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(ch.isprintable() or ch in "\t\r\n" for ch in text)


def _uri(path: Path, mode: str) -> str:
    """A ``file:`` URI; ``mode=ro``/``rw`` never create the file (a plain path would)."""
    return f"file:{urllib.parse.quote(str(path))}?mode={mode}"


class DatabaseLockedError(DatabaseWriteError):
    """Another connection held the database for longer than the configured wait; nothing was written."""


def default_db_path() -> str:
    return os.environ.get("AUTONOMATH_DB", DEFAULT_DB_PATH)


def _env_number(name: str, default: float, kind=int):
    value = os.environ.get(name, "").strip()
    return kind(value) if value else default


#: Pragmas a read connection may run with an argument: introspection that names a table or index.
_INTROSPECTION_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
)


def _read_only_authorizer(
    action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None
) -> int:
    """No ATTACH/DETACH (which creates files and could reach a writable database, also through
    ``VACUUM INTO``), and no pragma assignments (``query_only = OFF``, ``writable_schema = ON``)."""
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and arg2 is not None and (arg1 or "").lower() not in _INTROSPECTION_PRAGMAS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _error_name(exc: BaseException) -> str:
    return str(getattr(exc, "sqlite_errorname", "") or "")


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        _error_name(exc).startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in str(exc)
    )


def _rollback_quietly(conn) -> None:
    """Roll back if a transaction is still open (SQLite may already have rolled back, e.g. on SQLITE_FULL)."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


class AutonomathDatabase(dg.ConfigurableResource):
    """The service's SQLite database. Loops read through ``mode=ro`` connections; only publish
    steps write, each in a single ``BEGIN IMMEDIATE`` transaction."""

    path: str = Field(
        default_factory=default_db_path, description="Path of the AutonoMath SQLite file (env AUTONOMATH_DB)."
    )
    busy_timeout_ms: int = Field(
        default_factory=lambda: _env_number("AUTONOMATH_DB_BUSY_TIMEOUT_MS", 30_000),
        description="How long one attempt waits for another writer (SQLite busy timeout; env "
        "AUTONOMATH_DB_BUSY_TIMEOUT_MS).",
    )
    lock_retries: int = Field(
        default_factory=lambda: _env_number("AUTONOMATH_DB_LOCK_RETRIES", 2),
        description="Further attempts after a busy timeout before a write fails as locked (env "
        "AUTONOMATH_DB_LOCK_RETRIES). Worst-case wait ≈ (1 + retries) × busy timeout + backoff.",
    )
    lock_backoff_s: float = Field(
        default_factory=lambda: _env_number("AUTONOMATH_DB_LOCK_BACKOFF_S", 1.0, float),
        description="Pause before the first retry; doubles for each further retry.",
    )

    def resolved_path(self) -> Path:
        return Path(self.path).expanduser().resolve()

    def require_exists(self) -> Path:
        """The path, once it is known to be an SQLite file: ``DatabaseMissingError`` when there is
        nothing there, ``DatabaseFileError`` naming what is wrong with what is there."""
        path = self.resolved_path()
        problem = database_file_problem(path)
        if problem == "not found":
            raise DatabaseMissingError(
                f"AutonoMath database not found at {path} "
                "(set AUTONOMATH_DB, or build the demo world with `autonomath-loops demo`)"
            )
        if problem is not None:
            raise DatabaseFileError(
                f"AutonoMath database {path} {problem} (set AUTONOMATH_DB to the service's "
                "SQLite file, or build the demo world with `autonomath-loops demo`)"
            )
        return path

    def _corrupt(self, path: Path, exc: BaseException) -> DatabaseCorruptError | None:
        if _error_name(exc).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in str(exc):
            return DatabaseCorruptError(
                f"AutonoMath database {path} is truncated or corrupt (SQLite: {exc}); nothing was read or written"
            )
        return None

    # -------------------------------------------------------------------------------------- reads

    def _connect_read_only(self, path: Path):
        conn = sqlite3.connect(_uri(path, "ro"), uri=True, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA query_only = ON")
            conn.set_authorizer(_read_only_authorizer)
            # Takes a read lock now, so a hot journal shows up here rather than in the loop's query.
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except BaseException:
            conn.close()
            raise
        return conn

    def _recover_hot_journal(self, path: Path, exc: Exception) -> None:
        """Roll back what a writer killed mid-transaction left (a ``mode=ro`` connection cannot): any
        read through a read-write connection restores the last committed state. Writes nothing else."""
        log.warning("AutonoMath database %s: rolling back a transaction left by a killed writer (%s)", path, exc)
        try:
            conn = sqlite3.connect(_uri(path, "rw"), uri=True, isolation_level=None, check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
            finally:
                conn.close()
        except sqlite3.Error as recovery_error:
            raise DatabaseWriteError(
                f"AutonoMath database {path} has an unfinished transaction left by a killed writer "
                f"(hot journal) and it could not be rolled back: {recovery_error}"
            ) from None

    @contextlib.contextmanager
    def read_only(self) -> Iterator[Any]:
        """A connection that cannot write: ``mode=ro``, ``query_only``, no ATTACH, no pragma assignments."""
        path = self.require_exists()
        try:
            conn = self._connect_read_only(path)
        except sqlite3.DatabaseError as exc:
            corrupt = self._corrupt(path, exc)
            if corrupt is not None:
                raise corrupt from None
            leftovers = [Path(f"{path}{suffix}") for suffix in ("-journal", "-wal")]
            if not (_error_name(exc).startswith("SQLITE_READONLY") and any(p.exists() for p in leftovers)):
                raise
            self._recover_hot_journal(path, exc)
            conn = self._connect_read_only(path)
        try:
            yield conn
        finally:
            conn.close()

    def preflight(self, tables: Iterable[str], *, context: str = "") -> None:
        """Fail with one message naming every missing table or column among ``tables``."""
        with self.read_only() as conn:
            problems = missing_schema(conn, tables)
        if problems:
            who = f" for {context}" if context else ""
            raise SchemaError(
                f"AutonoMath database {self.resolved_path()} does not match the data contract{who}: "
                + "; ".join(problems)
            )

    def read_frame(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> pd.DataFrame:
        """Rows of ``sql`` (positional ``?`` or named ``:name`` parameters) as a DataFrame."""
        with self.read_only() as conn:
            cursor = conn.execute(sql, dict(params) if isinstance(params, Mapping) else tuple(params))
            columns = [d[0] for d in cursor.description]
            return pd.DataFrame(cursor.fetchall(), columns=columns)

    # ------------------------------------------------------------------------------------- writes

    def _lock_message(self, path: Path, what: str, attempts: int, waited: float, exc: Exception) -> str:
        return (
            f"AutonoMath database {path} is locked by another connection: {what} after {attempts} attempt(s) "
            f"over {waited:.1f} s (busy_timeout_ms={int(self.busy_timeout_ms)}, lock_retries={self.lock_retries}; "
            f"SQLite: {exc}); nothing was written"
        )

    def _failure(self, path: Path, exc: BaseException) -> DatabaseWriteError | None:
        """The clear error for a SQLite failure during a write (None: not a database-level failure)."""
        if isinstance(exc, DatabaseWriteError) or not isinstance(exc, sqlite3.DatabaseError):
            return None
        corrupt = self._corrupt(path, exc)
        if corrupt is not None:
            return corrupt
        if not isinstance(exc, sqlite3.OperationalError):
            return None
        name = _error_name(exc)
        if _is_busy(exc):
            return DatabaseLockedError(
                f"AutonoMath database {path} is locked by another connection: a write inside the transaction "
                f"waited busy_timeout_ms={int(self.busy_timeout_ms)} (SQLite: {exc}); the transaction was rolled "
                "back, nothing was written"
            )
        if name.startswith(
            (
                "SQLITE_FULL",
                "SQLITE_READONLY",
                "SQLITE_CANTOPEN",
                "SQLITE_IOERR",
                "SQLITE_CORRUPT",
                "SQLITE_NOTADB",
                "SQLITE_PERM",
            )
        ):
            return DatabaseWriteError(
                f"cannot write AutonoMath database {path}: {exc} ({name}); "
                "the transaction was rolled back, nothing was written"
            )
        return None

    def _attempts(self) -> int:
        return 1 + max(0, int(self.lock_retries))

    def _backoff(self, attempt: int) -> None:
        time.sleep(max(0.0, float(self.lock_backoff_s)) * (2**attempt))

    def _begin_immediate(self, path: Path):
        """A connection holding the write lock; waits ``busy_timeout_ms`` per attempt, ``lock_retries`` retries."""
        started = time.monotonic()
        attempts = self._attempts()
        for attempt in range(attempts):
            # mode=rw: a write never creates the service's database, whatever was checked before.
            try:
                conn = sqlite3.connect(
                    _uri(path, "rw"),
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=max(0, int(self.busy_timeout_ms)) / 1000,
                )
            except sqlite3.OperationalError as exc:
                raise DatabaseWriteError(
                    f"cannot open AutonoMath database {path} for writing: {exc} "
                    f"({_error_name(exc)}); nothing was written"
                ) from None
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                conn.execute("BEGIN IMMEDIATE")
                return conn
            except sqlite3.DatabaseError as exc:
                conn.close()
                if not _is_busy(exc):
                    failure = self._failure(path, exc)
                    if failure is None:
                        raise
                    raise failure from None
                if attempt + 1 == attempts:
                    raise DatabaseLockedError(
                        self._lock_message(
                            path, "could not start the write transaction", attempts, time.monotonic() - started, exc
                        )
                    ) from None
            self._backoff(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _commit(self, conn, path: Path) -> None:
        """COMMIT, retrying while readers keep the database busy (rollback-journal mode needs them gone)."""
        started = time.monotonic()
        attempts = self._attempts()
        for attempt in range(attempts):
            try:
                conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or not conn.in_transaction:
                    raise
                if attempt + 1 == attempts:
                    raise DatabaseLockedError(
                        self._lock_message(
                            path, "could not commit (readers kept it busy)", attempts, time.monotonic() - started, exc
                        )
                    ) from None
            self._backoff(attempt)

    @contextlib.contextmanager
    def write_transaction(self, output_tables: Iterable[str] = ()) -> Iterator[Any]:
        """One transaction: everything inside commits together or not at all.

        Missing output tables (ours, never the service's sources) are created inside it. Raises
        ``DatabaseLockedError`` when another writer holds the database past the configured wait and
        ``DatabaseWriteError`` when SQLite cannot write (disk full, read-only file); either way the
        transaction is rolled back and nothing is written.
        """
        path = self.require_exists()
        conn = self._begin_immediate(path)
        try:
            try:
                ensure_output_tables(conn, output_tables)
                yield conn
                self._commit(conn, path)
            except BaseException as exc:
                _rollback_quietly(conn)
                failure = self._failure(path, exc)
                if failure is not None:
                    raise failure from None
                raise
        finally:
            conn.close()


__all__ = [
    "AutonomathDatabase",
    "DatabaseCorruptError",
    "DatabaseFileError",
    "DatabaseLockedError",
    "DatabaseMissingError",
    "DatabaseWriteError",
    "SchemaError",
    "database_file_problem",
    "default_db_path",
]
