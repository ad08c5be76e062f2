"""The one SQLite module every part of the project uses.

The stdlib ``sqlite3`` here links SQLite 3.40.1, whose FTS5 trigram tokenizer returns no rows for
``LIKE`` patterns shorter than three characters (DESIGN §7) — exactly the 1–2 character Japanese
queries (``補助``) the short-query path needs. ``pysqlite3-binary`` ships a newer, correct SQLite
with FTS5 built in, behind the same DB-API.
"""

from __future__ import annotations

import pysqlite3.dbapi2 as sqlite3  # noqa: F401  (re-exported)

MIN_SQLITE_VERSION = (3, 45, 0)

if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:  # pragma: no cover - packaging guard
    raise ImportError(
        f"SQLite {sqlite3.sqlite_version} is too old: autonomath-pipelines needs >= "
        f"{'.'.join(map(str, MIN_SQLITE_VERSION))} (trigram short-pattern fix); reinstall pysqlite3-binary"
    )

__all__ = ["sqlite3", "MIN_SQLITE_VERSION"]
