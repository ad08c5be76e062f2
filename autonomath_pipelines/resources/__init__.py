"""Dagster resources shared by all ten loops (DESIGN §4)."""

from autonomath_pipelines.resources.db import (
    AutonomathDatabase, DatabaseCorruptError, DatabaseFileError, DatabaseLockedError, DatabaseMissingError,
    DatabaseWriteError,
)
from autonomath_pipelines.resources.embeddings import EmbeddingModel
from autonomath_pipelines.resources.search import ProgramSearch
from autonomath_pipelines.resources.settings import LoopSettings

__all__ = ["AutonomathDatabase", "DatabaseCorruptError", "DatabaseFileError", "DatabaseLockedError",
           "DatabaseMissingError", "DatabaseWriteError", "EmbeddingModel",
           "LoopSettings", "ProgramSearch"]
