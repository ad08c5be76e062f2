"""Malformed source rows: recognised, left out and counted — never passed on, never a crash (issue 8).

SQLite enforces the data contract (``schema.sql``) only in part: a TEXT column can hold bytes that
are not UTF-8, or a BLOB; a REAL column can hold a word; a timestamp column any text or a number.
Loops read the service's tables through the helpers here, so such a row is skipped and reported by
table, row id and column instead of crashing a Parquet write or reaching an output:

``TableRules``
    SQL conditions a well-formed row of one table satisfies (``timestamp``, ``text``, ``number``,
    ``reference``). A loop adds ``rules.good(alias)`` to its WHERE clause; ``count_bad`` counts the
    rows each rule rejects in the loop's window and names a few of them.

Timestamps
    The contract is ISO-8601 UTC text, ``YYYY-MM-DDTHH:MM:SSZ``, so that string comparison is time
    order. A timestamp in any other shape (``2026/11/20 10:00``, ``2026-11-20T10:00:00+09:00``,
    ``1763600000``, an empty string) belongs to no window: string comparison would drop some of these
    rows silently and put others in the wrong window (an offset read as if it were UTC, an epoch
    number sorting before every date). Such rows are never read; each run counts them table-wide
    (one scan of the timestamp column) so the operator sees how many rows no window will ever see.

Text that is not UTF-8
    Cannot be tested in SQL. ``read_checked`` reads with SQLite's normal decoding and, only when a
    value fails to decode, reads again with a decoder that marks the bad values; their rows are
    dropped and reported. BLOBs in text columns are caught the same way. ``checked_rows`` does the
    same for plain ``conn.execute`` reads.

Everything here is plain Python over a DB-API connection; no Dagster.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterable, Iterator, Mapping, Sequence

import pandas as pd
from pandas.api.types import infer_dtype

#: ``GLOB`` pattern of the contract's timestamp text.
ISO_UTC_GLOB = "[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]Z"
#: ``GLOB`` pattern of an HTTP-date (RFC 9110 IMF-fixdate, ``Sun, 06 Nov 1994 08:49:37 GMT``): what a
#: crawler that stores the raw ``Last-Modified`` header holds. Day and month names are checked apart.
HTTP_DATE_GLOB = "[A-Z][a-z][a-z], [0-3][0-9] [A-Z][a-z][a-z] [0-9][0-9][0-9][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9] GMT"
HTTP_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
HTTP_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: Kinds of problem, the suffixes of the ``bad_rows_<kind>`` metadata every snapshot reports.
KINDS = ("timestamp", "text", "value", "reference")
#: Rows named per (table, column, problem) in reports.
EXAMPLES = 5
#: Largest amount (JPY) a single grant, charge or refund can hold. No subsidy or invoice comes near a
#: trillion yen; beyond it a value is corrupt, and a few of them overflow SQLite's 64-bit SUM().
MAX_AMOUNT_JPY = 10**12


# ------------------------------------------------------------------------------------------ rules


@dataclass(frozen=True)
class Rule:
    """A condition (SQL, ``{t}`` = the table's alias) every well-formed row satisfies."""

    column: str
    problem: str
    kind: str
    condition: str
    #: Counted over the whole table, not only the window (a malformed timestamp is in no window).
    table_wide: bool = False

    def sql(self, alias: str) -> str:
        return f"COALESCE(({self.condition.format(t=alias)}), 0)"


def timestamp(column: str, *, nullable: bool = False, http_date: bool = False) -> Rule:
    """Contract timestamp text; with ``http_date`` an IMF-fixdate HTTP-date is well-formed too."""
    cond = f"{{t}}.{column} GLOB '{ISO_UTC_GLOB}'"
    problem = "timestamp not ISO-8601 UTC text (YYYY-MM-DDTHH:MM:SSZ)"
    if http_date:
        days = ", ".join(f"'{d}'" for d in HTTP_DAYS)
        months = ", ".join(f"'{m}'" for m in HTTP_MONTHS)
        cond = (
            f"{cond} OR ({{t}}.{column} GLOB '{HTTP_DATE_GLOB}' AND substr({{t}}.{column}, 1, 3) IN ({days}) "
            f"AND substr({{t}}.{column}, 9, 3) IN ({months}))"
        )
        problem = "timestamp neither ISO-8601 UTC text (YYYY-MM-DDTHH:MM:SSZ) nor an HTTP-date"
    cond = f"typeof({{t}}.{column}) = 'text' AND ({cond})"
    if nullable:
        cond = f"{{t}}.{column} IS NULL OR ({cond})"
    return Rule(column, problem, "timestamp", cond, table_wide=not nullable)


def text(column: str, *, nullable: bool = False, max_chars: int | None = None, required: bool = False) -> Rule:
    """TEXT (not a BLOB or a number), at most ``max_chars`` characters, not blank when ``required``.
    UTF-8 validity cannot be tested in SQL: it is checked on read (``read_checked``)."""
    cond = f"typeof({{t}}.{column}) = 'text'"
    problem = "not text"
    if required:
        cond += f" AND trim({{t}}.{column}) != ''"
        problem = "not text, or blank"
    if max_chars is not None:
        cond += f" AND length({{t}}.{column}) <= {int(max_chars)}"
        problem = f"{problem}, or longer than {max_chars} characters"
    if nullable:
        cond = f"{{t}}.{column} IS NULL OR ({cond})"
    return Rule(column, problem, "text", cond)


def number(
    column: str, *, lo: float | None = None, hi: float | None = None, integer: bool = False, nullable: bool = False
) -> Rule:
    types = "('integer')" if integer else "('integer', 'real')"
    cond = f"typeof({{t}}.{column}) IN {types}"
    bounds = []
    if lo is not None:
        cond += f" AND {{t}}.{column} >= {lo!r}"
        bounds.append(f">= {lo:g}")
    if hi is not None:
        cond += f" AND {{t}}.{column} <= {hi!r}"
        bounds.append(f"<= {hi:g}")
    if nullable:
        cond = f"{{t}}.{column} IS NULL OR ({cond})"
    what = "an integer" if integer else "a number"
    return Rule(column, f"not {what}" + (f" {' and '.join(bounds)}" if bounds else ""), "value", cond)


def reference(column: str, table: str, key: str) -> Rule:
    """``column`` is NULL or names an existing ``table.key``."""
    cond = f"{{t}}.{column} IS NULL OR EXISTS (SELECT 1 FROM {table} WHERE {table}.{key} = {{t}}.{column})"
    return Rule(column, f"points to no {table}.{key}", "reference", cond)


@dataclass(frozen=True)
class TableRules:
    """The rules for one table, and the column that names its rows in reports."""

    table: str
    key: str
    rules: tuple[Rule, ...]

    def good(self, alias: str | None = None) -> str:
        """SQL true for a row every rule accepts."""
        alias = alias or self.table
        return "(" + " AND ".join(rule.sql(alias) for rule in self.rules) + ")" if self.rules else "1"

    def good_timestamps(self, alias: str | None = None) -> str:
        alias = alias or self.table
        rules = [r for r in self.rules if r.table_wide]
        return "(" + " AND ".join(r.sql(alias) for r in rules) + ")" if rules else "1"


def count_bad(
    conn,
    rules: TableRules,
    where: str = "1",
    params: Sequence[Any] | Mapping[str, Any] = (),
    *,
    examples: int = EXAMPLES,
) -> "BadRows":
    """Rows of ``rules.table`` each rule rejects: timestamp rules over the whole table, the others
    over the rows ``where`` selects (the window; ``{t}`` is not needed, the table is unaliased)
    whose timestamps are well-formed. A row breaking two rules counts under both."""
    bad = BadRows()
    t = rules.table
    for scope, selected, scope_params in (
        ("table", [r for r in rules.rules if r.table_wide], ()),
        ("window", [r for r in rules.rules if not r.table_wide], params),
    ):
        if not selected:
            continue
        condition = "1" if scope == "table" else f"({where}) AND {rules.good_timestamps(t)}"
        sums = ", ".join(f"COALESCE(SUM(NOT {r.sql(t)}), 0)" for r in selected)
        counts = conn.execute(f"SELECT {sums} FROM {t} WHERE {condition}", scope_params).fetchone()
        for rule, n in zip(selected, counts):
            if not n:
                continue
            keys = [
                k
                for (k,) in conn.execute(
                    f"SELECT CAST({t}.{rules.key} AS BLOB) FROM {t} WHERE {condition} AND NOT {rule.sql(t)} "
                    f"ORDER BY {t}.rowid LIMIT {int(examples)}",
                    scope_params,
                )
            ]
            bad.add(
                t,
                rule.column,
                rule.problem + (" (whole table: in no window)" if scope == "table" else ""),
                rule.kind,
                int(n),
                [display_key(k) for k in keys],
            )
    return bad


# ------------------------------------------------------------------------------------- the report


@dataclass
class BadRows:
    """Malformed rows a step left out: per (table, column, problem) how many, and a few row ids."""

    groups: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    def add(
        self, table: str, column: str, problem: str, kind: str, count: int = 1, examples: Iterable[Any] = ()
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown bad-row kind {kind!r}; known: {KINDS}")
        if count <= 0:
            return
        group = self.groups.setdefault((table, column, problem), {"kind": kind, "rows": 0, "examples": []})
        group["rows"] += int(count)
        for example in examples:
            shown = display_key(example)
            if len(group["examples"]) < EXAMPLES and shown not in group["examples"]:
                group["examples"].append(shown)

    def extend(self, other: "BadRows") -> "BadRows":
        for (table, column, problem), group in other.groups.items():
            self.add(table, column, problem, group["kind"], group["rows"], group["examples"])
        return self

    @property
    def total(self) -> int:
        return sum(g["rows"] for g in self.groups.values())

    def by_kind(self) -> dict[str, int]:
        counts = dict.fromkeys(KINDS, 0)
        for group in self.groups.values():
            counts[group["kind"]] += group["rows"]
        return counts

    def frame(self) -> pd.DataFrame:
        rows = [
            {"table": t, "column": c, "problem": p, "rows": g["rows"], "row ids": ", ".join(g["examples"])}
            for (t, c, p), g in sorted(self.groups.items())
        ]
        return pd.DataFrame(rows, columns=["table", "column", "problem", "rows", "row ids"])

    def metrics(self) -> dict[str, int]:
        """``bad_rows_skipped`` and ``bad_rows_<kind>`` (always all of them, so the UI plots a series)."""
        return {"bad_rows_skipped": self.total, **{f"bad_rows_{k}": n for k, n in self.by_kind().items()}}

    def markdown(self) -> str:
        if not self.groups:
            return "_no malformed rows_"
        return self.frame().to_markdown(index=False)

    def summary(self, limit: int = 3) -> str:
        """One line for a log: the largest groups first."""
        if not self.groups:
            return "no malformed rows"
        ordered = sorted(self.groups.items(), key=lambda kv: (-kv[1]["rows"], kv[0]))
        parts = [f"{t}.{c}: {g['rows']} ({p}; ids {', '.join(g['examples'][:3])})" for (t, c, p), g in ordered[:limit]]
        more = f"; … {len(ordered) - limit} more" if len(ordered) > limit else ""
        return f"skipped {self.total} malformed rows — " + "; ".join(parts) + more


def display_key(value: Any) -> str:
    """A row id as text for a report, whatever it holds (undecodable bytes shown as escapes)."""
    if isinstance(value, UndecodableText):
        value = value.raw
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8", "backslashreplace")
    text = str(value)
    text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return text if len(text) <= 60 else text[:57] + "…"


# ------------------------------------------------------------------------------- reading text safely


class UndecodableText(str):
    """A TEXT value that is not valid UTF-8, decoded with U+FFFD so its row can be named; never passed on."""

    def __new__(cls, raw: bytes):
        self = super().__new__(cls, raw.decode("utf-8", "replace"))
        self.raw = raw
        return self


def checked_text(raw: bytes) -> str:
    """A ``text_factory``: strict UTF-8 (lone surrogates included), marking what does not decode."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return UndecodableText(raw)


def text_problem(value: Any) -> str | None:
    """Why ``value`` (a cell read from a TEXT column) is not usable text, or None."""
    if isinstance(value, UndecodableText):
        return "text not valid UTF-8"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "BLOB where text expected"
    return None


def _is_decode_error(exc: BaseException) -> bool:
    return "decode" in str(exc).lower() and "utf-8" in str(exc).lower()


@contextlib.contextmanager
def checked_connection(connect: Callable[[], ContextManager[Any]]) -> Iterator[Any]:
    """A connection (from ``connect``, e.g. ``database.read_only``) whose text never fails to decode."""
    with connect() as conn:
        conn.text_factory = checked_text
        yield conn


_PLAIN_KINDS = frozenset({"string", "empty", "integer", "floating", "mixed-integer-float", "boolean", "decimal"})


def may_hold_blobs(frame: pd.DataFrame) -> bool:
    """Whether a column of ``frame`` could hold a BLOB (bytes): anything pandas does not see as plain
    text or numbers. Cheap (C speed); the expensive per-cell scan runs only when this says yes."""
    return any(
        frame[c].dtype == object and infer_dtype(frame[c], skipna=True) not in _PLAIN_KINDS for c in frame.columns
    )


#: The types of a cell ``text_problem`` objects to (as fetched: SQLite returns these exact types).
_BAD_CELL_TYPES = frozenset({UndecodableText, bytes, bytearray, memoryview})


def drop_bad_rows(
    rows: Sequence[tuple],
    names: Sequence[str],
    *,
    table: str,
    key: str | None,
    sources: Mapping[str, tuple[str, str | None]] | None = None,
    bad: "BadRows | None" = None,
) -> tuple[list[tuple], "BadRows"]:
    """``rows`` (as fetched, before any DataFrame: pandas turns ``UndecodableText`` into plain ``str``)
    without those holding undecodable text or BLOBs, and the report naming them.

    ``sources`` maps a result column to the (table, key column in the result) it came from, for
    columns read through a join; other columns belong to ``table`` and are named by ``key``."""
    bad = bad if bad is not None else BadRows()
    sources = sources or {}
    position = {name: i for i, name in enumerate(names)}
    kept = []
    for row in rows:
        if _BAD_CELL_TYPES.isdisjoint(map(type, row)):  # the common case, at C speed
            kept.append(row)
            continue
        problems = [(names[i], p) for i, value in enumerate(row) if (p := text_problem(value))]
        if not problems:
            kept.append(row)
            continue
        for column, problem in problems:
            source_table, source_key = sources.get(column, (table, key))
            row_id = row[position[source_key]] if source_key in position else "?"
            bad.add(source_table, column, problem, "text", 1, [row_id])
    return kept, bad


def fetch_checked(
    conn, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> tuple[list[str], list[tuple], bool]:
    """Column names and rows of ``sql`` on ``conn``, and whether the rows may hold ``UndecodableText``.

    Reads with SQLite's own decoding first; only when a value fails to decode does it read again with
    ``checked_text`` (and then restores the connection's text factory)."""
    params = dict(params) if isinstance(params, Mapping) else tuple(params)
    cursor = conn.cursor()
    try:
        cursor.execute(sql, params)
        return [d[0] for d in cursor.description], cursor.fetchall(), conn.text_factory is checked_text
    except Exception as exc:  # the driver's OperationalError: "Could not decode to UTF-8 column ..."
        if not _is_decode_error(exc):
            raise
    finally:
        cursor.close()
    previous = conn.text_factory
    conn.text_factory = checked_text
    try:
        # A different statement text: the driver caches prepared statements by text, and the one the
        # failed read left mid-way would otherwise resume where it stopped (rows read twice).
        cursor = conn.execute(sql + "\n-- checked read", params)
        return [d[0] for d in cursor.description], cursor.fetchall(), True
    finally:
        conn.text_factory = previous


def frame_checked(
    conn,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] = (),
    *,
    table: str,
    key: str | None,
    sources: Mapping[str, tuple[str, str | None]] | None = None,
    bad: "BadRows | None" = None,
) -> tuple[pd.DataFrame, "BadRows"]:
    """Rows of ``sql`` on ``conn`` as a DataFrame minus rows with undecodable text or BLOBs, which
    are reported in the returned ``BadRows`` (by ``table``/``key``, or ``sources`` for joined columns).

    The per-cell scan runs only when a value failed to decode or a column may hold a BLOB."""
    bad = bad if bad is not None else BadRows()
    names, rows, checked = fetch_checked(conn, sql, params)
    if not checked:
        frame = pd.DataFrame(rows, columns=names)
        if not may_hold_blobs(frame):
            return frame, bad
    kept, bad = drop_bad_rows(rows, names, table=table, key=key, sources=sources, bad=bad)
    return pd.DataFrame(kept, columns=names), bad


def read_checked(
    connect: Callable[[], ContextManager[Any]],
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] = (),
    *,
    table: str,
    key: str | None,
    sources: Mapping[str, tuple[str, str | None]] | None = None,
    bad: "BadRows | None" = None,
) -> tuple[pd.DataFrame, "BadRows"]:
    """``frame_checked`` on a fresh connection from ``connect`` (e.g. ``database.read_only``)."""
    with connect() as conn:
        return frame_checked(conn, sql, params, table=table, key=key, sources=sources, bad=bad)


def checked_rows(
    conn,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] = (),
    *,
    table: str,
    key: str | None = None,
    bad: "BadRows | None" = None,
) -> list[tuple]:
    """``conn.execute(sql).fetchall()`` minus rows holding undecodable text or BLOBs, each reported in
    ``bad`` under ``table`` and named by column ``key`` (default: the first column)."""
    names, rows, _ = fetch_checked(conn, sql, params)
    kept, _ = drop_bad_rows(rows, names, table=table, key=key or names[0], bad=bad if bad is not None else BadRows())
    return kept
