"""One module per loop, named by its loop id. Register a new loop in ``LOOP_DEFINITIONS`` below."""

from autonomath_pipelines.loops import (
    loop_a_hallucination_guard,
    loop_b_testimonial_seo,
    loop_c_personalized_cache,
    loop_d_forecast_accuracy,
    loop_e_alias_expansion,
    loop_f_channel_roi,
    loop_g_invariant_expansion,
    loop_h_cache_warming,
    loop_i_doc_freshness,
    loop_j_gold_expansion,
)
from autonomath_pipelines.loops.common import LoopDefinition

#: Implemented loops, in catalog order. The orchestrator and definitions read this list.
LOOP_DEFINITIONS: tuple[LoopDefinition, ...] = (
    loop_a_hallucination_guard.LOOP,
    loop_b_testimonial_seo.LOOP,
    loop_c_personalized_cache.LOOP,
    loop_d_forecast_accuracy.LOOP,
    loop_e_alias_expansion.LOOP,
    loop_f_channel_roi.LOOP,
    loop_g_invariant_expansion.LOOP,
    loop_h_cache_warming.LOOP,
    loop_i_doc_freshness.LOOP,
    loop_j_gold_expansion.LOOP,
)

__all__ = ["LOOP_DEFINITIONS", "LoopDefinition"]
