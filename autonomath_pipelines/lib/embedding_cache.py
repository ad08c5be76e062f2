"""Persistent, content-addressed embedding cache: (model key, normalized text) → float32 vector.

Shared by every loop, partition and run, so a text is embedded once. SQLite in WAL mode with a
busy timeout, so two runs writing at once both succeed (``INSERT OR IGNORE``: the same key always
maps to the same vector, so whichever write lands first is correct).

Two processes opening a *fresh* cache at once both try to switch it to WAL. SQLite answers one of
them SQLITE_BUSY at once, without calling the busy handler (waiting could deadlock), so setting the
cache up is retried with backoff until the other side has finished.

A corrupt cache (truncated, garbage, damaged later) is only a cache: it is set aside as
``<name>.corrupt-<UTC timestamp>`` (with its ``-wal``/``-shm``), a warning names both paths, and a
fresh one is built. SQLite finds the WAL and shared-memory files by name, and a connection closing
on a renamed database would delete the *new* cache's ``-wal``/``-shm``; so every connection holds a
shared ``flock`` on the sidecar ``<name>.lock`` for its whole life, and the rename happens only under
the exclusive lock, after re-checking that the file there is still corrupt (another process may have
set it aside and rebuilt it meanwhile).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from autonomath_pipelines.contract.sqlite import sqlite3

_CHUNK = 500  # SQLite host-parameter limit is 32766; stay far below it
_SETUP_ATTEMPTS = 12  # backoff 10 ms doubling, capped at 1 s: about 7 s in all
_SET_ASIDE_WAIT_SECONDS = 60.0  # as long as SQLite's busy timeout: others finish their call, then close
_SQLITE_HEADER = b"SQLite format 3\x00"
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_SIDE_FILES = ("", "-wal", "-shm")

log = logging.getLogger(__name__)


def text_key(model_key: str, text: str) -> str:
    return hashlib.sha256(f"{model_key}\x1f{text}".encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class EmbeddingBatch:
    vectors: np.ndarray  # (n, dim) float32, L2-normalized, row i ↔ texts[i]
    cache_hits: int
    cache_misses: int

    @property
    def hit_rate(self) -> float:
        total = self.cache_hits + self.cache_misses
        return self.cache_hits / total if total else 1.0


class CorruptEmbeddingCache(sqlite3.DatabaseError):
    """The cache file is not a readable SQLite database (the message names the file)."""

    def __init__(self, path: Path, reason: object):
        super().__init__(f"embedding cache {path} is corrupt: {reason}")
        self.reason = str(reason)


def _reason(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, CorruptEmbeddingCache) else str(exc)


def is_corruption(exc: BaseException) -> bool:
    """SQLITE_CORRUPT ("malformed") or SQLITE_NOTADB ("not a database"), not busy/locked/missing table."""
    if isinstance(exc, CorruptEmbeddingCache):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    message = str(exc)
    return "malformed" in message or "not a database" in message


class EmbeddingCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.set_aside_paths: list[Path] = []  # where corrupt caches went, for callers that report it
        self._lock_fd: int | None = None
        self._conn = self._open_recovering()

    def _open_recovering(self) -> sqlite3.Connection:
        try:
            return self._open()
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            self._set_aside_if_still_corrupt(exc)
            return self._open()

    def _open(self) -> sqlite3.Connection:
        """A set-up, checked connection holding the shared lock; on failure neither is left open."""
        self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        conn = None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
            _check_header(self.path)
            conn = sqlite3.connect(str(self.path), timeout=60, isolation_level=None, check_same_thread=False)
            self._set_up(conn)
            _cheap_read(conn)
            return conn
        except BaseException as exc:
            if conn is not None:
                conn.close()
            self._release_lock()
            if is_corruption(exc) and not isinstance(exc, CorruptEmbeddingCache):
                raise CorruptEmbeddingCache(self.path, exc) from exc
            raise

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops its flock
            self._lock_fd = None

    def _set_up(self, conn: sqlite3.Connection) -> None:
        for attempt in range(_SETUP_ATTEMPTS):
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
                    "dim INTEGER NOT NULL, vector BLOB NOT NULL)"
                )
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if attempt + 1 == _SETUP_ATTEMPTS:
                    raise sqlite3.OperationalError(
                        f"embedding cache {self.path} stayed locked while setting it up "
                        f"({_SETUP_ATTEMPTS} attempts): {exc}"
                    ) from None
                time.sleep(min(1.0, 0.01 * 2**attempt))

    def _set_aside_if_still_corrupt(self, cause: BaseException) -> Path | None:
        """Rename the corrupt cache (and its -wal/-shm) out of the way, unless someone already did.

        Called with no connection and no lock of ours open. Waits for the exclusive lock, i.e. until
        no process has a connection on the file, then re-checks: the file there may be a healthy
        cache another process has just rebuilt.
        """
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _flock_exclusive(fd, self.path, cause)
            if not _still_corrupt(self.path):
                return None
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
            for suffix in _SIDE_FILES:
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    os.replace(source, f"{target}{suffix}")
            log.warning(
                "embedding cache %s is corrupt (%s): set it aside as %s and rebuilding it",
                self.path,
                _reason(cause),
                target,
            )
            self.set_aside_paths.append(target)
            return target
        finally:
            os.close(fd)

    def _recovering(self, operation: Callable[[], object]):
        """Run ``operation``; if the cache turns out corrupt, set it aside, re-open, retry once."""
        try:
            return operation()
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            self.close()
            self._set_aside_if_still_corrupt(exc)
            self._conn = self._open()
            try:
                return operation()
            except sqlite3.DatabaseError as again:
                if is_corruption(again):  # once only: a cache that keeps breaking is not a cache problem
                    raise CorruptEmbeddingCache(self.path, f"{again} (again, after rebuilding it)") from again
                raise

    def close(self) -> None:
        self._conn.close()
        self._release_lock()

    def get_many(self, model_key: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return self._recovering(lambda: self._get_many(model_key, texts))

    def _get_many(self, model_key: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        keys = list(dict.fromkeys(text_key(model_key, t) for t in texts))
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, dim, blob in self._conn.execute(
                f"SELECT key, dim, vector FROM embeddings WHERE key IN ({marks})", chunk
            ):
                found[key] = np.frombuffer(blob, dtype=np.float32, count=dim)
        return found

    def put_many(self, model_key: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        self._recovering(lambda: self._put_many(model_key, texts, vectors))

    def _put_many(self, model_key: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        rows = [
            (text_key(model_key, t), model_key, int(v.shape[0]), np.asarray(v, np.float32).tobytes())
            for t, v in zip(texts, vectors)
        ]
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany("INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?, ?)", rows)
            self._conn.execute("COMMIT")
        except BaseException:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # a corrupt file may refuse the rollback too; the first error is the one to report
            raise

    def embed(self, model_key: str, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> EmbeddingBatch:
        """Vectors for ``texts`` (already normalized), encoding only the ones not cached."""
        texts = list(texts)
        cached = self.get_many(model_key, texts)
        missing = list(dict.fromkeys(t for t in texts if text_key(model_key, t) not in cached))
        if missing:
            fresh = np.asarray(encode(missing), dtype=np.float32)
            if fresh.shape[0] != len(missing):
                raise ValueError(f"encoder returned {fresh.shape[0]} vectors for {len(missing)} texts")
            fresh = _l2_normalize(fresh)
            self.put_many(model_key, missing, fresh)
            cached.update({text_key(model_key, t): v for t, v in zip(missing, fresh)})
        if not texts:
            return EmbeddingBatch(np.zeros((0, 0), np.float32), 0, 0)
        vectors = np.stack([cached[text_key(model_key, t)] for t in texts])
        unique = len(set(texts))
        return EmbeddingBatch(vectors, cache_hits=unique - len(missing), cache_misses=len(missing))


def _l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def _check_header(path: Path) -> None:
    """A non-empty file must start with SQLite's magic string (empty or missing: a fresh cache)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    # SQLite writes page 1 in one write, so a half-written header is not expected; if one is seen
    # anyway, the re-check under the exclusive lock (after its writer has closed) clears it.
    if head and head != _SQLITE_HEADER:
        raise CorruptEmbeddingCache(path, "file is not a database (bad header)")


def _cheap_read(conn: sqlite3.Connection) -> None:
    """Touch the table's leftmost and rightmost leaves: a truncated file loses its tail pages first."""
    conn.execute("SELECT key, dim, length(vector) FROM embeddings LIMIT 1").fetchall()
    conn.execute("SELECT max(rowid) FROM embeddings").fetchall()


def _still_corrupt(path: Path) -> bool:
    """Re-check, read-only, whether the file now at ``path`` is corrupt (missing or busy: it is not)."""
    if not path.exists():
        return False
    try:
        _check_header(path)
        conn = sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
            _cheap_read(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return is_corruption(exc)
    return False


def _flock_exclusive(fd: int, cache_path: Path, cause: BaseException) -> None:
    deadline = time.monotonic() + _SET_ASIDE_WAIT_SECONDS
    delay = 0.01
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise CorruptEmbeddingCache(
                    cache_path,
                    f"{_reason(cause)}; cannot set it aside: other processes kept it open for "
                    f"{_SET_ASIDE_WAIT_SECONDS:.0f} s (stop them or remove the file)",
                ) from cause
            time.sleep(delay)
            delay = min(0.5, delay * 2)
