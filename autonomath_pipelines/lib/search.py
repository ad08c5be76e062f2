"""The built-in program search: what the service answers, rebuilt from its tables (DESIGN §7).

The service's answers are the truth for every payload a loop pre-executes (loops C and H), so the
built-in searcher follows the service's known behaviour rather than the raw ``programs_fts`` index:

- **Normalized on both sides.** The service's index may hold raw text (「ＤＸ」, full-width digits,
  half-width katakana, 「～」); the query is NFKC-folded. Both go through ``fold``: NFKC + casefold
  (``textnorm.normalize_query``), hiragana → katakana (``jaconv``), punctuation and symbols as word
  breaks (「・」「～/〜」「（）」, so 「ものづくり・商業」 is found by 「ものづくり 商業」). The folded
  text lives in a *shadow index* (``SearchIndex``) in the project's own storage — never in the
  service's database — rebuilt whenever ``programs`` or ``am_alias`` changes (``source_fingerprint``).
- **Aliases.** Every ``am_alias`` surface is indexed with its program, and a query that *is* a name
  or alias, or contains one (「ものづくり補助金 申請方法」), puts that program first.
- **Partial matches are ranked**, not required: a query with a generic word the program lacks
  (「助成金」, 「支援」) still finds it. Each query term counts by how much of it the program's name or
  aliases hold (whole term, else its share of character trigrams), body text counting less.
- **User text is never parsed**: terms are quoted for FTS5 ``MATCH`` (``"`` doubled), so ``AND``,
  ``NEAR(``, ``*`` or ``col:`` in a query are searched for; empty input returns no results.
- A program row whose text does not decode as UTF-8 (or is a BLOB) is left out of the index and
  counted in ``skipped_rows``: a cached payload is always valid JSON of valid text.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import pathlib
import tempfile
import unicodedata
import zlib
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import jaconv
import numpy as np

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.lib import textnorm
from autonomath_pipelines.lib.badrows import BadRows, drop_bad_rows, fetch_checked
from autonomath_pipelines.lib.payload import search_payload
from autonomath_pipelines.lib.textnorm import normalize_query, tokens

_log = logging.getLogger(__name__)

TRIGRAM_MIN_CHARS = 3
MAX_TOKENS = 16  # a query longer than this is truncated: the API never gets long prose
#: Programs whose folded names/aliases a searcher keeps between queries (least recently used go first).
DOC_CACHE_SIZE = 4096
#: Candidates read from the index per query before ranking (by bm25 over the query's terms).
CANDIDATES = 200
#: Index format: bump when ``fold`` or the index layout changes, so old index files are rebuilt.
INDEX_VERSION = 2
#: bm25 column weights of the shadow index (name, aliases, summary, agency, region).
BM25_WEIGHTS = (10.0, 8.0, 1.0, 2.0, 3.0)
#: (document, bm25 share) postings a searcher keeps between queries, all phrases together; the
#: phrases used least recently go first. 8 M postings are ~100 MB.
POSTINGS_CACHE = 8_000_000
#: How much a term found only in body text (summary, agency, region) counts against the name/aliases.
BODY_WEIGHT = 0.3
#: An alias that is the query counts this share of a name that is: two programs answering to one
#: surface, the one bearing it as its name comes first.
ALIAS_MATCH = 0.9
#: Weight of the popularity prior (0..1, ``popularity_prior``) against coverage (0..1.25): it settles
#: near-ties, never a program that answers clearly less of the query.
POPULARITY_WEIGHT = 0.1
#: Editorial tier (``programs.tier``) as a tie-breaker between equally matching programs.
TIER_PRIOR = {"S": 3.0, "A": 2.0, "B": 1.0, "C": 0.0}
#: Weight of precision (how much of a name the query holds) against recall (how much of the query it holds).
PRECISION_WEIGHT = 0.25

# Unicode categories that separate words for search: punctuation (P*) and symbols (S*).
_BREAK_CATEGORIES = ("P", "S")


def fold(text: str) -> str:
    """Search form of ``text``: NFKC, casefold, katakana for hiragana, punctuation/symbols as spaces.

    Applied to the index and to the query alike; idempotent (``fold(fold(t)) == fold(t)``)."""
    text = jaconv.hira2kata(normalize_query(text))
    text = "".join(" " if unicodedata.category(ch)[0] in _BREAK_CATEGORIES else ch for ch in text)
    return " ".join(text.split())


def compact(folded: str) -> str:
    """``folded`` without spaces: the key names and aliases are compared by."""
    return folded.replace(" ", "")


def fts_phrase(token: str) -> str:
    """One token as an FTS5 string literal: searched verbatim, never parsed as syntax."""
    return '"' + token.replace('"', '""') + '"'


def like_pattern(token: str) -> str:
    """``%token%`` with LIKE wildcards in the token escaped (escape character ``\\``)."""
    escaped = token.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def trigrams(term: str) -> list[str]:
    """The character trigrams of ``term`` (the term itself when shorter than three characters)."""
    if len(term) < TRIGRAM_MIN_CHARS:
        return [term]
    return list(dict.fromkeys(term[i : i + TRIGRAM_MIN_CHARS] for i in range(len(term) - TRIGRAM_MIN_CHARS + 1)))


def query_terms(query: str) -> list[str]:
    """The folded terms of a query, duplicates removed, at most ``MAX_TOKENS``."""
    return tokens(fold(query))[:MAX_TOKENS]


# Query terms and program names recur across the queries of a run: each text's bigrams are made once.
@functools.lru_cache(maxsize=1 << 17)
def bigrams(text: str) -> frozenset[str]:
    """Character bigrams of ``text`` (spaces break words), the single character of a 1-character word."""
    grams: set[str] = set()
    for word in text.split():
        grams.update([word] if len(word) == 1 else (word[i : i + 2] for i in range(len(word) - 1)))
    return frozenset(grams)


def term_coverage(term: str, text: str) -> float:
    """How much of ``term`` ``text`` holds: 1.0 for the whole term, else its share of bigrams (a typo
    or a reordered word still counts for most of it)."""
    if term in text:
        return 1.0
    grams = bigrams(term)
    if len(term) < 2 or not grams:
        return 0.0
    # A bigram of a term has no space, so "in text" is "among the bigrams of text"; map keeps it in C.
    return sum(map(text.__contains__, grams)) / len(grams)


def rank_score(
    terms: list[str],
    weights: list[float],
    heads: Sequence[str],
    body: str,
    places: set[str] = frozenset(),
    doc_places: frozenset[str] = frozenset(),
) -> float:
    """How well a program answers the query, in [0, 1 + PRECISION_WEIGHT]:

    - *recall*: the share of the query its best-matching name or alias holds, each term weighted
      (``weights``: rarer words count more, so a place name outweighs 「補助金」), terms found only
      in its body text (summary, agency, region) counting ``BODY_WEIGHT``;
    - *precision*: the share of that name's bigrams the query holds, so of two names holding the
      same query words the one with fewer other words — the one asked for — ranks first.

    A term that is a place name (``places``) counts fully when the program is of that place
    (``doc_places``) and not at all otherwise: 「京都」 asks for 京都府, not for 「東京都」 in a name.
    Partial coverage (a typo, a reordered word) counts squared, so sharing one common bigram
    (「事業」) with a rare term is worth little. ``heads`` are the folded name and aliases."""
    total = sum(weights)
    if not total or not heads:
        return 0.0
    query_grams = bigrams(" ".join(terms))
    # A name sharing none of these with the query holds no term, not even in part: it scores what
    # the body alone gives, and most of a program's aliases are such names.
    probes = tuple({g for g in query_grams if len(g) == 2} | {t for t in terms if len(t) == 1})
    place_hit = [(1.0 if t in doc_places else 0.0) if t in places else None for t in terms]
    in_body = [term_coverage(t, body) ** 2 for t in terms]
    body_only = (
        sum(
            w * (hit if hit is not None else max(0.0, BODY_WEIGHT * b))
            for w, b, hit in zip(weights, in_body, place_hit)
        )
        / total
    )
    best = 0.0
    for head in heads:
        if not any(map(head.__contains__, probes)):
            best = max(best, body_only)
            continue
        head_grams = bigrams(head)
        got = sum(
            w * (hit if hit is not None else max(term_coverage(t, head) ** 2, BODY_WEIGHT * b))
            for t, w, b, hit in zip(terms, weights, in_body, place_hit)
        )
        precision = len(head_grams & query_grams) / len(head_grams) if head_grams else 0.0
        best = max(best, got / total + PRECISION_WEIGHT * precision)
    return best


def popularity_prior(top1_counts: Mapping[str, float]) -> dict[str, float]:
    """Programs' popularity in [0, 1] from how often the service answered each first
    (``log1p(count) / log1p(max count)``): the prior a search engine takes from its clicks."""
    counts = {pid: float(c) for pid, c in top1_counts.items() if isinstance(pid, str) and c and c > 0}
    if not counts:
        return {}
    top = math.log1p(max(counts.values()))
    return {pid: math.log1p(c) / top for pid, c in counts.items()}


# ----------------------------------------------------------------------------------- shadow index

_INDEX_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE docs (doc INTEGER PRIMARY KEY, program_id TEXT NOT NULL, name TEXT NOT NULL, agency TEXT NOT NULL,
                   level TEXT NOT NULL, prefecture_code TEXT, tier TEXT, head TEXT NOT NULL, body TEXT NOT NULL,
                   places TEXT NOT NULL);
CREATE TABLE places (key TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE names (key TEXT NOT NULL, doc INTEGER NOT NULL, is_alias INTEGER NOT NULL);
CREATE VIRTUAL TABLE docs_fts USING fts5(name, aliases, summary, agency, region, tokenize = 'trigram');
"""

_PROGRAMS_SQL = (
    "SELECT p.program_id, p.name, p.summary, p.agency, p.level, p.prefecture_code, p.municipality, p.tier, "
    "f.name_ja AS prefecture_name FROM programs AS p LEFT JOIN prefectures AS f "
    "ON f.prefecture_code = p.prefecture_code ORDER BY p.program_id"
)
_ALIASES_SQL = "SELECT alias_id, entity_id, surface FROM am_alias ORDER BY alias_id"


def source_fingerprint(conn) -> str:
    """Changes whenever the rows the index is built from change (one aggregate scan of each table).

    Counts, the largest row id, summed text lengths and summed ids: an insert, delete or edit of a
    program or alias moves at least one of them (``updated_at`` is the contract for edits)."""
    programs = conn.execute(
        "SELECT count(*), max(rowid), max(updated_at), total(length(CAST(name AS BLOB))), "
        "total(length(CAST(summary AS BLOB))), total(length(CAST(agency AS BLOB))) FROM programs"
    ).fetchone()
    aliases = conn.execute(
        "SELECT count(*), max(alias_id), total(alias_id), total(length(CAST(surface AS BLOB))), "
        "total(length(CAST(entity_id AS BLOB))) FROM am_alias"
    ).fetchone()
    prefectures = conn.execute("SELECT count(*), total(length(CAST(name_ja AS BLOB))) FROM prefectures").fetchone()
    text = repr((INDEX_VERSION, tuple(programs), tuple(aliases), tuple(prefectures)))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def build_index(source, target) -> BadRows:
    """Fill the empty database ``target`` with the shadow index of ``source`` (the service's tables).

    Returns the source rows left out because their text does not decode (counted, never indexed)."""
    skipped = BadRows()
    names, rows, checked = fetch_checked(source, _PROGRAMS_SQL)
    if checked or any(isinstance(v, bytes) for row in rows for v in row):
        rows, _ = drop_bad_rows(rows, names, table="programs", key="program_id", bad=skipped)
    anames, aliases, achecked = fetch_checked(source, _ALIASES_SQL)
    if achecked or any(isinstance(v, bytes) for row in aliases for v in row):
        aliases, _ = drop_bad_rows(aliases, anames, table="am_alias", key="alias_id", bad=skipped)
    by_program: dict[str, list[str]] = {}
    for _alias_id, entity_id, surface in aliases:
        if isinstance(entity_id, str) and isinstance(surface, str):
            by_program.setdefault(entity_id, []).append(surface)
    target.executescript(_INDEX_SCHEMA)
    docs, fts, keys = [], [], []
    all_places: set[str] = set()
    for doc, (pid, name, summary, agency, level, pref_code, municipality, tier, pref_name) in enumerate(rows, start=1):
        region = " ".join(x for x in (pref_name or ("全国" if pref_code is None else ""), municipality or "") if x)
        f_name, f_summary, f_agency, f_region = fold(name), fold(summary or ""), fold(agency or ""), fold(region)
        f_aliases = [fold(s) for s in by_program.get(pid, [])]
        head = "\n".join([f_name, *f_aliases])
        doc_places = place_forms(pref_name) + place_forms(municipality)
        all_places.update(doc_places)
        docs.append(
            (
                doc,
                pid,
                name,
                agency,
                level,
                pref_code,
                tier,
                head,
                " ".join((f_summary, f_agency, f_region)),
                "\n".join(doc_places),
            )
        )
        fts.append((doc, f_name, " ".join(f_aliases), f_summary, f_agency, f_region))
        keys.append((compact(f_name), doc, 0))
        keys.extend((compact(a), doc, 1) for a in f_aliases if a)
    target.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", docs)
    target.executemany("INSERT INTO places VALUES (?)", sorted((p,) for p in all_places))
    target.executemany(
        "INSERT INTO docs_fts (rowid, name, aliases, summary, agency, region) VALUES (?, ?, ?, ?, ?, ?)", fts
    )
    target.executemany("INSERT INTO names VALUES (?, ?, ?)", keys)
    target.execute("CREATE INDEX names_key ON names(key)")
    target.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [
            ("version", str(INDEX_VERSION)),
            ("programs", str(len(docs))),
            ("aliases", str(len(aliases))),
            (
                "skipped_rows",
                json.dumps(
                    [
                        [t, c, pr, g["kind"], g["rows"], g["examples"]]
                        for (t, c, pr), g in sorted(skipped.groups.items())
                    ],
                    ensure_ascii=False,
                ),
            ),
        ],
    )
    target.commit()
    return skipped


#: Suffixes a place name is also typed without: 「京都」 for 京都府, 「八王子」 for 八王子市.
_PLACE_SUFFIXES = ("都", "道", "府", "県", "市", "区", "町", "村")


def place_forms(name: str | None) -> list[str]:
    """Folded forms a searcher types for a prefecture or municipality: the name, and the name without
    its 都/道/府/県/市/区/町/村 when two or more characters remain (北海道 stays whole)."""
    if not name:
        return []
    folded = compact(fold(name))
    forms = [folded]
    if folded.endswith(_PLACE_SUFFIXES) and len(folded) >= 3 and folded != "北海道":
        forms.append(folded[:-1])
    return forms


@dataclass(frozen=True)
class IndexInfo:
    """Where the shadow index came from, for metadata."""

    path: str
    fingerprint: str
    programs: int
    aliases: int
    rebuilt: bool


def _connect_ro(path: pathlib.Path):
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


@contextlib.contextmanager
def open_index(
    source, directory: str | os.PathLike | None, *, source_name: str = ""
) -> Iterator[tuple[Any, IndexInfo, BadRows]]:
    """A read-only connection to the shadow index of ``source``, building it when needed.

    ``directory`` None: built in memory for this use. Otherwise a file
    ``<directory>/<source key>-<fingerprint>.sqlite`` is reused while the source tables are unchanged,
    and replaced atomically (older files of the same source are removed) when they change."""
    fingerprint = source_fingerprint(source)
    if directory is None:
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        try:
            skipped = build_index(source, conn)
            yield conn, _info(conn, ":memory:", fingerprint, True), skipped
        finally:
            conn.close()
        return
    folder = pathlib.Path(directory).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    source_key = hashlib.sha256(source_name.encode()).hexdigest()[:12]
    path = folder / f"{source_key}-{fingerprint}.sqlite"
    reused = _reuse_index(path, fingerprint) if path.exists() else None
    if reused is None:
        skipped = _build_index_file(source, folder, path)
        for old in folder.glob(f"{source_key}-*.sqlite"):
            if old != path:
                old.unlink(missing_ok=True)
        conn = _connect_ro(path)
        info = _info(conn, str(path), fingerprint, True)
    else:
        conn, info, skipped = reused
    try:
        yield conn, info, skipped
    finally:
        conn.close()


def _build_index_file(source, folder: pathlib.Path, path: pathlib.Path) -> BadRows:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    os.close(fd)
    tmp = pathlib.Path(tmp_name)
    try:
        out = sqlite3.connect(str(tmp))
        try:
            skipped = build_index(source, out)
        finally:
            out.close()
        os.replace(tmp, path)  # atomic: a concurrent run sees the old file or the whole new one
    finally:
        tmp.unlink(missing_ok=True)
    return skipped


def _reuse_index(path: pathlib.Path, fingerprint: str):
    """(connection, info, skipped rows) of an existing index file, or None when it cannot be read —
    truncated, overwritten, another format: it is only derived data, so it is removed and rebuilt."""
    conn = _connect_ro(path)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        if meta.get("version") != str(INDEX_VERSION):
            raise ValueError(f"index version {meta.get('version')!r}")
        conn.execute("SELECT count(*) FROM docs_fts WHERE docs_fts MATCH '\"x\"'").fetchone()
        # The rows the build left out are still left out: report them on every use of the index.
        skipped = BadRows()
        for table, column, problem, kind, count, examples in json.loads(meta["skipped_rows"]):
            skipped.add(table, column, problem, kind, count, examples)
        return conn, _info(conn, str(path), fingerprint, False), skipped
    except (sqlite3.DatabaseError, ValueError, KeyError, TypeError):
        conn.close()
        path.unlink(missing_ok=True)
        return None


def _info(conn, path: str, fingerprint: str, rebuilt: bool) -> IndexInfo:
    meta = dict(conn.execute("SELECT key, value FROM meta"))
    return IndexInfo(path, fingerprint, int(meta["programs"]), int(meta["aliases"]), rebuilt)


# ------------------------------------------------------------------------------------------ search


#: A match as ``search`` ranks it: (program_id, name, agency, level, prefecture_code, relevance to the
#: query, editorial tier prior, bm25 clipped to 100).
Contender = tuple[str, str, str, Any, Any, float, float, float]
#: Slack for ``round(score, 6)`` and float addition when telling which matches the prior can lift.
_ROUNDING_MARGIN = 1e-5


def _ranking_code() -> str:
    """What a stored answer depends on besides the index: this module and the text folding it
    uses, and the FTS5 whose bm25 picks candidates."""
    digest = hashlib.sha256()
    for path in (__file__, textnorm.__file__):
        digest.update(pathlib.Path(path).read_bytes())
    digest.update(f"{sqlite3.sqlite_version}/{jaconv.__version__}".encode())
    return digest.hexdigest()[:16]


RANKING_CODE = _ranking_code()


def _final_score(match: Contender, popularity: float) -> float:
    """A match's score in the answer: between (nearly) equally matching programs — an alias several
    programs share — the one the service answered most lately wins, then the editorial tier; bm25
    breaks what is left."""
    relevance, prior, bm25 = match[5], match[6], match[7]
    return round(relevance + (POPULARITY_WEIGHT * popularity + 1e-3 * prior + 1e-5 * bm25 / 100.0), 6)


class ResultStore:
    """The contenders (``ProgramSearcher._contenders``) of queries searched before, kept in a file next
    to the shadow index they came from, so a daily run searches only the queries it has not seen.

    A stored answer is keyed by the index fingerprint (the file name), the code that ranks
    (``RANKING_CODE``) and the query's terms, so it is the answer a fresh search would give: the
    popularity prior, which changes every day, is applied after. The file is only a cache: when it
    cannot be read it is removed with a warning naming it, and the searcher goes on without; when
    another run holds it past ``BUSY_TIMEOUT`` it is left as it is, and that read or write skipped."""

    FLUSH_EVERY = 256
    #: Seconds a write waits for another run (loops C and H at once) holding the file.
    BUSY_TIMEOUT = 30.0

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.hits = 0
        self.misses = 0
        self._pending: list[tuple[str, str, bytes]] = []
        self._conn = None
        self._conn = self._guard(self._open, opening=True)

    def _open(self):
        conn = sqlite3.connect(str(self.path), timeout=self.BUSY_TIMEOUT, check_same_thread=False)
        try:
            conn.execute("PRAGMA synchronous = OFF")  # a cache: a torn file is dropped when read fails
            conn.execute(
                "CREATE TABLE IF NOT EXISTS results (code TEXT, query TEXT, contenders BLOB, PRIMARY KEY (code, query))"
            )
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    def _guard(self, operation, opening: bool = False):
        if self._conn is None and not opening:
            return None
        try:
            return operation()
        except (sqlite3.DatabaseError, zlib.error, ValueError) as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                # Another run held the file for longer than BUSY_TIMEOUT: the file is sound and
                # stays; this read searches afresh, or these answers are not kept.
                _log.warning("search result cache %s is busy (%s): going on without it for now", self.path, exc)
                return None
            _log.warning("search result cache %s is unusable (%s): removed it; searching without it", self.path, exc)
            self.close(flush=False)
            self.path.unlink(missing_ok=True)
            return None

    @staticmethod
    def _key(key: tuple[int, str]) -> tuple[str, str]:
        return f"{RANKING_CODE}:{key[0]}", key[1]

    def get(self, key: tuple[int, str]) -> list[Contender] | None:
        found = self._guard(lambda: self._read(key))
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def _read(self, key: tuple[int, str]) -> list[Contender] | None:
        row = self._conn.execute(
            "SELECT contenders FROM results WHERE code = ? AND query = ?", self._key(key)
        ).fetchone()
        return None if row is None else [tuple(c) for c in json.loads(zlib.decompress(row[0]))]

    def put(self, key: tuple[int, str], contenders: list[Contender]) -> None:
        # Compressed: a common query has hundreds of near-tied contenders, their names much alike.
        self._pending.append((*self._key(key), zlib.compress(json.dumps(contenders, ensure_ascii=False).encode())))
        if len(self._pending) >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            self._guard(lambda: self._write(pending))

    def _write(self, rows: list[tuple[str, str, bytes]]) -> None:
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", rows)

    def close(self, flush: bool = True) -> None:
        if flush:
            self.flush()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ProgramSearcher:
    """Search over a shadow index connection (``open_index``). Not thread-safe: one per thread."""

    def __init__(
        self,
        index,
        limit: int = 10,
        skipped_rows: BadRows | None = None,
        popularity: Mapping[str, float] | None = None,
        results: ResultStore | None = None,
    ):
        self._index = index
        self._results = results
        self._popularity = popularity_prior(popularity or {})
        self.limit = limit
        #: Service rows left out of the index because their text did not decode (table, column, row ids).
        self.skipped_rows = skipped_rows if skipped_rows is not None else BadRows()
        self._docs, self._max_doc = index.execute("SELECT count(*), COALESCE(max(doc), 0) FROM docs").fetchone()
        self._weights: dict[str, float] = {}
        weights = ", ".join(str(w) for w in BM25_WEIGHTS)
        self._bm25_sql = f"SELECT rowid, -bm25(docs_fts, {weights}) FROM docs_fts WHERE docs_fts MATCH ?"
        self._postings: collections.OrderedDict[str, tuple[np.ndarray, np.ndarray]] = collections.OrderedDict()
        self._postings_held = 0
        self._doc_cache: collections.OrderedDict[int, tuple] = collections.OrderedDict()

    @classmethod
    @contextlib.contextmanager
    def over(
        cls,
        source,
        limit: int = 10,
        index_dir: str | os.PathLike | None = None,
        source_name: str = "",
        popularity: Mapping[str, float] | None = None,
    ) -> Iterator["ProgramSearcher"]:
        """A searcher over the service tables on connection ``source`` (index built or reused);
        ``popularity``: how often the service put each program first lately (``popularity_prior``)."""
        with open_index(source, index_dir, source_name=source_name) as (conn, info, skipped):
            results = (
                None if info.path == ":memory:" else ResultStore(pathlib.Path(info.path).with_suffix(".results.sqlite"))
            )
            searcher = cls(conn, limit, skipped, popularity, results)
            searcher.index_info = info
            try:
                yield searcher
            finally:
                if results is not None:
                    results.close()

    @property
    def answers_stored(self) -> int | None:
        """Searches this searcher answered from an earlier run's stored contenders (None: no store)."""
        return None if self._results is None else self._results.hits

    def _named(self, terms: list[str], weights: list[float]) -> dict[int, float]:
        """Docs whose name or an alias *is* the query (2.0) or one of its terms (that term's share of
        the query): 「ものづくり補助金」 finds its program through ``am_alias`` before anything else.
        A program *named* so beats one that only has it as an alias (``ALIAS_MATCH`` of the bonus)."""
        total = sum(weights) or 1.0
        whole = compact(" ".join(terms))
        hits: dict[int, float] = {}
        for doc, is_alias in self._index.execute("SELECT doc, is_alias FROM names WHERE key = ?", (whole,)):
            hits[doc] = max(hits.get(doc, 0.0), 2.0 * (ALIAS_MATCH if is_alias else 1.0))
        if len(terms) > 1:
            for term, weight in zip(terms, weights):
                for doc, is_alias in self._index.execute("SELECT doc, is_alias FROM names WHERE key = ?", (term,)):
                    hits[doc] = max(hits.get(doc, 0.0), weight / total * (ALIAS_MATCH if is_alias else 1.0))
        return hits

    def _candidates(self, terms: list[str]) -> dict[int, float]:
        """Docs matching any term (or any trigram of a long term), with bm25 (higher is better)."""
        phrases = list(dict.fromkeys(g for t in terms if len(t) >= TRIGRAM_MIN_CHARS for g in [t, *trigrams(t)]))
        found = self._top_bm25(phrases) if phrases else {}
        # 1–2 character terms cannot be trigram-indexed, and a typo can leave a short term no trigram
        # in common with the name it meant (「リ窓ノベ」): then the terms' bigrams are looked up in the
        # names and aliases by a LIKE scan.
        grams = sorted({g for t in terms for g in (bigrams(t) if len(t) >= TRIGRAM_MIN_CHARS else [t])})
        if grams and len(found) < self.limit:
            where = " OR ".join("head LIKE ? ESCAPE '\\'" for _ in grams)
            sql = f"SELECT doc FROM docs WHERE {where} ORDER BY doc LIMIT ?"
            for (doc,) in self._index.execute(sql, [like_pattern(g) for g in grams] + [CANDIDATES]):
                found.setdefault(doc, 0.0)
        return found

    def _phrase_postings(self, phrase: str) -> tuple[np.ndarray, np.ndarray]:
        """The documents holding ``phrase`` and each one's share of a bm25 score (FTS5's own
        ``bm25()`` of the phrase alone), cached: the index does not change under a searcher."""
        postings = self._postings.get(phrase)
        if postings is not None:
            self._postings.move_to_end(phrase)
            return postings
        rows = self._index.execute(self._bm25_sql, (fts_phrase(phrase),)).fetchall()
        postings = (
            np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
            np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows)),
        )
        self._postings[phrase] = postings
        self._postings_held += len(rows)
        while self._postings_held > POSTINGS_CACHE and len(self._postings) > 1:
            _, (docs, _) = self._postings.popitem(last=False)
            self._postings_held -= len(docs)
        return postings

    def _top_bm25(self, phrases: list[str]) -> dict[int, float]:
        """The ``CANDIDATES`` best documents by bm25 over ``phrases`` OR-ed: what FTS5's ``ORDER BY
        bm25(...) LIMIT`` answers, without FTS5 scoring anew, for every query, each of the ~100 k
        documents that hold a common trigram (「補助金」).

        FTS5's bm25 of an OR query is a sum over its phrases, in their order, of a share that depends
        on the phrase and the document only (``fts5_aux.c``: ``score += idf[i] * num / denom``). So each
        phrase's shares are FTS5's ``bm25()`` of that phrase alone, read once and kept; adding them
        up in the same order gives the same floating-point score. Ties go to the lower document id."""
        scores = np.zeros(self._max_doc + 1)
        held = np.zeros(self._max_doc + 1, dtype=bool)
        for phrase in phrases:
            docs, shares = self._phrase_postings(phrase)
            scores[docs] += shares  # a phrase's documents are distinct, so this adds each share once
            held[docs] = True
        docs = np.flatnonzero(held)
        if len(docs) > CANDIDATES:
            kth = np.partition(scores[docs], len(docs) - CANDIDATES)[len(docs) - CANDIDATES]
            docs = docs[scores[docs] >= kth]
        best = docs[np.lexsort((docs, -scores[docs]))][:CANDIDATES]
        return dict(zip(best.tolist(), scores[best].tolist()))

    def _weight(self, term: str) -> tuple[float, bool]:
        """Inverse document frequency of ``term`` over the index (smoothed), and whether any program's
        name or alias holds it."""
        cached = self._weights.get(term)
        if cached is None:
            if len(term) >= TRIGRAM_MIN_CHARS:
                phrase = fts_phrase(term)
                df = len(self._phrase_postings(term)[0])
                in_heads = (
                    df > 0
                    and self._index.execute(
                        "SELECT 1 FROM docs_fts WHERE docs_fts MATCH ? LIMIT 1", ("{name aliases} : " + phrase,)
                    ).fetchone()
                )
            else:
                (df,) = self._index.execute(
                    "SELECT count(*) FROM docs WHERE head LIKE ? ESCAPE '\\' OR body LIKE ? ESCAPE '\\'",
                    (like_pattern(term),) * 2,
                ).fetchone()
                in_heads = (
                    df > 0
                    and self._index.execute(
                        "SELECT 1 FROM docs WHERE head LIKE ? ESCAPE '\\' LIMIT 1", (like_pattern(term),)
                    ).fetchone()
                )
            cached = self._weights[term] = (math.log((self._docs + 1) / (df + 0.5)), bool(in_heads))
        return cached

    def term_weights(self, terms: list[str]) -> list[float]:
        """Each term's weight: its IDF, rarer words counting more (a place name outweighs 「補助金」) —
        but never more than the rarest word some program is *named* by. A word no name holds
        (「公募要領」, 「対象」) says what the asker wants to know, not which program: were it to keep its
        high IDF, the one program whose summary mentions it would outrank the program named."""
        found = [self._weight(t) for t in terms]
        named = [w for w, in_heads in found if in_heads]
        cap = max(named) if named else math.inf
        return [min(w, cap) for w, _ in found]

    def _places(self, terms: list[str]) -> set[str]:
        """The terms that are place names (prefectures, municipalities, their short forms)."""
        sql = f"SELECT key FROM places WHERE key IN ({','.join('?' * len(terms))})"
        return {key for (key,) in self._index.execute(sql, terms)}

    def _rows(self, docs: list[int]) -> list[tuple]:
        """(doc, program_id, name, agency, level, prefecture_code, tier, heads, body, places) of ``docs``, cached."""
        cache = self._doc_cache
        missing = [d for d in docs if d not in cache]
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            for doc, pid, name, agency, level, pref, tier, head, body, places in self._index.execute(
                "SELECT doc, program_id, name, agency, level, prefecture_code, tier, head, body, places FROM docs "
                f"WHERE doc IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                heads = tuple(head.split("\n"))
                cache[doc] = (
                    doc,
                    pid,
                    name,
                    agency,
                    level,
                    pref,
                    TIER_PRIOR.get(tier, 0.0),
                    heads,
                    body,
                    frozenset(places.split("\n")),
                )
        rows = [cache[d] for d in docs]
        for doc in docs:
            cache.move_to_end(doc)
        while len(cache) > DOC_CACHE_SIZE:
            cache.popitem(last=False)
        return rows

    def _contenders(self, terms: list[str], limit: int) -> list[Contender]:
        """The programs that can be among the first ``limit`` answers to ``terms`` whatever the
        popularity prior: every match within ``POPULARITY_WEIGHT`` (plus rounding) of the
        ``limit``-th best score without it. The prior only adds [0, POPULARITY_WEIGHT], so a program
        further behind is beaten by ``limit`` others under any prior, and the search's answer is the
        same whether it ranks these or every match."""
        weights = self.term_weights(terms)
        named = self._named(terms, weights)
        candidates = self._candidates(terms)
        for doc in named:
            candidates.setdefault(doc, 0.0)
        places = self._places(terms)
        matches: list[Contender] = []
        for doc, pid, name, agency, level, pref, prior, heads, body, doc_places in self._rows(list(candidates)):
            relevance = named.get(doc, 0.0) + rank_score(terms, weights, heads, body, places, doc_places)
            if relevance > 0.0:
                matches.append((pid, name, agency, level, pref, relevance, prior, min(candidates[doc], 100.0)))
        if len(matches) <= limit:
            return matches
        without_prior = sorted((_final_score(m, 0.0) for m in matches), reverse=True)
        floor = without_prior[limit - 1] - POPULARITY_WEIGHT - _ROUNDING_MARGIN
        return [m for m in matches if _final_score(m, 0.0) >= floor]

    def search(self, query: str, limit: int | None = None) -> list[dict[str, Any]]:
        terms = query_terms(query)
        if not terms:
            return []
        limit = limit or self.limit
        key = (limit, " ".join(terms))
        contenders = self._results.get(key) if self._results is not None else None
        if contenders is None:
            contenders = self._contenders(terms, limit)
            if self._results is not None:
                self._results.put(key, contenders)
        scored = [(_final_score(c, self._popularity.get(c[0], 0.0)), *c[:5]) for c in contenders]
        scored.sort(key=lambda r: (-r[0], r[1]))
        return [
            {"program_id": pid, "name": name, "agency": agency, "level": level, "prefecture_code": pref, "score": score}
            for score, pid, name, agency, level, pref in scored[:limit]
        ]

    def payload(self, query: str, limit: int | None = None) -> dict[str, Any]:
        """The API's response object for ``query``."""
        return search_payload(normalize_query(query), self.search(query, limit))
