"""FTS5 program search as a resource (the same search the API runs on a cache miss)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import dagster as dg
from pydantic import Field

from autonomath_pipelines.lib.search import ProgramSearcher
from autonomath_pipelines.resources.db import AutonomathDatabase


class ProgramSearch(dg.ConfigurableResource):
    """Search over ``programs_fts`` (trigram + short-query fallback, bm25), read-only."""

    database: AutonomathDatabase
    top_k: int = Field(default=10, description="Results per payload, as the API serves them.")

    @contextlib.contextmanager
    def searcher(self) -> Iterator[ProgramSearcher]:
        with self.database.read_only() as conn:
            yield ProgramSearcher(conn, limit=self.top_k)
