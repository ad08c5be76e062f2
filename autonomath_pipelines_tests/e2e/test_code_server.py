"""A split deployment on loopback: code server, webserver and daemon as three processes, the way
they run on separate hosts; a loop run launched through the webserver executes the code server's code."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from dagster_graphql import DagsterGraphQLClient

from autonomath_pipelines_tests.conftest import LAST_DAY
from autonomath_pipelines_tests.e2e.processes import BIN, REPO, free_port, start, stop, wait_until

pytestmark = pytest.mark.e2e


def test_a_run_launched_through_the_webserver_executes_on_the_code_server(small_world, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    code_port, web_port = free_port(), free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "AUTONOMATH_DB": str(small_world),
        "AUTONOMATH_STORAGE": str(tmp_path / "storage"),
        "AUTONOMATH_REPORTS_DIR": str(tmp_path / "reports"),
        "AUTONOMATH_REPO_ROOT": str(tmp_path / "repo"),
        "AUTONOMATH_EMBEDDING_CACHE": str(tmp_path / "cache.sqlite"),
        "AUTONOMATH_EXECUTE_LOOPS": "loop_h_cache_warming",
        "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
        "DAGSTER_CODE_SERVER_PORT": str(code_port),
    }
    # Create the instance's storage once, before three processes open it at the same moment (a fresh
    # SQLite storage migrated concurrently fails alembic's revision check; Postgres has no such race).
    subprocess.run(
        [str(BIN / "dagster"), "instance", "migrate"], cwd=REPO, env=env, check=True, capture_output=True, timeout=120
    )
    workspace = str(REPO / "docs" / "deployment" / "workspace.code-server.yaml")
    logs = [tmp_path / "code_server.log", tmp_path / "webserver.log", tmp_path / "daemon.log"]
    processes = [
        start(
            [
                str(BIN / "dagster"),
                "code-server",
                "start",
                "-m",
                "autonomath_pipelines.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(code_port),
            ],
            env,
            logs[0],
        )
    ]
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=web_port)
        processes.append(
            start(
                [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(web_port)], env, logs[1]
            )
        )
        processes.append(start([str(BIN / "dagster-daemon"), "run", "-w", workspace], env, logs[2]))
        wait_until(
            lambda: client._execute("{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }")[
                "repositoriesOrError"
            ]["nodes"],
            180,
            "the webserver did not load the code location from the code server",
            logs,
        )
        run_id = client.submit_job_execution("loop_h_cache_warming_job", tags={"dagster/partition": LAST_DAY})
        wait_until(
            lambda: client.get_run_status(run_id).value in ("SUCCESS", "FAILURE", "CANCELED"),
            300,
            "the run did not finish",
            logs,
        )
        assert client.get_run_status(run_id).value == "SUCCESS", logs[2].read_text(errors="replace")[-3000:]
    finally:
        for process in reversed(processes):
            stop(process)
    from autonomath_pipelines.contract.sqlite import sqlite3

    conn = sqlite3.connect(str(small_world))
    try:
        written = conn.execute(
            "SELECT COUNT(*), MIN(run_id) FROM query_cache WHERE partition_key = ?", (LAST_DAY,)
        ).fetchone()
    finally:
        conn.close()
    assert written == (written[0], run_id) and written[0] > 0  # the code server's run wrote the cache
