"""The demo world: a deterministic synthetic AutonoMath database with planted truth.

Scales (``SCALES``): ``small`` (600 programs, 45 days × 2,000 queries, ~2 s), ``medium`` (5,000
programs, 90 days × 10,000 queries, ~13 s), ``production`` (20,000 programs, 120 days × 33,000
queries, exactly 335,605 aliases and 1,256 rounds, ~1 min, ~1.1 GB). 504 launch guard patterns at
every scale. Every table gets its own random stream (``numpy.random.default_rng([seed, stage])``).

``build_world(db_path, scale, seed, as_of)`` creates the database by executing ``schema.sql`` and
filling every source table (output tables stay empty). The same ``(scale, seed, as_of)`` always
gives the same bytes. Logs cover the ``days`` full JST days before ``as_of``: the window is
``[as_of - days, as_of)`` in Asia/Tokyo, i.e. it ends at ``as_of 00:00 JST`` (previous day 15:00Z).

What each loop should find is recorded next to the database in ``<db_path>.truth.json``
(``truth_path(db)``, ``load_truth(db)``). Keys:

``version``, ``scale``, ``seed``, ``as_of`` (JST date), ``window_start`` / ``window_end`` (UTC ISO),
``days``, ``zipf_exponent``, ``row_counts``
    What was built.
``intents``
    List of ``{id, kind, text, program_id, family, p, rank}``: the search needs behind query_log.
    ``kind``: ``program_name`` | ``program_short`` (flagship short name) | ``topic`` (prefecture +
    purpose) | ``category`` (purpose + place, vaguer) | ``hallucination``. ``p`` is the Zipf
    probability of the intent (exponent ``zipf_exponent``) in the global traffic; ``rank`` 1 = head.
    Loyal customers (below) and session refinements add traffic on top of it.
``paraphrase_groups``
    ``{intent id: [{text, kind, n}]}``: every surface form of the intent (``kind``: canonical,
    paraphrase, typo, width, en, romaji, zh, ko) and ``n``, its rows in query_log.
``hallucination_families``
    List of ``{id, label, guard_pattern, texts, intent_id, covered_by_guard, guard_patterns,
    decoy_program_ids, rows, feedback_ids}``: each a set of paraphrases of one non-existent program.
    Their queries return no result (``result_count = 0``, ``top1_program_id`` NULL) or a low-
    confidence (< 0.5) answer with several results; wrong-answer feedback quotes them.
    ``covered_by_guard``: a launch ``hallucination_guard`` row already covers the family (loop A
    should drop it); ``guard_patterns`` are those rows' patterns.
``planted_aliases``
    List of ``{program_id, surface, lang, kind, in_am_alias, intent_id, rows, rows_last_14d}``: the
    surface forms queries use with confidence < 0.5 that hit exactly this program (foreign and romaji
    forms: ``result_count`` 1, sometimes 2). ``in_am_alias = false`` ones are absent from ``am_alias``
    altogether (loop E should propose them), ``true`` ones are present for that program (loop E
    should skip them). No other query row has confidence < 0.5 with a single-program hit except
    sparse noise (wrong top-1 answers, confidence 0.3–0.8).
``gold_candidates``
    Loop J's rule evaluated on the truth: normalized query text (NFKC, case-folded, whitespace
    collapsed) + top-1 program seen with confidence >= 0.85 in >= 5 distinct sessions in the last 30
    days of the window: ``[{query_text, program_id, sessions}]``, most sessions first.
``loyal_customers``
    List of ``{customer_id, api_key, favourites, favourite_share, requests_last_30d}``: paid
    customers whose queries come from a fixed favourites list (``favourite_share`` ≈ 0.85 of their
    queries) — loop C's top-20 of one week predicts the next.
``forecast_bias_days`` / ``forecast_noise_sd_days`` / ``pooled_bias_mean`` / ``pooled_bias_sd``
    Planted forecast error: ``predicted_opens_at - opens_at = bias[program] + N(0, noise_sd)`` days,
    rounded to whole days; ``bias ~ N(pooled_bias_mean, pooled_bias_sd)``.
    ``forecast_observed`` = ``{program_id: {n, mean_error_days}}`` over resolved rounds.
``failure_modes``
    ``{mode: {exception_type, endpoints, chain, links, top_frames, first_version}}``.
``error_modes``
    ``{error_log id: mode}`` for every row; ``error_malformed`` ``{id: "truncated" | "headless"}``;
    ``error_formats`` ``{id: how the trace was logged}`` (``demo.tracebacks.LOG_FORMATS``).
    ``deploy_versions``: UTC start of each deploy version (line numbers change with each).
``feedback_labels``
    ``{customer_feedback id: {family, reason}}``; ``reason``: hallucination, ended, region, deadline,
    amount, eligibility, positive.
``success_groups``
    ``[{month, program_id, prefecture_code, consented, total}]`` per JST calendar month.
``channels``
    ``{utm_source or "(null)" / "(empty)": {signup_weight, paid_rate}}``: planted channel quality.
``changed_sources`` / ``gone_sources`` / ``noisy_sources``
    Liveness scan truth: ``{program_id: changed_at}`` pages changed after ``source_fetched_at``
    (scans after the change answer 200 with that Last-Modified), ``{program_id: gone_at}`` (404
    from then on), and programs whose server ignores conditional requests (200 but unchanged).
``last_day_top_texts``
    ``[[query_text, count]]``: the 200 most frequent raw query texts of the window's last JST day.
``built_by``
    ``{package_version, generator_digest}``: the code that built the world (``generator_digest()``:
    SHA-256 of the generator's sources and the schema), so benchmarks can tell a stale world.
"""

from __future__ import annotations

import dataclasses

import datetime as dt
import hashlib
import json
import os
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from autonomath_pipelines import CODE_VERSION
from autonomath_pipelines.demo import text as tx
from autonomath_pipelines.demo import tracebacks as tb
from autonomath_pipelines.demo import vocab as V
from autonomath_pipelines.lib.textnorm import normalize_query
from autonomath_pipelines.contract.sqlite import sqlite3

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "contract" / "schema.sql"
TRUTH_VERSION = 1
JST = dt.timezone(dt.timedelta(hours=9), "JST")
DAY = 86_400
ZIPF_EXPONENT = 1.05
FORECAST_POOLED_MEAN = 5.0
FORECAST_POOLED_SD = 7.0
FORECAST_NOISE_SD = 10.0

SOURCE_TABLES = (
    "prefectures", "programs", "programs_fts", "api_keys", "query_log", "customer_feedback",
    "hallucination_guard", "customer_success_events", "am_application_round", "forecast_predictions",
    "am_alias", "subscribers", "billing_events", "error_log", "source_change_signals",
)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class WorldScale:
    name: str
    programs: int
    days: int
    queries_per_day: int
    aliases: int
    rounds: int
    api_keys: int
    hallucination_families: int
    loyal_customers: int
    topic_intents: int
    category_intents: int
    feedback_per_day: float
    success_per_day: float
    success_hot_groups: int
    errors_per_day: float
    scan_days: int = 28
    guard_patterns: int = 504


SCALES: dict[str, WorldScale] = {
    "small": WorldScale("small", programs=600, days=45, queries_per_day=2_000, aliases=4_000, rounds=300,
                        api_keys=400, hallucination_families=12, loyal_customers=8, topic_intents=150,
                        category_intents=100, feedback_per_day=8, success_per_day=3, success_hot_groups=10,
                        errors_per_day=30),
    "medium": WorldScale("medium", programs=5_000, days=90, queries_per_day=10_000, aliases=40_000, rounds=800,
                         api_keys=1_500, hallucination_families=24, loyal_customers=25, topic_intents=1_200,
                         category_intents=800, feedback_per_day=14, success_per_day=8, success_hot_groups=25,
                         errors_per_day=80),
    "production": WorldScale("production", programs=20_000, days=120, queries_per_day=33_000, aliases=335_605,
                             rounds=1_256, api_keys=5_000, hallucination_families=40, loyal_customers=60,
                             topic_intents=3_000, category_intents=2_000, feedback_per_day=22, success_per_day=20,
                             success_hot_groups=50, errors_per_day=150),
}

#: What grows with the service: traffic, catalogue, customers and the streams they cause. The planted
#: structure (hallucination families, guard patterns, hot success groups) is a vocabulary, not a volume.
VOLUME_FIELDS = ("programs", "queries_per_day", "aliases", "rounds", "api_keys", "loyal_customers", "topic_intents",
                 "category_intents", "feedback_per_day", "success_per_day", "errors_per_day")


def scaled(base: WorldScale, factor: int, *, name: str, days: int | None = None) -> WorldScale:
    """``base`` with every volume ``factor`` times larger (same generator, same shape), over ``days``."""
    if factor < 1:
        raise ValueError(f"scale factor must be >= 1, got {factor}")
    grown = {f: type(getattr(base, f))(getattr(base, f) * factor) for f in VOLUME_FIELDS}
    return dataclasses.replace(base, name=name, days=base.days if days is None else days, **grown)


#: Ten times the service (≈10M query_log rows a month, 200k programs, 3.36M aliases) for the load
#: benchmark. 60 days instead of 120: the longest read of any loop is 37 days of query_log (loop C's
#: 30 days plus its 7-day popularity prior) and loops B and G need the whole previous month; the
#: other 60 days would only cost build time and disk (≈6 GB more).
SCALES["production-10x"] = scaled(SCALES["production"], 10, name="production-10x", days=60)


@dataclass
class WorldSummary:
    db_path: Path
    scale: str
    seed: int
    as_of: dt.date
    row_counts: dict[str, int]
    seconds: float
    truth_path: Path | None = None


def truth_path(db_path: str | os.PathLike) -> Path:
    """The planted-truth sidecar of a demo database: ``<db_path>.truth.json``."""
    p = Path(db_path)
    return p.with_name(p.name + ".truth.json")


def load_truth(db_path: str | os.PathLike) -> dict:
    return json.loads(truth_path(db_path).read_text(encoding="utf-8"))


def generator_digest() -> str:
    """SHA-256 over the demo generator's sources and the schema: a world built when this differed
    was built by other code, and its figures (costs, evals) are not today's."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for source in sorted((package / "demo").glob("*.py")) + sorted((package / "demo").glob("*.json")) + [package / "contract" / "schema.sql"]:
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


def hallucination_family_of(truth: dict) -> dict[str, str]:
    """Normalized text → id of the planted hallucination family it belongs to: the family's texts
    and every surface form of its intent (paraphrases, typos, widths)."""
    family_of: dict[str, str] = {}
    for family in truth["hallucination_families"]:
        forms = list(family["texts"]) + [f["text"] for f in truth["paraphrase_groups"].get(family["intent_id"], [])]
        for text in forms:
            family_of[normalize_query(text)] = family["id"]
    return family_of


def today_jst() -> dt.date:
    return dt.datetime.now(JST).date()


# --- time helpers -------------------------------------------------------------------------------
def iso(sec: int | float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(sec)))


def iso_list(secs: np.ndarray) -> list[str]:
    s = np.datetime_as_string(np.asarray(secs, dtype=np.int64).astype("datetime64[s]"), unit="s")
    return np.strings.add(s, "Z").tolist()


def jst_midnight(sec: int) -> int:
    """UTC epoch of the JST midnight at or before ``sec``."""
    return (sec + 9 * 3600) // DAY * DAY - 9 * 3600


def _hex(rng: np.random.Generator, n: int, width: int) -> list[str]:
    """n random lower-case hex strings of ``width`` characters (width <= 30)."""
    hi = rng.integers(0, 1 << 60, size=n, dtype=np.int64)
    lo = rng.integers(0, 1 << 60, size=n, dtype=np.int64)
    return [f"{a:015x}{b:015x}"[:width] for a, b in zip(hi.tolist(), lo.tolist())]


def _unique_hex(rng: np.random.Generator, n: int, width: int, prefix: str) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        for h in _hex(rng, n - len(out), width):
            if h not in seen:
                seen.add(h)
                out.append(prefix + h)
    return out


def _yen(v: int | None) -> str:
    if v is None:
        return "定額"
    if v >= 100_000_000 and v % 100_000_000 == 0:
        return f"{v // 100_000_000}億円"
    if v >= 10_000:
        return f"{v // 10_000:,}万円"
    return f"{v:,}円"


# JST hour-of-day weights of search traffic (business hours, lunch dip, evening tail).
DIURNAL = np.array([0.5, 0.3, 0.2, 0.15, 0.15, 0.25, 0.6, 1.5, 3.5, 6.0, 7.0, 7.0,
                    5.0, 6.5, 7.0, 7.0, 6.5, 5.5, 4.0, 3.0, 2.5, 2.0, 1.5, 0.9])
DIURNAL = DIURNAL / DIURNAL.sum()

# Surface kinds / intent kinds.
CANON, PARA, TYPO, WIDTH, EN, ROMAJI, ZH, KO = range(8)
SURFACE_KIND_NAMES = ("canonical", "paraphrase", "typo", "width", "en", "romaji", "zh", "ko")
FOREIGN_LANG = {EN: "en", ROMAJI: "ja-Latn", ZH: "zh", KO: "ko"}
NAME, SHORT, TOPIC, CATEGORY, HALL = range(5)
INTENT_KIND_NAMES = ("program_name", "program_short", "topic", "category", "hallucination")

CHANNELS: tuple[tuple[str | None, float, float], ...] = (
    ("google", 0.28, 0.20), ("x", 0.14, 0.07), ("note", 0.10, 0.15), ("qiita", 0.09, 0.32),
    ("newsletter", 0.07, 0.38), ("partner_freee", 0.05, 0.42), ("partner_moneyforward", 0.04, 0.36),
    ("partner_smarthr", 0.03, 0.25), (None, 0.12, 0.12), ("", 0.08, 0.10),
)


@dataclass
class Program:
    idx: int
    name: str
    level: str
    pref: int | None  # index into V.PREFECTURES
    city: tuple[str, str] | None  # (name_ja, base reading)
    purpose: int | None
    target: int | None  # target named in the name
    kind: int | None
    pattern: int
    flagship: int | None
    category: str
    agency: str
    slug: str
    amount: int | None
    tier: str
    pid: str = ""
    summary: str = ""
    url: str = ""
    fetched: int = 0
    updated: int = 0


class _Surfaces:
    """Global table of query surface forms; a text belongs to exactly one intent."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.intent: list[int] = []
        self.kind: list[int] = []
        self.weight: list[float] = []
        self.index: dict[str, int] = {}
        self.reserved: set[str] = set()  # canonical texts: no other intent may use them

    def add(self, text: str, intent: int, kind: int, weight: float) -> int | None:
        text = text.strip()
        if not text or text in self.index or (kind != CANON and text in self.reserved):
            return None
        self.index[text] = len(self.texts)
        self.texts.append(text)
        self.intent.append(intent)
        self.kind.append(kind)
        self.weight.append(weight)
        return len(self.texts) - 1


class _World:
    def __init__(self, scale: WorldScale, seed: int, as_of: dt.date, progress: Progress | None) -> None:
        self.sc = scale
        self.seed = seed
        self.as_of = as_of
        self.progress = progress or (lambda stage, done, total: None)
        self.t_end = int(dt.datetime(as_of.year, as_of.month, as_of.day, tzinfo=JST).timestamp())
        self.t_start = self.t_end - scale.days * DAY
        self.fy = as_of.year
        self.reiwa = as_of.year - 2018
        self.counts: dict[str, int] = {}
        self.truth: dict = {}

    def rng(self, stage: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stage])

    # ------------------------------------------------------------------------------------------
    def build(self, path: Path) -> None:
        conn = sqlite3.connect(str(path), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("PRAGMA cache_size=-262144")
            conn.execute("PRAGMA temp_store=MEMORY")
            schema = SCHEMA_PATH.read_text(encoding="utf-8")
            conn.executescript(schema)
            # Bulk load without secondary indexes; re-applying the schema recreates them.
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
                                        "ORDER BY name").fetchall():
                conn.execute(f'DROP INDEX "{name}"')
            self.progress("schema", 1, 1)
            conn.execute("BEGIN")
            self.conn = conn
            self._prefectures()
            self._programs()
            self._customers()
            self._intents()
            self._query_log()
            self._billing()
            self._feedback()
            self._guard()
            self._success_events()
            self._rounds()
            self._aliases()
            self._errors()
            self._source_signals()
            conn.execute("COMMIT")
            self.progress("indexes", 0, 1)
            conn.executescript(schema)
            self.progress("indexes", 1, 1)
            self.progress("analyze", 0, 1)
            conn.execute("ANALYZE")
            self.progress("analyze", 1, 1)
            for table in SOURCE_TABLES:
                self.counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        finally:
            conn.close()

    def _insert(self, table: str, columns: tuple[str, ...], rows) -> None:
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        self.conn.executemany(sql, rows)

    # --- prefectures ----------------------------------------------------------------------------
    def _prefectures(self) -> None:
        self._insert("prefectures", ("prefecture_code", "name_ja", "name_en", "region"),
                     [(c, ja, en, reg) for c, ja, en, reg, *_ in V.PREFECTURES])
        self.pref_pop = np.array([p[6] for p in V.PREFECTURES], dtype=float)
        self.progress("prefectures", 47, 47)

    # --- region helpers -------------------------------------------------------------------------
    @staticmethod
    def _pref_base_reading(i: int) -> str:
        name, reading = V.PREFECTURES[i][1], V.PREFECTURES[i][4]
        if name.endswith("県"):
            return reading[:-3]
        if name.endswith(("府", "都")):
            return reading[:-2]
        return reading

    @staticmethod
    def _pref_short(i: int) -> str:
        name = V.PREFECTURES[i][1]
        return name if name == "北海道" else name[:-1]

    def _region(self, p: Program) -> dict[str, str]:
        """Region parts of a program in every script ('' for national programs)."""
        if p.city is not None:
            cname, base = p.city
            suffix = "ku" if cname.endswith("区") else "shi"
            return {"ja": cname, "short": cname[:-1], "reading": base + suffix, "base": base,
                    "en": tx.hepburn(base).title(), "zh": cname.translate(V.ZH_CHARS),
                    "ko": tx.hangul(base) + ("구" if suffix == "ku" else "시")}
        if p.pref is not None:
            _code, name, en, _, reading, ko, _ = V.PREFECTURES[p.pref]
            return {"ja": name, "short": self._pref_short(p.pref), "reading": reading,
                    "base": self._pref_base_reading(p.pref), "en": en, "zh": name.translate(V.ZH_CHARS), "ko": ko}
        return {"ja": "", "short": "", "reading": "", "base": "", "en": "", "zh": "", "ko": ""}

    # --- programs ---------------------------------------------------------------------------------
    def _programs(self) -> None:
        rng = self.rng(1)
        sc = self.sc
        n = sc.programs
        n_flag = len(V.FLAGSHIPS)
        n_nat = max(n_flag + 5, round(n * 0.08))
        n_pref = max(47, round(n * 0.35))
        n_muni = n - n_nat - n_pref
        progs: list[Program] = []
        used: set[str] = set()

        for fi, f in enumerate(V.FLAGSHIPS):
            name = f[0].format(fy=self.fy)
            purpose = next((i for i, pp in enumerate(V.PURPOSES) if pp[6] == f[9]), None)
            progs.append(Program(len(progs), name, "national", None, None, purpose, None, None, -1, fi,
                                 f[9], f[7], f[8], f[11], f[12]))
            used.add(name)

        sqrt_pop = np.sqrt(self.pref_pop)
        pref_alloc = 1 + rng.multinomial(n_pref - 47, sqrt_pop / sqrt_pop.sum())
        cities = [(pi, c) for pi, (code, *_rest) in enumerate(V.PREFECTURES) for c in V.CITIES[code]]
        city_w = np.array([sqrt_pop[pi] / len(V.CITIES[V.PREFECTURES[pi][0]]) for pi, _ in cities])
        city_alloc = rng.multinomial(n_muni, city_w / city_w.sum())

        slots: list[tuple[str, int | None, tuple[str, str] | None]] = [("national", None, None)] * (n_nat - n_flag)
        for pi, k in enumerate(pref_alloc.tolist()):
            slots += [("prefectural", pi, None)] * k
        for (pi, c), k in zip(cities, city_alloc.tolist()):
            slots += [("municipal", pi, c)] * k

        tier_p = {"national": [0.08, 0.25, 0.37, 0.30], "prefectural": [0.03, 0.12, 0.35, 0.50],
                  "municipal": [0.02, 0.10, 0.33, 0.55]}
        kind_idx = {k[0]: i for i, k in enumerate(V.KINDS)}
        target_idx = {t[0]: i for i, t in enumerate(V.TARGETS)}
        for level, pi, city in slots:
            region_ja = city[0] if city else (V.PREFECTURES[pi][1] if pi is not None else "")
            for attempt in range(200):
                purpose = int(rng.integers(len(V.PURPOSES)))
                group = V.PURPOSES[purpose][7]
                targets, kinds = V.GROUPS[group]
                tname = targets[int(rng.integers(len(targets)))]
                kinds = [k for k in kinds if level == "national" or k != "交付金"]
                kname = kinds[int(rng.integers(len(kinds)))]
                pattern = int(rng.choice(4, p=[0.4, 0.3, 0.1, 0.2]))
                P, K = V.PURPOSES[purpose][0], kname
                T = tname or ""
                if level == "national":
                    if not T:
                        core = f"{P}推進{K}"
                        pattern = 4
                    else:
                        core = f"{T}{P}{K}" if pattern != 2 else f"{T}向け{P}{K}"
                else:
                    if pattern == 0:
                        core = f"{region_ja}{T}{P}{K}"
                    elif pattern == 2 and T:
                        core = f"{region_ja}{T}向け{P}{K}"
                    else:
                        core = f"{region_ja}{P}{K}"
                        pattern = 1 if pattern != 3 else 3
                        T = ""
                name = f"令和{self.reiwa}年度{core}" if pattern == 3 else core
                if attempt >= 150:
                    name = f"{name}（第{attempt - 148}期）"
                if name not in used:
                    break
            used.add(name)
            category = V.PURPOSES[purpose][6]
            if level == "national":
                agencies = V.NATIONAL_AGENCY[category]
                agency, slug = agencies[int(rng.integers(len(agencies)))]
            elif level == "prefectural":
                dept_key = V.CATEGORY_DEPT[category]
                pname = V.PREFECTURES[pi][1]
                dept = (V.TOKYO_DEPT if pname == "東京都" else V.HOKKAIDO_DEPT if pname == "北海道" else V.PREF_DEPT)[dept_key]
                if pname.endswith(("府", "都")) and dept.startswith("県"):
                    dept = pname[-1] + dept[1:]
                agency, slug = pname + dept, "pref-" + tx.hepburn(V.PREFECTURES[pi][4])
            else:
                agency = city[0] + V.CITY_DEPT[V.CATEGORY_DEPT[category]]
                slug = f"city-{tx.hepburn(self._pref_base_reading(pi))}-{tx.hepburn(city[1])}"
            if K in ("給付金", "支援金"):
                amount = int(rng.choice([50_000, 100_000, 200_000, 300_000, 500_000, 1_000_000]))
            elif level == "national":
                amount = int(rng.choice([2_000_000, 4_500_000, 5_000_000, 10_000_000, 30_000_000, 50_000_000, 100_000_000]))
            elif level == "prefectural":
                amount = int(rng.choice([1_000_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000, 30_000_000]))
            else:
                amount = int(rng.choice([100_000, 200_000, 300_000, 500_000, 1_000_000, 2_000_000, 3_000_000]))
            if rng.random() < 0.05:
                amount = None
            tier = str(rng.choice(["S", "A", "B", "C"], p=tier_p[level]))
            progs.append(Program(len(progs), name, level, pi, city, purpose,
                                 target_idx[T] if T else None, kind_idx[K], pattern, None,
                                 category, agency, slug, amount, tier))

        # ids: a deterministic shuffle so the id does not reveal the level
        perm = rng.permutation(len(progs))
        for p, k in zip(progs, perm.tolist()):
            p.pid = f"P{k + 1:06d}"
        # texts, urls, times
        age_mix = rng.random(len(progs))
        ages = np.where(age_mix < 0.6, rng.uniform(0, 90, len(progs)),
                        np.where(age_mix < 0.9, rng.uniform(90, 250, len(progs)), rng.uniform(250, 400, len(progs))))
        fetched = (self.t_end - ages * DAY - rng.integers(60, 3600, len(progs))).astype(np.int64)
        edit = rng.random(len(progs)) < 0.2
        upd = fetched + np.where(edit, (rng.random(len(progs)) * (self.t_end - 60 - fetched)).astype(np.int64),
                                 rng.integers(30, 7200, len(progs)))
        upd = np.minimum(upd, self.t_end - 1)
        raw_rng = self.rng(13)
        for p, f, u in zip(progs, fetched.tolist(), upd.tolist()):
            p.fetched, p.updated = f, u
            p.summary = self._summary(p, rng)
            if p.flagship is None:
                # The service's tables hold names as agencies publish them (DESIGN §7: raw text in
                # the index); the flagships keep their well-known spelling.
                subtitle = f"{V.TARGETS[p.target][0]}向け" if p.target is not None else ""
                p.name = tx.published_form(p.name, subtitle, raw_rng)
                if raw_rng.random() < 0.05:
                    p.summary += "申請受付は㈱日本政策金融公庫の窓口でも行います。"
            if p.level == "national":
                p.url = f"https://www.example.go.jp/{p.slug}/hojo/{p.pid.lower()}.html"
            else:
                p.url = f"https://www.example.lg.jp/{p.slug}/hojo/{p.pid.lower()}.html"
        self.programs = progs
        self.by_pid = {p.pid: p for p in progs}
        rows = sorted(((p.pid, p.name, p.summary, p.agency, p.level,
                        V.PREFECTURES[p.pref][0] if p.pref is not None else None,
                        p.city[0] if p.city else None, p.category, p.amount, p.tier, p.url,
                        iso(p.fetched), iso(p.updated)) for p in progs))
        self._insert("programs", ("program_id", "name", "summary", "agency", "level", "prefecture_code",
                                  "municipality", "category", "max_amount_jpy", "tier", "source_url",
                                  "source_fetched_at", "updated_at"), rows)
        fts = []
        for r in rows:
            p = self.by_pid[r[0]]
            region = "全国" if p.pref is None else V.PREFECTURES[p.pref][1] + (f" {p.city[0]}" if p.city else "")
            fts.append((p.pid, p.name, p.summary, p.agency, region))
        self._insert("programs_fts", ("program_id", "name", "summary", "agency", "region"), fts)
        self.progress("programs", len(progs), len(progs))

    def _summary(self, p: Program, rng: np.random.Generator) -> str:
        region = self._region(p)["ja"] or "全国"
        if p.flagship is not None:
            target = V.FLAGSHIPS[p.flagship][10] or "地方公共団体"
        elif p.target is not None:
            target = V.TARGETS[p.target][0]
        else:
            group = V.PURPOSES[p.purpose][7]
            target = {"life": "住民", "home": "住宅の所有者", "agri": "農業者", "home_or_biz": "住民・事業者",
                      "startup": "創業予定者"}.get(group, "中小企業・小規模事業者")
        purpose = V.PURPOSES[p.purpose][0] if p.purpose is not None else p.category
        kind = V.KINDS[p.kind][0] if p.kind is not None else ""
        templates = V.BENEFIT_TEMPLATES if kind in ("給付金", "支援金") else V.SUMMARY_TEMPLATES
        t = templates[int(rng.integers(len(templates)))]
        return t.format(region=region, target=target, purpose=purpose, amount=_yen(p.amount),
                        rate=V.RATES[int(rng.integers(len(V.RATES)))], agency=p.agency,
                        season=V.SEASONS[int(rng.integers(len(V.SEASONS)))])

    # --- program component forms (names, readings, translations) --------------------------------
    def _forms(self, p: Program) -> dict[str, str]:
        """Name parts of a generated program in every script."""
        r = self._region(p)
        P = V.PURPOSES[p.purpose]
        T = V.TARGETS[p.target] if p.target is not None else None
        K = V.KINDS[p.kind]
        # reading of the name without the 令和 prefix
        parts = [r["reading"]]
        if T:
            parts.append(T[1])
            if p.pattern == 2:
                parts.append("muke")
        parts.append(P[1])
        if p.pattern == 4:
            parts.append("suishin")
        parts.append(K[1])
        reading = " ".join(x for x in parts if x)

        def rom(c):
            return c[2] or tx.hepburn(c[1])

        return {
            "R": r["ja"], "Rs": r["short"], "T": T[0] if T else "", "P": P[0], "K": K[0],
            "reading": reading, "R_base_rom": tx.hepburn(r["base"]),
            "R_en": r["en"], "T_en": T[3] if T else "", "P_en": P[3], "K_en": K[3],
            "R_zh": r["zh"], "T_zh": T[4] if T else "", "P_zh": P[4], "K_zh": K[4],
            "R_ko": r["ko"], "T_ko": T[5] if T else "", "P_ko": P[5], "K_ko": K[5],
            "P_rom": rom(P), "K_rom": rom(K), "T_rom": rom(T) if T else "",
        }

    def _alias_pool(self, p: Program) -> list[tuple[str, str]]:
        out: dict[str, str] = {}

        def add(s: str, lang: str) -> None:
            s = " ".join(s.split())
            if s and s != p.name and s not in out:
                out[s] = lang

        if p.flagship is not None:
            f = V.FLAGSHIPS[p.flagship]
            name, short, kana = p.name, f[1], f[2]
            add(short, "ja")
            add(f"{short} {self.fy}", "ja")
            add(f"令和{self.reiwa}年度{short}", "ja")
            add(name.replace("・", ""), "ja")
            add(f"{short}（{f[7]}）", "ja")
            add(kana, "ja-Kana")
            add(tx.hiragana(kana), "ja-Kana")
            for s in f[3]:
                add(s, "ja-Latn")
                add(s.replace(" ", ""), "ja-Latn")
            for s in f[4]:
                add(s, "en")
                add(s.lower(), "en")
            add(f[5], "zh")
            add(f[6], "ko")
            for v in (name, short):
                if any(c.isascii() and c.isalnum() for c in v):
                    add(tx.to_fullwidth(v), "ja")
                if tx.has_katakana(v):
                    add(tx.to_halfwidth_kana(v), "ja")
            return list(out.items())
        F = self._forms(p)
        R, Rs, T, P, K = F["R"], F["Rs"], F["T"], F["P"], F["K"]
        ksimple = {"補助金": "補助", "助成金": "助成", "支援補助金": "支援補助", "給付金": "給付", "支援事業": "支援",
                   "奨励金": "奨励", "支援金": "支援", "促進事業費補助金": "補助", "交付金": "交付"}[K]
        add(P + K, "ja")
        if R:
            add(f"{R}の{P}{K}", "ja")
            add(f"{R} {P} {K}", "ja")
            add(f"{Rs}{P}{K}", "ja")
            add(f"{P}{K}（{R}）", "ja")
            add(f"{Rs} {P}", "ja")
            add(f"{P} {K} {Rs}", "ja")
        elif T:
            add(f"{T} {P} {K}", "ja")
        if T:
            add(f"{T}向け{P}{K}", "ja")
        add(f"{p.agency} {P}{K}", "ja")
        add(p.name.replace(K, ksimple) if p.name.endswith(K) else p.name + "事業", "ja")
        if p.pattern == 3:
            add(p.name.replace(f"令和{self.reiwa}年度", ""), "ja")
        else:
            add(f"{self.fy}年度 {p.name}", "ja")
        if any(c.isascii() and c.isalnum() for c in p.name):
            add(tx.to_fullwidth(p.name), "ja")
        if tx.has_katakana(p.name):
            add(tx.to_halfwidth_kana(p.name), "ja")
        kata = tx.katakana(F["reading"])
        add(kata, "ja-Kana")
        add(tx.hiragana(kata), "ja-Kana")
        add(tx.katakana(f"{V.PURPOSES[p.purpose][1]} {V.KINDS[p.kind][1]}"), "ja-Kana")
        hep = tx.hepburn(F["reading"])
        add(hep, "ja-Latn")
        add(F["reading"].replace("-", "").replace("'", ""), "ja-Latn")
        add(hep.replace(" ", ""), "ja-Latn")
        add(f"{F['R_base_rom']} {F['P_rom']} {F['K_rom']}", "ja-Latn")
        add(" ".join(x for x in (F["R_en"], F["T_en"], F["P_en"], F["K_en"]) if x), "en")
        e2 = " ".join(x for x in (F["R_en"], F["P_en"], F["K_en"]) if x)
        add(e2, "en")
        add(e2.lower(), "en")
        add(f"{F['P_en']} {F['K_en']}" + (f" ({F['R_en']})" if F["R_en"] else ""), "en")
        add(F["R_zh"] + F["T_zh"] + F["P_zh"] + F["K_zh"], "zh")
        add(F["R_zh"] + F["P_zh"] + F["K_zh"], "zh")
        add(" ".join(x for x in (F["R_ko"], F["T_ko"], F["P_ko"], F["K_ko"]) if x), "ko")
        add(" ".join(x for x in (F["R_ko"], F["P_ko"], F["K_ko"]) if x), "ko")
        return list(out.items())

    def _foreign_forms(self, p: Program) -> dict[int, list[str]]:
        """Foreign surface forms a searcher may type for a program (some are aliases, some not)."""
        if p.flagship is not None:
            f = V.FLAGSHIPS[p.flagship]
            return {ROMAJI: list(f[3]), EN: list(f[4]), ZH: [f[5]], KO: [f[6]]}
        F = self._forms(p)
        Ren = F["R_en"]
        en = [" ".join(x for x in (Ren, F["P_en"], F["K_en"]) if x),
              (" ".join(x for x in (Ren, F["P_en"], F["K_en"]) if x)).lower(),
              f"{F['P_en']} {F['K_en']} {Ren}".strip().lower(),
              f"{F['K_en']} for {F['P_en']}" + (f" in {Ren}" if Ren else "")]
        romaji = [f"{F['R_base_rom']} {F['P_rom']} {F['K_rom']}".strip(),
                  f"{F['P_rom']} {F['K_rom']} {F['R_base_rom']}".strip()]
        zh = [F["R_zh"] + F["P_zh"] + F["K_zh"], F["R_zh"] + " " + F["P_zh"] + F["K_zh"]]
        ko = [" ".join(x for x in (F["R_ko"], F["P_ko"], F["K_ko"]) if x),
              " ".join(x for x in (F["R_ko"], F["P_ko"], "지원금") if x)]
        return {EN: en, ROMAJI: romaji, ZH: zh, KO: ko}

    # --- customers, api keys, subscribers -------------------------------------------------------------
    def _customers(self) -> None:
        rng = self.rng(2)
        sc = self.sc
        n_internal = 4
        n_cust = round((sc.api_keys - n_internal) / 1.04)
        n_rot = sc.api_keys - n_internal - n_cust
        ch_w = np.array([c[1] for c in CHANNELS])
        channel = rng.choice(len(CHANNELS), size=n_cust, p=ch_w / ch_w.sum())
        paid = rng.random(n_cust) < np.array([CHANNELS[c][2] for c in channel.tolist()])
        in_window = rng.random(n_cust) < 0.22
        age_days = np.where(in_window, rng.uniform(0.5, sc.days, n_cust), sc.days + rng.uniform(0, 480, n_cust) ** 1.0)
        created = (self.t_end - age_days * DAY).astype(np.int64)
        rotated = np.zeros(n_cust, dtype=bool)
        rotated[rng.choice(n_cust, size=n_rot, replace=False)] = True
        churned = (~rotated) & (rng.random(n_cust) < 0.03)
        change_at = (created + rng.uniform(0.2, 0.95, n_cust) * (self.t_end - created)).astype(np.int64)

        cust_ids = _unique_hex(rng, n_cust, 12, "cus_")
        sub_ids = _unique_hex(rng, n_cust + n_cust // 12 + 1, 12, "sub_")
        key_strs = _unique_hex(rng, sc.api_keys, 30, "")
        keys: list[dict] = []
        cust_keys: list[list[int]] = []
        for i in range(n_cust):
            tier = "paid" if paid[i] else "free"
            k1 = {"key": "am_" + key_strs[len(keys)][:28], "customer": i, "tier": tier, "created": int(created[i]),
                  "revoked": None, "successor": -1}
            keys.append(k1)
            ks = [len(keys) - 1]
            if rotated[i] or churned[i]:
                k1["revoked"] = int(change_at[i])
            if rotated[i]:
                keys.append({"key": "am_" + key_strs[len(keys)][:28], "customer": i, "tier": tier,
                             "created": int(change_at[i]), "revoked": None, "successor": -1})
                k1["successor"] = len(keys) - 1
                ks.append(len(keys) - 1)
            cust_keys.append(ks)
        internal_created = self.t_start - 400 * DAY
        for j in range(n_internal):
            keys.append({"key": "am_int_" + key_strs[len(keys)][:24], "customer": -1, "tier": "internal",
                         "created": internal_created + j * 3600, "revoked": None, "successor": -1})
        self.keys = keys
        self.cust_ids = cust_ids
        self.cust_keys = cust_keys
        nk = len(keys)
        self.key_str = np.array([k["key"] for k in keys], dtype=object)
        self.key_tier = np.array([k["tier"] for k in keys], dtype=object)
        self.key_created = np.array([k["created"] for k in keys], dtype=np.int64)
        self.key_revoked = np.array([k["revoked"] if k["revoked"] is not None else 1 << 62 for k in keys], dtype=np.int64)
        self.key_successor = np.array([k["successor"] for k in keys], dtype=np.int64)
        self.key_paid = self.key_tier == "paid"

        # loyal customers: paid, active for the whole window, one key
        eligible = [i for i in range(n_cust) if paid[i] and not rotated[i] and not churned[i]
                    and created[i] < self.t_start - DAY]
        n_loyal = min(sc.loyal_customers, len(eligible))
        self.loyal_cust = sorted(rng.choice(eligible, size=n_loyal, replace=False).tolist())
        self.loyal_keys = [cust_keys[c][0] for c in self.loyal_cust]

        # session weight per key
        w = np.where(self.key_paid, rng.lognormal(1.0, 1.0, nk), rng.lognormal(-0.7, 1.0, nk))
        w[self.key_tier == "internal"] = 0.3
        w[self.loyal_keys] = 0.0
        loyal_share = 0.12 if n_loyal else 0.0
        if n_loyal:
            w[self.loyal_keys] = loyal_share / (1 - loyal_share) * w.sum() / n_loyal * rng.uniform(0.6, 1.4, n_loyal)
        self.key_weight = w / w.sum()

        key_rows = [(k["key"], cust_ids[k["customer"]] if k["customer"] >= 0 else "cus_internal", k["tier"],
                     iso(k["created"]), iso(k["revoked"]) if k["revoked"] is not None else None) for k in keys]
        self._insert("api_keys", ("api_key", "customer_id", "tier", "created_at", "revoked_at"), sorted(key_rows))

        # subscribers: one per customer (+ sign-ups that never created a key)
        subs = []
        self.cust_sub = []
        for i in range(n_cust):
            current = keys[cust_keys[i][-1]]
            ch = CHANNELS[channel[i]][0]
            signed = int(created[i]) - int(rng.integers(60, 1800))
            subs.append((sub_ids[i], current["key"], ch, iso(signed), "paid" if paid[i] else "free"))
            self.cust_sub.append(sub_ids[i])
        n_nokey = n_cust // 12
        nk_channel = rng.choice(len(CHANNELS), size=n_nokey, p=ch_w / ch_w.sum())
        nk_signed = (self.t_end - rng.uniform(0.2, sc.days + 300, n_nokey) * DAY).astype(np.int64)
        for j in range(n_nokey):
            subs.append((sub_ids[n_cust + j], None, CHANNELS[nk_channel[j]][0], iso(nk_signed[j]), "free"))
        self._insert("subscribers", ("subscriber_id", "api_key", "utm_source", "signed_up_at", "plan"), sorted(subs))
        self.key_sub = np.array([self.cust_sub[k["customer"]] if k["customer"] >= 0 else None for k in keys], dtype=object)
        self.truth["channels"] = {("(null)" if c is None else "(empty)" if c == "" else c): {"signup_weight": w_, "paid_rate": r_}
                                  for c, w_, r_ in CHANNELS}
        self.progress("api_keys", nk, nk)

    # --- intents and their surface forms ------------------------------------------------------------
    def _intents(self) -> None:
        rng = self.rng(3)
        sc = self.sc
        progs = self.programs
        # (kind, canonical text, program idx or -1, family idx or -1, popularity score)
        intents: list[list] = []
        pop_w = lambda pi: (self.pref_pop[pi] / 500.0) if pi is not None else 1.0  # noqa: E731
        tier_w = {"S": 10.0, "A": 4.0, "B": 2.0, "C": 1.0}
        level_w = {"national": 2.0, "prefectural": 1.5, "municipal": 1.0}
        for p in progs:
            if p.flagship is not None:
                f = V.FLAGSHIPS[p.flagship]
                # the famous ones first (ものづくり, IT導入, 再構築, 持続化 …), with some noise
                base = 1000.0 * (p.flagship + 1) ** -0.8 * (1.5 if p.tier == "S" else 1.0)
                intents.append([SHORT, f[1], p.idx, -1, base * rng.lognormal(0, 0.3)])
                intents.append([NAME, p.name, p.idx, -1, 60.0 * rng.lognormal(0, 0.5)])
            else:
                score = tier_w[p.tier] * level_w[p.level] * pop_w(p.pref) ** 0.5 * rng.lognormal(0, 0.8)
                intents.append([NAME, p.name, p.idx, -1, score])

        def ksimple(p: Program) -> str:
            k = V.KINDS[p.kind][0]
            return "助成金" if "助成" in k else "給付金" if "給付" in k else "補助金"

        # topic intents: "<prefecture> <purpose> <kind>" for prefectural programs
        seen: set[tuple] = set()
        cand = [p for p in progs if p.level == "prefectural"]
        n_topic = 0
        for j in rng.permutation(len(cand)).tolist():
            if n_topic >= sc.topic_intents:
                break
            p = cand[j]
            key = (p.pref, p.purpose)
            if key in seen:
                continue
            seen.add(key)
            text = f"{V.PREFECTURES[p.pref][1]} {V.PURPOSES[p.purpose][0]} {ksimple(p)}"
            intents.append([TOPIC, text, p.idx, -1, 6.0 * pop_w(p.pref) ** 0.7 * rng.lognormal(0, 0.8)])
            n_topic += 1
        # category intents: "<purpose> <kind> <place>" (vaguer) for municipal programs
        cand = [p for p in progs if p.level == "municipal"]
        n_cat = 0
        for j in rng.permutation(len(cand)).tolist():
            if n_cat >= sc.category_intents:
                break
            p = cand[j]
            use_city = rng.random() < 0.5
            place = p.city[0][:-1] if use_city else self._pref_short(p.pref)
            key = (place, p.purpose, "cat")
            if key in seen:
                continue
            seen.add(key)
            P = V.PURPOSES[p.purpose][0]
            text = f"{P} {ksimple(p)} {place}" if rng.random() < 0.6 else f"{place} {P} {ksimple(p)}"
            intents.append([CATEGORY, text, p.idx, -1, 4.0 * pop_w(p.pref) ** 0.5 * rng.lognormal(0, 0.8)])
            n_cat += 1

        # one intent per canonical text
        uniq: dict[str, list] = {}
        for it in intents:
            uniq.setdefault(it[1], it)
        intents = list(uniq.values())
        # rank: popularity order, hallucination families inserted at planned ranks
        scores = np.array([it[4] for it in intents])
        ranked = [intents[i] for i in np.lexsort((np.arange(len(intents)), -scores)).tolist()]
        fams = [V.HALLUCINATION_FAMILIES[i] for i in range(min(sc.hallucination_families, len(V.HALLUCINATION_FAMILIES)))]
        fam_order = rng.permutation(len(fams)).tolist()
        n_total = len(ranked) + len(fams)
        hi = max(60, n_total // 3)
        positions = np.unique(np.round(np.geomspace(20, hi, len(fams))).astype(int)).tolist()
        while len(positions) < len(fams):
            positions.append(positions[-1] + 3)
        hall_at = dict(zip(positions, fam_order))
        final: list[list] = []
        it_iter = iter(ranked)
        for r in range(n_total):
            if r in hall_at:
                fi = hall_at[r]
                final.append([HALL, fams[fi][2], -1, fi, 0.0])
            else:
                final.append(next(it_iter))
        self.families = fams
        n_int = len(final)
        ranks = np.arange(1, n_int + 1, dtype=float)
        p_int = ranks ** -ZIPF_EXPONENT
        self.int_p = p_int / p_int.sum()
        self.int_kind = np.array([it[0] for it in final], dtype=np.int64)
        self.int_text = [it[1] for it in final]
        self.int_prog = np.array([it[2] for it in final], dtype=np.int64)
        self.int_family = np.array([it[3] for it in final], dtype=np.int64)
        self.int_ids = [f"I{i + 1:06d}" for i in range(n_int)]
        # surfaces
        S = _Surfaces()
        S.reserved = {it[1] for it in final}
        self.surfaces = S
        self.planted: list[dict] = []  # foreign surfaces hitting one program
        claimed: dict[str, int] = {}
        pref_names = [p[1] for p in V.PREFECTURES]
        pref_p = self.pref_pop / self.pref_pop.sum()
        for i, it in enumerate(final):
            kind, canon, pidx, fam = it[0], it[1], it[2], it[3]
            frac = i / n_int
            if kind == HALL:
                texts = fams[fam][3]
                S.add(canon, i, CANON, 0.25)
                resolved = []
                for t in texts:
                    if "{pref}" in t:
                        for pi in rng.choice(47, size=2, replace=False, p=pref_p).tolist():
                            resolved.append(t.format(pref=pref_names[pi], fy=self.fy))
                    else:
                        resolved.append(t.format(fy=self.fy))
                for t in resolved:
                    S.add(t, i, PARA, 0.6 / len(resolved))
                S.add(tx.typo(resolved[0], rng), i, TYPO, 0.05)
                S.add(resolved[0].replace(" ", "\u3000") if " " in resolved[0] else tx.to_fullwidth(resolved[0]), i, WIDTH, 0.05)
                continue
            p = progs[pidx]
            S.add(canon, i, CANON, 0.55 if kind in (NAME, SHORT) else 0.6)
            n_para = 3 if frac < 0.1 else 2 if frac < 0.4 else 1
            n_typo = 2 if frac < 0.1 else 1 if (frac < 0.4 or rng.random() < 0.5) else 0
            if kind in (NAME, SHORT):
                for j in rng.choice(len(V.NAME_SUFFIXES), size=n_para, replace=False).tolist():
                    S.add(canon + V.NAME_SUFFIXES[j], i, PARA, 0.06)
                if kind == NAME and p.flagship is None:
                    F = self._forms(p)
                    alt = f"{F['R']} {F['P']}{F['K']}" if F["R"] else f"{F['P']}{F['K']} {F['T']}"
                    if rng.random() < 0.5:
                        S.add(alt, i, PARA, 0.05)
            else:
                words = canon.split(" ")
                paras = [" ".join(words[1:] + words[:1]), canon.replace(" ", "", 1).replace(" ", "の", 1)
                         if kind == TOPIC else " ".join(words[::-1]),
                         canon + V.TOPIC_SUFFIXES[int(rng.integers(len(V.TOPIC_SUFFIXES)))].format(fy=self.fy)]
                if kind == TOPIC:
                    paras.append(canon.replace(V.PREFECTURES[p.pref][1], self._pref_short(p.pref), 1))
                for t in paras[: n_para + 1]:
                    S.add(t, i, PARA, 0.06)
            for _ in range(n_typo):
                si = S.add(tx.typo(canon, rng), i, TYPO, 0.03)
                # half of the typos confuse the ranker: low confidence, still the right single program
                if si is not None and kind != CATEGORY and rng.random() < 0.5:
                    self.planted.append({"surface_idx": si, "program": p.idx, "intent": i, "lang": "ja",
                                         "kind": "typo"})
            if unicodedata.normalize("NFKC", canon) != canon:
                wv = unicodedata.normalize("NFKC", canon)  # a name published in raw forms, typed plainly
            elif any(c.isascii() and c.isalnum() for c in canon):
                wv = tx.to_fullwidth(canon)
            elif " " in canon:
                wv = canon.replace(" ", "\u3000")
            elif tx.has_katakana(canon):
                wv = tx.to_halfwidth_kana(canon)
            else:
                r = self._region(p)["ja"]
                wv = canon.replace(r, r + "\u3000", 1) if r and canon.startswith(r) else canon + "\u3000"
            S.add(wv, i, WIDTH, 0.04)
            # foreign forms → low-confidence single-program hits (loop E's raw material)
            if kind == CATEGORY or (kind == NAME and p.flagship is not None):
                continue
            n_foreign = 4 if frac < 0.05 else 2 if frac < 0.3 else (1 if rng.random() < 0.3 else 0)
            if n_foreign == 0:
                continue
            if kind == TOPIC:
                F = self._forms(p)
                pr = V.PREFECTURES[p.pref]
                ks = canon.rsplit(" ", 1)[1]
                kinfo = next(k for k in V.KINDS if k[0] == ks)
                forms = {EN: [f"{pr[2]} {F['P_en']} {kinfo[3]}", f"{F['P_en']} {kinfo[3]} {pr[2]}".lower()],
                         ROMAJI: [f"{tx.hepburn(self._pref_base_reading(p.pref))} {F['P_rom']} {tx.hepburn(kinfo[1])}"],
                         ZH: [f"{pr[1].translate(V.ZH_CHARS)}{F['P_zh']}{kinfo[4]}"],
                         KO: [f"{pr[5]} {F['P_ko']} {kinfo[5]}"]}
            else:
                forms = self._foreign_forms(p)
            langs = [EN, ROMAJI, ZH, KO]
            chosen = langs if n_foreign >= 4 else [langs[j] for j in sorted(rng.choice(4, size=n_foreign, replace=False).tolist())]
            for lk in chosen:
                opts = forms[lk]
                t = opts[int(rng.integers(len(opts)))]
                t = " ".join(t.split())
                if t in claimed:
                    continue
                si = S.add(t, i, lk, 0.03)
                if si is not None:
                    claimed[t] = p.idx
                    self.planted.append({"surface_idx": si, "program": p.idx, "intent": i, "lang": FOREIGN_LANG[lk],
                                         "kind": SURFACE_KIND_NAMES[lk]})
        # flat arrays, weights normalized per intent, laid out as global cumulative "intent + cum"
        s_int = np.array(S.intent, dtype=np.int64)
        s_w = np.array(S.weight, dtype=float)
        tot = np.bincount(s_int, weights=s_w, minlength=n_int)
        s_wn = s_w / tot[s_int]
        # surfaces are added intent by intent, so they are contiguous and in intent order
        assert (np.diff(s_int) >= 0).all() and len(np.unique(s_int)) == n_int
        starts = np.searchsorted(s_int, np.arange(n_int))
        cs = np.cumsum(s_wn)
        base = np.where(starts > 0, cs[np.maximum(starts - 1, 0)], 0.0)
        cum_within = cs - base[s_int]
        self.s_cum = s_int + np.minimum(cum_within, 1.0)
        self.s_cum[np.r_[starts[1:] - 1, len(s_int) - 1]] = np.arange(1, n_int + 1)  # exact upper edges
        self.s_int = s_int
        self.s_kind = np.array(S.kind, dtype=np.int64)
        self.s_text = np.array(S.texts, dtype=object)
        self.s_weight = s_wn
        self.int_canon_surface = starts
        self.progress("intents", n_int, n_int)

    # --- query_log ----------------------------------------------------------------------------------
    def _query_log(self) -> None:
        rng = self.rng(4)
        sc = self.sc
        n_int = len(self.int_p)
        nk = len(self.keys)
        r_target = sc.days * sc.queries_per_day
        # sessions: a key, a start time, a handful of queries minutes apart
        lengths = np.minimum(rng.geometric(0.4, int(r_target / 2.5 * 1.2) + 100), 30)
        cs = np.cumsum(lengths)
        n_sess = int(np.searchsorted(cs, r_target)) + 1
        lengths = lengths[:n_sess].copy()
        lengths[-1] -= int(cs[n_sess - 1] - r_target)
        day_start = self.t_start + np.arange(sc.days, dtype=np.int64) * DAY
        weekday = ((day_start + 9 * 3600) // DAY + 3) % 7  # Mon = 0
        wd = np.where(weekday == 5, 0.55, np.where(weekday == 6, 0.45, 1.0)) * rng.lognormal(0, 0.08, sc.days)
        sess_day = rng.choice(sc.days, size=n_sess, p=wd / wd.sum())
        sess_hour = rng.choice(24, size=n_sess, p=DIURNAL)
        start = day_start[sess_day] + sess_hour * 3600 + rng.integers(0, 3600, n_sess)
        sess_key = rng.choice(nk, size=n_sess, p=self.key_weight)
        succ = self.key_successor[sess_key]
        moved = (start >= self.key_revoked[sess_key]) & (succ >= 0)
        sess_key[moved] = succ[moved]
        bad = (start < self.key_created[sess_key]) | (start >= self.key_revoked[sess_key])
        stable = np.flatnonzero((self.key_created < self.t_start) & (self.key_revoked > self.t_end))
        ws = self.key_weight[stable]
        sess_key[bad] = stable[rng.choice(len(stable), size=int(bad.sum()), p=ws / ws.sum())]
        sess_str = np.array(["s_" + h for h in _hex(rng, n_sess, 16)], dtype=object)
        self.progress("query_log", 0, r_target)

        n = int(lengths.sum())
        row_sess = np.repeat(np.arange(n_sess), lengths)
        first = np.r_[0, np.cumsum(lengths)[:-1]]
        pos = np.arange(n) - first[row_sess]
        gaps = rng.exponential(40.0, n) + 2.0
        gaps[first] = 0.0
        cg = np.cumsum(gaps)
        ts = start[row_sess] + (cg - cg[first][row_sess]).astype(np.int64)

        # what is searched: Zipf over intents, refinements within a session, then a surface form
        intent = rng.choice(n_int, size=n, p=self.int_p)
        sticky = np.flatnonzero((pos > 0) & (rng.random(n) < 0.35))
        intent[sticky] = intent[sticky - 1]
        surf = np.searchsorted(self.s_cum, intent + rng.random(n), side="right")
        last_surface = np.r_[self.int_canon_surface[1:], len(self.s_int)] - 1
        surf = np.minimum(surf, last_surface[intent])

        # loyal customers: a fixed favourites list
        row_key = sess_key[row_sess]
        head = [i for i in range(min(n_int, 400)) if self.int_kind[i] != HALL]
        head_w = 1.0 / (np.arange(len(head)) + 5.0)
        self.loyal_truth = []
        for c, k in zip(self.loyal_cust, self.loyal_keys):
            n_fav = int(rng.integers(8, 21))
            fav_int = [head[j] for j in rng.choice(len(head), size=n_fav, replace=False, p=head_w / head_w.sum()).tolist()]
            fav = []
            for i in fav_int:
                lo, hi = self.int_canon_surface[i], last_surface[i]
                cands = [s_ for s_ in range(lo, hi + 1) if self.s_kind[s_] in (PARA, WIDTH)]
                fav.append(cands[int(rng.integers(len(cands)))] if cands and rng.random() < 0.2 else lo)
            fav = np.array(fav)
            fw = (np.arange(n_fav) + 1.0) ** -0.7
            rows_k = np.flatnonzero(row_key == k)
            use = rows_k[rng.random(len(rows_k)) < 0.85]
            surf[use] = fav[rng.choice(n_fav, size=len(use), p=fw / fw.sum())]
            self.loyal_truth.append({"customer_id": self.cust_ids[c], "api_key": self.keys[k]["key"],
                                     "favourites": [self.s_text[s_] for s_ in fav.tolist()], "favourite_share": 0.85})
        intent = self.s_int[surf]

        # the service's answer
        skind = self.s_kind[surf]
        ikind = self.int_kind[intent]
        top1 = self.int_prog[intent].copy()
        u = rng.random(n)
        lo = np.full(n, 0.62)
        hi = np.full(n, 0.90)
        rc = 1 + rng.poisson(1.2, n)
        named = (ikind == NAME) | (ikind == SHORT)
        canon = skind == CANON
        lo[named & canon], hi[named & canon] = 0.85, 0.99
        lo[named & (skind == WIDTH)], hi[named & (skind == WIDTH)] = 0.82, 0.97
        topic = ikind == TOPIC
        cat = ikind == CATEGORY
        m = topic & ((skind == CANON) | (skind == WIDTH))
        lo[m], hi[m] = 0.60, 0.88
        m = cat & ((skind == CANON) | (skind == WIDTH))
        lo[m], hi[m] = 0.55, 0.85
        rc[topic] = 3 + rng.poisson(12, int(topic.sum()))
        rc[cat] = 5 + rng.poisson(20, int(cat.sum()))
        typo = skind == TYPO
        lo[typo], hi[typo] = 0.50, 0.80
        rc[typo] = 1 + rng.poisson(3, int(typo.sum()))
        single = np.zeros(len(self.s_int), dtype=bool)
        single[[d["surface_idx"] for d in self.planted]] = True
        low = single[surf]
        lo[low], hi[low] = 0.20, 0.49
        rc[low] = np.where(rng.random(int(low.sum())) < 0.85, 1, 2)
        conf = lo + (hi - lo) * u
        # wrong top-1 noise
        wrong = (ikind != HALL) & ~low & (rng.random(n) < 0.015)
        top1[wrong] = rng.integers(0, len(self.programs), int(wrong.sum()))
        conf[wrong] = rng.uniform(0.3, 0.8, int(wrong.sum()))
        # hallucination-prone asks: nothing found, or a low-confidence decoy among several results
        self.decoys = rng.integers(0, len(self.programs), size=(max(1, len(self.families)), 3))
        hall = np.flatnonzero(ikind == HALL)
        zero = rng.random(len(hall)) < 0.6
        hz, hd = hall[zero], hall[~zero]
        rc[hz], top1[hz], conf[hz] = 0, -1, 0.0
        fam = self.int_family[intent[hd]]
        top1[hd] = self.decoys[fam, rng.integers(0, 3, len(hd))]
        rc[hd] = rng.integers(2, 13, len(hd))
        conf[hd] = rng.uniform(0.08, 0.45, len(hd))
        latency = rng.lognormal(np.log(28.0), 0.45, n) * np.where(rc == 0, 0.6, 1.0) * np.where(topic | cat, 1.3, 1.0)
        slow = rng.random(n) < 0.005
        latency[slow] *= rng.uniform(5, 20, int(slow.sum()))

        keep = ts < self.t_end
        order = np.flatnonzero(keep)[np.argsort(ts[keep], kind="stable")]
        self.q_ts = ts[order]
        self.q_key = row_key[order]
        self.q_sess = row_sess[order]
        self.q_surf = surf[order]
        self.q_intent = intent[order]
        self.q_top1 = top1[order]
        self.q_conf = np.round(conf[order], 4)
        self.q_rc = rc[order]
        latency = np.round(latency[order], 1)
        self.sess_str = sess_str
        total = len(order)
        pid_arr = np.array([p.pid for p in self.programs] + [None], dtype=object)
        top1_idx = np.where(self.q_top1 < 0, len(self.programs), self.q_top1)
        chunk = 100_000
        for a in range(0, total, chunk):
            b = min(total, a + chunk)
            rows = zip(range(a + 1, b + 1), iso_list(self.q_ts[a:b]), self.key_str[self.q_key[a:b]].tolist(),
                       sess_str[self.q_sess[a:b]].tolist(), self.s_text[self.q_surf[a:b]].tolist(),
                       pid_arr[top1_idx[a:b]].tolist(), self.q_conf[a:b].tolist(), self.q_rc[a:b].tolist(),
                       latency[a:b].tolist(), self.key_tier[self.q_key[a:b]].tolist())
            self._insert("query_log", ("id", "ts", "api_key", "session_id", "query_text", "top1_program_id",
                                       "confidence", "result_count", "latency_ms", "tier"), rows)
            self.progress("query_log", b, total)

    # --- billing ---------------------------------------------------------------------------------------
    def _billing(self) -> None:
        rng = self.rng(5)
        days = self.sc.days
        nk = len(self.keys)
        paid = self.key_paid[self.q_key]
        k = self.q_key[paid]
        d = (self.q_ts[paid] - self.t_start) // DAY
        cnt = np.bincount(k * days + d, minlength=nk * days)
        nz = np.flatnonzero(cnt)
        # aggregated per JST day, booked at 23:55 JST; ordered by time, then key
        nz = nz[np.lexsort((nz // days, nz % days))]
        kk, dd, nn = nz // days, nz % days, cnt[nz]
        ts = self.t_start + dd * DAY + 23 * 3600 + 55 * 60
        events = [(int(t), self.key_sub[a], self.key_str[a], "charge", 3 * int(c)) for t, a, c in zip(ts.tolist(), kk.tolist(), nn.tolist())]
        refund = np.flatnonzero(rng.random(len(nz)) < 0.015)
        r_ts = ts[refund] + rng.integers(1, 10, len(refund)) * DAY + rng.integers(-6 * 3600, 0, len(refund))
        for j, t in zip(refund.tolist(), r_ts.tolist()):
            if t < self.t_end:
                events.append((int(t), self.key_sub[kk[j]], self.key_str[kk[j]], "refund", 3 * int(rng.integers(1, nn[j] + 1))))
        events.sort(key=lambda e: (e[0], e[2], e[3]))
        iso_ts = iso_list(np.array([e[0] for e in events], dtype=np.int64))
        self._insert("billing_events", ("id", "ts", "subscriber_id", "api_key", "event_type", "amount_jpy"),
                     [(i + 1, t, e[1], e[2], e[3], e[4]) for i, (t, e) in enumerate(zip(iso_ts, events))])
        self.progress("billing_events", len(events), len(events))

    # --- customer_feedback ----------------------------------------------------------------------------
    def _feedback(self) -> None:
        rng = self.rng(6)
        sc = self.sc
        n_fb = int(round(sc.feedback_per_day * sc.days))
        n_hall = int(n_fb * 0.45)
        n_wrong = int(n_fb * 0.2)
        n_pos = n_fb - n_hall - n_wrong
        ik = self.int_kind[self.q_intent]
        fb: list[tuple] = []  # ts, key idx, session idx | -1, surface | -1, program | -1, wrong, comment, family, reason
        hall_rows = np.flatnonzero((ik == HALL) & (self.q_rc > 0))
        if len(hall_rows) == 0:
            hall_rows = np.flatnonzero(ik == HALL)
        for r in rng.choice(hall_rows, size=min(n_hall, len(hall_rows)), replace=False).tolist():
            fam = int(self.int_family[self.q_intent[r]])
            t = V.HALLUCINATION_COMPLAINTS[int(rng.integers(len(V.HALLUCINATION_COMPLAINTS)))]
            fb.append((r, 1, t.format(label=self.families[fam][1]), fam, "hallucination", False))
        real = ik != HALL
        misled = np.flatnonzero(real & (self.q_top1 >= 0) & (self.q_top1 != self.int_prog[self.q_intent]))
        others = np.flatnonzero(real & (self.q_top1 >= 0))
        n_region = min(len(misled), n_wrong // 3)
        for r in rng.choice(misled, size=n_region, replace=False).tolist():
            fb.append((r, 1, None, -1, "region", rng.random() < 0.1))
        non_region = [c for c in V.WRONG_ANSWER_COMMENTS if c[0] != "region"]
        for r in rng.choice(others, size=n_wrong - n_region, replace=False).tolist():
            reason, _ = non_region[int(rng.integers(len(non_region)))]
            fb.append((r, 1, None, -1, reason, rng.random() < 0.1))
        good = np.flatnonzero(real & (self.q_conf >= 0.85))
        for r in rng.choice(good, size=min(n_pos, len(good)), replace=False).tolist():
            fb.append((r, 0, V.POSITIVE_COMMENTS[int(rng.integers(len(V.POSITIVE_COMMENTS)))], -1, "positive", False))
        rows = []
        for r, wrong, comment, fam, reason, webform in fb:
            if reason not in ("hallucination", "positive"):
                opts = [c for c in V.WRONG_ANSWER_COMMENTS if c[0] == reason]
                comment = opts[int(rng.integers(len(opts)))][1]
                pref = self.programs[int(self.int_prog[self.q_intent[r]])].pref
                comment = comment.format(fy_prev=self.fy - 1 - int(rng.integers(0, 2)),
                                         pref=V.PREFECTURES[pref][1] if pref is not None else "東京都")
            t = min(int(self.q_ts[r]) + int(rng.integers(20, 1800)), self.t_end - 1)
            top1 = int(self.q_top1[r])
            rows.append((t, self.key_str[self.q_key[r]], None if webform else self.sess_str[self.q_sess[r]],
                         None if webform else self.s_text[self.q_surf[r]],
                         self.programs[top1].pid if top1 >= 0 else None, wrong, comment, fam, reason))
        rows.sort(key=lambda x: (x[0], x[1], x[4] or "", x[6] or ""))
        labels = {}
        fam_ids: dict[int, list[int]] = {}
        out = []
        for i, r in enumerate(rows, start=1):
            out.append((i, iso(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]))
            labels[str(i)] = {"family": self.families[r[7]][0] if r[7] >= 0 else None, "reason": r[8]}
            if r[7] >= 0:
                fam_ids.setdefault(r[7], []).append(i)
        self._insert("customer_feedback", ("id", "ts", "api_key", "session_id", "query_text", "program_id",
                                           "wrong_answer", "comment"), out)
        self.truth["feedback_labels"] = labels
        self.fam_feedback = fam_ids
        self.progress("customer_feedback", len(out), len(out))

    # --- hallucination_guard (launch) -------------------------------------------------------------------
    def _guard(self) -> None:
        rng = self.rng(7)
        k = len(self.families)
        covered = sorted(rng.choice(k, size=round(0.4 * k), replace=False).tolist()) if k else []
        patterns: dict[str, tuple[str, int]] = {}
        for fi in covered:
            _fid, label, guard, texts = self.families[fi]
            patterns[guard] = (f"存在しない制度: {label}", fi)
            extra = [t for t in texts if "{pref}" not in t]
            if len(extra) > 1 and rng.random() < 0.5:
                patterns.setdefault(extra[1].format(fy=self.fy), (f"存在しない制度: {label}", fi))
        pref_names = [p[1] for p in V.PREFECTURES]
        others: list[tuple[str, str]] = []
        for c in V.GUARD_CONCEPTS:
            for t in V.GUARD_TEMPLATES:
                if "{pref}" in t:
                    for pi in rng.choice(47, size=3, replace=False).tolist():
                        others.append((t.format(c=c, pref=pref_names[pi], fy=self.fy), c))
                else:
                    others.append((t.format(c=c, fy=self.fy), c))
        for j in rng.permutation(len(others)).tolist():
            if len(patterns) >= self.sc.guard_patterns:
                break
            pat, c = others[j]
            patterns.setdefault(pat, (f"対象外: {c}", -1))
        items = list(patterns.items())
        order = rng.permutation(len(items)).tolist()
        launch = self.t_start - 120 * DAY + 2 * 3600
        rows = [(i + 1, items[j][0], items[j][1][0], iso(launch + i * 7), "launch") for i, j in enumerate(order)]
        self._insert("hallucination_guard", ("id", "pattern", "label", "created_at", "source"), rows)
        self.guard_covered = {fi: [p for p, (_lab, f) in items if f == fi] for fi in covered}
        self.progress("hallucination_guard", len(rows), len(rows))

    # --- customer_success_events -----------------------------------------------------------------------
    def _success_events(self) -> None:
        rng = self.rng(8)
        sc = self.sc
        progs = self.programs
        pref_p = self.pref_pop / self.pref_pop.sum()
        stable = np.flatnonzero((self.key_created < self.t_start) & (self.key_revoked > self.t_end)
                                & (self.key_tier != "internal"))
        kw = np.where(self.key_paid[stable], 3.0, 1.0)
        kw = kw / kw.sum()
        cands = [p for p in progs if p.tier in ("S", "A")]
        hot: list[tuple[int, int]] = []
        for j in rng.choice(len(cands), size=min(sc.success_hot_groups, len(cands)), replace=False).tolist():
            p = cands[j]
            pref = p.pref if p.pref is not None else int(rng.choice(47, p=pref_p))
            if (p.idx, pref) not in hot:
                hot.append((p.idx, pref))
        ev: list[tuple[int, int, int, int]] = []  # ts, program, pref, consent
        # calendar months (JST) overlapping the window
        d0 = dt.datetime.fromtimestamp(self.t_start, JST).date().replace(day=1)
        while True:
            nxt = (d0.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
            m_start = int(dt.datetime(d0.year, d0.month, 1, tzinfo=JST).timestamp())
            m_end = int(dt.datetime(nxt.year, nxt.month, 1, tzinfo=JST).timestamp())
            a, b = max(m_start, self.t_start), min(m_end, self.t_end)
            if a >= self.t_end:
                break
            cover = (b - a) / (m_end - m_start)
            for pidx, pref in hot:
                n_c = (3 + int(rng.poisson(2))) if rng.random() < 0.75 else int(rng.integers(0, 3))
                n_c = int(round(n_c * cover))
                n_nc = int(rng.poisson(1.5 * cover))
                for consent in [1] * n_c + [0] * n_nc:
                    ev.append((int(rng.integers(a, b)), pidx, pref, consent))
            d0 = nxt
        tw = np.array([{"S": 6.0, "A": 3.0, "B": 1.0, "C": 0.5}[p.tier] for p in progs])
        n_tail = int(rng.poisson(sc.success_per_day * sc.days))
        for pidx in rng.choice(len(progs), size=n_tail, p=tw / tw.sum()).tolist():
            p = progs[pidx]
            pref = p.pref if p.pref is not None else int(rng.choice(47, p=pref_p))
            ev.append((int(rng.integers(self.t_start, self.t_end)), pidx, pref, int(rng.random() < 0.55)))
        ev.sort()
        rows = []
        for i, (t, pidx, pref, consent) in enumerate(ev, start=1):
            p = progs[pidx]
            outcome = str(rng.choice(["adopted", "applied", "not_adopted"], p=[0.5, 0.3, 0.2]))
            amount = None
            if outcome == "adopted":
                cap = p.amount or 3_000_000
                amount = int(round(cap * rng.uniform(0.2, 1.0), -3))
            rating = int({"adopted": rng.choice([4, 5], p=[0.4, 0.6]), "applied": rng.choice([3, 4, 5]),
                          "not_adopted": rng.choice([1, 2, 3])}[outcome])
            short = V.FLAGSHIPS[p.flagship][1] if p.flagship is not None else "この補助金"
            comments = V.SUCCESS_COMMENTS[outcome]
            comment = comments[int(rng.integers(len(comments)))].format(short=short) if rng.random() < 0.9 else None
            key = self.key_str[stable[int(rng.choice(len(stable), p=kw))]]
            rows.append((i, iso(t), key, p.pid, V.PREFECTURES[pref][0], outcome, amount, rating, comment, consent))
        self._insert("customer_success_events", ("id", "ts", "api_key", "program_id", "prefecture_code", "outcome",
                                                 "amount_jpy", "rating", "comment", "consent_flag"), rows)
        if rows:
            df = pd.DataFrame({"month": [dt.datetime.fromtimestamp(e[0], JST).strftime("%Y-%m") for e in ev],
                               "program_id": [r[3] for r in rows], "prefecture_code": [r[4] for r in rows],
                               "consent": [r[9] for r in rows]})
            g = df.groupby(["month", "program_id", "prefecture_code"], sort=True).agg(
                consented=("consent", "sum"), total=("consent", "size")).reset_index()
            self.truth["success_groups"] = [
                {"month": m, "program_id": pid, "prefecture_code": pc, "consented": int(c), "total": int(t)}
                for m, pid, pc, c, t in g.itertuples(index=False)]
        else:
            self.truth["success_groups"] = []
        self.progress("customer_success_events", len(rows), len(rows))

    # --- am_application_round + forecast_predictions ---------------------------------------------------
    def _rounds(self) -> None:
        rng = self.rng(9)
        target = self.sc.rounds
        progs = self.programs
        w = np.array([(20.0 if p.flagship is not None else {"national": 3.0, "prefectural": 1.5, "municipal": 0.5}[p.level])
                      * {"S": 4.0, "A": 2.0, "B": 1.0, "C": 0.5}[p.tier] for p in progs])
        n_rp = min(len(progs), max(1, round(target / 3.8)))
        chosen = sorted(rng.choice(len(progs), size=n_rp, replace=False, p=w / w.sum()).tolist(),
                        key=lambda i: progs[i].pid)
        cw = np.array([{"S": 3.0, "A": 2.0, "B": 1.0, "C": 0.7}[progs[i].tier] for i in chosen])
        counts = 1 + rng.multinomial(target - n_rp, cw / cw.sum())
        bias = rng.normal(FORECAST_POOLED_MEAN, FORECAST_POOLED_SD, n_rp)
        model_start = self.t_end - 900 * DAY
        v2_start = self.t_end - 300 * DAY

        def at_jst(sec: float, hour: int) -> int:
            return jst_midnight(int(sec)) + hour * 3600

        rounds, preds = [], []
        observed: dict[str, list[float]] = {}
        for j, pidx in enumerate(chosen):
            p = progs[pidx]
            c = int(counts[j])
            interval = rng.uniform(90, 240)
            m_future = min(int(rng.integers(0, 3)), c - 1)
            k_past = c - m_future
            anchor = self.t_end - rng.uniform(0.05, 1.0) * interval * DAY
            opens = [anchor - (k_past - 1 - i) * interval * DAY + rng.normal(0, 8) * DAY for i in range(k_past)]
            fut = self.t_end + rng.uniform(0.1, 1.0) * interval * DAY
            opens += [fut + i * interval * DAY for i in range(m_future)]
            for no, o in enumerate(opens, start=1):
                o = at_jst(o, 10)
                close = at_jst(o + rng.uniform(21, 75) * DAY, 17)
                resolved_at = at_jst(close + rng.uniform(1, 5) * DAY, 12)
                if resolved_at <= self.t_end:
                    status, res = "resolved", resolved_at
                elif o <= self.t_end:
                    status, res = "open", None
                else:
                    status, res = "scheduled", None
                rid = f"R{p.pid[1:]}-{no:02d}"
                rounds.append((rid, p.pid, no, iso(o), iso(close), status, iso(res) if res else None))
                for _ in range(int(rng.integers(1, 4))):
                    pat = o - rng.uniform(20, 150) * DAY
                    if pat < model_start or pat >= self.t_end:
                        continue
                    pat = at_jst(pat, 6) + int(rng.integers(0, 3600))
                    err = int(round(bias[j] + rng.normal(0, FORECAST_NOISE_SD)))
                    preds.append((pat, p.pid, rid, o + err * DAY, "forecast-v2" if pat >= v2_start else "forecast-v1"))
                    if status == "resolved":
                        observed.setdefault(p.pid, []).append(err)
        assert len(rounds) == target
        self._insert("am_application_round", ("round_id", "program_id", "round_no", "opens_at", "closes_at", "status",
                                              "resolved_at"), rounds)
        preds.sort()
        self._insert("forecast_predictions", ("prediction_id", "program_id", "round_id", "predicted_at",
                                              "predicted_opens_at", "model_version"),
                     [(f"FP{i:07d}", pid, rid, iso(pat), iso(po), mv) for i, (pat, pid, rid, po, mv) in enumerate(preds, 1)])
        self.truth["forecast_bias_days"] = {progs[pidx].pid: round(float(b), 4) for pidx, b in zip(chosen, bias.tolist())}
        self.truth["pooled_bias_mean"] = FORECAST_POOLED_MEAN
        self.truth["pooled_bias_sd"] = FORECAST_POOLED_SD
        self.truth["forecast_noise_sd_days"] = FORECAST_NOISE_SD
        self.truth["forecast_observed"] = {pid: {"n": len(v), "mean_error_days": round(float(np.mean(v)), 4)}
                                           for pid, v in sorted(observed.items())}
        self.progress("am_application_round", len(rounds), len(rounds))

    # --- am_alias ---------------------------------------------------------------------------------------
    def _aliases(self) -> None:
        rng = self.rng(10)
        target = self.sc.aliases
        progs = self.programs
        absent: set[str] = set()
        forced: dict[tuple[int, str], str] = {}
        for d in self.planted:
            d["in_am_alias"] = bool(rng.random() < 0.5)
            surface = self.s_text[d["surface_idx"]]
            if d["in_am_alias"]:
                forced[(d["program"], surface)] = d["lang"]
            else:
                absent.add(surface)
        pool_p: list[int] = []
        pool_s: list[str] = []
        pool_l: list[str] = []
        for p in progs:
            for s, lang in self._alias_pool(p):
                if s in absent or (p.idx, s) in forced:
                    continue
                pool_p.append(p.idx)
                pool_s.append(s)
                pool_l.append(lang)
        needed = target - len(forced)
        if needed > len(pool_s) or needed < 0:
            raise RuntimeError(f"alias pool too small: need {needed}, have {len(pool_s)}")
        pp = np.array(pool_p)
        bonus = np.array([{"S": 1.0, "A": 0.4, "B": 0.1, "C": 0.0}[p.tier] + (2.0 if p.flagship is not None else 0.0)
                          for p in progs])[pp]
        bonus = bonus + np.array([0.2 if lang in ("ja", "ja-Kana") else 0.0 for lang in pool_l])
        prio = rng.random(len(pool_s)) + bonus
        take = np.sort(np.argsort(-prio, kind="stable")[:needed])
        entries = [(progs[pool_p[i]].pid, pool_s[i], pool_l[i], False) for i in take.tolist()]
        entries += [(progs[pi].pid, s, lang, True) for (pi, s), lang in forced.items()]
        entries.sort(key=lambda e: (e[0], e[1]))
        launch = self.t_start - 150 * DAY
        created = np.where(rng.random(len(entries)) < 0.85, launch + rng.integers(0, 6 * 3600, len(entries)),
                           rng.integers(launch, self.t_end, len(entries)))
        src_of = {"ja": "editorial", "ja-Kana": "auto:kana", "ja-Latn": "auto:romaji", "en": "mt:en", "zh": "mt:zh", "ko": "mt:ko"}
        rows = []
        for i, ((pid, s, lang, is_forced), c) in enumerate(zip(entries, iso_list(created)), start=1):
            src = "editorial" if is_forced else ("import:launch" if c.startswith(iso(launch)[:10]) else src_of[lang])
            rows.append((i, pid, s, lang, src, c))
        self._insert("am_alias", ("alias_id", "entity_id", "surface", "lang", "source", "created_at"), rows)
        self.progress("am_alias", len(rows), len(rows))

    # --- error_log --------------------------------------------------------------------------------------
    def _errors(self) -> None:
        rng = self.rng(11)
        sc = self.sc
        modes = tb.FAILURE_MODES
        n = int(round(sc.errors_per_day * sc.days))
        span = self.t_end - self.t_start
        versions = [self.t_start - 30 * DAY, self.t_start + int(0.4 * span), self.t_start + int(0.75 * span)]
        ts = (self.t_start + rng.integers(0, sc.days, n) * DAY + rng.choice(24, size=n, p=DIURNAL) * 3600
              + rng.integers(0, 3600, n))
        ver = np.searchsorted(np.array(versions[1:]), ts, side="right")
        w = np.array([m.weight for m in modes])
        mode = np.empty(n, dtype=np.int64)
        for v in range(3):
            avail = np.array([m.first_version <= v for m in modes])
            wv = w * avail
            idx = np.flatnonzero(ver == v)
            mode[idx] = rng.choice(len(modes), size=len(idx), p=wv / wv.sum())
        # incidents: bursts of one mode within two hours of one day
        extra_ts, extra_mode = [], []
        for mi, m in enumerate(modes):
            if m.burst:
                day = int(rng.integers(0, sc.days))
                k = max(5, int(0.25 * n * m.weight / w.sum()))
                extra_ts.append(self.t_start + day * DAY + 10 * 3600 + rng.integers(0, 7200, k))
                extra_mode.append(np.full(k, mi))
        if extra_ts:
            ts = np.concatenate([ts] + extra_ts)
            mode = np.concatenate([mode] + extra_mode)
        order = np.lexsort((mode, ts))
        ts, mode = ts[order], mode[order]
        ver = np.searchsorted(np.array(versions[1:]), ts, side="right")
        rows = []
        error_modes, malformed, error_formats = {}, {}, {}
        format_rng = self.rng(1101)
        req = _hex(rng, len(ts), 20)
        for i, (t, mi, v) in enumerate(zip(ts.tolist(), mode.tolist(), ver.tolist()), start=1):
            m = modes[mi]
            endpoint = m.endpoints[int(rng.integers(len(m.endpoints)))]
            request_id = None if endpoint.startswith("job:") else "req_" + req[i - 1]
            text, etype, msg = tb.render(m, v, rng, request_id)
            u = rng.random()
            if u < 0.03:
                lines = text.rstrip("\n").split("\n")
                cut = int(rng.integers(2, max(3, len(lines) - 1)))
                text = "\n".join(lines[:cut]) + ("\n...[truncated]" if rng.random() < 0.5 else "")
                if rng.random() < 0.5:
                    etype, msg = None, None
                malformed[str(i)] = "truncated"
            elif u < 0.04:
                text = text.split("\n", 1)[1]
                malformed[str(i)] = "headless"
            # a separate stream, so adding formats left every other column of the world as it was
            log_format = "plain" if str(i) in malformed else tb.log_format_for(m, float(format_rng.random()))
            text = tb.ship(text, log_format, etype or m.exception_type, iso(t))
            error_formats[str(i)] = log_format
            rows.append((i, iso(t), endpoint, etype, msg, text, request_id))
            error_modes[str(i)] = m.name
        self._insert("error_log", ("id", "ts", "endpoint", "exception_type", "message", "traceback", "request_id"), rows)
        self.truth["failure_modes"] = {m.name: tb.describe(m) for m in modes}
        self.truth["error_modes"] = error_modes
        self.truth["error_malformed"] = malformed
        self.truth["error_formats"] = error_formats
        self.truth["deploy_versions"] = [iso(v) for v in versions]
        self.progress("error_log", len(rows), len(rows))

    # --- source_change_signals ----------------------------------------------------------------------------
    def _source_signals(self) -> None:
        rng = self.rng(12)
        progs = self.programs
        n = len(progs)
        nights = min(self.sc.scan_days, self.sc.days)
        scan_start = self.t_end - nights * DAY
        fetched = np.array([p.fetched for p in progs], dtype=np.int64)
        offset = rng.integers(0, 7, n)
        changed = rng.random(n) < 0.08
        lo = np.maximum(fetched + 3600, scan_start - 14 * DAY)
        changed &= lo < self.t_end - DAY
        change_at = (lo + rng.random(n) * np.maximum(self.t_end - DAY - lo, 0)).astype(np.int64)
        gone = ~changed & (rng.random(n) < 0.015)
        gone_at = (scan_start + rng.random(n) * (self.t_end - DAY - scan_start)).astype(np.int64)
        noisy = ~changed & ~gone & (rng.random(n) < 0.03)
        prev_mod = fetched - rng.integers(1, 90, n) * DAY
        obs_all, prog_all = [], []
        for j in range(nights):
            idx = np.flatnonzero((j + offset) % 7 == 0)
            night = scan_start + j * DAY + 2 * 3600
            obs_all.append(night + rng.integers(0, 3 * 3600, len(idx)))
            prog_all.append(idx)
        obs = np.concatenate(obs_all)
        pi = np.concatenate(prog_all)
        status = np.full(len(obs), 304)
        lm = prev_mod[pi].copy()
        g = gone[pi] & (obs >= gone_at[pi])
        c = changed[pi] & (obs >= change_at[pi])
        status[noisy[pi]] = 200
        status[c] = 200
        lm[c] = change_at[pi][c]
        transient = ~g & (rng.random(len(obs)) < 0.005)
        status[g] = 404
        status[transient] = 503
        has_lm = ~(g | transient)
        order = np.lexsort((pi, obs))
        urls = [p.url for p in progs]
        pids = [p.pid for p in progs]
        obs_iso = iso_list(obs[order])
        lm_iso = iso_list(lm[order])
        rows = [(o, urls[k], pids[k], int(s), m if h else None)
                for o, k, s, m, h in zip(obs_iso, pi[order].tolist(), status[order].tolist(), lm_iso, has_lm[order].tolist())]
        # agency index pages (not tied to a program), scanned every night
        index_urls = sorted({f"https://www.example.go.jp/{slug}/index.html" for _, _, _, _, _, _, _, _, slug, *_ in V.FLAGSHIPS})
        for j in range(nights):
            night = scan_start + j * DAY + 2 * 3600
            for u in index_urls:
                t = night + int(rng.integers(0, 3 * 3600))
                st = 200 if rng.random() < 0.3 else 304
                rows.append((iso(t), u, None, st, iso(jst_midnight(t) - int(rng.integers(0, 5)) * DAY)))
        rows.sort(key=lambda r: (r[0], r[1]))
        self._insert("source_change_signals", ("id", "observed_at", "source_url", "program_id", "http_status", "last_modified"),
                     [(i, *r) for i, r in enumerate(rows, start=1)])
        self.truth["changed_sources"] = {pids[k]: iso(change_at[k]) for k in np.flatnonzero(changed).tolist()}
        self.truth["gone_sources"] = {pids[k]: iso(gone_at[k]) for k in np.flatnonzero(gone).tolist()}
        self.truth["noisy_sources"] = [pids[k] for k in np.flatnonzero(noisy).tolist()]
        self.progress("source_change_signals", len(rows), len(rows))

    # --- planted truth --------------------------------------------------------------------------------
    def truth_doc(self) -> dict:
        n_int = len(self.int_p)
        n_surf = len(self.s_int)
        surf_n = np.bincount(self.q_surf, minlength=n_surf)
        last14 = self.q_ts >= self.t_end - 14 * DAY
        surf_n14 = np.bincount(self.q_surf[last14], minlength=n_surf)
        progs = self.programs
        t: dict = {
            "version": TRUTH_VERSION, "scale": self.sc.name, "seed": self.seed, "as_of": self.as_of.isoformat(),
            "window_start": iso(self.t_start), "window_end": iso(self.t_end), "days": self.sc.days,
            "zipf_exponent": ZIPF_EXPONENT, "row_counts": dict(self.counts),
        }
        t["intents"] = [
            {"id": self.int_ids[i], "kind": INTENT_KIND_NAMES[self.int_kind[i]], "text": self.int_text[i],
             "program_id": progs[self.int_prog[i]].pid if self.int_prog[i] >= 0 else None,
             "family": self.families[self.int_family[i]][0] if self.int_family[i] >= 0 else None,
             "p": float(self.int_p[i]), "rank": i + 1}
            for i in range(n_int)]
        groups: dict[str, list] = {}
        for s_ in range(n_surf):
            groups.setdefault(self.int_ids[self.s_int[s_]], []).append(
                {"text": self.s_text[s_], "kind": SURFACE_KIND_NAMES[self.s_kind[s_]], "n": int(surf_n[s_])})
        t["paraphrase_groups"] = groups
        fam_int = {int(self.int_family[i]): i for i in range(n_int) if self.int_kind[i] == HALL}
        fam_rows = np.bincount(self.int_family[self.q_intent][self.int_kind[self.q_intent] == HALL],
                               minlength=max(1, len(self.families)))
        t["hallucination_families"] = [
            {"id": fid, "label": label, "guard_pattern": guard,
             "texts": [g["text"] for g in groups[self.int_ids[fam_int[fi]]]],
             "intent_id": self.int_ids[fam_int[fi]], "covered_by_guard": fi in self.guard_covered,
             "guard_patterns": self.guard_covered.get(fi, []),
             "decoy_program_ids": [progs[int(d)].pid for d in self.decoys[fi]],
             "rows": int(fam_rows[fi]), "feedback_ids": self.fam_feedback.get(fi, [])}
            for fi, (fid, label, guard, _texts) in enumerate(self.families)]
        t["planted_aliases"] = [
            {"program_id": progs[d["program"]].pid, "surface": self.s_text[d["surface_idx"]], "lang": d["lang"],
             "kind": d["kind"], "in_am_alias": d["in_am_alias"], "intent_id": self.int_ids[d["intent"]],
             "rows": int(surf_n[d["surface_idx"]]), "rows_last_14d": int(surf_n14[d["surface_idx"]])}
            for d in self.planted]
        # loop J's rule on the last 30 days
        last30 = (self.q_ts >= self.t_end - 30 * DAY) & (self.q_conf >= 0.85) & (self.q_top1 >= 0)
        norm_of_surface = {}
        norm_ids = np.empty(n_surf, dtype=np.int64)
        norm_texts: list[str] = []
        for s_ in range(n_surf):
            k = tx.normalize(self.s_text[s_])
            if k not in norm_of_surface:
                norm_of_surface[k] = len(norm_texts)
                norm_texts.append(k)
            norm_ids[s_] = norm_of_surface[k]
        df = pd.DataFrame({"q": norm_ids[self.q_surf[last30]], "top1": self.q_top1[last30], "s": self.q_sess[last30]})
        g = df.groupby(["q", "top1"], sort=True)["s"].nunique().reset_index()
        g = g[g["s"] >= 5].sort_values(["s", "q", "top1"], ascending=[False, True, True], kind="stable")
        t["gold_candidates"] = [{"query_text": norm_texts[q], "program_id": progs[p].pid, "sessions": int(s)}
                                for q, p, s in g.itertuples(index=False)]
        last30_all = self.q_ts >= self.t_end - 30 * DAY
        kc = np.bincount(self.q_key[last30_all], minlength=len(self.keys))
        for d, k in zip(self.loyal_truth, self.loyal_keys):
            d["requests_last_30d"] = int(kc[k])
        t["loyal_customers"] = self.loyal_truth
        for key in ("forecast_bias_days", "pooled_bias_mean", "pooled_bias_sd", "forecast_noise_sd_days",
                    "forecast_observed", "failure_modes", "error_modes", "error_malformed", "deploy_versions",
                    "error_formats", "feedback_labels", "success_groups", "channels", "changed_sources", "gone_sources", "noisy_sources"):
            t[key] = self.truth[key]
        last_day = self.q_ts >= self.t_end - DAY
        c = np.bincount(self.q_surf[last_day], minlength=n_surf)
        top = np.lexsort((np.arange(n_surf), -c))[:200]
        t["last_day_top_texts"] = [[self.s_text[s_], int(c[s_])] for s_ in top.tolist() if c[s_] > 0]
        return t


def build_world(db_path: str | os.PathLike, scale: str = "small", seed: int = 7, as_of: dt.date | None = None,
                progress: Progress | None = None) -> WorldSummary:
    """Build the demo AutonoMath database at ``db_path`` (replacing it) and its truth sidecar.

    The database is written to a temporary file next to the target and renamed into place at the end,
    so a crash never leaves a half-built database behind.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    t0 = time.perf_counter()
    as_of = as_of or today_jst()
    if isinstance(as_of, str):
        as_of = dt.date.fromisoformat(as_of)
    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    target = Path(db_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.building-{os.getpid()}")
    tmp_truth = target.with_name(f".{target.name}.truth-{os.getpid()}")
    for p in (tmp, tmp_truth):
        p.unlink(missing_ok=True)
    world = _World(SCALES[scale], int(seed), as_of, progress)
    try:
        world.build(tmp)
        truth = world.truth_doc()
        truth["built_by"] = {"package_version": CODE_VERSION, "generator_digest": generator_digest()}
        tmp_truth.write_text(json.dumps(truth, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
        for suffix in ("-journal", "-wal", "-shm"):
            Path(str(target) + suffix).unlink(missing_ok=True)
        os.replace(tmp, target)
        os.replace(tmp_truth, truth_path(target))
    except BaseException:
        for p in (tmp, tmp_truth):
            p.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - t0
    world.progress("done", 1, 1)
    return WorldSummary(db_path=target, scale=scale, seed=int(seed), as_of=as_of, row_counts=dict(world.counts),
                        seconds=round(seconds, 3), truth_path=truth_path(target))
