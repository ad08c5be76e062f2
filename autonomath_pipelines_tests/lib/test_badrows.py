"""lib/badrows.py: SQL rules for well-formed rows, and reads that survive text that is not UTF-8."""

import contextlib

import pytest

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.lib import badrows

RULES = badrows.TableRules(
    "t",
    "id",
    (
        badrows.timestamp("ts"),
        badrows.text("q", max_chars=5),
        badrows.number("c", lo=0.0, hi=1.0),
        badrows.number("n", lo=0, integer=True, nullable=True),
        badrows.text("k", required=True),
    ),
)


@pytest.fixture
def conn():
    c = sqlite3.connect(":memory:")
    c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, ts TEXT, q TEXT, c REAL, n INTEGER, k TEXT)")
    rows = [
        (1, "'2026-11-20T10:00:00Z'", "'ok'", "0.5", "3", "'a'"),  # good
        (2, "'2026-11-20T10:00:00+09:00'", "'ok'", "0.5", "3", "'a'"),  # offset: sorts inside
        (3, "1763600000", "'ok'", "0.5", "3", "'a'"),  # epoch number
        (4, "'2026/11/20 10:00'", "'ok'", "0.5", "3", "'a'"),
        (5, "'2026-11-20T10:00:01Z'", "x'6f6b'", "0.5", "3", "'a'"),  # BLOB text
        (6, "'2026-11-20T10:00:02Z'", "'toolong'", "0.5", "3", "'a'"),
        (7, "'2026-11-20T10:00:03Z'", "'ok'", "'high'", "3", "'a'"),  # word in a REAL column
        (8, "'2026-11-20T10:00:04Z'", "'ok'", "1.5", "NULL", "'a'"),  # out of range; NULL ok
        (9, "'2026-11-20T10:00:05Z'", "'ok'", "0.5", "-1", "'  '"),  # negative, blank
        (10, "'2026-11-20T10:00:06Z'", "CAST(x'6fff' AS TEXT)", "0.5", "NULL", "'a'"),  # not UTF-8
    ]
    for row in rows:
        c.execute(f"INSERT INTO t VALUES ({', '.join(map(str, row))})")
    yield c
    c.close()


def test_rules_keep_only_well_formed_rows(conn):
    kept = [i for (i,) in conn.execute(f"SELECT id FROM t WHERE {RULES.good('t')} ORDER BY id")]
    assert kept == [1, 10]  # row 10 is well-formed to SQL; its bytes are caught on read


def test_count_bad_names_tables_columns_and_rows(conn):
    bad = badrows.count_bad(conn, RULES, "ts >= ? AND ts < ?", ("2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z"))
    groups = {(c, g["kind"]): (g["rows"], g["examples"]) for (_, c, _), g in bad.groups.items()}
    assert groups[("ts", "timestamp")] == (3, ["2", "3", "4"])  # table-wide: in no window
    assert groups[("q", "text")] == (2, ["5", "6"])
    assert groups[("c", "value")] == (2, ["7", "8"])
    assert groups[("n", "value")] == (1, ["9"]) and groups[("k", "text")] == (1, ["9"])
    assert bad.metrics() == {
        "bad_rows_skipped": 9,
        "bad_rows_timestamp": 3,
        "bad_rows_text": 3,
        "bad_rows_value": 3,
        "bad_rows_reference": 0,
    }
    assert "whole table" in bad.markdown() and "t" in bad.summary()


def test_read_checked_drops_and_names_undecodable_text(conn):
    @contextlib.contextmanager
    def connect():
        yield conn

    frame, bad = badrows.read_checked(
        connect, "SELECT id, q FROM t WHERE id IN (1, 5, 10) ORDER BY id", table="t", key="id"
    )
    assert frame["id"].tolist() == [1] and frame["q"].tolist() == ["ok"]
    problems = {(g["examples"][0], p) for (_, _, p), g in bad.groups.items()}
    assert problems == {("5", "BLOB where text expected"), ("10", "text not valid UTF-8")}
    assert conn.text_factory is str  # restored


def test_a_failed_read_never_yields_rows_twice(conn):
    """Regression: re-running the same statement text after a decode error resumed the old statement."""
    conn.executemany(
        "INSERT INTO t (id, ts, q, c, k) VALUES (?, '2026-11-20T10:00:00Z', ?, 0.5, 'a')",
        [(100 + i, f"g{i}") for i in range(50)],
    )
    sql = "SELECT q, COUNT(*) FROM t GROUP BY q ORDER BY q"
    names, rows, checked = badrows.fetch_checked(conn, sql)
    assert checked and len(rows) == len({r[0] for r in rows})


def test_checked_rows_and_display_keys(conn):
    bad = badrows.BadRows()
    rows = badrows.checked_rows(conn, "SELECT id, q FROM t ORDER BY id", table="t", bad=bad)
    assert [r[0] for r in rows] == [1, 2, 3, 4, 6, 7, 8, 9]
    assert badrows.display_key(badrows.checked_text(b"P\xff")) == "P\\xff"
    assert badrows.display_key("a\x00\u202e") == "a\\x00\\u202e"


@pytest.mark.parametrize(
    "value, iso_only, with_http_date",
    [
        ("2026-11-18T07:28:00Z", True, True),
        ("Wed, 18 Nov 2026 07:28:00 GMT", False, True),  # the raw Last-Modified header
        ("Xyz, 18 Nov 2026 07:28:00 GMT", False, False),  # not a day name
        ("Wed, 18 Noe 2026 07:28:00 GMT", False, False),  # not a month name
        ("Wednesday, 18-Nov-26 07:28:00 GMT", False, False),  # obsolete RFC 850 form
        ("Wed, 18 Nov 2026 07:28:00 +0900", False, False),
        (None, True, True),
    ],
)
def test_http_dates_are_well_formed_only_where_allowed(value, iso_only, with_http_date):
    c = sqlite3.connect(":memory:")
    c.execute("CREATE TABLE s (id INTEGER PRIMARY KEY, lm TEXT)")
    c.execute("INSERT INTO s (lm) VALUES (?)", (value,))
    for rule, expected in (
        (badrows.timestamp("lm", nullable=True), iso_only),
        (badrows.timestamp("lm", nullable=True, http_date=True), with_http_date),
    ):
        good = badrows.TableRules("s", "id", (rule,)).good("s")
        assert bool(c.execute(f"SELECT COUNT(*) FROM s WHERE {good}").fetchone()[0]) is expected, (value, rule.problem)
    c.close()
