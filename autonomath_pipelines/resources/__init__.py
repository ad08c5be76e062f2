"""Dagster resources shared by all ten loops (DESIGN §4), and the one factory that assembles them."""

from __future__ import annotations

from typing import Any

from autonomath_pipelines.resources.db import (
    AutonomathDatabase,
    DatabaseCorruptError,
    DatabaseFileError,
    DatabaseLockedError,
    DatabaseMissingError,
    DatabaseWriteError,
)
from autonomath_pipelines.resources.embeddings import EmbeddingModel
from autonomath_pipelines.resources.io_manager import PartitionedParquetIOManager
from autonomath_pipelines.resources.search import ProgramSearch
from autonomath_pipelines.resources.settings import LoopSettings

__all__ = [
    "AutonomathDatabase",
    "DatabaseCorruptError",
    "DatabaseFileError",
    "DatabaseLockedError",
    "DatabaseMissingError",
    "DatabaseWriteError",
    "EmbeddingModel",
    "LoopSettings",
    "PartitionedParquetIOManager",
    "ProgramSearch",
    "loop_resources",
]


def loop_resources(
    database: AutonomathDatabase | None = None,
    settings: LoopSettings | None = None,
    *,
    storage_dir: str | None = None,
    embeddings: EmbeddingModel | None = None,
    search_index_dir: str | None = None,
) -> dict[str, Any]:
    """The resources of every loop run — the code location's, the CLI's, the tests' and the
    benchmarks' alike. What is not given comes from the environment (``AUTONOMATH_*``)."""
    database = database or AutonomathDatabase()
    return {
        "autonomath_db": database,
        "program_search": ProgramSearch(
            database=database, **({"index_dir": search_index_dir} if search_index_dir else {})
        ),
        "embeddings": embeddings or EmbeddingModel(),
        "loop_settings": settings or LoopSettings(),
        "io_manager": PartitionedParquetIOManager(**({"base_dir": storage_dir} if storage_dir else {})),
    }
