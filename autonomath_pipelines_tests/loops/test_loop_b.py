"""Loop B end to end on the small demo world, through Dagster, plus its SQL aggregation and gates."""

import json

import dagster as dg
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autonomath_pipelines.contract.schema import create_all
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.demo import load_truth
from autonomath_pipelines.lib.case_pages import front_matter
from autonomath_pipelines.lib.jsonld import jsonld_problems
from autonomath_pipelines.loops.loop_b_testimonial_seo import LOOP, consented_groups
from autonomath_pipelines.resources import AutonomathDatabase
from autonomath_pipelines_tests.conftest import PREFECTURES, PROGRAMS
from autonomath_pipelines_tests.loops.harness import check_outcomes, materialized, metadata, run_loop, sha256

#: October 2026 (JST): the small world's first full month of success events, with several groups ≥ 3.
#: (November is the world's last, incomplete month: its partition does not exist before December.)
SEPTEMBER, OCTOBER = "2026-09-01", "2026-10-01"
K = 3


def run(db, tmp_path, partition=OCTOBER, **kwargs):
    return run_loop(LOOP, db, tmp_path, partition, **kwargs)


def pages_in_db(db) -> pd.DataFrame:
    return AutonomathDatabase(path=str(db)).read_frame(
        "SELECT * FROM seo_testimonial_candidates ORDER BY partition_key, program_id, prefecture_code"
    )


def expected_groups(db, month: str, k: int = K) -> pd.DataFrame:
    """Consented groups of a JST month with ≥ k events, computed in pandas from the raw table."""
    events = AutonomathDatabase(path=str(db)).read_frame("SELECT * FROM customer_success_events")
    jst = pd.to_datetime(events["ts"], utc=True).dt.tz_convert("Asia/Tokyo")
    events = events[(jst.dt.strftime("%Y-%m") == month) & (events["consent_flag"] == 1)]
    groups = (
        events.groupby(["program_id", "prefecture_code"])
        .agg(
            group_size=("id", "size"),
            adopted=("outcome", lambda o: int((o == "adopted").sum())),
            rating_count=("rating", "count"),
            rating_mean=("rating", "mean"),
        )
        .reset_index()
    )
    return groups[(groups["group_size"] >= k) & (groups["rating_count"] >= k)].reset_index(drop=True)


def keys_of(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(zip(frame["program_id"], frame["prefecture_code"]))


def test_truth_has_groups_of_k_in_both_months(small_world):
    truth = load_truth(small_world)["success_groups"]
    for month in ("2026-10", "2026-11"):
        assert sum(g["month"] == month and g["consented"] >= K for g in truth) >= 3


def test_dry_run_writes_nothing_and_proposes_exactly_the_groups_of_k(small_world, tmp_path):
    before = sha256(small_world)
    result = run(small_world, tmp_path)
    assert result.success
    assert sha256(small_world) == before
    candidates = result.output_for_node("testimonial_seo_candidates")
    expected = expected_groups(small_world, "2026-10")
    assert keys_of(candidates) == keys_of(expected) and len(candidates) >= 3
    truth = {
        (g["program_id"], g["prefecture_code"]): g["consented"]
        for g in load_truth(small_world)["success_groups"]
        if g["month"] == "2026-10"
    }
    assert {key: truth[key] for key in keys_of(candidates)} == dict(
        zip(zip(candidates["program_id"], candidates["prefecture_code"]), candidates["group_size"])
    )
    assert check_outcomes(result) and all(check_outcomes(result).values())
    snapshot = metadata(result, "testimonial_seo_snapshot")
    assert snapshot["non_consented_events"] > 0 and snapshot["groups_suppressed_below_k"] > 0
    assert metadata(result, "seo_testimonial_candidates_published")["rows_would_write"] == len(candidates)


def test_execute_writes_pending_pages_matching_an_independent_computation(small_world, tmp_path):
    result = run(small_world, tmp_path, execute=True)
    assert result.success
    rows = pages_in_db(small_world)
    expected = expected_groups(small_world, "2026-10").set_index(["program_id", "prefecture_code"])
    assert keys_of(rows) == sorted(expected.index)
    assert set(rows["status"]) == {"pending_review"} and set(rows["partition_key"]) == {OCTOBER}
    assert set(rows["run_id"]) == {result.run_id} and set(rows["loop_id"]) == {"loop_b_testimonial_seo"}
    for row in rows.itertuples():
        want = expected.loc[(row.program_id, row.prefecture_code)]
        assert row.group_size == want["group_size"]
        assert row.page_path == f"site/blog/case-{row.program_id}-{row.prefecture_code}.md"
        assert jsonld_problems(row.jsonld) == [] and row.jsonld in row.markdown
        rating = json.loads(row.jsonld)["aggregateRating"]
        assert rating["ratingCount"] == want["rating_count"] >= K
        assert rating["ratingValue"] == pytest.approx(want["rating_mean"], abs=0.005)
        meta = front_matter(row.markdown)
        assert meta["group_size"] == want["group_size"] and meta["program_id"] == row.program_id
        assert yaml.safe_load(row.markdown.split("---\n")[1])["title"] == meta["title"]
        evidence = json.loads(row.evidence_json)
        assert evidence["adopted"] == want["adopted"] and evidence["comments_published"] == 0
        # Amounts only over at least k adopted events.
        assert (evidence["adopted_amount_total_jpy"] is None) == (evidence["adopted_with_amount"] < K)


def test_no_customer_identifier_or_comment_reaches_the_output(small_world, tmp_path):
    assert run(small_world, tmp_path, execute=True).success
    rows = pages_in_db(small_world)
    events = AutonomathDatabase(path=str(small_world)).read_frame(
        "SELECT api_key, comment FROM customer_success_events"
    )
    keys = set(events["api_key"])
    comments = {c for c in events["comment"].dropna() if len(c) >= 8}
    assert len(rows) and keys and comments
    for column in rows.columns:
        values = rows[column].astype(str)
        assert not any(key in value for value in values for key in keys), column
        assert not any(comment in value for value in values for comment in comments), column


def test_rerun_is_idempotent_and_keeps_review_decisions(small_world, tmp_path):
    assert run(small_world, tmp_path, execute=True).success
    first = pages_in_db(small_world)
    conn = sqlite3.connect(str(small_world))
    conn.execute(
        "UPDATE seo_testimonial_candidates SET status = 'approved' WHERE candidate_id = ?",
        (int(first["candidate_id"][0]),),
    )
    conn.commit()
    conn.close()
    second_run = run(small_world, tmp_path, execute=True)
    assert second_run.success
    second = pages_in_db(small_world)
    assert keys_of(second) == keys_of(first)
    assert list(second["markdown"]) == list(first["markdown"]) and list(second["jsonld"]) == list(first["jsonld"])
    assert second.set_index("candidate_id").loc[int(first["candidate_id"][0]), "status"] == "approved"
    assert (second["status"] == "pending_review").sum() == len(first) - 1


def plant_september(db) -> None:
    """The small world's events start in October and November is not complete yet (partitions follow the
    clock): give September October's events, one month earlier, so a two-month backfill has two full months."""
    events = AutonomathDatabase(path=str(db)).read_frame("SELECT * FROM customer_success_events")
    jst = pd.to_datetime(events["ts"], utc=True).dt.tz_convert("Asia/Tokyo")
    october = events[jst.dt.strftime("%Y-%m") == "2026-10"].copy()
    shifted = (jst[october.index] - pd.DateOffset(months=1)).dt.tz_convert("UTC")
    october["ts"] = shifted.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    october["api_key"] = october["api_key"] + "_sep"
    columns = [c for c in october.columns if c != "id"]
    conn = sqlite3.connect(str(db))
    conn.executemany(
        f"INSERT INTO customer_success_events ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        october[columns].astype(object).where(october[columns].notna(), None).itertuples(index=False, name=None),
    )
    conn.commit()
    conn.close()


def test_two_month_backfill(small_world, tmp_path):
    plant_september(small_world)
    for partition in (SEPTEMBER, OCTOBER):
        assert run(small_world, tmp_path, partition, execute=True).success
    rows = pages_in_db(small_world)
    assert set(rows["partition_key"]) == {SEPTEMBER, OCTOBER}
    for partition, month in ((SEPTEMBER, "2026-09"), (OCTOBER, "2026-10")):
        month_rows = rows[rows["partition_key"] == partition]
        assert len(month_rows) >= 3
        assert keys_of(month_rows) == keys_of(expected_groups(small_world, month))
        assert all(front_matter(m)["period"] == f"{month[:4]}年{int(month[5:])}月" for m in month_rows["markdown"])
        assert all(
            front_matter(m)["date"] == ("2026-09-30" if month == "2026-09" else "2026-10-31")
            for m in month_rows["markdown"]
        )


def test_empty_month_is_a_success_with_zero_pages(small_world, tmp_path):
    result = run(small_world, tmp_path, "2025-01-01", execute=True)
    assert result.success
    assert metadata(result, "testimonial_seo_snapshot")["dagster/row_count"] == 0
    assert metadata(result, "seo_testimonial_candidates_published")["rows_written"] == 0


def test_k_is_configurable_and_k_below_two_is_refused(small_world, tmp_path):
    bigger = run(
        small_world, tmp_path, run_config={"ops": {"testimonial_seo_snapshot": {"config": {"min_group_size": 5}}}}
    )
    assert bigger.success
    pages = bigger.output_for_node("testimonial_seo_candidates")
    assert keys_of(pages) == keys_of(expected_groups(small_world, "2026-10", k=5)) and pages["group_size"].min() >= 5
    before = sha256(small_world)
    refused = run(
        small_world,
        tmp_path,
        execute=True,
        run_config={"ops": {"testimonial_seo_snapshot": {"config": {"min_group_size": 1}}}},
    )
    assert not refused.success
    assert "seo_testimonial_candidates_published" not in materialized(refused)
    assert sha256(small_world) == before


# ------------------------------------------------------------------------------- SQL aggregation


def world_db(events: list[tuple]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    create_all(conn)
    conn.executemany("INSERT INTO prefectures VALUES (?, ?, ?, ?)", PREFECTURES)
    ts = "2026-01-01T00:00:00Z"
    conn.executemany(
        "INSERT INTO programs VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1000000, 'A', ?, ?, ?)",
        [(*p, f"https://example.go.jp/{p[0]}", ts, ts) for p in PROGRAMS[:3]],
    )
    conn.executemany(
        "INSERT INTO customer_success_events (ts, api_key, program_id, prefecture_code, outcome, "
        "amount_jpy, rating, comment, consent_flag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        events,
    )
    return conn


event = st.tuples(
    st.sampled_from(["2026-10-05T00:00:00Z", "2026-10-20T12:00:00Z", "2026-11-02T00:00:00Z"]),
    st.sampled_from(["am_a", "am_b", "am_c"]),
    st.sampled_from(["P001", "P002", "P003"]),
    st.sampled_from(["13", "27"]),
    st.sampled_from(["adopted", "applied", "not_adopted"]),
    st.one_of(st.none(), st.integers(1_000, 5_000_000)),
    st.one_of(st.none(), st.integers(1, 5)),
    st.one_of(st.none(), st.just("とても助かりました")),
    st.integers(0, 1),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(event, max_size=60), k=st.integers(2, 6))
def test_aggregation_never_produces_a_group_below_k_nor_counts_non_consented(events, k):
    conn = world_db(events)
    groups = consented_groups(conn, "2026-09-30T15:00:00Z", "2026-10-31T15:00:00Z", k)
    frame = pd.DataFrame(
        events,
        columns=[
            "ts",
            "api_key",
            "program_id",
            "prefecture_code",
            "outcome",
            "amount_jpy",
            "rating",
            "comment",
            "consent_flag",
        ],
    )
    window = frame[(frame["ts"] < "2026-10-31T15:00:00Z") & (frame["consent_flag"] == 1)]
    sizes = window.groupby(["program_id", "prefecture_code"]).size().to_dict()
    ratings = window.groupby(["program_id", "prefecture_code"])["rating"].count().to_dict()
    assert (groups["group_size"] >= k).all() and (groups["rating_count"] >= k).all()
    assert sorted(zip(groups["program_id"], groups["prefecture_code"])) == sorted(
        key for key, n in sizes.items() if n >= k and ratings[key] >= k
    )
    for row in groups.itertuples():
        assert row.group_size == sizes[(row.program_id, row.prefecture_code)]
        assert row.adopted_amount_total_jpy is None or row.amount_count >= k
        assert 1 <= row.rating_value <= 5
    assert "api_key" not in groups.columns and "comment" not in groups.columns


def test_aggregation_refuses_k_below_two():
    with pytest.raises(ValueError, match="min_group_size"):
        consented_groups(world_db([]), "2026-09-30T15:00:00Z", "2026-10-31T15:00:00Z", 1)


def test_loop_is_shaped_like_the_others():
    assert LOOP.spec.group_name == "loop_b_testimonial_seo"
    assert {k.to_user_string() for a in LOOP.assets for k in a.keys} == {
        "testimonial_seo_snapshot",
        "testimonial_seo_candidates",
        "seo_testimonial_candidates_published",
    }
    assert LOOP.schedule.default_status == dg.DefaultScheduleStatus.STOPPED


HOSTILE_NAME = "![t](http://evil.example/t.png) [申請](http://evil.example/) <img src=x> <http://evil.example>"
UNPROMOTABLE_IDS = ("..", "P9/../x")


def plant_hostile_programs(db) -> str:
    """Give one October group a hostile program name, and copy another group's program and events to
    program ids whose page path review could never promote. Returns the renamed program's id."""
    first, second = expected_groups(db, "2026-10")["program_id"].unique()[:2]
    conn = sqlite3.connect(str(db))
    conn.execute("UPDATE programs SET name = ? WHERE program_id = ?", (HOSTILE_NAME, first))
    for program_id in UNPROMOTABLE_IDS:
        conn.execute(
            "INSERT INTO programs SELECT ?, name, summary, agency, level, prefecture_code, municipality, "
            "category, max_amount_jpy, tier, source_url, source_fetched_at, updated_at "
            "FROM programs WHERE program_id = ?",
            (program_id, second),
        )
        conn.execute(
            "INSERT INTO customer_success_events (ts, api_key, program_id, prefecture_code, outcome, "
            "amount_jpy, rating, comment, consent_flag) SELECT ts, api_key, ?, prefecture_code, outcome, "
            "amount_jpy, rating, comment, consent_flag FROM customer_success_events WHERE program_id = ?",
            (program_id, second),
        )
    conn.commit()
    conn.close()
    return first


def test_hostile_programs_are_escaped_and_unpromotable_pages_are_not_proposed(small_world, tmp_path):
    from autonomath_pipelines.lib.files import is_safe_file_name

    hostile_program = plant_hostile_programs(small_world)
    result = run(small_world, tmp_path)
    assert result.success
    candidates = result.output_for_node("testimonial_seo_candidates")
    assert not set(candidates["program_id"]) & set(UNPROMOTABLE_IDS)
    for page in candidates["page_path"]:
        folder, _, name = page.rpartition("/")
        assert folder == "site/blog" and is_safe_file_name(name)
    assert check_outcomes(result)["no_injected_markup"] and all(check_outcomes(result).values())
    snapshot = result.output_for_node("testimonial_seo_snapshot")
    skipped = int(snapshot["program_id"].isin(UNPROMOTABLE_IDS).sum())
    assert skipped >= 2
    assert metadata(result, "testimonial_seo_candidates")["pages_skipped_unpromotable"] == skipped
    [page] = candidates.loc[candidates["program_id"] == hostile_program, "markdown"].head(1)
    assert front_matter(page)["program_name"] == HOSTILE_NAME and "\\!\\[t\\]" in page
