"""The Postgres instance profile (dagster.postgres.yaml) against a real PostgreSQL server.

A throwaway cluster (Debian's PostgreSQL, installed if missing) serves one fresh database per test.
With the profile as DAGSTER_HOME/dagster.yaml: two loops run at once and a backfill runs, as
`autonomath-loops` processes, and their runs and events are read back from Postgres; and the run
queue (dagster-daemon) starts at most one run per loop at a time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from autonomath_pipelines.operations.runs import CPU_SECONDS_TAG
from autonomath_pipelines_tests.conftest import LAST_DAY, LAST_FULL_WEEK
from autonomath_pipelines_tests.e2e.postgres import Database, PostgresServer, discard, start_postgres_server
from autonomath_pipelines_tests.e2e.processes import BIN, REPO, free_port, start, stop, wait_until

PROFILE = REPO / "dagster.postgres.yaml"
PER_LOOP_LIMIT = {"key": "loop_id", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
BACKFILL = ["2026-11-18", "2026-11-19", "2026-11-20"]
H_JOB, F_JOB = "loop_h_cache_warming_job", "loop_f_channel_roi_job"


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def postgres() -> PostgresServer:
    server = start_postgres_server()
    try:
        yield server
    finally:
        discard(server)


@pytest.fixture
def database(postgres, request) -> Database:
    """A fresh database (and owner with a password) for one test."""
    return postgres.create_database(request.node.name.split("[")[0][:40].lower())


@pytest.fixture
def dagster_home(tmp_path, database, monkeypatch) -> Path:
    """DAGSTER_HOME with the Postgres profile as its dagster.yaml, DAGSTER_PG_* set (here and for
    the processes the test starts)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROFILE, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for key, value in database.env().items():
        monkeypatch.setenv(key, value)
    return home


@pytest.fixture
def loop_env(dagster_home, small_world_pristine, tmp_path) -> dict[str, str]:
    """The environment of the test's processes: the instance above and a private demo world."""
    from autonomath_pipelines.demo import truth_path

    world = tmp_path / "autonomath.db"
    shutil.copyfile(small_world_pristine, world)
    shutil.copyfile(truth_path(small_world_pristine), truth_path(world))
    return {
        **os.environ,
        "AUTONOMATH_DB": str(world),
        "AUTONOMATH_STORAGE": str(tmp_path / "storage"),
        "AUTONOMATH_REPORTS_DIR": str(tmp_path / "reports"),
        "AUTONOMATH_REPO_ROOT": str(tmp_path / "repo"),
        "AUTONOMATH_EMBEDDING_CACHE": str(tmp_path / "embedding_cache.sqlite"),
    }


def _create_tables(home: Path) -> None:
    """What `dagster instance migrate` does once per database: create Dagster's tables."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)):
        pass


def _sqlite_files(home: Path) -> list[str]:
    return sorted(
        str(p.relative_to(home))
        for p in home.rglob("*")
        if p.suffix in (".db", ".sqlite", ".sqlite3") or p.name in ("history", "schedules")
    )


def _rows(database: Database, query: str, params: tuple = ()) -> list[tuple]:
    conn = database.connect()
    try:
        cur = conn.cursor()
        cur.execute(query, params)
        return cur.fetchall()
    finally:
        conn.close()


def _tags(database: Database) -> dict[str, dict[str, str]]:
    tags: dict[str, dict[str, str]] = {}
    for run_id, key, value in _rows(database, "SELECT run_id, key, value FROM run_tags"):
        tags.setdefault(run_id, {})[key] = value
    return tags


# ---------------------------------------------------------------------------------- the profile


def test_both_profiles_queue_pool_and_monitor_alike():
    """dagster.postgres.yaml differs from dagster.yaml only in where the instance keeps its data."""
    sqlite_profile = yaml.safe_load((REPO / "dagster.yaml").read_text())
    postgres_profile = yaml.safe_load(PROFILE.read_text())
    for section in ("telemetry", "concurrency", "run_monitoring"):
        assert postgres_profile[section] == sqlite_profile[section], section
    assert PER_LOOP_LIMIT in sqlite_profile["concurrency"]["runs"]["tag_concurrency_limits"]
    assert postgres_profile["storage"]["postgres"]["postgres_db"] == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "scheme": "postgresql+psycopg2",
    }


def test_the_sqlite_profile_queues_one_run_per_loop(tmp_path):
    import dagster as dg

    shutil.copyfile(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 2
        assert queue.tag_concurrency_limits == [PER_LOOP_LIMIT]


@pytest.mark.e2e
def test_the_postgres_profile_loads_postgres_storage_and_the_queue(dagster_home, database):
    import dagster as dg
    from dagster._core.storage.dagster_run import DagsterRunStatus
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    with dg.DagsterInstance.get() as instance:  # DAGSTER_HOME/dagster.yaml, as every CLI loads it
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 2
        assert concurrency.run_queue_config.tag_concurrency_limits == [PER_LOOP_LIMIT]
        assert concurrency.pool_config.default_pool_limit == 1
        assert concurrency.pool_config.pool_granularity.value == "op"
        assert instance.run_monitoring_enabled and not instance.telemetry_enabled
        # The pool's one slot lives in Postgres too (so it is shared by every process).
        assert instance.event_log_storage.supports_global_concurrency_limits
        # A round trip through the storage.
        run = instance.create_run_for_job(
            dg.GraphDefinition(name="noop", node_defs=[]).to_job(), tags={"loop_id": "loop_h_cache_warming"}
        )
        assert instance.get_run_by_id(run.run_id).tags["loop_id"] == "loop_h_cache_warming"
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.NOT_STARTED
    tables = {name for (name,) in _rows(database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"runs", "run_tags", "event_logs", "jobs", "job_ticks", "concurrency_limits", "kvs"} <= tables
    assert _rows(database, "SELECT run_id, pipeline_name FROM runs") == [(run.run_id, "noop")]
    assert _sqlite_files(dagster_home) == []


# ----------------------------------------------------------------------- runs through Postgres


def _loops_command(*args: str) -> list[str]:
    return [str(BIN / "autonomath-loops"), "run", *args]


@pytest.mark.e2e
def test_two_loops_at_once_and_a_backfill_keep_their_runs_and_events_in_postgres(
    dagster_home, database, loop_env, tmp_path
):
    import dagster as dg

    _create_tables(dagster_home)
    logs = {name: tmp_path / f"{name}.log" for name in ("H", "F", "backfill")}
    # Two loops at the same time, each its own process on the one instance.
    started = {
        letter: subprocess.Popen(
            _loops_command("--only", letter, "--partition", key),
            cwd=REPO,
            env=loop_env,
            stdout=logs[letter].open("w"),
            stderr=subprocess.STDOUT,
        )
        for letter, key in (("H", LAST_DAY), ("F", LAST_FULL_WEEK))
    }
    try:
        for letter, process in started.items():
            assert process.wait(timeout=600) == 0, logs[letter].read_text(errors="replace")[-4000:]
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    # A backfill: one run per partition.
    with logs["backfill"].open("w") as log:
        done = subprocess.run(
            _loops_command("--only", "H", "--from", BACKFILL[0], "--to", BACKFILL[-1]),
            cwd=REPO,
            env=loop_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    assert done.returncode == 0, logs["backfill"].read_text(errors="replace")[-4000:]

    runs = _rows(
        database,
        "SELECT run_id, pipeline_name, status, partition, start_time, end_time FROM runs ORDER BY create_timestamp, id",
    )
    tags = _tags(database)
    assert [(job, status, partition) for _, job, status, partition, _, _ in runs[2:]] == [
        (H_JOB, "SUCCESS", key) for key in BACKFILL
    ]
    assert sorted((job, status, partition) for _, job, status, partition, _, _ in runs[:2]) == [
        (F_JOB, "SUCCESS", LAST_FULL_WEEK),
        (H_JOB, "SUCCESS", LAST_DAY),
    ]
    for run_id, job, _, partition, started, ended in runs:
        assert tags[run_id]["dagster/partition"] == partition
        assert tags[run_id]["loop_id"] == job.removesuffix("_job")
        assert tags[run_id]["autonomath/launched_by"] == "autonomath-loops run"
        assert float(tags[run_id][CPU_SECONDS_TAG]) > 0  # added after the run (the loop scorecard reads it)
        assert started is not None and ended is not None and started <= ended
    # Their events: every run started and succeeded, and each backfill partition materialized the cache.
    events = _rows(database, "SELECT run_id, dagster_event_type, asset_key, partition FROM event_logs")
    for run_id, *_ in runs:
        types = {event_type for rid, event_type, _, _ in events if rid == run_id}
        assert {
            dg.DagsterEventType.RUN_START.value,
            dg.DagsterEventType.RUN_SUCCESS.value,
            dg.DagsterEventType.STEP_SUCCESS.value,
            dg.DagsterEventType.ASSET_MATERIALIZATION.value,
        } <= types
    published = dg.AssetKey("query_cache_published").to_string()
    materialized = sorted(
        (partition, run_id)
        for run_id, event_type, asset_key, partition in events
        if event_type == dg.DagsterEventType.ASSET_MATERIALIZATION.value and asset_key == published
    )
    backfill_runs = {partition: run_id for run_id, job, _, partition, *_ in runs[2:]}
    h_run = next(run_id for run_id, job, *_ in runs[:2] if job == H_JOB)
    assert materialized == sorted([(LAST_DAY, h_run)] + [(key, backfill_runs[key]) for key in BACKFILL])
    channel = dg.AssetKey("channel_roi_published").to_string()
    assert [
        partition
        for _, event_type, asset_key, partition in events
        if event_type == dg.DagsterEventType.ASSET_MATERIALIZATION.value and asset_key == channel
    ] == [LAST_FULL_WEEK]
    # Nothing went to SQLite: no runs.db, index.db, schedules.db in DAGSTER_HOME.
    assert _sqlite_files(dagster_home) == []


# --------------------------------------------------------------------- the queue: one run per loop


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore:Using variable_values and operation_name:DeprecationWarning")  # inside gql
def test_the_run_queue_starts_one_run_per_loop_at_a_time(dagster_home, database, loop_env, tmp_path):
    """Two runs of loop H and one of loop F queued together: F starts beside the first H run, the
    second H run only once the first has finished (max_concurrent_runs 2 would allow both H runs)."""
    import dagster as dg
    from dagster_graphql import DagsterGraphQLClient

    _create_tables(dagster_home)
    port = free_port()
    workspace = str(REPO / "workspace.yaml")
    logs = [tmp_path / "webserver.log", tmp_path / "daemon.log"]
    processes = []
    try:
        processes.append(
            start(
                [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(port)], loop_env, logs[0]
            )
        )
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        wait_until(
            lambda: client._execute("{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }")[
                "repositoriesOrError"
            ]["nodes"],
            180,
            "the webserver did not load the code location",
            logs,
        )
        submitted = [(H_JOB, "2026-11-19"), (H_JOB, LAST_DAY), (F_JOB, LAST_FULL_WEEK)]
        # In-process executor: one process per run instead of one per step (the queue is under test, not steps).
        in_process = {"execution": {"config": {"in_process": {}}}}
        run_ids = [
            client.submit_job_execution(job, run_config=in_process, tags={"dagster/partition": key})
            for job, key in submitted
        ]
        # No daemon yet: all three wait in the queue, so the daemon sees them together.
        assert [client.get_run_status(r).value for r in run_ids] == ["QUEUED"] * 3
        processes.append(start([str(BIN / "dagster-daemon"), "run", "-w", workspace], loop_env, logs[1]))
        wait_until(
            lambda: all(client.get_run_status(r).value in ("SUCCESS", "FAILURE", "CANCELED") for r in run_ids),
            300,
            "the runs did not finish",
            logs,
        )
        statuses = [client.get_run_status(r).value for r in run_ids]
        assert statuses == ["SUCCESS"] * 3, logs[1].read_text(errors="replace")[-4000:]
    finally:
        for process in reversed(processes):
            stop(process)

    tags = _tags(database)
    assert [tags[r]["loop_id"] for r in run_ids] == ["loop_h_cache_warming"] * 2 + ["loop_f_channel_roi"]
    # The daemon reports RUN_STARTING as it takes a run off the queue; the run reports RUN_SUCCESS.
    moments: dict[tuple[str, str], float] = {}
    for run_id, event_type, timestamp in _rows(
        database,
        "SELECT run_id, dagster_event_type, timestamp FROM event_logs WHERE dagster_event_type IN (%s, %s, %s)",
        (
            dg.DagsterEventType.RUN_ENQUEUED.value,
            dg.DagsterEventType.RUN_STARTING.value,
            dg.DagsterEventType.RUN_SUCCESS.value,
        ),
    ):
        moments[(run_id, event_type)] = timestamp.timestamp()
    assert all((r, dg.DagsterEventType.RUN_ENQUEUED.value) in moments for r in run_ids)  # they went through the queue
    dequeued = {r: moments[(r, dg.DagsterEventType.RUN_STARTING.value)] for r in run_ids}
    finished = {r: moments[(r, dg.DagsterEventType.RUN_SUCCESS.value)] for r in run_ids}
    first_h, second_h = sorted(run_ids[:2], key=dequeued.get)
    f_run = run_ids[2]
    # Loop H: the second run left the queue only after the first had finished.
    assert dequeued[second_h] >= finished[first_h]
    # Loop F did not wait for loop H: it started while the first H run was still running.
    assert dequeued[f_run] < finished[first_h]
    assert _sqlite_files(dagster_home) == []
