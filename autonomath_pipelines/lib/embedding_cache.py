"""Persistent, content-addressed embedding cache: (model key, normalized text) → float32 vector.

Shared by every loop, partition and run, so a text is embedded once. SQLite in WAL mode with a
busy timeout, so two runs writing at once both succeed (``INSERT OR IGNORE``: the same key always
maps to the same vector, so whichever write lands first is correct).

Two processes opening a *fresh* cache at once both try to switch it to WAL. SQLite answers one of
them SQLITE_BUSY at once, without calling the busy handler (waiting could deadlock), so setting the
cache up is retried with backoff until the other side has finished.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from autonomath_pipelines.sqlite import sqlite3

_CHUNK = 500  # SQLite host-parameter limit is 32766; stay far below it
_SETUP_ATTEMPTS = 12  # backoff 10 ms doubling, capped at 1 s: about 7 s in all


def text_key(model_key: str, text: str) -> str:
    return hashlib.sha256(f"{model_key}\x1f{text}".encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class EmbeddingBatch:
    vectors: np.ndarray      # (n, dim) float32, L2-normalized, row i ↔ texts[i]
    cache_hits: int
    cache_misses: int

    @property
    def hit_rate(self) -> float:
        total = self.cache_hits + self.cache_misses
        return self.cache_hits / total if total else 1.0


class EmbeddingCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=60, isolation_level=None, check_same_thread=False)
        try:
            self._set_up()
        except BaseException:
            self._conn.close()
            raise

    def _set_up(self) -> None:
        for attempt in range(_SETUP_ATTEMPTS):
            try:
                if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute(
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
                        f"({_SETUP_ATTEMPTS} attempts): {exc}") from None
                time.sleep(min(1.0, 0.01 * 2 ** attempt))

    def close(self) -> None:
        self._conn.close()

    def get_many(self, model_key: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        keys = list(dict.fromkeys(text_key(model_key, t) for t in texts))
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, dim, blob in self._conn.execute(
                    f"SELECT key, dim, vector FROM embeddings WHERE key IN ({marks})", chunk):
                found[key] = np.frombuffer(blob, dtype=np.float32, count=dim)
        return found

    def put_many(self, model_key: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        rows = [(text_key(model_key, t), model_key, int(v.shape[0]), np.asarray(v, np.float32).tobytes())
                for t, v in zip(texts, vectors)]
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany("INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?, ?)", rows)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def embed(self, model_key: str, texts: Sequence[str],
              encode: Callable[[list[str]], np.ndarray]) -> EmbeddingBatch:
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
