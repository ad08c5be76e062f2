"""One module per loop, named by its loop id. Register a new loop in ``LOOPS`` below."""

from autonomath_pipelines.loops import loop_a_hallucination_guard, loop_e_alias_expansion, loop_h_cache_warming
from autonomath_pipelines.loops.common import LoopDefinition

#: Implemented loops, in catalog order. The orchestrator and definitions read this list.
LOOPS: tuple[LoopDefinition, ...] = (
    loop_a_hallucination_guard.LOOP,
    loop_e_alias_expansion.LOOP,
    loop_h_cache_warming.LOOP,
)

__all__ = ["LOOPS", "LoopDefinition"]
