"""Program search as a resource: the payload the service would answer, for loops that pre-execute it.

Two kinds, one interface (``searcher()`` yields an object with ``payload(query)`` and
``skipped_rows``):

- **the service's own search**, when ``entry_point`` (env ``AUTONOMATH_SEARCH``) names a Python
  callable ``package.module:function`` taking the query text and returning the API's payload
  object (``{"query", "result_count", "results": [...]}``). Then the cache holds exactly what the
  service computes;
- **the built-in search** otherwise (``lib/search.py``): the service's known behaviour — aliases,
  text normalized on both sides, partial matches ranked — over a shadow index kept in
  ``index_dir`` (env ``AUTONOMATH_SEARCH_INDEX_DIR``), rebuilt when ``programs`` or ``am_alias``
  change. The service's database is only read.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from typing import Any, Callable, Iterator, Mapping

import dagster as dg
from pydantic import Field

from autonomath_pipelines.lib.badrows import BadRows
from autonomath_pipelines.lib.payload import dumps_payload, payload_problems
from autonomath_pipelines.lib.search import ProgramSearcher
from autonomath_pipelines.resources.db import AutonomathDatabase


class SearchEntryPointError(ValueError):
    """``AUTONOMATH_SEARCH`` does not name a usable callable, or it answered something unusable."""


def load_entry_point(spec: str) -> Callable[[str], Any]:
    """The callable ``package.module:function`` names (attribute paths like ``mod:Class.method`` work)."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise SearchEntryPointError(f"search entry point {spec!r} is not of the form package.module:function")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise SearchEntryPointError(f"search entry point {spec!r}: cannot import {module_name!r} ({exc})") from exc
    for attr in attr_path.split("."):
        if not hasattr(target, attr):
            raise SearchEntryPointError(f"search entry point {spec!r}: {module_name!r} has no attribute {attr_path!r}")
        target = getattr(target, attr)
    if not callable(target):
        raise SearchEntryPointError(f"search entry point {spec!r} is not callable")
    return target


class ServiceSearcher:
    """The service's search behind the built-in searcher's interface."""

    def __init__(self, spec: str, function: Callable[[str], Any]):
        self.spec = spec
        self._function = function
        self.skipped_rows = BadRows()

    def payload(self, query: str, limit: int | None = None) -> dict[str, Any]:
        payload = self._function(query)
        if not isinstance(payload, dict):
            raise SearchEntryPointError(
                f"search entry point {self.spec!r} returned {type(payload).__name__} for "
                f"{query!r}, not the API's payload object"
            )
        problems = payload_problems(dumps_payload(payload))
        if problems:
            raise SearchEntryPointError(
                f"search entry point {self.spec!r} answered {query!r} with an invalid "
                f"payload: {'; '.join(problems[:3])}"
            )
        return payload


class ProgramSearch(dg.ConfigurableResource):
    """The search whose answers loops C and H cache: the service's own (entry point) or the built-in one."""

    database: AutonomathDatabase
    top_k: int = Field(default=10, description="Results per payload, as the API serves them.")
    entry_point: str = Field(
        default_factory=lambda: os.environ.get("AUTONOMATH_SEARCH", ""),
        description="The service's search as package.module:function(query) -> payload (env AUTONOMATH_SEARCH); "
        "empty: the built-in search.",
    )
    index_dir: str = Field(
        default_factory=lambda: os.environ.get("AUTONOMATH_SEARCH_INDEX_DIR", "data/search_index"),
        description="Where the built-in search keeps its normalized shadow index (env AUTONOMATH_SEARCH_INDEX_DIR); "
        "never the service's database.",
    )

    def kind(self) -> str:
        return f"entry point {self.entry_point}" if self.entry_point else "built-in"

    @contextlib.contextmanager
    def searcher(self, popularity: Mapping[str, float] | None = None) -> Iterator[ProgramSearcher | ServiceSearcher]:
        """``popularity``: how often the service answered each program first lately (built-in search only)."""
        if self.entry_point:
            yield ServiceSearcher(self.entry_point, load_entry_point(self.entry_point))
            return
        with self.database.read_only() as conn:
            with ProgramSearcher.over(
                conn,
                limit=self.top_k,
                index_dir=self.index_dir,
                source_name=str(self.database.resolved_path()),
                popularity=popularity,
            ) as searcher:
                yield searcher
