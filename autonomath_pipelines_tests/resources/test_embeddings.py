"""The packaged MiniLM loads offline and embeds through the shared cache."""

import numpy as np
import pytest

from autonomath_pipelines.resources import EmbeddingModel
from autonomath_pipelines.resources.embeddings import EmbeddingModelUnavailable


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return EmbeddingModel(cache_path=str(tmp_path_factory.mktemp("emb") / "cache.sqlite"))


def test_packaged_model_embeds_offline_with_cache(model, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    first = model.embed(["subsidy for small business", "grant for small companies", "weather in Osaka"])
    assert first.vectors.shape == (3, 384) and first.cache_misses == 3
    sims = first.vectors @ first.vectors.T
    assert sims[0, 1] > sims[0, 2]
    again = model.embed(["Subsidy  for small business"])  # normalizes to the same text
    assert again.cache_hits == 1 and again.cache_misses == 0
    np.testing.assert_allclose(again.vectors[0], first.vectors[0])


def test_prefix_is_part_of_the_cache_key(tmp_path):
    plain = EmbeddingModel(cache_path=str(tmp_path / "c.sqlite"))
    prefixed = EmbeddingModel(cache_path=str(tmp_path / "c.sqlite"), query_prefix="query: ")
    assert plain.model_key != prefixed.model_key


def test_unknown_model_fails_offline_with_a_clear_error(tmp_path):
    missing = EmbeddingModel(model="intfloat/no-such-model-here", cache_path=str(tmp_path / "c.sqlite"))
    with pytest.raises(EmbeddingModelUnavailable, match="cannot load embedding model 'intfloat/no-such-model-here' offline"):
        missing.embed(["x"])
