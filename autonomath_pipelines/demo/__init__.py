"""Synthetic AutonoMath world with planted truth (DESIGN §6 "Demo world")."""

from autonomath_pipelines.demo.world import (
    SCALES,
    SOURCE_TABLES,
    WorldScale,
    WorldSummary,
    build_world,
    hallucination_family_of,
    load_truth,
    truth_path,
)

__all__ = [
    "SCALES",
    "SOURCE_TABLES",
    "WorldScale",
    "WorldSummary",
    "build_world",
    "hallucination_family_of",
    "load_truth",
    "truth_path",
]
