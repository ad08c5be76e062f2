"""The operator's tools against a live `dagster dev` on loopback: the UI in Debian's Chromium (driven by
Playwright, never a downloaded browser) and the `dagster-graphql` Python client.

One server per module (it takes ~30 s to start): a fresh small demo world whose logs end today (JST),
so the latest daily partition has data, a temporary DAGSTER_HOME with the repo's dagster.yaml, and
every output path in tmp. Screenshots of each step go to ``reports/e2e/`` (git-ignored).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from autonomath_pipelines_tests.e2e.processes import BIN, REPO, free_port, start, stop, wait_until
from autonomath_pipelines_tests.system import ensure_debian_packages

pytestmark = pytest.mark.e2e
SHOTS = REPO / "reports" / "e2e"
CHROMIUM = "/usr/bin/chromium"
#: A Japanese font, so the screenshots show the loops' Japanese previews instead of empty boxes.
CJK_FONT = "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TODAY_JST = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date()
LATEST_DAY = (TODAY_JST - dt.timedelta(days=1)).isoformat()  # loop H's latest complete partition
MONTHS = ["2026-09-01", "2026-10-01"]  # loop D backfill


class LiveDagster:
    def __init__(self, home: Path, port: int, log: Path, db: Path):
        self.home, self.port, self.log, self.db = home, port, log, db
        self.url = f"http://127.0.0.1:{port}"
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=port)

    def instance(self) -> dg.DagsterInstance:
        from dagster._core.instance.ref import InstanceRef  # not exported; the public get() needs DAGSTER_HOME

        return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(self.home)))

    def wait_run(self, run_id: str, timeout: float = 300) -> str:
        status = wait_until(
            lambda: (s := self.client.get_run_status(run_id).value) in ("SUCCESS", "FAILURE", "CANCELED") and s,
            timeout,
            f"run {run_id} to finish",
            [self.log],
        )
        return status


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from autonomath_pipelines.demo import build_world

    root = tmp_path_factory.mktemp("live_dagster")
    db = root / "autonomath.db"
    # Logs through the end of today JST: should the clock pass midnight during the session, the UI's
    # "Latest" day (then today) still has its logs.
    build_world(db, scale="small", seed=7, as_of=TODAY_JST + dt.timedelta(days=1))
    home = root / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    port, log = free_port(), root / "dagster_dev.log"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "AUTONOMATH_DB": str(db),
        "AUTONOMATH_STORAGE": str(root / "storage"),
        "AUTONOMATH_REPORTS_DIR": str(root / "reports"),
        "AUTONOMATH_REPO_ROOT": str(root / "repo"),
        "AUTONOMATH_EMBEDDING_CACHE": str(root / "cache.sqlite"),
    }
    env.pop("AUTONOMATH_EXECUTE_LOOPS", None)  # dry run: the UI shows checks and metadata without writing
    process = start([str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)], env, log)
    server = LiveDagster(home, port, log, db)
    try:
        wait_until(
            lambda: server.client._execute(
                "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"
            )["repositoriesOrError"]["nodes"],
            180,
            "dagster dev did not serve the code location",
            [log],
        )
        yield server
    finally:
        stop(process, timeout=60)


@pytest.fixture(scope="module")
def page(live):
    ensure_debian_packages(["chromium", "fonts-ipafont-gothic"], provides=[CHROMIUM, CJK_FONT])
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")  # no welcome dialog
        page = context.new_page()
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def _group(live, page, group: str, asset: str) -> None:
    page.goto(f"{live.url}/asset-groups~group%3A%22{group}%22/")
    page.get_by_text(asset).first.wait_for()


def _latest_run(instance: dg.DagsterInstance, **filters) -> dg.DagsterRun | None:
    runs = instance.get_runs(dg.RunsFilter(**filters), limit=1)
    return runs[0] if runs else None


def test_materialize_loop_h_latest_partition_from_the_ui(live, page):
    page.goto(f"{live.url}/asset-groups")
    page.get_by_text("loop_h_cache_warming").first.wait_for()
    _shot(page, "01_asset_groups")
    _group(live, page, "loop_h_cache_warming", "cache_warming_zipf_head")
    _shot(page, "02_loop_h_group")
    page.get_by_role("button", name="Materialize all").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Launch runs to materialize 4 assets").wait_for()
    dialog.get_by_role("button", name="Latest", exact=True).click()
    _shot(page, "03_launch_latest_partition")
    dialog.get_by_role("button", name="Launch 1 run").click()

    with live.instance() as instance:
        run = wait_until(
            lambda: (
                _latest_run(instance, tags={"dagster/partition": LATEST_DAY})
                or _latest_run(instance, tags={"dagster/partition": TODAY_JST.isoformat()})
            ),
            60,
            "the UI's run to appear",
            [live.log],
        )
    latest_day = run.tags["dagster/partition"]  # LATEST_DAY, or today if midnight JST passed meanwhile
    assert live.wait_run(run.run_id) == "SUCCESS", live.log.read_text(errors="replace")[-3000:]
    page.goto(f"{live.url}/runs/{run.run_id}")
    page.get_by_text("Success", exact=False).first.wait_for()
    _shot(page, "04_run_succeeded")

    page.goto(f"{live.url}/assets/cache_warming_candidates?view=checks")
    # The two agreement checks' names are long: the UI middle-truncates them, so they are counted
    # among the passed checks here and named in the instance's record below.
    for check in ("rows_within_cap", "payloads_valid", "ttl_in_future", "cache_keys_sound"):
        page.get_by_text(check).first.wait_for()
    wait_until(lambda: page.get_by_text("Succeeded").count() >= 6, 60, "six passed checks in the UI")
    _shot(page, "05_checks_passed")
    page.goto(f"{live.url}/assets/cache_warming_zipf_head")
    page.get_by_text("zipf_exponent").first.wait_for()
    _shot(page, "06_zipf_metadata")

    with live.instance() as instance:  # what the UI showed is what the instance recorded
        checks = [
            e.dagster_event.event_specific_data
            for e in instance.all_logs(run.run_id)
            if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ]
        assert {c.check_name for c in checks if c.passed} >= {
            "rows_within_cap",
            "payloads_valid",
            "ttl_in_future",
            "cache_keys_sound",
            "no_empty_payload_for_answered_query",
            "top1_agrees_with_service",
        }
        head = instance.get_latest_materialization_event(dg.AssetKey("cache_warming_zipf_head"))
        assert head.asset_materialization.partition == latest_day
        assert head.asset_materialization.metadata["dagster/row_count"].value > 0


def test_backfill_two_months_of_loop_d_from_the_ui(live, page):
    _group(live, page, "loop_d_forecast_accuracy", "forecast_accuracy_snapshot")
    page.get_by_role("button", name="Materialize all").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Launch runs to materialize").wait_for()
    # The dialog offers only the last 90 days until asked for all, and loop D's partitions reach back
    # further than that (from 2025-01), so the link is always there; it renders after the dialog's text.
    dialog.get_by_text("Show all partitions").first.click()
    field = dialog.locator("input[type=text]").first
    field.fill(", ".join(MONTHS))
    field.press("Enter")
    _shot(page, "07_backfill_two_months")
    dialog.get_by_role("button", name="Launch backfill").click()
    page.get_by_text("Created backfill").first.wait_for()

    def finished():
        with live.instance() as instance:
            backfills = instance.get_backfills(limit=1)
            return (
                backfills
                and backfills[0].status.value
                in ("COMPLETED", "COMPLETED_SUCCESS", "FAILED", "COMPLETED_FAILED", "CANCELED")
                and backfills[0]
            )

    backfill = wait_until(finished, 420, "the backfill to finish", [live.log])
    with live.instance() as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
        materialized = instance.get_materialized_partitions(dg.AssetKey("forecast_calibration_published"))
    assert backfill.status.value in ("COMPLETED", "COMPLETED_SUCCESS")
    # Loop D has a single-run backfill policy: one run processes the whole range.
    assert [
        (r.tags.get("dagster/asset_partition_range_start"), r.tags.get("dagster/asset_partition_range_end"))
        for r in runs
    ] == [(MONTHS[0], MONTHS[-1])]
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert set(MONTHS) <= materialized
    page.goto(f"{live.url}/runs/b/{backfill.backfill_id}")
    page.get_by_text(backfill.backfill_id).first.wait_for()
    page.wait_for_load_state("networkidle")
    page.get_by_text("Completed", exact=False).first.wait_for()
    _shot(page, "08_backfill_completed")


def test_graphql_client_launches_the_same_run(live):
    run_id = live.client.submit_job_execution("loop_h_cache_warming_job", tags={"dagster/partition": LATEST_DAY})
    assert live.wait_run(run_id) == "SUCCESS"
    with live.instance() as instance:
        materialized = {
            e.dagster_event.asset_key.to_user_string()
            for e in instance.all_logs(run_id)
            if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        }
    assert materialized == {
        "cache_warming_snapshot",
        "cache_warming_zipf_head",
        "cache_warming_candidates",
        "query_cache_published",
    }
    with pytest.raises(DagsterGraphQLClientError):
        live.client.submit_job_execution("no_such_job")
