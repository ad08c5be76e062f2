"""The evidence a candidate carries for its reviewer: one JSON object per row."""

from __future__ import annotations

import json
from typing import Any


def evidence_json(**evidence: Any) -> str:
    """``evidence`` as JSON text with sorted keys; Japanese stays readable, dates become strings."""
    return json.dumps(evidence, ensure_ascii=False, sort_keys=True, default=str)
