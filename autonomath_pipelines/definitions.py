"""Assembles the Dagster Definitions: sources, every implemented loop, the operator's side, shared resources.
Nothing else."""

from __future__ import annotations

from typing import Any, Mapping

import dagster as dg

from autonomath_pipelines.loops import LOOP_DEFINITIONS, LoopDefinition
from autonomath_pipelines.loops.common import source_specs
from autonomath_pipelines.operations import operations_definitions
from autonomath_pipelines.resources import loop_resources


def build_definitions(
    resources: Mapping[str, Any] | None = None, loops: tuple[LoopDefinition, ...] = LOOP_DEFINITIONS
) -> dg.Definitions:
    """Definitions with ``resources`` (``resources.loop_resources``; by default from the environment)."""
    return dg.Definitions.merge(
        dg.Definitions(assets=source_specs(), resources=dict(resources or loop_resources())),
        *(loop.definitions() for loop in loops),
        operations_definitions(loops),
    )


defs = build_definitions()
