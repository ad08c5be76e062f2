"""A bad-input world: the small demo world with every source table polluted (issue 8, item 1).

``pollute(db_path, repo_root)`` takes a private copy of the small demo world and adds rows that
SQLite accepts under ``schema.sql`` but that no well-behaved service would write: NULLs where the
schema allows them, empty and 100 kB texts, control characters, text that is not UTF-8 (invalid
bytes, an encoded lone surrogate, a BLOB in a TEXT column), emoji, right-to-left text, FTS5 syntax,
SQL- and code-injection strings, timestamps in other formats and zones, duplicate ids where no key
prevents them, references that point nowhere, negative / huge / non-numeric amounts, malformed JSON
in output tables the loops re-read, truncated and oversized tracebacks, and unreadable files under
the repo root. Every planted row falls inside the window the test runs its loop on (``PARTITIONS``).

Each case is recorded in the returned manifest (table, column, kind, row ids), so the test can say
how many bad-input cases it tried. ``write_bad_gold`` replaces ``evals/gold.yaml`` with YAML that
does not parse (loop J must fail naming the file).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path

from autonomath_pipelines.contract.sqlite import sqlite3

#: The partition each loop runs on in the test (the windows the planted rows fall into).
PARTITIONS = {
    "A": "2026-11-08",  # week  [2026-11-07T15Z, 2026-11-14T15Z)
    "B": "2026-10-01",  # month [2026-09-30T15Z, 2026-10-31T15Z)
    "C": "2026-11-15",  # 30 d  [2026-10-22T15Z, 2026-11-21T15Z)
    "D": "2026-10-01",  # rounds resolved before 2026-10-31T15Z
    "E": "2026-11-08",  # 14 d  [2026-10-31T15Z, 2026-11-14T15Z)
    "F": "2026-11-08",  # 28 d  [2026-10-17T15Z, 2026-11-14T15Z)
    "G": "2026-10-01",  # month [2026-09-30T15Z, 2026-10-31T15Z)
    "H": "2026-11-20",  # day   [2026-11-19T15Z, 2026-11-20T15Z)
    "I": "2026-11-15",  # as of 2026-11-21T15Z
    "J": "2026-10-01",  # 30 d  [2026-10-01T15Z, 2026-10-31T15Z)
}
TS_WEEK = "2026-11-10T03:00:00Z"  # A, C, E, F
TS_DAY = "2026-11-20T03:00:00Z"  # H, C
TS_OCT = "2026-10-20T03:00:00Z"  # B, G, J
TS_SCAN = "2026-11-18T03:00:00Z"  # I

BAD_PAID_KEY = "am_bad_paid"
BAD_PAID_CUSTOMER = "cus_bad_paid"
#: A token only the planted bad programs carry in programs_fts: a search for it returns them.
BAD_TOKEN = "zzbadtoken"
#: Ids of the planted programs (programs + programs_fts).
BAD_PROGRAMS = (
    "PBAD_NAME_UTF8",
    "PBAD_NAME_YAML",
    "PBAD_FTS",
    "PBAD_URL_DUP",
    "PBAD_URL_UTF8",
    "PBAD_AMOUNT_NEG",
    "PBAD_AMOUNT_HUGE",
    "PBAD_PREF",
    "PBAD_TS_SLASH",
    "PBAD_TS_OFFSET",
    "PBAD_TS_EPOCH",
    "PBAD_TS_WORD",
)

HUGE = "IT導入補助金 申請 " * 4400  # ~100 kB of UTF-8
assert len(HUGE.encode("utf-8")) >= 100_000


class Raw(str):
    """A value inserted as an SQL expression (e.g. ``CAST(x'ff' AS TEXT)``), not as a parameter."""


def raw_text(hex_bytes: str) -> Raw:
    """TEXT whose bytes are ``hex_bytes`` (not necessarily UTF-8)."""
    return Raw(f"CAST(x'{hex_bytes}' AS TEXT)")


INVALID_UTF8 = "e8a39ce58aa9e98791ff"  # 補助金 + a stray 0xFF
OVERLONG = "c0afe794b3e8ab8b"  # overlong '/' + 申請
SURROGATE = "eda080e8a39ce58aa9"  # U+D800 (encoded lone surrogate) + 補助
BLOB = Raw("x'e8a39ce58aa9e98791e794b3e8ab8b'")  # 補助金申請, stored as a BLOB in a TEXT column

#: (kind, text) planted as user text wherever users type (queries, comments, patterns, utm sources).
TEXTS: list[tuple[str, str]] = [
    ("empty_text", ""),
    ("empty_text", " \u3000\t "),
    ("huge_text", HUGE),
    ("control_chars", "補助金\x00\x01\x07\x1b[2J\r\n\t\x7f\x85申請"),
    ("control_chars", "\u200b\u200d\ufeff\u2028\u2029"),
    ("emoji", "💰補助金👨‍👩‍👧‍👦🇯🇵 申請"),
    ("rtl", "\u202eدعم منحة\u202c שלום 補助金"),
    ("fts5_syntax", '"補助金'),
    ("fts5_syntax", "補助金*"),
    ("fts5_syntax", "NEAR(補助金 申請"),
    ("fts5_syntax", "NOT 補助金 AND OR"),
    ("fts5_syntax", "name:補助金"),
    ("fts5_syntax", "^補助金 -申請 +IT"),
    ("fts5_syntax", "\"\" '' ( ) {name summary}: *"),
    ("sql_injection", "補助金'; DROP TABLE query_cache; --"),
    ("sql_injection", "' OR '1'='1' /*"),
    ("code_injection", '"""\n\'\'\'\nimport os; os.system("rm -rf /") # {{ 7*7 }} {% raw %}'),
    ("code_injection", "---\nitems: [x]\nversion: 2\n# : & * ! | > ' \" % @ `"),
    ("fts5_syntax", f"{BAD_TOKEN} 補助金"),  # finds the planted bad programs
]
#: (kind, SQL value) of user text that is not valid UTF-8 text.
INVALID_TEXTS: list[tuple[str, Raw]] = [
    ("invalid_utf8", raw_text(INVALID_UTF8)),
    ("invalid_utf8", raw_text(OVERLONG)),
    ("lone_surrogate", raw_text(SURROGATE)),
    ("blob_in_text", BLOB),
]


#: Timestamps in other formats and zones; the first two sort inside a window as text.
def ts_variants(iso: str) -> list[object]:
    day, time = iso[:10], iso[11:19]
    hour = int(time[:2])
    return [
        f"{day.replace('-', '/')} {time[:5]}",  # 2026/11/10 03:00
        f"{day}T{hour + 9:02d}{time[2:]}+09:00",  # JST offset
        f"{day} {time}",  # space, no zone
        f"{day}T{time}.250Z",  # fractional seconds
        f"{day}t{time}z",  # lower case
        1762743600,  # epoch seconds (stored as text)
        "",  # empty
        "yesterday",
    ]


@dataclass(frozen=True)
class Case:
    table: str
    column: str
    kind: str
    rows: tuple[str, ...]
    note: str = ""


class Polluter:
    def __init__(self, conn):
        self.conn = conn
        self.cases: list[Case] = []
        #: (query_log id, text) of planted requests whose logged answer is the service's search answer.
        self.service_answered: list[tuple[str, str]] = []
        self._serial = collections.Counter()

    def insert(self, table: str, row: dict) -> str:
        columns = list(row)
        values, params = [], []
        for value in row.values():
            if isinstance(value, Raw):
                values.append(str(value))
            else:
                values.append("?")
                params.append(value)
        cursor = self.conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(values)})", params)
        key = {
            "programs": "program_id",
            "api_keys": "api_key",
            "subscribers": "subscriber_id",
            "am_application_round": "round_id",
            "forecast_predictions": "prediction_id",
            "prefectures": "prefecture_code",
        }.get(table)
        if key and not isinstance(row.get(key), Raw):
            return str(row[key])
        return str(cursor.lastrowid)

    def case(self, table: str, column: str, kind: str, rows, note: str = "") -> None:
        rows = tuple(str(r) for r in (rows if isinstance(rows, (list, tuple)) else [rows]))
        self.cases.append(Case(table, column, kind, rows, note))

    def serial(self, name: str) -> int:
        self._serial[name] += 1
        return self._serial[name]

    def ts(self, base: str, offset_s: int) -> str:
        """``base`` + ``offset_s`` seconds (offsets stay well inside the day)."""
        h, m, s = int(base[11:13]), int(base[14:16]), int(base[17:19])
        total = h * 3600 + m * 60 + s + offset_s
        return f"{base[:11]}{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}Z"


# ------------------------------------------------------------------------------------ tables

#: ``top1`` of a planted request the service answers as its search does (resolved by ``_answer_as_the_service``).
SERVICE_ANSWER = object()


def _query_row(
    p: Polluter,
    ts,
    text,
    *,
    key=BAD_PAID_KEY,
    session=None,
    confidence=0.95,
    results=3,
    top1=SERVICE_ANSWER,
    tier="paid",
) -> str:
    n = p.serial("query")
    row_id = p.insert(
        "query_log",
        {
            "ts": ts,
            "api_key": key,
            "session_id": session or f"s_bad_{n:05d}",
            "query_text": text,
            "top1_program_id": "P000001" if top1 is SERVICE_ANSWER else top1,
            "confidence": confidence,
            "result_count": results,
            "latency_ms": 12.5,
            "tier": tier,
        },
    )
    if top1 is SERVICE_ANSWER and isinstance(text, str):
        p.service_answered.append((row_id, text))
    return row_id


def _answer_as_the_service(p: Polluter) -> None:
    """What query_log says the service answered a planted, confidently answered request: the top-1 its
    search gives over the polluted tables (this fixture's service is the built-in search). Loops C/H
    compare their payloads with these answers; a fixture answering every text with one fixed program
    would be a service no search can agree with."""
    from autonomath_pipelines.lib.search import ProgramSearcher

    with ProgramSearcher.over(p.conn) as searcher:
        answers = {text: searcher.search(text) for text in {t for _, t in p.service_answered}}
    p.conn.executemany(
        "UPDATE query_log SET top1_program_id = ?, result_count = ? WHERE id = ?",
        [
            (answers[t][0]["program_id"] if answers[t] else None, len(answers[t]), int(row_id))
            for row_id, t in p.service_answered
        ],
    )


def _pollute_query_log(p: Polluter) -> None:
    texts: list[tuple[str, object]] = [*TEXTS, *INVALID_TEXTS]
    for i, (kind, text) in enumerate(texts):
        ids = []
        # Confident, consistent, many sessions: loop J (October), H (the day), C (the paid key).
        for base in (TS_OCT, TS_WEEK, TS_DAY):
            ids += [_query_row(p, p.ts(base, 60 * i + j), text) for j in range(8)]
        # Zero-result asks: loop A.
        ids += [
            _query_row(
                p,
                p.ts(TS_WEEK, 3600 + 60 * i + j),
                text,
                key=f"am_bad_free_{j}",
                confidence=0.1,
                results=0,
                top1=None,
                tier="free",
            )
            for j in range(14)
        ]
        # Low-confidence single-program answers: loop E.
        ids += [
            _query_row(
                p,
                p.ts(TS_WEEK, 7200 + 60 * i + j),
                text,
                key=f"am_bad_free_{j}",
                confidence=0.3,
                results=1,
                top1="P000002",
                tier="free",
            )
            for j in range(4)
        ]
        p.case("query_log", "query_text", kind, ids)
    for base in (TS_OCT, TS_WEEK, TS_DAY):
        ids = [_query_row(p, ts, "補助金 タイムスタンプ 検査") for ts in ts_variants(base)]
        p.case("query_log", "ts", "ts_format", ids, "other formats/zones, epoch, empty, a word")
        for column, value, kind in (
            ("confidence", "high", "wrong_type"),
            ("confidence", 1.7, "out_of_range"),
            ("confidence", -0.2, "out_of_range"),
            ("result_count", "many", "wrong_type"),
            ("result_count", -1, "out_of_range"),
            ("session_id", BLOB, "blob_in_text"),
            ("top1_program_id", raw_text(INVALID_UTF8), "invalid_utf8"),
            ("api_key", raw_text(INVALID_UTF8), "invalid_utf8"),
        ):
            row = {
                "confidence": 0.95,
                "result_count": 3,
                "session_id": None,
                "top1_program_id": "P000001",
                "api_key": BAD_PAID_KEY,
            }
            row[column] = value
            ids = [
                _query_row(
                    p,
                    p.ts(base, 9000 + j),
                    "補助金 型 検査",
                    key=row["api_key"],
                    session=row["session_id"],
                    confidence=row["confidence"],
                    results=row["result_count"],
                    top1=row["top1_program_id"],
                )
                for j in range(6)
            ]
            p.case("query_log", column, kind, ids)
    # References that point nowhere.
    ids = [
        _query_row(p, p.ts(base, 10_000 + j), "存在しないキー 補助金", key="am_nowhere")
        for base in (TS_WEEK, TS_DAY, TS_OCT)
        for j in range(6)
    ]
    p.case("query_log", "api_key", "dangling_fk", ids)
    ids = [
        _query_row(
            p,
            p.ts(TS_WEEK, 10_100 + j),
            "存在しない制度 補助金",
            key=f"am_bad_free_{j}",
            confidence=0.3,
            results=1,
            top1="P_NOWHERE",
            tier="free",
        )
        for j in range(6)
    ]
    ids += [_query_row(p, p.ts(TS_OCT, 10_100 + j), "存在しない制度 補助金", top1="P_NOWHERE") for j in range(3)]
    p.case("query_log", "top1_program_id", "dangling_fk", ids)
    # One session id shared by different keys; a high-confidence row without a top-1.
    ids = [
        _query_row(p, p.ts(TS_OCT, 10_200 + j), "セッション重複 補助金", key=f"am_bad_free_{j}", session="s_dup")
        for j in range(6)
    ]
    p.case("query_log", "session_id", "duplicate_id", ids)
    ids = [_query_row(p, p.ts(TS_OCT, 10_300 + j), "ものづくり補助金 トップなし", top1=None) for j in range(6)]
    p.case("query_log", "top1_program_id", "null", ids)


def _pollute_api_keys(p: Polluter) -> None:
    p.insert(
        "api_keys",
        {
            "api_key": BAD_PAID_KEY,
            "customer_id": BAD_PAID_CUSTOMER,
            "tier": "paid",
            "created_at": "2026-01-01T00:00:00Z",
            "revoked_at": None,
        },
    )
    for j in range(14):
        p.insert(
            "api_keys",
            {
                "api_key": f"am_bad_free_{j}",
                "customer_id": f"cus_bad_free_{j}",
                "tier": "free",
                "created_at": "2026-01-01T00:00:00Z",
                "revoked_at": None,
            },
        )
    for key, customer, kind in (
        ("am_bad_cust_utf8", raw_text(INVALID_UTF8), "invalid_utf8"),
        ("am_bad_cust_blob", BLOB, "blob_in_text"),
        ("am_bad_cust_weird", "cus'; DROP TABLE personalized_cache; --💰\u202eعميل\x00", "sql_injection"),
        ("am_bad_cust_empty", "", "empty_text"),
    ):
        p.insert(
            "api_keys",
            {
                "api_key": key,
                "customer_id": customer,
                "tier": "paid",
                "created_at": "2026-01-01T00:00:00Z",
                "revoked_at": None,
            },
        )
        ids = [
            _query_row(p, p.ts(TS_WEEK if j % 2 else TS_DAY, 12_000 + j), f"補助金 顧客 {j % 25}", key=key)
            for j in range(60)
        ]
        p.case("api_keys", "customer_id", kind, [key], f"paid key with 60 requests (query_log ids {ids[0]}..{ids[-1]})")
    p.insert(
        "api_keys",
        {
            "api_key": "am_bad_ts",
            "customer_id": "cus_bad_ts",
            "tier": "paid",
            "created_at": 1700000000,
            "revoked_at": "2026/01/01 00:00",
        },
    )
    [_query_row(p, p.ts(TS_WEEK, 13_000 + j), "補助金 失効キー", key="am_bad_ts") for j in range(60)]
    p.case("api_keys", "created_at", "ts_format", ["am_bad_ts"])
    p.case("api_keys", "revoked_at", "ts_format", ["am_bad_ts"], "revoked at a non-ISO time: still revoked")


def _pollute_feedback(p: Polluter) -> None:
    def feedback(ts, query_text, *, comment="誤った回答でした", program_id="P000001", session="s_fb", key=BAD_PAID_KEY):
        return p.insert(
            "customer_feedback",
            {
                "ts": ts,
                "api_key": key,
                "session_id": session,
                "query_text": query_text,
                "program_id": program_id,
                "wrong_answer": 1,
                "comment": comment,
            },
        )

    for i, (kind, text) in enumerate([*TEXTS, *INVALID_TEXTS]):
        ids = [feedback(p.ts(TS_WEEK, 20_000 + 60 * i + j), text, session=f"s_fb_{i}_{j}") for j in range(3)]
        p.case("customer_feedback", "query_text", kind, ids)
        ids = [
            feedback(p.ts(TS_WEEK, 21_000 + 60 * i + j), "架空の補助金 コメント検査", comment=text) for j in range(2)
        ]
        ids += [
            feedback(p.ts(TS_OCT, 21_000 + 60 * i + j), "架空の補助金 コメント検査", comment=text, program_id="P000007")
            for j in range(2)
        ]
        p.case("customer_feedback", "comment", kind, ids)
    p.case("customer_feedback", "query_text", "null", [feedback(p.ts(TS_WEEK, 22_000 + j), None) for j in range(3)])
    p.case(
        "customer_feedback",
        "session_id",
        "null",
        [feedback(p.ts(TS_WEEK, 22_100 + j), "セッションなし 補助金", session=None) for j in range(3)],
    )
    p.case(
        "customer_feedback",
        "api_key",
        "dangling_fk",
        [feedback(p.ts(TS_WEEK, 22_200 + j), "キー不明 補助金", key="am_nowhere") for j in range(3)],
    )
    for base in (TS_WEEK, TS_OCT):
        p.case("customer_feedback", "ts", "ts_format", [feedback(ts, "補助金 時刻検査") for ts in ts_variants(base)])
    # Loop G groups wrong-answer reports by program: programs that do not exist, do not decode, or inject code.
    for program_id, kind in (
        ("P_NOWHERE", "dangling_fk"),
        (raw_text(INVALID_UTF8), "invalid_utf8"),
        ('P1"""; import os; os.system("x") #\n{{ 7*7 }}', "code_injection"),
        ("", "empty_text"),
        (BLOB, "blob_in_text"),
    ):
        ids = [
            feedback(
                p.ts(TS_OCT, 23_000 + 100 * p.serial("g") + j),
                "間違った案内 補助金",
                program_id=program_id,
                comment="コメント \"\"\" \x00 {{ x }}\n'''",
            )
            for j in range(30)
        ]
        p.case("customer_feedback", "program_id", kind, ids)


def _pollute_guard(p: Polluter) -> None:
    for i, (kind, text) in enumerate([*TEXTS, *INVALID_TEXTS]):
        if text in ("",):
            pattern = text
        else:
            pattern = text if isinstance(text, Raw) else f"{text} guard"
        try:
            row = p.insert(
                "hallucination_guard",
                {"pattern": pattern, "label": f"bad {kind}", "created_at": "2026-06-08T17:00:00Z", "source": "launch"},
            )
        except sqlite3.IntegrityError:  # the same bytes twice (UNIQUE pattern)
            continue
        p.case("hallucination_guard", "pattern", kind, [row])
    p.case(
        "hallucination_guard",
        "created_at",
        "ts_format",
        [
            p.insert(
                "hallucination_guard",
                {"pattern": f"時刻検査パターン {i}", "label": "x", "created_at": ts, "source": "launch"},
            )
            for i, ts in enumerate(ts_variants(TS_WEEK))
        ],
    )


def _pollute_programs(p: Polluter) -> None:
    base = dict(
        summary=f"{BAD_TOKEN} 中小企業の設備投資を支援します。",
        agency="テスト庁",
        level="national",
        prefecture_code=None,
        municipality=None,
        category="設備投資",
        max_amount_jpy=1_000_000,
        tier="A",
        source_fetched_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
    )
    url = "https://www.example.go.jp/bad/{}.html"
    p1_url = p.conn.execute("SELECT source_url FROM programs WHERE program_id = 'P000001'").fetchone()[0]
    rows = {
        "PBAD_NAME_UTF8": ({"name": raw_text(INVALID_UTF8)}, "name", "invalid_utf8"),
        "PBAD_NAME_YAML": (
            {
                "name": '---\ntitle: "x"\n{{ 7*7 }} 💰\u202eبرنامج 補助金\x00 #',
                "summary": HUGE + BAD_TOKEN,
                "agency": "'; DROP TABLE programs; --",
            },
            "name",
            "code_injection",
        ),
        "PBAD_FTS": ({"name": 'NEAR(補助金 "申請" NOT) name:* ^'}, "name", "fts5_syntax"),
        "PBAD_URL_DUP": ({"name": "URL重複補助金", "source_url": p1_url}, "source_url", "duplicate_id"),
        "PBAD_URL_UTF8": (
            {"name": "URL不正補助金", "source_url": raw_text("68747470733a2f2f" + INVALID_UTF8)},
            "source_url",
            "invalid_utf8",
        ),
        "PBAD_AMOUNT_NEG": ({"name": "負の上限額補助金", "max_amount_jpy": -1}, "max_amount_jpy", "negative_amount"),
        "PBAD_AMOUNT_HUGE": (
            {"name": "巨大上限額補助金", "max_amount_jpy": 9_223_372_036_854_775_807},
            "max_amount_jpy",
            "huge_amount",
        ),
        "PBAD_PREF": (
            {"name": "存在しない県補助金", "level": "prefectural", "prefecture_code": "77"},
            "prefecture_code",
            "dangling_fk",
        ),
        "PBAD_TS_SLASH": (
            {"name": "時刻形式補助金1", "source_fetched_at": "2026/01/01 10:00"},
            "source_fetched_at",
            "ts_format",
        ),
        "PBAD_TS_OFFSET": (
            {"name": "時刻形式補助金2", "source_fetched_at": "2026-01-01T10:00:00+09:00"},
            "source_fetched_at",
            "ts_format",
        ),
        "PBAD_TS_EPOCH": (
            {"name": "時刻形式補助金3", "source_fetched_at": 1700000000},
            "source_fetched_at",
            "ts_format",
        ),
        "PBAD_TS_WORD": ({"name": "時刻形式補助金4", "source_fetched_at": "unknown"}, "source_fetched_at", "ts_format"),
    }
    assert tuple(rows) == BAD_PROGRAMS
    for program_id, (overrides, column, kind) in rows.items():
        row = {"program_id": program_id, **base, "source_url": url.format(program_id.lower()), **overrides}
        p.insert("programs", row)
        name = row["name"] if not isinstance(row["name"], Raw) else "名称不正"
        fts = p.insert(
            "programs_fts",
            {
                "program_id": program_id,
                "name": name,
                "summary": f"{BAD_TOKEN} 補助金 設備投資",
                "agency": "テスト庁",
                "region": "",
            },
        )
        p.case("programs", column, kind, [program_id])
        if program_id == "PBAD_FTS":
            p.case("programs_fts", "name", "fts5_syntax", [fts], "FTS5 operators inside indexed text")
    p.insert(
        "programs",
        {
            "program_id": raw_text("50" + INVALID_UTF8),
            **base,
            "name": "ID不正補助金",
            "source_url": url.format("id_utf8"),
        },
    )
    p.case("programs", "program_id", "invalid_utf8", ["P<0xff>"])
    # Prefectures whose names do not decode or break YAML front matter.
    p.insert(
        "prefectures", {"prefecture_code": "99", "name_ja": raw_text(INVALID_UTF8), "name_en": "Bad", "region": "x"}
    )
    p.case("prefectures", "name_ja", "invalid_utf8", ["99"])
    p.insert(
        "prefectures",
        {
            "prefecture_code": "98",
            "name_ja": '東京\x00都\n---\ntitle: "x" #{{ y }}',
            "name_en": "💰\u202eطوكيو",
            "region": "\u202eשלום",
        },
    )
    p.case("prefectures", "name_ja", "control_chars", ["98"])


def _pollute_success(p: Polluter) -> None:
    def event(program_id, prefecture, *, amount=1_000_000, key=BAD_PAID_KEY, ts=None, comment="助かりました"):
        n = p.serial("success")
        return p.insert(
            "customer_success_events",
            {
                "ts": ts or p.ts(TS_OCT, 30_000 + n),
                "api_key": key,
                "program_id": program_id,
                "prefecture_code": prefecture,
                "outcome": "adopted",
                "amount_jpy": amount,
                "rating": 4,
                "comment": comment,
                "consent_flag": 1,
            },
        )

    groups = [
        ("P000001", "13", {"amount": 9_000_000_000_000_000_000}, "amount_jpy", "huge_amount"),
        ("P000002", "13", {"amount": -5_000_000}, "amount_jpy", "negative_amount"),
        ("P000003", "13", {"amount": "百万円"}, "amount_jpy", "wrong_type"),
        ("PBAD_NAME_UTF8", "13", {}, "program_id", "invalid_utf8"),
        ("PBAD_NAME_YAML", "13", {}, "program_id", "code_injection"),
        ("PBAD_FTS", "27", {}, "program_id", "fts5_syntax"),
        ("P000003", "99", {}, "prefecture_code", "invalid_utf8"),
        ("P000003", "98", {}, "prefecture_code", "control_chars"),
        ("P_NOWHERE", "13", {}, "program_id", "dangling_fk"),
        ("P000004", "77", {}, "prefecture_code", "dangling_fk"),
        (raw_text(INVALID_UTF8), "13", {}, "program_id", "invalid_utf8"),
        ("P000005", raw_text(INVALID_UTF8), {}, "prefecture_code", "invalid_utf8"),
        ("P000006", "13", {"key": raw_text(INVALID_UTF8)}, "api_key", "invalid_utf8"),
        ("P000006", "27", {"key": ""}, "api_key", "empty_text"),
        ("P000007", "13", {"comment": raw_text(INVALID_UTF8)}, "comment", "invalid_utf8"),
        ("P000007", "27", {"comment": HUGE}, "comment", "huge_text"),
    ]
    for program_id, prefecture, overrides, column, kind in groups:
        p.case("customer_success_events", column, kind, [event(program_id, prefecture, **overrides) for _ in range(4)])
    p.case("customer_success_events", "ts", "ts_format", [event("P000008", "13", ts=ts) for ts in ts_variants(TS_OCT)])
    first = event("P000009", "13")
    row = p.conn.execute(
        "SELECT ts, api_key, program_id, prefecture_code, outcome, amount_jpy, rating, comment, "
        "consent_flag FROM customer_success_events WHERE id = ?",
        (first,),
    ).fetchone()
    cols = (
        "ts",
        "api_key",
        "program_id",
        "prefecture_code",
        "outcome",
        "amount_jpy",
        "rating",
        "comment",
        "consent_flag",
    )
    twin = dict(zip(cols, row))
    p.case(
        "customer_success_events",
        "id",
        "duplicate_id",
        [first, p.insert("customer_success_events", twin), p.insert("customer_success_events", twin)],
        "the same event logged three times under different ids",
    )


def _pollute_forecasts(p: Polluter) -> None:
    def round_(round_id, opens, resolved, status="resolved", round_no=9, program="P000010"):
        return p.insert(
            "am_application_round",
            {
                "round_id": round_id,
                "program_id": program,
                "round_no": round_no,
                "opens_at": opens,
                "closes_at": "2026-06-30T08:00:00Z",
                "status": status,
                "resolved_at": resolved,
            },
        )

    def prediction(
        pid,
        round_id,
        *,
        opens="2026-05-01T01:00:00Z",
        at="2026-01-01T00:00:00Z",
        program="P000010",
        model="forecast-v1",
    ):
        return p.insert(
            "forecast_predictions",
            {
                "prediction_id": pid,
                "program_id": program,
                "round_id": round_id,
                "predicted_at": at,
                "predicted_opens_at": opens,
                "model_version": model,
            },
        )

    cases = [
        ("RBAD-SLASH", "2026/05/01 10:00", "2026-05-10T00:00:00Z", "resolved", 9, "opens_at", "ts_format"),
        ("RBAD-OFFSET", "2026-05-01T10:00:00+09:00", "2026-05-10T00:00:00Z", "resolved", 10, "opens_at", "ts_format"),
        ("RBAD-EPOCH", "2026-05-01T01:00:00Z", 1700000000, "resolved", 11, "resolved_at", "ts_format"),
        ("RBAD-NULL", "2026-05-01T01:00:00Z", None, "resolved", 12, "resolved_at", "null"),
        ("RBAD-ROUNDNO", "2026-05-01T01:00:00Z", "2026-05-10T00:00:00Z", "resolved", "first", "round_no", "wrong_type"),
        ("RBAD-PROGRAM", "2026-05-01T01:00:00Z", "2026-05-10T00:00:00Z", "resolved", 13, "program_id", "dangling_fk"),
    ]
    for round_id, opens, resolved, status, number, column, kind in cases:
        program = "P_NOWHERE" if column == "program_id" else "P000010"
        round_(round_id, opens, resolved, status, number, program)
        prediction(f"FP{round_id}", round_id, program=program)
        p.case("am_application_round", column, kind, [round_id])
    round_id = "R000010-01"  # a good resolved round
    for pid, overrides, column, kind in (
        ("FPBAD-DANGLING", {"round_id": "R_NOWHERE"}, "round_id", "dangling_fk"),
        ("FPBAD-HUGE", {"opens": "9999-12-31T00:00:00Z"}, "predicted_opens_at", "out_of_range"),
        ("FPBAD-GARBAGE", {"opens": "soon"}, "predicted_opens_at", "ts_format"),
        ("FPBAD-OFFSET", {"opens": "2024-09-11T10:00:00+09:00"}, "predicted_opens_at", "ts_format"),
        ("FPBAD-MISMATCH", {"program": "P000433"}, "program_id", "dangling_fk"),
        ("FPBAD-AT-EPOCH", {"at": 1700000000}, "predicted_at", "ts_format"),
        ("FPBAD-MODEL", {"model": raw_text(INVALID_UTF8)}, "model_version", "invalid_utf8"),
        (raw_text("4650" + INVALID_UTF8), {}, "prediction_id", "invalid_utf8"),
    ):
        args = {"round_id": round_id, **overrides}
        rid = args.pop("round_id")
        prediction(pid, rid, **args)
        p.case("forecast_predictions", column, kind, [pid if not isinstance(pid, Raw) else "FP<0xff>"])
    for _ in range(2):  # the same forecast twice under new ids
        n = p.serial("dup_prediction")
        prediction(f"FPBAD-DUP-{n}", round_id, opens="2024-09-12T01:00:00Z", at="2024-06-09T21:11:07Z")
    p.case("forecast_predictions", "prediction_id", "duplicate_id", ["FPBAD-DUP-1", "FPBAD-DUP-2"])


def _pollute_aliases(p: Polluter) -> None:
    for i, (kind, text) in enumerate([*TEXTS, *INVALID_TEXTS]):
        try:
            p.insert(
                "am_alias",
                {
                    "alias_id": -1 - i,
                    "entity_id": "P000002",
                    "surface": text,
                    "lang": "ja",
                    "source": "import:bad",
                    "created_at": "2026-05-09T20:23:21Z",
                },
            )
        except sqlite3.IntegrityError:
            continue
        p.case("am_alias", "surface", kind, [-1 - i])
    p.case(
        "am_alias",
        "entity_id",
        "dangling_fk",
        [
            p.insert(
                "am_alias",
                {
                    "entity_id": "P_NOWHERE",
                    "surface": "存在しない制度",
                    "lang": "klingon",
                    "source": "x",
                    "created_at": "yesterday",
                },
            )
        ],
    )


def _pollute_channels(p: Polluter) -> None:
    def subscriber(utm, *, signed=None, key=None, plan="paid"):
        n = p.serial("subscriber")
        sid = f"sub_bad_{n:03d}"
        p.insert(
            "subscribers",
            {
                "subscriber_id": sid,
                "api_key": key if key is not None else f"am_bad_sub_{n}",
                "utm_source": utm,
                "signed_up_at": signed or p.ts(TS_WEEK, 40_000 + n),
                "plan": plan,
            },
        )
        p.insert(
            "billing_events",
            {
                "ts": p.ts(TS_WEEK, 40_000 + n),
                "subscriber_id": sid,
                "api_key": None,
                "event_type": "charge",
                "amount_jpy": 3000,
            },
        )
        return sid

    for kind, text in [*TEXTS, *INVALID_TEXTS, ("null", None), ("empty_text", "Google ")]:
        p.case("subscribers", "utm_source", kind, [subscriber(text)])
    p.case("subscribers", "signed_up_at", "ts_format", [subscriber("google", signed=ts) for ts in ts_variants(TS_WEEK)])
    existing_key = p.conn.execute(
        "SELECT api_key FROM subscribers WHERE api_key IS NOT NULL ORDER BY subscriber_id LIMIT 1"
    ).fetchone()[0]
    p.case("subscribers", "api_key", "duplicate_id", [subscriber("twitter", key=existing_key)])
    p.case("subscribers", "api_key", "dangling_fk", [subscriber("twitter", key="am_nowhere")])
    p.case("subscribers", "api_key", "invalid_utf8", [subscriber("twitter", key=raw_text(INVALID_UTF8))])

    def billing(amount, *, sub="sub_03a0b0f5fe11", ts=None, event="charge"):
        n = p.serial("billing")
        return p.insert(
            "billing_events",
            {
                "ts": ts or p.ts(TS_WEEK, 50_000 + n),
                "subscriber_id": sub,
                "api_key": None,
                "event_type": event,
                "amount_jpy": amount,
            },
        )

    p.case("billing_events", "amount_jpy", "huge_amount", [billing(9_000_000_000_000_000_000) for _ in range(2)])
    p.case("billing_events", "amount_jpy", "negative_amount", [billing(-5000), billing(-700, event="refund")])
    p.case("billing_events", "amount_jpy", "wrong_type", [billing("1,000"), billing("abc"), billing(12.5)])
    p.case("billing_events", "subscriber_id", "dangling_fk", [billing(1000, sub="sub_nowhere")])
    p.case("billing_events", "subscriber_id", "invalid_utf8", [billing(1000, sub=raw_text(INVALID_UTF8))])
    p.case("billing_events", "ts", "ts_format", [billing(777, ts=ts) for ts in ts_variants(TS_WEEK)])
    twin = billing(4321)
    p.case(
        "billing_events",
        "id",
        "duplicate_id",
        [twin, billing(4321, ts=p.conn.execute("SELECT ts FROM billing_events WHERE id = ?", (twin,)).fetchone()[0])],
        "the same charge logged twice",
    )


def _traceback(frames: list[tuple[str, int, str, str]], exc: str) -> str:
    lines = ["Traceback (most recent call last):"]
    for path, line, func, source in frames:
        lines += [f'  File "{path}", line {line}, in {func}', f"    {source}"]
    return "\n".join(lines + [exc]) + "\n"


def _pollute_errors(p: Polluter) -> None:
    def error(
        traceback, *, exc_type="ValueError", message="bad value", endpoint="GET /v1/search", request_id=None, ts=None
    ):
        n = p.serial("error")
        return p.insert(
            "error_log",
            {
                "ts": ts or p.ts(TS_OCT, 60_000 + n),
                "endpoint": endpoint,
                "exception_type": exc_type,
                "message": message,
                "traceback": traceback,
                "request_id": request_id or f"req_bad_{n:05d}",
            },
        )

    good = _traceback(
        [
            ("/srv/autonomath/app/api/routes.py", 120, "search", "return run(q)"),
            ("/srv/autonomath/app/search.py", 48, "run", "return parse(q)"),
            ("/srv/autonomath/app/query.py", 17, "parse", "raise ValueError(q)"),
        ],
        'ValueError: \'bad"""value\'',
    )
    cut = good[: good.index("return parse") + 6]  # cut mid-line
    huge = _traceback(
        [(f"/srv/autonomath/app/deep{i % 7}.py", i, f"level_{i}", "return recurse(x)") for i in range(1500)],
        "RecursionError: maximum recursion depth exceeded",
    )
    assert len(huge.encode()) >= 100_000
    evil = _traceback(
        [
            ("/srv/autonomath/app/x.py", 1, "f\"\"\"{{ 7*7 }}'''", "x()"),
            ("/srv/autonomath/app/\u202eevil.py", 2, "défaut_関数", "\x00y()"),
        ],
        'app.errors.Evil_Error: """; import os; os.system("x") {{ 7*7 }} \x00 \u2028 \'\'\' \'"""\\\' "\'\'\'"',
    )
    cases = [
        ("traceback", "truncated_traceback", cut, {}),
        ("traceback", "invalid_utf8", raw_text(good.encode().hex() + "ff"), {}),
        ("traceback", "lone_surrogate", raw_text(good.encode().hex() + "eda080"), {}),
        ("traceback", "blob_in_text", Raw(f"x'{good.encode().hex()}'"), {}),
        ("traceback", "huge_text", huge, {"exc_type": "RecursionError"}),
        (
            "traceback",
            "code_injection",
            evil,
            {"exc_type": "app.errors.Evil_Error", "message": '"""; {{ 7*7 }}\x00\n\'\'\' \'"""\\\''},
        ),
        ("traceback", "empty_text", "", {"exc_type": None, "message": None}),
        (
            "traceback",
            "control_chars",
            "java.lang.NullPointerException\n\tat com.example.Foo(Foo.java:1)\x00\x1b[0m",
            {},
        ),
        ("exception_type", "emoji", good, {"exc_type": "💥Error\u202e"}),
        ("message", "invalid_utf8", good, {"message": raw_text(INVALID_UTF8)}),
        ("endpoint", "control_chars", good, {"endpoint": "GET /v1/search\r\n\x00\u202e"}),
        ("endpoint", "invalid_utf8", good, {"endpoint": raw_text(INVALID_UTF8)}),
    ]
    for column, kind, traceback, overrides in cases:
        p.case("error_log", column, kind, [error(traceback, **overrides) for _ in range(30)])
    p.case("error_log", "request_id", "duplicate_id", [error(good, request_id="req_dup") for _ in range(3)])
    p.case("error_log", "ts", "ts_format", [error(good, ts=ts) for ts in ts_variants(TS_OCT)])


def _pollute_signals(p: Polluter) -> None:
    def signal(url, *, status=200, modified="2026-11-17T00:00:00Z", observed=None, program=None):
        n = p.serial("signal")
        return p.insert(
            "source_change_signals",
            {
                "observed_at": observed or p.ts(TS_SCAN, n),
                "source_url": url,
                "program_id": program,
                "http_status": status,
                "last_modified": modified,
            },
        )

    urls = [
        u
        for (u,) in p.conn.execute(
            "SELECT source_url FROM programs WHERE program_id LIKE 'P0%' ORDER BY program_id LIMIT 12"
        )
    ]
    p.case(
        "source_change_signals",
        "last_modified",
        "ts_format",
        [
            signal(urls[0], modified="Wednesday, 18-Nov-26 07:28:00 GMT"),
            signal(urls[1], modified="garbage"),
            signal(urls[2], modified=1763600000),
        ],
    )
    p.case("source_change_signals", "last_modified", "invalid_utf8", [signal(urls[3], modified=raw_text(INVALID_UTF8))])
    p.case(
        "source_change_signals",
        "observed_at",
        "ts_format",
        [
            signal(urls[4], observed=1763600000),
            signal(urls[5], observed="2026/11/18 03:00"),
            signal(urls[6], observed="2026-11-18T12:00:00+09:00"),
        ],
    )
    p.case("source_change_signals", "http_status", "wrong_type", [signal(urls[7], status="abc")])
    p.case(
        "source_change_signals",
        "http_status",
        "out_of_range",
        [signal(urls[8], status=-1), signal(urls[9], status=999)],
    )
    p.case("source_change_signals", "source_url", "dangling_fk", [signal("https://www.example.go.jp/nowhere.html")])
    p.case("source_change_signals", "source_url", "invalid_utf8", [signal(raw_text(INVALID_UTF8))])
    p.case("source_change_signals", "program_id", "dangling_fk", [signal(urls[10], program="P_NOWHERE")])


def _pollute_outputs(p: Polluter) -> None:
    """Earlier output rows (other partitions) with malformed JSON / undecodable text that loops re-read or must keep."""
    prov = {"loop_id": "x", "run_id": "old", "code_version": "old"}
    p.case(
        "hallucination_guard_candidates",
        "pattern",
        "invalid_utf8",
        [
            p.insert(
                "hallucination_guard_candidates",
                {
                    "pattern": raw_text(INVALID_UTF8),
                    "label": "x",
                    "cluster_size": 3,
                    "score": 1.0,
                    "evidence_json": "not json {",
                    "status": "pending_review",
                    "partition_key": "2026-10-25",
                    "created_at": "2026-10-26T00:00:00Z",
                    **prov,
                },
            )
        ],
    )
    p.case(
        "hallucination_guard_candidates",
        "evidence_json",
        "malformed_json",
        [
            p.insert(
                "hallucination_guard_candidates",
                {
                    "pattern": "古い候補",
                    "label": "x",
                    "cluster_size": 3,
                    "score": 1.0,
                    "evidence_json": "{'single': quotes,}",
                    "status": "approved",
                    "partition_key": "2026-10-25",
                    "created_at": "2026-10-26T00:00:00Z",
                    **prov,
                },
            )
        ],
    )
    p.case(
        "query_cache",
        "payload_json",
        "malformed_json",
        [
            p.insert(
                "query_cache",
                {
                    "query_hash": "f" * 64,
                    "query_text": "壊れた",
                    "payload_json": "{broken",
                    "computed_at": "2026-11-01T00:00:00Z",
                    "ttl_until": "2099-01-01T00:00:00Z",
                    "evidence_json": "[",
                    "partition_key": "2026-11-01",
                    **prov,
                },
            )
        ],
    )
    p.case(
        "personalized_cache",
        "ttl_until",
        "ts_format",
        [
            p.insert(
                "personalized_cache",
                {
                    "customer_id": BAD_PAID_CUSTOMER,
                    "query_hash": "e" * 64,
                    "query_text": "壊れた",
                    "payload_json": "{broken",
                    "computed_at": "2026-11-01T00:00:00Z",
                    "ttl_until": "2099/01/01",
                    "evidence_json": "nope",
                    "partition_key": "2026-11-01",
                    **prov,
                },
            )
        ],
    )
    p.case(
        "forecast_calibration",
        "coef_json",
        "malformed_json",
        [
            p.insert(
                "forecast_calibration",
                {
                    "program_id": "P000010",
                    "coef_json": "{NaN",
                    "computed_at": "2026-09-15T00:00:00Z",
                    "evidence_json": "",
                    "status": "approved",
                    "partition_key": "2026-09-01",
                    **prov,
                },
            )
        ],
    )
    p.case(
        "source_refetch_queue",
        "evidence_json",
        "malformed_json",
        [
            p.insert(
                "source_refetch_queue",
                {
                    "source_url": raw_text(INVALID_UTF8),
                    "program_id": None,
                    "priority": 1.0,
                    "reason": "x",
                    "queued_at": "2026-11-01T00:00:00Z",
                    "evidence_json": "{",
                    "status": "pending_review",
                    "partition_key": "2026-11-01",
                    **prov,
                },
            )
        ],
    )
    p.case(
        "alias_candidates",
        "evidence_json",
        "malformed_json",
        [
            p.insert(
                "alias_candidates",
                {
                    "entity_id": "P000002",
                    "surface": raw_text(INVALID_UTF8),
                    "lang": "ja",
                    "source": "x",
                    "score": 0.5,
                    "evidence_json": "{",
                    "status": "approved",
                    "partition_key": "2026-10-25",
                    "created_at": "2026-10-26T00:00:00Z",
                    **prov,
                },
            )
        ],
    )
    p.case(
        "channel_roi",
        "channel",
        "invalid_utf8",
        [
            p.insert(
                "channel_roi",
                {
                    "channel": raw_text(INVALID_UTF8),
                    "signups_28d": -1,
                    "paid_28d": 0,
                    "revenue_28d_jpy": 0,
                    "computed_at": "2026-11-01T00:00:00Z",
                    "window_start": "x",
                    "window_end": "y",
                    "partition_key": "2026-11-01",
                    **prov,
                },
            )
        ],
    )
    p.case(
        "seo_testimonial_candidates",
        "markdown",
        "invalid_utf8",
        [
            p.insert(
                "seo_testimonial_candidates",
                {
                    "program_id": "P000001",
                    "prefecture_code": "13",
                    "page_path": "site/blog/x.md",
                    "markdown": raw_text(INVALID_UTF8),
                    "jsonld": "{",
                    "group_size": 3,
                    "evidence_json": "{",
                    "status": "approved",
                    "partition_key": "2026-09-01",
                    "created_at": "2026-10-01T00:00:00Z",
                    **prov,
                },
            )
        ],
    )


def _pollute_repo(p: Polluter, repo_root: Path) -> None:
    properties = repo_root / "tests" / "properties"
    (properties / "_candidates").mkdir(parents=True, exist_ok=True)
    (properties / "test_binary_junk.py").write_bytes(b"# autonomath-invariant: \xff\xfe junk\n\x00\x00")
    p.case("repo:tests/properties", "test_binary_junk.py", "invalid_utf8", ["test_binary_junk.py"])
    (properties / "_candidates" / "test_old_stub.py").write_bytes(
        b"# autonomath-invariant: old_stub\n# autonomath-partition: 2026-10-01\n\xff not python\n"
    )
    p.case(
        "repo:tests/properties/_candidates",
        "test_old_stub.py",
        "invalid_utf8",
        ["test_old_stub.py"],
        "an earlier candidate of the same partition that is not the loop's own text: kept",
    )


def write_bad_gold(repo_root: Path) -> Path:
    """Replace ``evals/gold.yaml`` with YAML that does not parse."""
    path = repo_root / "evals" / "gold.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        'version: 1\nitems:\n  - {id: g1, query: "unterminated, expected_program_id: P000001\n  - [\x07\n',
        encoding="utf-8",
    )
    return path


def pollute(db_path: Path, repo_root: Path) -> list[Case]:
    """Pollute the world at ``db_path`` (and files under ``repo_root``); returns the manifest."""
    conn = sqlite3.connect(str(db_path))
    p = Polluter(conn)
    try:
        with conn:
            _pollute_api_keys(p)
            _pollute_query_log(p)
            _pollute_feedback(p)
            _pollute_guard(p)
            _pollute_programs(p)
            _pollute_success(p)
            _pollute_forecasts(p)
            _pollute_aliases(p)
            _pollute_channels(p)
            _pollute_errors(p)
            _pollute_signals(p)
            _pollute_outputs(p)
            _answer_as_the_service(p)
    finally:
        conn.close()
    _pollute_repo(p, repo_root)
    p.case(
        "repo:evals/gold.yaml",
        "(file)",
        "bad_yaml",
        ["gold.yaml"],
        "written by write_bad_gold for the failure test, after the loops ran on the good gold set",
    )
    return p.cases


def cases_by_kind(cases: list[Case]) -> dict[str, int]:
    return dict(sorted(collections.Counter(c.kind for c in cases).items()))
