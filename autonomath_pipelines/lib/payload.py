"""The search payload the API serves, and its validation (what ``query_cache`` must hold)."""

from __future__ import annotations

import json
import math
from typing import Any

RESULT_FIELDS = {"program_id": str, "name": str, "agency": str, "level": str, "score": float}


def search_payload(normalized_query: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON object the API returns for a search (and what a cache hit returns verbatim)."""
    return {"query": normalized_query, "result_count": len(results), "results": results}


def dumps_payload(payload: dict[str, Any]) -> str:
    """Stable serialization: the same search always yields byte-identical JSON."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def payload_problems(payload_json: str) -> list[str]:
    """Why ``payload_json`` is not a valid served payload (empty list: valid)."""
    try:
        payload = json.loads(payload_json)
    except (TypeError, ValueError) as exc:
        return [f"not JSON: {exc}"]
    if not isinstance(payload, dict):
        return ["payload is not a JSON object"]
    problems = []
    if not isinstance(payload.get("query"), str) or not payload["query"].strip():
        problems.append("missing or empty 'query'")
    results = payload.get("results")
    if not isinstance(results, list):
        return problems + ["'results' is not a list"]
    if payload.get("result_count") != len(results):
        problems.append(f"result_count {payload.get('result_count')!r} != {len(results)} results")
    for i, result in enumerate(results):
        if not isinstance(result, dict):
            problems.append(f"results[{i}] is not an object")
            continue
        for field, kind in RESULT_FIELDS.items():
            value = result.get(field)
            ok = isinstance(value, (int, float)) and math.isfinite(value) if kind is float else isinstance(value, kind)
            if not ok:
                problems.append(f"results[{i}].{field} is {value!r}")
        if "prefecture_code" not in result:
            problems.append(f"results[{i}] lacks prefecture_code")
    return problems
