"""Reading SQLite's ``EXPLAIN QUERY PLAN`` for the one shape a loop's window read must never take.

A loop reads a window of a log table (``query_log``, …). Its cost must grow with the window, not with
window × something: a ``SEARCH``/``SCAN`` of the log table that runs once per row of another loop (the
inner side of a nested-loop join, or inside a correlated subquery) re-reads the window per outer row.
SQLite's choice depends on the database's statistics, so the same SQL can be linear on one database
and quadratic on another (issue 19); the plan, not a timing, is what is checked.

Plan rows are ``(id, parent, notused, detail)``. Loops of one join are siblings under one parent, the
outer loop first; a ``CORRELATED … SUBQUERY`` node runs its children once per outer row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

_LOOP = re.compile(r"^(SCAN|SEARCH) (\S+)")
#: A point lookup per outer row (rowid / primary key equality) reads one row, not the window.
_POINT_LOOKUP = re.compile(r"USING (INTEGER PRIMARY KEY|PRIMARY KEY|COVERING INDEX \S+|INDEX \S+) \((rowid|id)=\?\)")


@dataclass(frozen=True)
class Rescan:
    """One plan node that re-reads ``table`` once per row of an enclosing loop."""

    table: str
    detail: str
    because: str

    def __str__(self) -> str:
        return f"{self.detail!r} ({self.because})"


def correlated_rescans(plan: Iterable[Sequence], tables: Iterable[str]) -> list[Rescan]:
    """Nodes of ``plan`` that scan or search one of ``tables`` inside a loop over other rows."""
    tables = {t.lower() for t in tables}
    nodes = [(int(row[0]), int(row[1]), str(row[3])) for row in plan]
    detail_of = {node_id: detail for node_id, _, detail in nodes}
    parent_of = {node_id: parent for node_id, parent, _ in nodes}
    found: list[Rescan] = []
    loops_seen: dict[int, list[str]] = {}  # parent id → loop details seen so far (outer loops first)
    for node_id, parent, detail in nodes:
        match = _LOOP.match(detail)
        if not match:
            continue
        earlier = loops_seen.setdefault(parent, [])
        table = match.group(2).lower()
        if table in tables and not _POINT_LOOKUP.search(detail):
            if earlier:
                found.append(Rescan(table, detail, f"inner loop of a join, once per row of {earlier[-1]!r}"))
            else:
                ancestor = parent
                while ancestor in detail_of:
                    if detail_of[ancestor].startswith("CORRELATED"):
                        found.append(Rescan(table, detail, f"inside {detail_of[ancestor]!r}, once per outer row"))
                        break
                    ancestor = parent_of[ancestor]
        earlier.append(detail)
    return found
