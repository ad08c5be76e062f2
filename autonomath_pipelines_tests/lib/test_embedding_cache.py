import multiprocessing
import threading

import numpy as np
import pytest

from autonomath_pipelines.lib.embedding_cache import EmbeddingCache


class CountingEncoder:
    def __init__(self, dim=8):
        self.dim, self.calls, self.texts = dim, 0, []

    def __call__(self, texts):
        self.calls += 1
        self.texts.extend(texts)
        return np.array([[len(t) + 1.0] + [float(ord(c) % 7) for c in (t + " " * self.dim)[: self.dim - 1]]
                         for t in texts])


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
                cache.embed("m", texts[(start + offset) % 400:][:50], CountingEncoder())
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
        processes = [context.Process(target=_open_fresh_cache_and_embed,
                                     args=(tmp_path / f"fresh-{round_}.sqlite", barrier, results))
                     for _ in range(4)]
        for process in processes:
            process.start()
        errors = [error for error in (results.get(timeout=60) for _ in processes) if error]
        for process in processes:
            process.join()
        assert errors == [], f"round {round_}: {errors}"
