"""FTS5 search over ``programs_fts`` that never raises on user text (DESIGN §7).

- Text is NFKC-normalized (the index holds NFKC text too: the trigram tokenizer folds case only).
- Every token is quoted for ``MATCH`` (``"`` doubled inside), so FTS5 syntax in user text —
  ``AND``, ``NEAR(``, ``*``, ``col:``, stray quotes — is searched for, not parsed.
- Tokens of 3+ characters go through the trigram index with bm25 ranking; 1–2 character tokens
  (``補助``, ``IT``) cannot be trigram-indexed and use ``LIKE`` instead (a scan; correct only on
  SQLite builds with the 3.40.1 trigram fix, see ``autonomath_pipelines.sqlite``).
- Empty input returns no results.
- A program row whose text does not decode as UTF-8 (or is a BLOB) is left out of the results and
  counted in ``ProgramSearcher.skipped_rows``: a cached payload is always valid JSON of valid text.
"""

from __future__ import annotations

from typing import Any

from autonomath_pipelines.lib.badrows import BadRows, drop_bad_rows, fetch_checked
from autonomath_pipelines.lib.payload import search_payload
from autonomath_pipelines.lib.textnorm import normalize_query, tokens

TRIGRAM_MIN_CHARS = 3
SEARCHED_COLUMNS = ("name", "summary", "agency", "region")
MAX_TOKENS = 16  # a query longer than this is truncated: the API never gets long prose


def fts_phrase(token: str) -> str:
    """One token as an FTS5 string literal: searched verbatim, never parsed as syntax."""
    return '"' + token.replace('"', '""') + '"'


def like_pattern(token: str) -> str:
    """``%token%`` with LIKE wildcards in the token escaped (escape character ``\\``)."""
    escaped = token.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def build_search_sql(query_tokens: list[str], limit: int) -> tuple[str, list[Any]] | None:
    """SQL + parameters for a normalized token list, or None when there is nothing to search."""
    query_tokens = [t for t in query_tokens if t][:MAX_TOKENS]
    if not query_tokens:
        return None
    long_tokens = [t for t in query_tokens if len(t) >= TRIGRAM_MIN_CHARS]
    short_tokens = [t for t in query_tokens if len(t) < TRIGRAM_MIN_CHARS]
    where: list[str] = []
    params: list[Any] = []
    if long_tokens:
        where.append("programs_fts MATCH ?")
        params.append(" AND ".join(fts_phrase(t) for t in long_tokens))
    for token in short_tokens:
        where.append("(" + " OR ".join(f"f.{col} LIKE ? ESCAPE '\\'" for col in SEARCHED_COLUMNS) + ")")
        params.extend([like_pattern(token)] * len(SEARCHED_COLUMNS))
    if long_tokens:
        # bm25 is lower-is-better; the served score is its negation (higher is better).
        score = "-bm25(programs_fts)"
    else:
        # No MATCH, no bm25: rank by where the short tokens occur (name beats body text).
        score = " + ".join(f"(f.name LIKE ? ESCAPE '\\') * 2 + (f.summary LIKE ? ESCAPE '\\')" for _ in short_tokens)
        params_score = []
        for token in short_tokens:
            params_score.extend([like_pattern(token), like_pattern(token)])
        params = params_score + params
    sql = (
        f"SELECT p.program_id, p.name, p.agency, p.level, p.prefecture_code, {score} AS score "
        "FROM programs_fts AS f JOIN programs AS p ON p.program_id = f.program_id "
        f"WHERE {' AND '.join(where)} "
        "ORDER BY score DESC, p.program_id LIMIT ?"
    )
    params.append(int(limit))
    return sql, params


class ProgramSearcher:
    """Search over one open connection (read-only is enough). Not thread-safe: one per thread."""

    def __init__(self, conn, limit: int = 10):
        self._conn = conn
        self.limit = limit
        #: Program rows left out of results because their text did not decode (table, column, row ids).
        self.skipped_rows = BadRows()

    def search(self, query: str, limit: int | None = None) -> list[dict[str, Any]]:
        built = build_search_sql(tokens(normalize_query(query)), limit or self.limit)
        if built is None:
            return []
        sql, params = built
        names, rows, checked = fetch_checked(self._conn, sql, params)
        if checked or any(not isinstance(v, (str, int, float, type(None))) for row in rows for v in row):
            rows, _ = drop_bad_rows(rows, names, table="programs", key="program_id", bad=self.skipped_rows)
        return [
            {"program_id": pid, "name": name, "agency": agency, "level": level,
             "prefecture_code": pref, "score": round(float(score), 6)}
            for pid, name, agency, level, pref, score in rows
        ]

    def payload(self, query: str, limit: int | None = None) -> dict[str, Any]:
        """The API's response object for ``query``."""
        return search_payload(normalize_query(query), self.search(query, limit))
