"""Review rules, pure: the candidate status machine, appending to the gold set, completed stubs.

Status machine (DESIGN §6, issue 6)::

    pending_review ──approve──▶ approved ──promote──▶ promoted ──rollback──▶ rolled_back
          └────────reject─────▶ rejected

Everything else is refused with a message naming the candidate, its status and what the action needs.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import yaml

from autonomath_pipelines.lib.gold import GoldFile, GoldItem, parse_gold, render_gold
from autonomath_pipelines.lib.textnorm import normalize_query

PENDING, APPROVED, REJECTED, PROMOTED, ROLLED_BACK = "pending_review", "approved", "rejected", "promoted", "rolled_back"
STATUSES = (PENDING, APPROVED, REJECTED, PROMOTED, ROLLED_BACK)
#: action → {status it applies to: status it leads to}
TRANSITIONS: dict[str, dict[str, str]] = {
    "approve": {PENDING: APPROVED},
    "reject": {PENDING: REJECTED},
    "promote": {APPROVED: PROMOTED},
    "rollback": {PROMOTED: ROLLED_BACK},
}
ACTIONS = tuple(TRANSITIONS)
PAST = {"approve": "approved", "reject": "rejected", "promote": "promoted", "rollback": "rolled back"}


class ReviewError(ValueError):
    """An operator request that cannot be carried out; the message says why. Nothing was changed."""


class IllegalTransition(ReviewError):
    """The candidate's status does not allow the action."""


def next_status(action: str, candidate_id: str, status: str) -> str:
    """The status ``action`` leads to from ``status``, or ``IllegalTransition`` explaining the refusal."""
    if action not in TRANSITIONS:
        raise ReviewError(f"unknown review action {action!r}; known: {', '.join(ACTIONS)}")
    allowed = TRANSITIONS[action]
    if status in allowed:
        return allowed[status]
    if status in allowed.values():
        raise IllegalTransition(f"cannot {action} {candidate_id}: it is already {status}")
    needs = " or ".join(allowed)
    raise IllegalTransition(
        f"cannot {action} {candidate_id}: it is {status}; only a candidate that is {needs} can be {PAST[action]}"
    )


# ----------------------------------------------------------------------------------- gold set


class GoldAppendError(ReviewError):
    """The gold file cannot take the items by appending text (its own content would change)."""


_GOLD_ID = re.compile(r"^g(\d+)$")


def next_gold_ids(existing: Sequence[str], count: int) -> list[str]:
    """``count`` new ids after the highest ``gNNNN`` id (same zero padding, at least 4 digits)."""
    numbers = [(int(m.group(1)), len(m.group(1))) for m in map(_GOLD_ID.match, existing) if m]
    start = max((n for n, _ in numbers), default=0) + 1
    width = max([w for _, w in numbers] + [4])
    taken = set(existing)
    ids, n = [], start
    while len(ids) < count:
        candidate = f"g{n:0{width}d}"
        if candidate not in taken:
            ids.append(candidate)
        n += 1
    return ids


def append_gold_items(text: str | None, items: Sequence[GoldItem], source: str = "evals/gold.yaml") -> str:
    """``text`` with ``items`` appended at the end of its ``items`` list, every existing byte kept.

    A missing file (``None``) becomes a new gold file. The result is re-parsed and must equal the old
    items followed by the new ones, with the other top-level fields unchanged; when appending text
    cannot achieve that (``items`` not the last key, flow style), ``GoldAppendError`` names the file.
    """
    if text is None or not text.strip():
        return render_gold(GoldFile(items=tuple(items)))
    before = parse_gold(text, source=source)
    queries = {normalize_query(item.query): item.id for item in before.items}
    for item in items:
        taken = queries.get(normalize_query(item.query))
        if taken is not None:
            raise ReviewError(f"{source} already has the query {item.query!r} (as {taken})")
    body = text if text.endswith("\n") else text + "\n"
    body = re.sub(r"^items:[ \t]*\[[ \t]*\][ \t]*$", "items:", body, count=1, flags=re.MULTILINE)
    indent = _item_indent(body)
    plain = [_plain_item(item) for item in items]
    rendered = yaml.safe_dump(plain, allow_unicode=True, sort_keys=False, default_flow_style=False, width=1000)
    if yaml.safe_load(rendered) != plain:  # PyYAML writes some line-break characters (U+0085, U+2028) raw
        rendered = yaml.safe_dump(plain, allow_unicode=False, sort_keys=False, default_flow_style=False, width=1000)
    appended = body + "".join(indent + line if line else line for line in rendered.splitlines(keepends=True))
    try:
        after = parse_gold(appended, source=source)
    except ValueError as exc:
        raise GoldAppendError(
            f"{source}: appending would not give valid gold YAML ({exc}); "
            "'items' must be the last top-level key, in block style"
        ) from exc
    if (
        after.items != before.items + tuple(items)
        or after.description != before.description
        or after.status != before.status
        or after.provenance != before.provenance
    ):
        raise GoldAppendError(
            f"{source}: appending text would change existing content; "
            "'items' must be the last top-level key, in block style"
        )
    return appended


def _item_indent(text: str) -> str:
    """Indentation of the existing item dashes under ``items:`` (PyYAML writes none)."""
    match = re.search(r"^items:[ \t]*\n(?:[ \t]*(?:#.*)?\n)*([ \t]*)- ", text, flags=re.MULTILINE)
    return match.group(1) if match else ""


def _plain_item(item: GoldItem) -> dict[str, Any]:
    out: dict[str, Any] = {"id": item.id, "query": item.query, "expected_program_id": item.expected_program_id}
    if item.note is not None:
        out["note"] = item.note
    return out


def gold_item_from_proposal(proposal: Mapping[str, Any], new_id: str, note: str) -> GoldItem:
    """The gold row a reviewed proposal becomes: its query and program, a new id, no status/evidence."""
    return GoldItem(
        id=new_id, query=str(proposal["query"]), expected_program_id=str(proposal["expected_program_id"]), note=note
    )


# ------------------------------------------------------------------------------ property stubs

_XFAIL_PLACEHOLDER = re.compile(r"^pytestmark\s*=\s*pytest\.mark\.xfail\(strict=True", re.MULTILINE)
_NOT_IMPLEMENTED = re.compile(r"^\s*raise NotImplementedError\b", re.MULTILINE)


def stub_completion_problems(text: str, name: str = "<stub>") -> list[str]:
    """Why a loop-G stub is not ready for ``tests/properties/`` (empty list: it is complete)."""
    problems = []
    if _XFAIL_PLACEHOLDER.search(text):
        problems.append("it still carries the placeholder xfail(strict=True) marker")
    if _NOT_IMPLEMENTED.search(text):
        problems.append("its test body still raises NotImplementedError")
    try:
        compile(text, name, "exec")
    except SyntaxError as exc:
        problems.append(f"it does not compile: {exc.msg} (line {exc.lineno})")
    return problems
