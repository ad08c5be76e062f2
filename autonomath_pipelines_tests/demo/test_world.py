"""The demo world: deterministic, complete, realistic enough, and its planted truth matches the data."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.demo import SCALES, SOURCE_TABLES, build_world, load_truth, truth_path
from autonomath_pipelines.demo import text as tx
from autonomath_pipelines.demo import tracebacks as tb
from autonomath_pipelines_tests.loops.harness import table_digests

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
OUTPUT_TABLES = (
    "hallucination_guard_candidates",
    "seo_testimonial_candidates",
    "personalized_cache",
    "forecast_calibration",
    "alias_candidates",
    "channel_roi",
    "query_cache",
    "source_refetch_queue",
)
# timestamp columns that must lie inside the log window / at or before its end
WINDOW_COLUMNS = {
    "query_log": ("ts",),
    "customer_feedback": ("ts",),
    "customer_success_events": ("ts",),
    "billing_events": ("ts",),
    "error_log": ("ts",),
    "source_change_signals": ("observed_at",),
}
BEFORE_END_COLUMNS = {
    "programs": ("source_fetched_at", "updated_at"),
    "api_keys": ("created_at", "revoked_at"),
    "hallucination_guard": ("created_at",),
    "am_alias": ("created_at",),
    "subscribers": ("signed_up_at",),
    "forecast_predictions": ("predicted_at",),
    "am_application_round": ("resolved_at",),
    "source_change_signals": ("last_modified",),
}
ANY_TIME_COLUMNS = {"am_application_round": ("opens_at", "closes_at"), "forecast_predictions": ("predicted_opens_at",)}


@pytest.fixture(scope="module")
def world(small_world_pristine) -> Path:
    return small_world_pristine


@pytest.fixture(scope="module")
def truth(world) -> dict:
    return load_truth(world)


@pytest.fixture(scope="module")
def conn(world):
    c = sqlite3.connect(f"file:{world}?mode=ro", uri=True)
    yield c
    c.close()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _table_digest(db: Path) -> dict[str, str]:
    return table_digests(db, ("prefectures", "programs", "query_log"))


# --- determinism and atomic replacement ---------------------------------------------------------------
def test_same_seed_same_bytes_and_atomic_replace(world, truth, tmp_path):
    target = tmp_path / "again.db"
    target.write_bytes(b"not a database")  # an existing target is replaced
    stages = []
    summary = build_world(
        target,
        scale="small",
        seed=truth["seed"],
        as_of=dt.date.fromisoformat(truth["as_of"]),
        progress=lambda stage, done, total: stages.append(stage),
    )
    assert _sha256(target) == _sha256(world)
    assert truth_path(target).read_bytes() == truth_path(world).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.db", "again.db.truth.json"]  # no temp files left
    assert summary.row_counts == {t: truth["row_counts"][t] for t in summary.row_counts}
    assert summary.scale == "small" and summary.seed == truth["seed"] and summary.seconds > 0
    assert {"programs", "query_log", "am_alias", "error_log"} <= set(stages)


def test_other_seed_other_world(world, truth, tmp_path):
    other = tmp_path / "other.db"
    build_world(other, scale="small", seed=truth["seed"] + 1, as_of=dt.date.fromisoformat(truth["as_of"]))
    a, b = _table_digest(world), _table_digest(other)
    assert a["prefectures"] == b["prefectures"]  # the real 47 prefectures never change
    assert a["query_log"] != b["query_log"] and a["programs"] != b["programs"]


def test_failed_build_leaves_no_temp_file(tmp_path, monkeypatch):
    from autonomath_pipelines.demo import world as world_mod
    from autonomath_pipelines.demo.service_events import build_errors

    def boom(w):
        raise RuntimeError("disk full")

    monkeypatch.setattr(world_mod, "STAGES", tuple(boom if s is build_errors else s for s in world_mod.STAGES))
    target = tmp_path / "w.db"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        build_world(target, scale="small", seed=1, as_of=dt.date(2026, 1, 15))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["w.db"]


def test_unknown_scale():
    with pytest.raises(ValueError, match="unknown scale"):
        build_world("/nonexistent/x.db", scale="huge")


def test_ten_times_the_service_grows_every_volume_and_keeps_the_planted_vocabulary():
    from autonomath_pipelines.cli import WORLD_SCALES
    from autonomath_pipelines.demo.world import VOLUME_FIELDS, scaled

    base, big = SCALES["production"], SCALES["production-10x"]
    assert (big.programs, big.aliases, big.api_keys) == (200_000, 3_356_050, 50_000)
    assert big.queries_per_day * 30 == 9_900_000  # ≈10M query_log rows a month
    for field in VOLUME_FIELDS:
        assert getattr(big, field) == 10 * getattr(base, field)
    assert (big.hallucination_families, big.guard_patterns, big.success_hot_groups) == (40, 504, 50)
    assert big.days == 60 and scaled(base, 3, name="x").days == base.days
    with pytest.raises(ValueError, match="factor"):
        scaled(base, 0, name="x")
    assert WORLD_SCALES == tuple(SCALES)  # the CLI offers every scale, no more


# --- completeness and formats --------------------------------------------------------------------------
def test_every_source_table_filled_outputs_empty(conn, truth):
    for table in SOURCE_TABLES:
        n = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        assert n > 0, table
        assert truth["row_counts"][table] == n
    for table in OUTPUT_TABLES:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
    sc = SCALES["small"]
    assert conn.execute("SELECT count(*) FROM hallucination_guard").fetchone()[0] == 504
    assert conn.execute("SELECT count(*) FROM am_alias").fetchone()[0] == sc.aliases
    assert conn.execute("SELECT count(*) FROM am_application_round").fetchone()[0] == sc.rounds
    assert conn.execute("SELECT count(*) FROM programs").fetchone()[0] == sc.programs
    assert conn.execute("SELECT count(*) FROM programs_fts").fetchone()[0] == sc.programs
    assert conn.execute("SELECT count(*) FROM prefectures").fetchone()[0] == 47
    assert conn.execute("SELECT count(*) FROM query_log").fetchone()[0] >= 0.95 * sc.days * sc.queries_per_day
    assert conn.execute("SELECT count(*) FROM sqlite_stat1").fetchone()[0] > 0  # ANALYZE ran
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    assert {"query_log_ts", "query_log_key_ts", "am_alias_surface", "error_log_ts"} <= indexes


def test_timestamps_format_and_window(conn, truth):
    start, end = truth["window_start"], truth["window_end"]
    as_of = dt.date.fromisoformat(truth["as_of"])
    assert end == (dt.datetime(as_of.year, as_of.month, as_of.day) - dt.timedelta(hours=9)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    for table, cols in WINDOW_COLUMNS.items():
        for col in cols:
            lo, hi, bad = conn.execute(
                f"SELECT min({col}), max({col}), sum({col} NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T"
                f"[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z') FROM {table}"
            ).fetchone()
            assert bad == 0 and start <= lo and hi < end, (table, col, lo, hi)
    for table, cols in {**BEFORE_END_COLUMNS, **ANY_TIME_COLUMNS}.items():
        for col in cols:
            values = [r[0] for r in conn.execute(f"SELECT {col} FROM {table} WHERE {col} IS NOT NULL")]
            assert values, (table, col)
            assert all(TS_RE.match(v) for v in values), (table, col)
            if table in BEFORE_END_COLUMNS and col in BEFORE_END_COLUMNS[table]:
                assert max(values) <= end, (table, col)
    # logs follow the JST working day: more traffic 10:00-11:00 JST than 03:00-04:00 JST
    hours = dict(conn.execute("SELECT substr(ts, 12, 2), count(*) FROM query_log GROUP BY 1").fetchall())
    assert hours["01"] > 10 * hours["18"]


def test_prefectures_are_the_real_47(conn):
    rows = conn.execute("SELECT prefecture_code, name_ja, region FROM prefectures ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == [f"{i:02d}" for i in range(1, 48)]
    assert rows[0][1:] == ("北海道", "北海道") and rows[12][1] == "東京都" and rows[46][1:] == ("沖縄県", "九州・沖縄")
    assert {r[2] for r in rows} == {"北海道", "東北", "関東", "中部", "近畿", "中国", "四国", "九州・沖縄"}


def test_programs_realistic(conn):
    levels = dict(conn.execute("SELECT level, count(*) FROM programs GROUP BY 1").fetchall())
    assert set(levels) == {"national", "prefectural", "municipal"}
    tiers = dict(conn.execute("SELECT tier, count(*) FROM programs GROUP BY 1").fetchall())
    assert tiers["S"] < tiers["A"] < tiers["C"]
    assert conn.execute("SELECT count(DISTINCT name), count(DISTINCT source_url) FROM programs").fetchone() == (
        600,
        600,
    )
    assert (
        conn.execute(
            "SELECT count(*) FROM programs WHERE level = 'national' AND prefecture_code IS NOT NULL"
        ).fetchone()[0]
        == 0
    )
    assert (
        conn.execute("SELECT count(*) FROM programs WHERE level = 'municipal' AND municipality IS NULL").fetchone()[0]
        == 0
    )
    names = [r[0] for r in conn.execute("SELECT name FROM programs")]
    assert "小規模事業者持続化補助金" in names and any(n.startswith("IT導入補助金20") for n in names)
    assert any(n.startswith("東京都") for n in names)
    # staleness spread for loop I
    ages = conn.execute(
        "SELECT min(julianday('now') - julianday(source_fetched_at)), "
        "max(julianday(source_fetched_at)) - min(julianday(source_fetched_at)) FROM programs"
    ).fetchone()
    assert ages[1] > 300


# --- FTS5 ------------------------------------------------------------------------------------------------
def test_fts_trigram_and_short_like(conn):
    name, pid = conn.execute("SELECT name, program_id FROM programs WHERE name LIKE '%持続化補助金'").fetchone()
    hits = [
        r[0] for r in conn.execute("SELECT program_id FROM programs_fts WHERE programs_fts MATCH ?", (f'"{name}"',))
    ]
    assert pid in hits
    assert conn.execute("SELECT count(*) FROM programs_fts WHERE name LIKE '%補助%'").fetchone()[0] > 100
    region = conn.execute(
        "SELECT region FROM programs_fts WHERE program_id = ("
        "SELECT program_id FROM programs WHERE level = 'municipal' LIMIT 1)"
    ).fetchone()[0]
    assert re.match(r"^\S+[都道府県] \S+[市区]$", region)


# --- query_log shape ----------------------------------------------------------------------------------------
def test_query_frequencies_are_zipf_like(conn, truth):
    counts = np.array(
        [r[0] for r in conn.execute("SELECT count(*) FROM query_log GROUP BY query_text ORDER BY 1 DESC")], dtype=float
    )
    assert counts[0] > 100 * np.median(counts)
    ranks = np.arange(1, len(counts) + 1)
    slope = np.polyfit(np.log(ranks[:500]), np.log(counts[:500]), 1)[0]
    assert -1.5 < slope < -0.6, slope
    p = np.array([i["p"] for i in truth["intents"]])
    assert np.all(np.diff(p) <= 0) and abs(p.sum() - 1) < 1e-9
    assert truth["zipf_exponent"] == pytest.approx(-np.polyfit(np.log(np.arange(1, len(p) + 1)), np.log(p), 1)[0])


def test_query_variants_exist(conn):
    texts = [r[0] for r in conn.execute("SELECT DISTINCT query_text FROM query_log")]
    fullwidth = [t for t in texts if any("\uff01" <= c <= "\uff5e" or c == "\u3000" for c in t)]
    halfwidth_kana = [t for t in texts if any("\uff61" <= c <= "\uff9f" for c in t)]
    latin = [t for t in texts if t.isascii() and any(c.isalpha() for c in t)]
    hangul = [t for t in texts if any("\uac00" <= c <= "\ud7a3" for c in t)]
    simplified = [t for t in texts if any(c in "补导资业营创" for c in t)]
    assert min(len(fullwidth), len(halfwidth_kana), len(latin), len(hangul), len(simplified)) >= 5
    assert any(t.startswith("ＩＴ導入") for t in fullwidth)
    assert "monodukuri hojokin" in texts or "monozukuri hojokin" in texts
    assert any("補助均" in t for t in texts) or any("捕助" in t for t in texts)  # near-miss typos
    assert any(t.endswith("の申請方法") for t in texts)


def test_sessions_keys_and_tiers(conn):
    n_sessions, n_rows = conn.execute("SELECT count(DISTINCT session_id), count(*) FROM query_log").fetchone()
    assert 1.5 < n_rows / n_sessions < 4
    # a session is one key within minutes
    assert (
        conn.execute(
            "SELECT count(*) FROM (SELECT session_id FROM query_log GROUP BY session_id "
            "HAVING count(DISTINCT api_key) > 1)"
        ).fetchone()[0]
        == 0
    )
    span = conn.execute(
        "SELECT max(julianday(mx) - julianday(mn)) * 1440 FROM (SELECT min(ts) mn, max(ts) mx "
        "FROM query_log GROUP BY session_id)"
    ).fetchone()[0]
    assert span < 120
    assert (
        conn.execute(
            "SELECT count(*) FROM query_log q JOIN api_keys k USING (api_key) WHERE q.tier != k.tier"
        ).fetchone()[0]
        == 0
    )
    assert (
        conn.execute(
            "SELECT count(*) FROM query_log q LEFT JOIN api_keys k USING (api_key) WHERE k.api_key IS NULL"
        ).fetchone()[0]
        == 0
    )
    # revoked keys are not used after revocation, new keys not before creation
    assert (
        conn.execute(
            "SELECT count(*) FROM query_log q JOIN api_keys k USING (api_key) "
            "WHERE q.ts >= k.revoked_at OR q.ts < k.created_at"
        ).fetchone()[0]
        == 0
    )
    assert conn.execute("SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL").fetchone()[0] > 0
    tiers = dict(conn.execute("SELECT tier, count(*) FROM api_keys GROUP BY 1").fetchall())
    assert set(tiers) == {"free", "paid", "internal"}
    conf = conn.execute(
        "SELECT min(confidence), max(confidence), sum(result_count = 0 AND top1_program_id IS NOT NULL) FROM query_log"
    ).fetchone()
    assert 0 <= conf[0] and conf[1] <= 1 and conf[2] == 0
    lat = np.array([r[0] for r in conn.execute("SELECT latency_ms FROM query_log")])
    assert 15 < np.median(lat) < 60


def test_hallucination_family_queries(conn, truth):
    fams = truth["hallucination_families"]
    assert len(fams) == SCALES["small"].hallucination_families
    assert any(f["covered_by_guard"] for f in fams) and not all(f["covered_by_guard"] for f in fams)
    for f in fams:
        assert len(f["texts"]) >= 3 and f["rows"] > 0
        q = ",".join("?" * len(f["texts"]))
        rows = conn.execute(
            f"SELECT result_count, top1_program_id, confidence FROM query_log WHERE query_text IN ({q})", f["texts"]
        ).fetchall()
        assert rows, f["id"]
        assert all((rc == 0 and top is None) or (conf < 0.5) for rc, top, conf in rows), f["id"]
        assert any(rc == 0 for rc, _, _ in rows)
        guards = {r[0] for r in conn.execute("SELECT pattern FROM hallucination_guard")}
        if f["covered_by_guard"]:
            assert f["guard_patterns"] and set(f["guard_patterns"]) <= guards
        else:
            assert not (set(f["texts"]) & guards) and f["guard_pattern"] not in guards
    wrong = conn.execute("SELECT count(*) FROM customer_feedback WHERE wrong_answer = 1").fetchone()[0]
    tied = sum(len(f["feedback_ids"]) for f in fams)
    assert 0 < tied < wrong
    fid = fams[0]["feedback_ids"][0] if fams[0]["feedback_ids"] else next(i for f in fams for i in f["feedback_ids"])
    qt, wa, comment = conn.execute(
        "SELECT query_text, wrong_answer, comment FROM customer_feedback WHERE id = ?", (fid,)
    ).fetchone()
    fam = next(f for f in fams if fid in f["feedback_ids"])
    assert wa == 1 and qt in fam["texts"] and comment
    guard_created = conn.execute("SELECT max(created_at), min(source = 'launch') FROM hallucination_guard").fetchone()
    assert guard_created[0] < truth["window_start"] and guard_created[1] == 1


# --- planted truth vs the data ------------------------------------------------------------------------------
def test_planted_aliases_consistent(conn, truth):
    planted = truth["planted_aliases"]
    assert any(a["in_am_alias"] for a in planted) and any(not a["in_am_alias"] for a in planted)
    assert {a["lang"] for a in planted} >= {"en", "ja-Latn", "zh", "ko"}
    surfaces = {r[0] for r in conn.execute("SELECT surface FROM am_alias")}
    pairs = set(conn.execute("SELECT entity_id, surface FROM am_alias").fetchall())
    for a in planted:
        if a["in_am_alias"]:
            assert (a["program_id"], a["surface"]) in pairs, a
        else:
            assert a["surface"] not in surfaces, a
    # the queries using planted surfaces: low confidence, the planted program, one (or two) results
    head = sorted(planted, key=lambda a: -a["rows"])[:20]
    for a in head:
        rows = conn.execute(
            "SELECT top1_program_id, confidence, result_count FROM query_log WHERE query_text = ?", (a["surface"],)
        ).fetchall()
        assert len(rows) == a["rows"] > 0
        assert all(top == a["program_id"] and conf < 0.5 and rc in (1, 2) for top, conf, rc in rows), a
    langs = dict(conn.execute("SELECT lang, count(*) FROM am_alias GROUP BY 1").fetchall())
    assert set(langs) == {"ja", "ja-Kana", "ja-Latn", "en", "zh", "ko"}
    assert (
        conn.execute(
            "SELECT count(*) FROM am_alias a LEFT JOIN programs p ON p.program_id = a.entity_id "
            "WHERE p.program_id IS NULL"
        ).fetchone()[0]
        == 0
    )


def test_paraphrase_groups_and_intents_match_log(conn, truth):
    groups = truth["paraphrase_groups"]
    intents = {i["id"]: i for i in truth["intents"]}
    assert set(groups) == set(intents)
    counts = dict(conn.execute("SELECT query_text, count(*) FROM query_log GROUP BY 1").fetchall())
    total = 0
    for iid, forms in groups.items():
        assert forms[0]["kind"] == "canonical" and forms[0]["text"] == intents[iid]["text"]
        for f in forms:
            assert counts.get(f["text"], 0) == f["n"]
            total += f["n"]
    assert total == sum(counts.values())  # every query text belongs to exactly one intent
    kinds = {f["kind"] for forms in groups.values() for f in forms}
    assert kinds == {"canonical", "paraphrase", "typo", "width", "en", "romaji", "zh", "ko"}
    # NFKC folds width variants onto their canonical form
    width = [(f["text"], forms[0]["text"]) for forms in groups.values() for f in forms if f["kind"] == "width"]
    assert sum(tx.normalize(w) == tx.normalize(c) for w, c in width) > len(width) / 2


def test_gold_candidates_follow_loop_j_rule(conn, truth):
    gold = truth["gold_candidates"]
    assert gold and all(g["sessions"] >= 5 for g in gold)
    end = truth["window_end"]
    start = (dt.datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ") - dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    g = gold[0]
    rows = conn.execute(
        "SELECT query_text, session_id FROM query_log WHERE ts >= ? AND confidence >= 0.85 AND top1_program_id = ?",
        (start, g["program_id"]),
    ).fetchall()
    sessions = {s for q, s in rows if tx.normalize(q) == g["query_text"]}
    assert len(sessions) == g["sessions"]


def test_loyal_customers(conn, truth):
    loyal = truth["loyal_customers"]
    assert len(loyal) == SCALES["small"].loyal_customers
    end = truth["window_end"]
    for c in loyal:
        tier, customer = conn.execute(
            "SELECT tier, customer_id FROM api_keys WHERE api_key = ?", (c["api_key"],)
        ).fetchone()
        assert tier == "paid" and customer == c["customer_id"]
        rows = [
            r[0]
            for r in conn.execute(
                "SELECT query_text FROM query_log WHERE api_key = ? AND ts >= "
                "strftime('%Y-%m-%dT%H:%M:%SZ', ?, '-7 days')",
                (c["api_key"], end),
            )
        ]
        assert len(rows) >= 50 / 4
        fav = set(c["favourites"])
        assert 8 <= len(fav) <= 20
        assert sum(r in fav for r in rows) / len(rows) > 0.7
        assert c["requests_last_30d"] >= 50


def test_forecast_bias_planted(conn, truth):
    bias = truth["forecast_bias_days"]
    progs = {r[0] for r in conn.execute("SELECT DISTINCT program_id FROM am_application_round")}
    assert set(bias) == progs
    b = np.array(list(bias.values()))
    assert abs(b.mean() - truth["pooled_bias_mean"]) < 3 and 4 < b.std() < 10
    statuses = dict(conn.execute("SELECT status, count(*) FROM am_application_round GROUP BY 1").fetchall())
    assert set(statuses) == {"resolved", "open", "scheduled"}
    end = truth["window_end"]
    assert (
        conn.execute(
            "SELECT count(*) FROM am_application_round WHERE status = 'resolved' "
            "AND (resolved_at IS NULL OR resolved_at > ?)",
            (end,),
        ).fetchone()[0]
        == 0
    )
    assert (
        conn.execute(
            "SELECT count(*) FROM am_application_round WHERE status = 'scheduled' AND opens_at <= ?", (end,)
        ).fetchone()[0]
        == 0
    )
    rows = conn.execute(
        "SELECT f.program_id, julianday(f.predicted_opens_at) - julianday(r.opens_at), "
        "f.predicted_at < r.opens_at FROM forecast_predictions f JOIN am_application_round r "
        "USING (round_id) WHERE r.status = 'resolved'"
    ).fetchall()
    assert all(before for _, _, before in rows)
    errs: dict[str, list[float]] = {}
    for pid, err, _ in rows:
        errs.setdefault(pid, []).append(err)
    for pid, obs in truth["forecast_observed"].items():
        assert len(errs[pid]) == obs["n"] and np.mean(errs[pid]) == pytest.approx(obs["mean_error_days"], abs=1e-3)
    pooled = np.mean([e for v in errs.values() for e in v])
    assert 0 < pooled < 10


def test_error_log_failure_modes(conn, truth):
    modes = truth["error_modes"]
    ids = [r[0] for r in conn.execute("SELECT id FROM error_log ORDER BY id")]
    assert [int(i) for i in modes] == ids
    assert set(modes.values()) <= set(truth["failure_modes"]) and 8 <= len(truth["failure_modes"]) <= 15
    assert len(set(modes.values())) >= 10
    tbs = dict(conn.execute("SELECT id, traceback FROM error_log").fetchall())
    malformed = truth["error_malformed"]
    assert "truncated" in malformed.values() and "headless" in malformed.values()
    formats = truth["error_formats"]
    assert set(formats.values()) == set(tb.LOG_FORMATS)  # issue 13: every format services really log
    for i, text in tbs.items():
        if str(i) not in malformed and formats[str(i)] == "plain":
            assert text.startswith('Traceback (most recent call last):\n  File "'), i
            mode = tb.FAILURE_MODES_BY_NAME[modes[str(i)]]
            assert text.rstrip().splitlines()[-1].startswith(mode.exception_type + ": ")
    joined = "\n".join(tbs.values())
    assert "During handling of the above exception, another exception occurred:" in joined
    assert "The above exception was the direct cause of the following exception:" in joined
    assert re.search(r"\[Previous line repeated \d+ more times\]", joined)
    assert 'File "<frozen importlib._bootstrap>", line ' in joined
    # line numbers move between deploys, so the same mode shows different line numbers
    lines = {
        re.search(r'app/scoring.py", line (\d+)', t).group(1)
        for i, t in tbs.items()
        if modes[str(i)] == "search_region_keyerror" and str(i) not in malformed and formats[str(i)] == "plain"
    }
    assert len(lines) >= 2
    etype = dict(conn.execute("SELECT exception_type, count(*) FROM error_log GROUP BY 1").fetchall())
    assert "KeyError" in etype and "sqlite3.OperationalError" not in etype  # chained: the outermost is logged


def test_feedback_success_billing_subscribers_signals(conn, truth):
    fb = dict(conn.execute("SELECT wrong_answer, count(*) FROM customer_feedback GROUP BY 1").fetchall())
    assert fb[0] > 0 and fb[1] > 0
    labels = truth["feedback_labels"]
    assert len(labels) == sum(fb.values())
    assert {v["reason"] for v in labels.values()} >= {"hallucination", "region", "positive"}
    comments = [r[0] for r in conn.execute("SELECT comment FROM customer_feedback WHERE wrong_answer = 1")]
    assert any("終了しています" in c for c in comments) and any("存在しない" in c for c in comments)
    # success events: consented groups of >= 3 in some month, smaller ones too
    groups = truth["success_groups"]
    assert any(g["consented"] >= 3 for g in groups) and any(0 < g["consented"] < 3 for g in groups)
    assert (
        conn.execute(
            "SELECT count(*) FROM customer_success_events WHERE outcome = 'adopted' AND amount_jpy IS NULL"
        ).fetchone()[0]
        == 0
    )
    assert (
        conn.execute(
            "SELECT count(*) FROM customer_success_events WHERE outcome != 'adopted' AND amount_jpy IS NOT NULL"
        ).fetchone()[0]
        == 0
    )
    # billing: ¥3 per paid request per JST day, a few refunds
    charged = conn.execute("SELECT sum(amount_jpy) FROM billing_events WHERE event_type = 'charge'").fetchone()[0]
    paid = conn.execute("SELECT count(*) FROM query_log WHERE tier = 'paid'").fetchone()[0]
    assert charged == 3 * paid
    assert conn.execute("SELECT count(*) FROM billing_events WHERE event_type = 'refund'").fetchone()[0] > 0
    assert (
        conn.execute(
            "SELECT count(*) FROM billing_events b LEFT JOIN subscribers s USING (subscriber_id) "
            "WHERE s.subscriber_id IS NULL"
        ).fetchone()[0]
        == 0
    )
    utm = {r[0] for r in conn.execute("SELECT DISTINCT utm_source FROM subscribers")}
    assert {None, "", "google", "x", "qiita", "newsletter"} <= utm and any(u and u.startswith("partner_") for u in utm)
    # liveness scan
    statuses = dict(conn.execute("SELECT http_status, count(*) FROM source_change_signals GROUP BY 1").fetchall())
    assert statuses[304] > statuses[200] > statuses.get(404, 0) > 0
    changed = truth["changed_sources"]
    pid, at = next(iter(changed.items()))
    rows = conn.execute(
        "SELECT observed_at, http_status, last_modified FROM source_change_signals WHERE program_id = ?", (pid,)
    ).fetchall()
    fetched = conn.execute("SELECT source_fetched_at FROM programs WHERE program_id = ?", (pid,)).fetchone()[0]
    assert at > fetched
    for obs, status, lm in rows:
        if obs >= at and status != 503:
            assert status == 200 and lm == at


def test_truth_file_is_documented_json(world, truth):
    from autonomath_pipelines.demo import world as world_mod

    raw = truth_path(world).read_text(encoding="utf-8")
    assert json.loads(raw) == truth
    doc = world_mod.__doc__
    for key in truth:
        assert f"``{key}``" in doc, key


# --- text helpers ------------------------------------------------------------------------------------------
def test_text_helpers():
    assert tx.katakana("toukyouto") == "トウキョウト"
    assert tx.katakana("sapporo") == "サッポロ"
    assert tx.katakana("suta-toappu") == "スタートアップ"
    assert tx.hepburn("toukyou") == "tokyo"
    assert tx.hangul("yokohama") == "요코하마" and tx.hangul("sapporo") == "삿포로"
    assert tx.to_fullwidth("IT導入 2026") == "ＩＴ導入\u3000２０２６"
    half = tx.to_halfwidth_kana("キャリアアップ助成金")
    assert half != "キャリアアップ助成金" and unicodedata.normalize("NFKC", half) == "キャリアアップ助成金"
    rng = np.random.default_rng(0)
    for _ in range(50):
        assert tx.typo("小規模事業者持続化補助金", rng) != "小規模事業者持続化補助金"


@pytest.mark.slow
def test_production_scale_exact_counts(tmp_path):
    """The production-scale world: exact contract counts, built within the time budget (about a minute)."""
    summary = build_world(tmp_path / "prod.db", scale="production", seed=7, as_of=dt.date(2026, 11, 21))
    counts = summary.row_counts
    assert counts["am_alias"] == 335_605 and counts["am_application_round"] == 1_256
    assert counts["hallucination_guard"] == 504 and counts["programs"] == 20_000
    assert counts["query_log"] >= 0.99 * 120 * 33_000
    assert summary.seconds < 300
    assert truth_path(tmp_path / "prod.db").stat().st_size < 50 * 2**20
