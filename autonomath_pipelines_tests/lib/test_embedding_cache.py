import logging
import multiprocessing
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.lib.embedding_cache import EmbeddingCache


class CountingEncoder:
    def __init__(self, dim=8):
        self.dim, self.calls, self.texts = dim, 0, []

    def __call__(self, texts):
        self.calls += 1
        self.texts.extend(texts)
        return np.array(
            [[len(t) + 1.0] + [float(ord(c) % 7) for c in (t + " " * self.dim)[: self.dim - 1]] for t in texts]
        )


def test_text_is_encoded_once_across_calls_and_instances(tmp_path):
    encoder = CountingEncoder()
    first = EmbeddingCache(tmp_path / "c.sqlite").embed("m", ["a", "b", "a"], encoder)
    assert (first.cache_hits, first.cache_misses) == (0, 2) and encoder.texts == ["a", "b"]
    again = EmbeddingCache(tmp_path / "c.sqlite").embed("m", ["b", "c"], encoder)
    assert (again.cache_hits, again.cache_misses) == (1, 1) and encoder.texts == ["a", "b", "c"]
    np.testing.assert_allclose(first.vectors[1], again.vectors[0])


def test_vectors_are_unit_length_and_row_aligned(tmp_path):
    batch = EmbeddingCache(tmp_path / "c.sqlite").embed("m", ["xx", "y", "xx"], CountingEncoder())
    assert batch.vectors.shape == (3, 8) and batch.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch.vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(batch.vectors[0], batch.vectors[2])


def test_models_do_not_share_vectors(tmp_path):
    cache, encoder = EmbeddingCache(tmp_path / "c.sqlite"), CountingEncoder()
    cache.embed("model-a", ["t"], encoder)
    assert cache.embed("model-b", ["t"], encoder).cache_misses == 1


def test_encoder_returning_wrong_count_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="returned 1 vectors for 2 texts"):
        EmbeddingCache(tmp_path / "c.sqlite").embed("m", ["a", "b"], lambda texts: np.ones((1, 4)))


def test_empty_input(tmp_path):
    batch = EmbeddingCache(tmp_path / "c.sqlite").embed("m", [], CountingEncoder())
    assert batch.vectors.shape[0] == 0 and batch.hit_rate == 1.0


def test_two_concurrent_writers_both_succeed(tmp_path):
    path, errors = tmp_path / "c.sqlite", []
    texts = [f"text {i}" for i in range(400)]

    def worker(offset):
        try:
            cache = EmbeddingCache(path)
            for start in range(0, 400, 50):
                cache.embed("m", texts[(start + offset) % 400 :][:50], CountingEncoder())
            cache.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k * 25,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert EmbeddingCache(path).embed("m", texts, CountingEncoder()).cache_misses == 0


def _open_fresh_cache_and_embed(path, barrier, results):
    try:
        barrier.wait()
        cache = EmbeddingCache(path)
        cache.embed("m", ["shared text"], CountingEncoder())
        cache.close()
        results.put(None)
    except Exception as exc:  # noqa: BLE001
        results.put(repr(exc))


def test_runs_opening_one_fresh_cache_at_once_all_get_it(tmp_path):
    # Switching a fresh cache to WAL is answered SQLITE_BUSY without waiting while another process
    # does the same (before the fix about one round in four failed here); every run must get the cache.
    context = multiprocessing.get_context("fork")
    for round_ in range(25):
        barrier, results = context.Barrier(4), context.Queue()
        processes = [
            context.Process(
                target=_open_fresh_cache_and_embed, args=(tmp_path / f"fresh-{round_}.sqlite", barrier, results)
            )
            for _ in range(4)
        ]
        for process in processes:
            process.start()
        errors = [error for error in (results.get(timeout=60) for _ in processes) if error]
        for process in processes:
            process.join()
        assert errors == [], f"round {round_}: {errors}"


def _expected(texts, dim=8):
    raw = CountingEncoder(dim)(texts).astype(np.float32)
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def _filled_cache(path, n=300):
    texts = [f"cached text {i}" for i in range(n)]
    cache = EmbeddingCache(path)
    cache.embed("m", texts, CountingEncoder())
    cache.close()  # the last connection checkpoints the WAL into the file
    return texts


def _truncate_to_half(path):
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def _set_aside_files(path):
    return sorted(
        p
        for p in path.parent.iterdir()
        if p.name.startswith(path.name + ".corrupt-") and not p.name.endswith(("-wal", "-shm"))
    )


def _assert_rebuilt_and_set_aside(path, original_bytes, caplog):
    texts = ["after the rebuild", "second text"]
    encoder = CountingEncoder()
    cache = EmbeddingCache(path)
    batch = cache.embed("m", texts, encoder)
    cache.close()
    np.testing.assert_allclose(batch.vectors, _expected(texts), rtol=1e-6)
    [set_aside] = _set_aside_files(path)
    assert set_aside.read_bytes() == original_bytes  # nothing lost: the evidence is kept
    assert cache.set_aside_paths == [set_aside]
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and "corrupt" in r.getMessage()]
    assert str(path) in warning.getMessage() and str(set_aside) in warning.getMessage()
    again = EmbeddingCache(path).embed("m", texts, encoder)  # the rebuilt cache is a working cache
    assert again.cache_misses == 0 and len(_set_aside_files(path)) == 1


def test_a_truncated_cache_is_set_aside_and_rebuilt(tmp_path, caplog):
    path = tmp_path / "c.sqlite"
    _filled_cache(path)
    _truncate_to_half(path)
    _assert_rebuilt_and_set_aside(path, path.read_bytes(), caplog)


def test_a_garbage_cache_is_set_aside_with_its_wal_and_shm(tmp_path, caplog):
    path = tmp_path / "c.sqlite"
    garbage = os.urandom(8192)
    path.write_bytes(garbage)
    Path(f"{path}-wal").write_bytes(b"wal junk")
    Path(f"{path}-shm").write_bytes(b"shm junk")
    _assert_rebuilt_and_set_aside(path, garbage, caplog)
    [set_aside] = _set_aside_files(path)
    assert Path(f"{set_aside}-wal").read_bytes() == b"wal junk"
    assert Path(f"{set_aside}-shm").read_bytes() == b"shm junk"


def test_a_cache_corrupted_between_open_and_use_is_set_aside_and_the_call_retried(tmp_path, caplog):
    path = tmp_path / "c.sqlite"
    texts = _filled_cache(path)
    cache = EmbeddingCache(path)  # healthy when opened
    page_size = cache._conn.execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as handle:  # then every page after the first is overwritten
        handle.seek(page_size)
        handle.write(os.urandom(path.stat().st_size - page_size))
    damaged = path.read_bytes()
    encoder = CountingEncoder()
    batch = cache.embed("m", texts[:5], encoder)
    cache.close()
    np.testing.assert_allclose(batch.vectors, _expected(texts[:5]), rtol=1e-6)
    assert encoder.texts == texts[:5]  # re-encoded into the fresh cache
    [set_aside] = _set_aside_files(path)
    assert set_aside.read_bytes() == damaged
    assert any(str(set_aside) in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert EmbeddingCache(path).embed("m", texts[:5], encoder).cache_misses == 0


def test_an_error_that_is_not_corruption_is_raised_and_nothing_is_moved(tmp_path):
    path = tmp_path / "c.sqlite"
    path.mkdir()  # not a file at all: a setup mistake, not a bad cache
    with pytest.raises((OSError, sqlite3.Error)):
        EmbeddingCache(path)
    assert path.is_dir() and _set_aside_files(path) == []


_SQLITE_MAGIC = b"SQLite format 3\x00"


@settings(max_examples=30)
@given(st.one_of(st.binary(min_size=1, max_size=4096), st.binary(max_size=600).map(lambda tail: _SQLITE_MAGIC + tail)))
def test_whatever_bytes_the_cache_file_holds_the_cache_works_and_no_bytes_are_lost(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.sqlite"
        path.write_bytes(content)
        texts = ["一つ目", "two"]
        batch = EmbeddingCache(path).embed("m", texts, CountingEncoder())
        np.testing.assert_allclose(batch.vectors, _expected(texts), rtol=1e-6)
        set_aside = _set_aside_files(path)
        assert len(set_aside) <= 1
        if set_aside:
            assert set_aside[0].read_bytes() == content
        else:  # SQLite took the file as a (possibly empty) database
            assert content.startswith(_SQLITE_MAGIC)


def _open_corrupt_cache_and_embed(path, barrier, results, index):
    try:
        barrier.wait()
        texts = ["shared text", f"own text {index}"]
        cache = EmbeddingCache(path)
        batch = cache.embed("m", texts, CountingEncoder())
        cache.close()
        results.put((None, texts, batch.vectors))
    except Exception as exc:  # noqa: BLE001
        results.put((repr(exc), None, None))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_runs_opening_one_corrupt_cache_at_once_set_it_aside_once_and_all_get_it(tmp_path, damage):
    context = multiprocessing.get_context("fork")
    for round_ in range(8):
        path = tmp_path / f"corrupt-{round_}.sqlite"
        if damage == "garbage":
            path.write_bytes(os.urandom(20000))
        else:
            _filled_cache(path)
            _truncate_to_half(path)
        barrier, results = context.Barrier(4), context.Queue()
        processes = [
            context.Process(target=_open_corrupt_cache_and_embed, args=(path, barrier, results, i)) for i in range(4)
        ]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join()
        assert [error for error, _, _ in outcomes if error] == [], f"round {round_}"
        for _, texts, vectors in outcomes:
            np.testing.assert_allclose(vectors, _expected(texts), rtol=1e-6)
        assert len(_set_aside_files(path)) == 1, f"round {round_}: {_set_aside_files(path)}"
        assert EmbeddingCache(path).embed("m", ["shared text"], CountingEncoder()).cache_misses == 0
