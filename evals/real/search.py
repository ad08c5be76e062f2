"""Search section of the real-data eval: does the built-in search (loops C/H) find real program names?

Layout under ``data_dir``::

    search/<corpus>/programs.csv   header program_id,name,summary,agency — names exactly as published
                                   (full-width letters, half-width katakana, 「～」, ①…: never normalized)

The corpus goes into a scratch service database as ``programs`` (raw text, as the service's index
may hold it); then every sampled name is searched in the forms people type it:

- *exact variants*: as published, NFKC-folded, letters/digits full-width, letters/digits/katakana
  half-width, katakana as hiragana, the other wave dash (「～」 ↔ 「〜」), ideographic spaces;
- *with a generic word* the program may lack: the name + 「助成金」, + 「支援」.

A hit is the program, or one with the same NFKC name (real registers repeat names), among the top 10
(``recall@10``) or first (``recall@1``). Rows per corpus: recall@10 of the exact variants (target
1.0), recall@1, the empty-answer share, recall@10 with a generic word — each next to the baseline:
the search loops C/H ran before issue 13 (raw FTS5 trigram index, NFKC query, every token required).
"""

from __future__ import annotations

import csv
import pathlib
import tempfile
import unicodedata

import jaconv

from autonomath_pipelines.contract.schema import create_all
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.lib.search import ProgramSearcher
from autonomath_pipelines.lib.textnorm import normalize_query, tokens

SECTION = "search"
#: Names searched per corpus (every k-th, deterministic): the whole register is indexed either way.
DEFAULT_SAMPLE = 400
GENERIC_WORDS = ("助成金", "支援")
TOP_K = 10


def load_programs(path: pathlib.Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = {"program_id", "name"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{path}: lacks columns {sorted(missing)} (header program_id,name,summary,agency)")
    return [r for r in rows if r["name"].strip()]


def variants(name: str) -> dict[str, str]:
    """The forms a person types ``name`` in, by kind (duplicates of the published form dropped)."""
    forms = {
        "as published": name,
        "nfkc": unicodedata.normalize("NFKC", name),
        "full-width letters/digits": jaconv.h2z(name, kana=False, ascii=True, digit=True),
        "half-width": jaconv.z2h(name, kana=True, ascii=True, digit=True),
        "hiragana": jaconv.kata2hira(name),
        "other wave dash": name.replace("～", "\0").replace("〜", "～").replace("\0", "〜"),
        "ideographic spaces": name.replace(" ", "\u3000"),
    }
    seen: set[str] = set()
    out = {}
    for kind, form in forms.items():
        if form not in seen:
            seen.add(form)
            out[kind] = form
    return out


def service_database(programs: list[dict], path: pathlib.Path):
    """A scratch service database holding ``programs`` as published (and the raw FTS5 index)."""
    conn = sqlite3.connect(str(path))
    create_all(conn)
    ts = "2026-01-01T00:00:00Z"
    conn.executemany(
        "INSERT INTO programs VALUES (?, ?, ?, ?, 'national', NULL, NULL, 'その他', NULL, 'B', ?, ?, ?)",
        [
            (
                p["program_id"],
                p["name"],
                p.get("summary") or "",
                p.get("agency") or "",
                "https://example.go.jp/",
                ts,
                ts,
            )
            for p in programs
        ],
    )
    conn.executemany(
        "INSERT INTO programs_fts VALUES (?, ?, ?, ?, '')",
        [(p["program_id"], p["name"], p.get("summary") or "", p.get("agency") or "") for p in programs],
    )
    conn.commit()
    return conn


def baseline_search(conn, query: str, limit: int = TOP_K) -> list[str]:
    """The search before issue 13: NFKC query tokens, all required, over the raw trigram index."""
    terms = tokens(normalize_query(query))[:16]
    if not terms:
        return []
    long_terms = [t for t in terms if len(t) >= 3]
    short_terms = [t for t in terms if len(t) < 3]
    where, params = [], []
    if long_terms:
        where.append("programs_fts MATCH ?")
        params.append(" AND ".join('"' + t.replace('"', '""') + '"' for t in long_terms))
    for term in short_terms:
        escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("(name LIKE ? ESCAPE '\\' OR summary LIKE ? ESCAPE '\\' OR agency LIKE ? ESCAPE '\\')")
        params.extend([f"%{escaped}%"] * 3)
    order = "bm25(programs_fts)" if long_terms else "program_id"
    sql = f"SELECT program_id FROM programs_fts WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
    return [pid for (pid,) in conn.execute(sql, [*params, limit])]


def evaluate_programs(programs: list[dict], corpus: str = "", sample: int = DEFAULT_SAMPLE) -> list[dict]:
    by_name: dict[str, set[str]] = {}
    for p in programs:
        by_name.setdefault(unicodedata.normalize("NFKC", p["name"]), set()).add(p["program_id"])
    step = max(1, len(programs) // sample) if sample else 1
    chosen = programs[::step][:sample] if sample else programs
    stats = {
        "new": {"exact": [], "top1": [], "empty": [], "generic": []},
        "baseline": {"exact": [], "top1": [], "empty": [], "generic": []},
    }
    with tempfile.TemporaryDirectory() as tmp:
        conn = service_database(programs, pathlib.Path(tmp) / "service.db")
        with ProgramSearcher.over(conn, limit=TOP_K) as searcher:
            engines = {
                "new": lambda q: [r["program_id"] for r in searcher.search(q)],
                "baseline": lambda q: baseline_search(conn, q),
            }
            for program in chosen:
                wanted = by_name[unicodedata.normalize("NFKC", program["name"])]
                for engine, search in engines.items():
                    for form in variants(program["name"]).values():
                        found = search(form)
                        stats[engine]["exact"].append(bool(wanted & set(found)))
                        stats[engine]["top1"].append(bool(found) and found[0] in wanted)
                        stats[engine]["empty"].append(not found)
                    for word in GENERIC_WORDS:
                        stats[engine]["generic"].append(bool(wanted & set(search(f"{program['name']} {word}"))))
        conn.close()

    def share(engine: str, key: str) -> float:
        values = stats[engine][key]
        return sum(values) / len(values) if values else float("nan")

    n_exact, n_generic = len(stats["new"]["exact"]), len(stats["new"]["generic"])
    recall = share("new", "exact")
    rows = [
        {
            "metric": "recall@10, exact names in width/kana variants",
            "value": recall,
            "baseline": share("baseline", "exact"),
            "target": "= 1.0",
            "verdict": "pass" if recall == 1.0 else "FAIL",
            "n": n_exact,
        },
        {
            "metric": "recall@1, exact names in width/kana variants",
            "value": share("new", "top1"),
            "baseline": share("baseline", "top1"),
            "target": None,
            "verdict": "info",
            "n": n_exact,
        },
        {
            "metric": "empty-answer share, exact names",
            "value": share("new", "empty"),
            "baseline": share("baseline", "empty"),
            "target": "= 0",
            "verdict": "pass" if share("new", "empty") == 0 else "FAIL",
            "n": n_exact,
        },
        {
            "metric": "recall@10, name + a generic word (助成金/支援)",
            "value": share("new", "generic"),
            "baseline": share("baseline", "generic"),
            "target": "> baseline",
            "verdict": "pass" if share("new", "generic") > share("baseline", "generic") else "FAIL",
            "n": n_generic,
        },
    ]
    return [{"section": SECTION, "corpus": corpus, **row} for row in rows]


def evaluate(data_dir: pathlib.Path, sample: int = DEFAULT_SAMPLE) -> list[dict]:
    """One block of rows per corpus under ``data_dir/search``; none when the folder is missing."""
    root = pathlib.Path(data_dir) / "search"
    if not root.is_dir():
        return [
            {
                "section": SECTION,
                "corpus": "(none)",
                "metric": "skipped",
                "value": None,
                "baseline": None,
                "target": None,
                "verdict": "info",
                "n": 0,
            }
        ]
    rows: list[dict] = []
    for folder in sorted(p for p in root.iterdir() if (p / "programs.csv").is_file()):
        rows.extend(evaluate_programs(load_programs(folder / "programs.csv"), corpus=folder.name, sample=sample))
    return rows
