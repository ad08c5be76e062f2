"""The data contract in code: what ``schema.sql`` declares, and checks of a real database against it."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Iterable

from autonomath_pipelines.contract.sqlite import sqlite3

_SECTION = re.compile(r"^-- @(sources|outputs|review)\b", re.MULTILINE)


class SchemaError(RuntimeError):
    """The AutonoMath database does not match the data contract; the message names what is wrong."""


@dataclass(frozen=True)
class TableContract:
    name: str
    section: str  # "sources" | "outputs" | "review"
    columns: tuple[str, ...]
    ddl: str  # the statements creating the table and its indexes


def schema_sql() -> str:
    return resources.files("autonomath_pipelines.contract").joinpath("schema.sql").read_text(encoding="utf-8")


@functools.cache
def contract() -> dict[str, TableContract]:
    """Every table of schema.sql with its columns, read by letting SQLite itself parse the file."""
    text = schema_sql()
    sections = {}
    marks = list(_SECTION.finditer(text))
    for mark, nxt in zip(marks, marks[1:] + [None]):
        sections[mark.group(1)] = text[mark.end() : nxt.start() if nxt else len(text)]
    tables: dict[str, TableContract] = {}
    for section, body in sections.items():
        statements = [s.strip() + ";" for s in _split_statements(body)]
        conn = sqlite3.connect(":memory:")
        try:
            conn.executescript("\n".join(statements))
            for stmt in statements:
                m = re.search(r"CREATE (?:VIRTUAL )?TABLE IF NOT EXISTS (\w+)", stmt)
                if not m:
                    continue
                name = m.group(1)
                cols = tuple(r[1] for r in conn.execute(f"PRAGMA table_info({name})"))
                ddl = [stmt] + [s for s in statements if re.search(rf"\bON {name}\(", s)]
                tables[name] = TableContract(name, section, cols, "\n".join(ddl))
        finally:
            conn.close()
    return tables


def _split_statements(body: str) -> list[str]:
    without_comments = "\n".join(line.split("--", 1)[0] for line in body.splitlines())
    return [s for s in without_comments.split(";") if s.strip()]


def source_tables() -> list[str]:
    return [t.name for t in contract().values() if t.section == "sources"]


def output_tables() -> list[str]:
    return [t.name for t in contract().values() if t.section == "outputs"]


def missing_schema(conn, tables: Iterable[str]) -> list[str]:
    """Problems of ``conn``'s database for ``tables``: one line per missing table or column."""
    known = contract()
    problems = []
    for table in tables:
        if table not in known:
            continue  # file outputs such as 'evals/_candidates/' are not tables
        row = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ? AND type = 'table'", (table,)).fetchone()
        if row is None:
            problems.append(f"missing table {table}")
            continue
        present = {r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')}
        for column in known[table].columns:
            if column not in present:
                problems.append(f"table {table} is missing column {column}")
    return problems


def create_all(conn) -> None:
    """Apply the whole schema (idempotent). Used by the demo world and by tests."""
    conn.executescript(schema_sql())


def review_tables() -> list[str]:
    return [t.name for t in contract().values() if t.section == "review"]


def ensure_output_tables(conn, tables: Iterable[str]) -> None:
    """Create missing output or review tables (ours to own) inside the caller's transaction."""
    known = contract()
    for table in tables:
        spec = known.get(table)
        if spec is None:
            continue
        if spec.section == "sources":
            raise SchemaError(f"refusing to create source table {table}: sources belong to the service")
        for stmt in _split_statements(spec.ddl):
            conn.execute(stmt)
