"""schema.org JSON-LD for loop B's case pages: build it, serialize it, and check what search engines require.

The page describes one program as a ``GovernmentService`` (provider = the agency, areaServed = the
prefecture) carrying an ``AggregateRating`` of the consented customers' ratings. The rating names
its ``itemReviewed`` explicitly, so it stays valid when a consumer lifts it out of its parent.
Only the service's own facts go in: no customer text, no identifiers.
"""

from __future__ import annotations

import json
import math
from typing import Any

SCHEMA_CONTEXTS = ("https://schema.org", "http://schema.org", "https://schema.org/", "http://schema.org/")
#: Types that may carry an aggregate rating on a case page.
RATED_TYPES = ("GovernmentService", "Service", "Product")
BEST_RATING = 5
WORST_RATING = 1


def build_jsonld(
    *,
    name: str,
    rating_value: float,
    rating_count: int,
    provider: str | None = None,
    area: str | None = None,
    category: str | None = None,
    url: str | None = None,
    best_rating: int = BEST_RATING,
    worst_rating: int = WORST_RATING,
    item_type: str = "GovernmentService",
) -> dict[str, Any]:
    """The JSON-LD object of a case page (a dict; serialize with :func:`dumps_jsonld`)."""
    if item_type not in RATED_TYPES:
        raise ValueError(f"item_type must be one of {RATED_TYPES}, got {item_type!r}")
    item: dict[str, Any] = {"@context": "https://schema.org", "@type": item_type, "name": name}
    if provider:
        item["provider"] = {"@type": "GovernmentOrganization", "name": provider}
    if area:
        item["areaServed"] = {"@type": "AdministrativeArea", "name": area}
    if category:
        item["serviceType"] = category
    if url:
        item["url"] = url
    item["aggregateRating"] = {
        "@type": "AggregateRating",
        "itemReviewed": {"@type": item_type, "name": name},
        "ratingValue": round(float(rating_value), 2),
        "bestRating": int(best_rating),
        "worstRating": int(worst_rating),
        "ratingCount": int(rating_count),
    }
    return item


def dumps_jsonld(document: dict[str, Any]) -> str:
    """Stable JSON text, safe to embed in ``<script type="application/ld+json">`` (no ``</`` inside)."""
    return json.dumps(document, ensure_ascii=False, sort_keys=False, indent=2).replace("</", "<\\/")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _has_name(node: Any) -> bool:
    return isinstance(node, dict) and isinstance(node.get("name"), str) and node["name"].strip() != ""


def rating_problems(rating: Any, *, parent: dict[str, Any] | None = None) -> list[str]:
    """What an ``AggregateRating`` lacks for a review snippet (empty list: valid)."""
    if not isinstance(rating, dict):
        return ["aggregateRating is not an object"]
    problems = []
    if rating.get("@type") != "AggregateRating":
        problems.append(f"aggregateRating @type is {rating.get('@type')!r}, not 'AggregateRating'")
    reviewed = rating.get("itemReviewed", parent)
    if not _has_name(reviewed):
        problems.append("aggregateRating has no itemReviewed with a name")
    value = _number(rating.get("ratingValue"))
    best = _number(rating.get("bestRating", 5))
    worst = _number(rating.get("worstRating", 1))
    if value is None:
        problems.append(f"ratingValue {rating.get('ratingValue')!r} is not a finite number")
    if best is None or worst is None:
        problems.append("bestRating/worstRating are not finite numbers")
    elif worst >= best:
        problems.append(f"worstRating {worst:g} is not below bestRating {best:g}")
    elif value is not None and not worst <= value <= best:
        problems.append(f"ratingValue {value:g} outside [{worst:g}, {best:g}]")
    counts = {key: rating[key] for key in ("ratingCount", "reviewCount") if key in rating}
    if not counts:
        problems.append("aggregateRating has neither ratingCount nor reviewCount")
    for key, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            problems.append(f"{key} {count!r} is not an integer >= 1")
    return problems


def jsonld_problems(text: str) -> list[str]:
    """Why ``text`` is not a case page's valid JSON-LD (empty list: it is).

    Checks what search engines require of a rated item: JSON that parses to one object, a
    schema.org ``@context``, an ``@type`` among :data:`RATED_TYPES`, a non-empty ``name``, and an
    ``aggregateRating`` naming its item, with ``ratingValue`` within [worstRating, bestRating] and
    an integer ``ratingCount``/``reviewCount`` >= 1.
    """
    try:
        document = json.loads(text)
    except (TypeError, ValueError) as error:
        return [f"does not parse as JSON: {error}"]
    if not isinstance(document, dict):
        return [f"top level is a {type(document).__name__}, not an object"]
    problems = []
    if document.get("@context") not in SCHEMA_CONTEXTS:
        problems.append(f"@context {document.get('@context')!r} is not schema.org")
    if document.get("@type") not in RATED_TYPES:
        problems.append(f"@type {document.get('@type')!r} is not one of {list(RATED_TYPES)}")
    if not _has_name(document):
        problems.append("no non-empty name")
    if "aggregateRating" not in document:
        problems.append("no aggregateRating")
    else:
        problems += rating_problems(document["aggregateRating"], parent=document)
    return problems
