"""Nothing stuck (issue 14, defect 1): a run killed while holding the database-write pool slot, a
step waiting for a slot another live run holds, and SIGTERM while waiting.

Each case uses its own persistent Dagster home with the project's pool settings (one slot for
``autonomath_db_write``, op granularity), as the README advises for a scheduled system. The runs
are forked processes (``drivers.Forked``), so a run that would hang on the old code fails the test
by its timeout instead of hanging pytest.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest

from autonomath_pipelines import orchestrator
from autonomath_pipelines.lib.liveness import RunProcess, process_gone, process_start, run_process, this_process
from autonomath_pipelines.loops.common import DB_WRITE_POOL
from autonomath_pipelines_tests.conftest import LAST_DAY
from autonomath_pipelines_tests.hardening import drivers
from autonomath_pipelines_tests.loops.harness import run_loops_at

POOLS = "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n    granularity: op\n"


@pytest.fixture
def home(tmp_path) -> Path:
    folder = tmp_path / "dagster_home"
    folder.mkdir()
    (folder / "dagster.yaml").write_text(POOLS, encoding="utf-8")
    return folder


def instance_at(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home))


def run_h(home: Path, db: Path, tmp: Path, name: str, *, execute: bool, **kwargs):
    return run_loops_at(
        only=["H"],
        partition=LAST_DAY,
        execute=execute,
        db_path=str(db),
        storage_dir=str(tmp / "storage"),
        reports_dir=str(tmp / name),
        instance=instance_at(home),
        **kwargs,
    )


def holder(home: Path, db: Path, tmp: Path) -> tuple[drivers.Forked, Path]:
    """Loop H executing, paused inside its publish: it holds the pool slot until killed."""
    ready = tmp / "holder.ready"
    proc = drivers.Forked(
        run_h, home, db, tmp, "holder", execute=True, setup=lambda: drivers.pause_in_publish(10, str(ready))
    )
    drivers.wait_ready(proc, ready)
    return proc, ready


def only_run(instance: dg.DagsterInstance, pid: int) -> dg.DagsterRun:
    [run] = [r for r in instance.get_runs() if r.tags.get("autonomath/pid") == str(pid)]
    return run


def report_of(tmp: Path, name: str) -> dict:
    [path] = (tmp / name / "self_improve_runs").glob("*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def test_a_killed_runs_slot_is_freed_and_later_runs_go_on(small_world, tmp_path, home):
    proc, _ = holder(home, small_world, tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    instance = instance_at(home)
    killed = only_run(instance, proc.pid)
    assert killed.status == dg.DagsterRunStatus.STARTED  # as the kill left it
    assert killed.run_id in instance.event_log_storage.get_concurrency_info(DB_WRITE_POOL).active_run_ids

    later = drivers.Forked(run_h, home, small_world, tmp_path, "later", execute=False)
    later.communicate(timeout=120)  # the old code waited forever
    assert later.returncode == 0
    instance = instance_at(home)
    assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    info = instance.event_log_storage.get_concurrency_info(DB_WRITE_POOL)
    assert not info.active_run_ids and not info.pending_run_ids
    assert report_of(tmp_path, "later")["loops_succeeded"] == 1


def test_a_step_waiting_for_a_live_runs_slot_gives_up_naming_that_run(small_world, tmp_path, home):
    proc, _ = holder(home, small_world, tmp_path)
    try:
        holding = only_run(instance_at(home), proc.pid)
        waiting = drivers.Forked(run_h, home, small_world, tmp_path, "waiting", execute=False, slot_wait=2)
        waiting.communicate(timeout=120)
        assert waiting.returncode == 0  # run_loops returned: the report says the run failed
        [result] = report_of(tmp_path, "waiting")["results"]
        assert result["status"] == "failed"
        assert "gave up after 2 s waiting for a slot of pool 'autonomath_db_write'" in result["error"]
        assert holding.run_id in result["error"]
        instance = instance_at(home)
        assert instance.get_run_by_id(result["run_id"]).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(holding.run_id).status == dg.DagsterRunStatus.STARTED  # left alone
        assert result["run_id"] not in instance.event_log_storage.get_concurrency_info(DB_WRITE_POOL).pending_run_ids
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def test_sigterm_ends_a_run_waiting_for_a_slot(small_world, tmp_path, home):
    proc, _ = holder(home, small_world, tmp_path)
    try:
        waiting = drivers.Forked(run_h, home, small_world, tmp_path, "waiting", execute=False)
        instance = instance_at(home)
        deadline = time.monotonic() + 120
        while not instance.event_log_storage.get_concurrency_info(DB_WRITE_POOL).pending_run_ids:
            assert waiting.poll() is None and time.monotonic() < deadline, "the run never waited for the slot"
            time.sleep(0.2)
        [waiting_run] = instance.event_log_storage.get_concurrency_info(DB_WRITE_POOL).pending_run_ids
        os.kill(waiting.pid, signal.SIGTERM)
        waiting.communicate(timeout=20)  # the old code ignored SIGTERM here
        assert waiting.returncode != 0
        instance = instance_at(home)
        assert instance.get_run_by_id(waiting_run).status == dg.DagsterRunStatus.FAILURE
        info = instance.event_log_storage.get_concurrency_info(DB_WRITE_POOL)
        assert waiting_run not in info.pending_run_ids | info.active_run_ids
        [result] = report_of(tmp_path, "waiting")["results"]
        assert result["status"] == "failed" and "SIGTERM" in result["error"]
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def test_the_slot_wait_comes_from_the_environment_and_must_be_positive(monkeypatch):
    monkeypatch.setenv(orchestrator.SLOT_WAIT_ENV, "7.5")
    assert orchestrator.slot_wait_seconds() == 7.5
    assert orchestrator.slot_wait_seconds(3) == 3
    monkeypatch.setenv(orchestrator.SLOT_WAIT_ENV, "soon")
    with pytest.raises(orchestrator.UsageError, match="AUTONOMATH_SLOT_WAIT_SECONDS must be a number"):
        orchestrator.slot_wait_seconds()
    with pytest.raises(orchestrator.UsageError, match="more than 0"):
        orchestrator.slot_wait_seconds(0)


# ------------------------------------------------------------------------------------ liveness


def test_this_process_is_not_gone_and_a_reaped_child_is():
    me = this_process()
    assert run_process(me.tags()) == me
    assert not process_gone(me, me.host)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert process_start(pid) is None
    assert process_gone(RunProcess(me.host, pid, "123"), me.host)


def test_a_reused_pid_another_host_or_missing_tags():
    starts = {41: "900"}.get
    assert process_gone(RunProcess("h", 41, "100"), "h", starts)  # pid reused by a later process
    assert not process_gone(RunProcess("h", 41, "900"), "h", starts)
    assert not process_gone(RunProcess("h", 41, ""), "h", starts)  # no start time recorded: alive
    assert process_gone(RunProcess("h", 42, "100"), "h", starts)
    assert not process_gone(RunProcess("other", 42, "100"), "h", starts)  # never judged from another host
    assert run_process({}) is None and run_process({"autonomath/host": "h", "autonomath/pid": "x"}) is None
