"""What every stage of the demo world shares: the scales, time helpers, kinds, and the world's state.

``World`` is the state the stages pass along: what is being built (scale, seed, as_of, the log window),
the open database, one seeded random stream per stage (``World.rng``), the truth collected so far, and
what each stage leaves for the later ones (declared below the stage that sets it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from autonomath_pipelines.contract.sqlite import sqlite3

JST = dt.timezone(dt.timedelta(hours=9), "JST")
DAY = 86_400
ZIPF_EXPONENT = 1.05

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
    "small": WorldScale(
        "small",
        programs=600,
        days=45,
        queries_per_day=2_000,
        aliases=4_000,
        rounds=300,
        api_keys=400,
        hallucination_families=12,
        loyal_customers=8,
        topic_intents=150,
        category_intents=100,
        feedback_per_day=8,
        success_per_day=3,
        success_hot_groups=10,
        errors_per_day=30,
    ),
    "medium": WorldScale(
        "medium",
        programs=5_000,
        days=90,
        queries_per_day=10_000,
        aliases=40_000,
        rounds=800,
        api_keys=1_500,
        hallucination_families=24,
        loyal_customers=25,
        topic_intents=1_200,
        category_intents=800,
        feedback_per_day=14,
        success_per_day=8,
        success_hot_groups=25,
        errors_per_day=80,
    ),
    "production": WorldScale(
        "production",
        programs=20_000,
        days=120,
        queries_per_day=33_000,
        aliases=335_605,
        rounds=1_256,
        api_keys=5_000,
        hallucination_families=40,
        loyal_customers=60,
        topic_intents=3_000,
        category_intents=2_000,
        feedback_per_day=22,
        success_per_day=20,
        success_hot_groups=50,
        errors_per_day=150,
    ),
}

#: What grows with the service: traffic, catalogue, customers and the streams they cause. The planted
#: structure (hallucination families, guard patterns, hot success groups) is a vocabulary, not a volume.
VOLUME_FIELDS = (
    "programs",
    "queries_per_day",
    "aliases",
    "rounds",
    "api_keys",
    "loyal_customers",
    "topic_intents",
    "category_intents",
    "feedback_per_day",
    "success_per_day",
    "errors_per_day",
)


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


# --- time helpers (one timestamp: ``contract.timestamps.iso_from_epoch``) ---------------------------
def today_jst() -> dt.date:
    return dt.datetime.now(JST).date()


def iso_list(secs: np.ndarray) -> list[str]:
    s = np.datetime_as_string(np.asarray(secs, dtype=np.int64).astype("datetime64[s]"), unit="s")
    return np.strings.add(s, "Z").tolist()


def jst_midnight(sec: int) -> int:
    """UTC epoch of the JST midnight at or before ``sec``."""
    return (sec + 9 * 3600) // DAY * DAY - 9 * 3600


# JST hour-of-day weights of search traffic (business hours, lunch dip, evening tail).
DIURNAL = np.array(
    [
        0.5,
        0.3,
        0.2,
        0.15,
        0.15,
        0.25,
        0.6,
        1.5,
        3.5,
        6.0,
        7.0,
        7.0,
        5.0,
        6.5,
        7.0,
        7.0,
        6.5,
        5.5,
        4.0,
        3.0,
        2.5,
        2.0,
        1.5,
        0.9,
    ]
)
DIURNAL = DIURNAL / DIURNAL.sum()


def random_hex(rng: np.random.Generator, n: int, width: int) -> list[str]:
    """n random lower-case hex strings of ``width`` characters (width <= 30)."""
    hi = rng.integers(0, 1 << 60, size=n, dtype=np.int64)
    lo = rng.integers(0, 1 << 60, size=n, dtype=np.int64)
    return [f"{a:015x}{b:015x}"[:width] for a, b in zip(hi.tolist(), lo.tolist())]


# Surface kinds / intent kinds.
CANON, PARA, TYPO, WIDTH, EN, ROMAJI, ZH, KO = range(8)
SURFACE_KIND_NAMES = ("canonical", "paraphrase", "typo", "width", "en", "romaji", "zh", "ko")
NAME, SHORT, TOPIC, CATEGORY, HALL = range(5)
INTENT_KIND_NAMES = ("program_name", "program_short", "topic", "category", "hallucination")


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


@dataclass(eq=False, repr=False)
class World:
    """One world being built. The fields after ``truth`` are set by the stage named above them."""

    sc: WorldScale
    seed: int
    as_of: dt.date
    conn: sqlite3.Connection
    progress: Progress
    t_start: int = field(init=False)  # the log window [t_start, t_end): ``days`` full JST days before as_of
    t_end: int = field(init=False)
    fy: int = field(init=False)
    reiwa: int = field(init=False)
    counts: dict[str, int] = field(default_factory=dict)  # rows per source table, once built
    truth: dict = field(default_factory=dict)  # truth keys the stages record as they go

    # programs.build_prefectures, programs.build_programs
    pref_pop: np.ndarray = field(init=False)
    programs: list[Program] = field(init=False)
    # customers.build_customers: api keys (index = key), their customers and session weights
    keys: list[dict] = field(init=False)
    cust_ids: list[str] = field(init=False)
    key_str: np.ndarray = field(init=False)
    key_tier: np.ndarray = field(init=False)
    key_created: np.ndarray = field(init=False)
    key_revoked: np.ndarray = field(init=False)
    key_successor: np.ndarray = field(init=False)
    key_paid: np.ndarray = field(init=False)
    key_weight: np.ndarray = field(init=False)
    key_sub: np.ndarray = field(init=False)
    loyal_cust: list[int] = field(init=False)
    loyal_keys: list[int] = field(init=False)
    # intents.build_intents: intents in rank order and their surface forms (contiguous per intent)
    families: list[tuple] = field(init=False)
    int_p: np.ndarray = field(init=False)
    int_kind: np.ndarray = field(init=False)
    int_text: list[str] = field(init=False)
    int_prog: np.ndarray = field(init=False)
    int_family: np.ndarray = field(init=False)
    int_ids: list[str] = field(init=False)
    int_canon_surface: np.ndarray = field(init=False)
    planted: list[dict] = field(init=False)
    s_cum: np.ndarray = field(init=False)
    s_int: np.ndarray = field(init=False)
    s_kind: np.ndarray = field(init=False)
    s_text: np.ndarray = field(init=False)
    # traffic.build_query_log: query_log rows in id order
    q_ts: np.ndarray = field(init=False)
    q_key: np.ndarray = field(init=False)
    q_sess: np.ndarray = field(init=False)
    q_surf: np.ndarray = field(init=False)
    q_intent: np.ndarray = field(init=False)
    q_top1: np.ndarray = field(init=False)
    q_conf: np.ndarray = field(init=False)
    q_rc: np.ndarray = field(init=False)
    sess_str: np.ndarray = field(init=False)
    loyal_truth: list[dict] = field(init=False)
    decoys: np.ndarray = field(init=False)
    # service_events.build_feedback, service_events.build_guard
    fam_feedback: dict[int, list[int]] = field(init=False)
    guard_covered: dict[int, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        as_of = self.as_of
        self.t_end = int(dt.datetime(as_of.year, as_of.month, as_of.day, tzinfo=JST).timestamp())
        self.t_start = self.t_end - self.sc.days * DAY
        self.fy = as_of.year
        self.reiwa = as_of.year - 2018

    def rng(self, stage: int) -> np.random.Generator:
        """The random stream of one stage: the same whatever the other stages draw."""
        return np.random.default_rng([self.seed, stage])

    def insert(self, table: str, columns: tuple[str, ...], rows) -> None:
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        self.conn.executemany(sql, rows)
