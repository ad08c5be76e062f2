"""Review and promotion: the audited, reversible operator action between candidates and production."""

from autonomath_pipelines.lib.review_rules import IllegalTransition, ReviewError
from autonomath_pipelines.review.candidates import REVIEWABLES, Candidate, parse_candidate_id, reviewable
from autonomath_pipelines.review.service import Outcome, Promotion, ReviewService, default_actor

__all__ = [
    "REVIEWABLES",
    "Candidate",
    "IllegalTransition",
    "Outcome",
    "Promotion",
    "ReviewError",
    "ReviewService",
    "default_actor",
    "parse_candidate_id",
    "reviewable",
]
