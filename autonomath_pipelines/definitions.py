"""Assembles the Dagster Definitions: sources, every implemented loop, the operator's side, shared resources.
Nothing else."""

from __future__ import annotations

import dagster as dg

from autonomath_pipelines.resources.io_manager import PartitionedParquetIOManager
from autonomath_pipelines.loops import LOOPS, LoopDefinition
from autonomath_pipelines.loops.common import source_specs
from autonomath_pipelines.operations import operations_definitions
from autonomath_pipelines.resources import AutonomathDatabase, EmbeddingModel, LoopSettings, ProgramSearch


def build_definitions(*, database: AutonomathDatabase | None = None, settings: LoopSettings | None = None,
                      storage_dir: str | None = None, embeddings: EmbeddingModel | None = None,
                      loops: tuple[LoopDefinition, ...] = LOOPS) -> dg.Definitions:
    """Definitions with the given resources; defaults come from the environment (AUTONOMATH_*)."""
    database = database or AutonomathDatabase()
    io_manager = PartitionedParquetIOManager(base_dir=storage_dir) if storage_dir else PartitionedParquetIOManager()
    resources = {
        "autonomath_db": database,
        "program_search": ProgramSearch(database=database),
        "embeddings": embeddings or EmbeddingModel(),
        "loop_settings": settings or LoopSettings(),
        "io_manager": io_manager,
    }
    return dg.Definitions.merge(
        dg.Definitions(assets=source_specs(), resources=resources),
        *(loop.definitions() for loop in loops),
        operations_definitions(loops),
    )


defs = build_definitions()
