"""Subprocess drivers for the fault and concurrency tests.

Runs one loop partition (as the loop tests' harness does) or one review promotion in a separate
process, optionally stopping at a controlled point so the test can SIGKILL it there. The stopping
points are monkeypatched here, in the driver process only; production code has no test hooks.

Two ways to get that process: ``spawn`` starts a fresh interpreter on this module's command line
(below; what the CLI races use), ``Forked`` forks the test process (same patches, no import cost:
the kill tests use it to stay fast on a 2-core machine).

    python -m autonomath_pipelines_tests.hardening.drivers loop --loop H --db DB --storage DIR --repo DIR \\
        --partition KEY [--execute] [--embedding-cache PATH] [--generation TAG]
        [--pause-in-publish-after-rows N | --pause-after-renames N --under DIR] [--ready FILE]
    python -m autonomath_pipelines_tests.hardening.drivers promote --db DB --repo DIR --ids B:1,B:2
        [--pause-after-renames N --under DIR] [--ready FILE]
    python -m autonomath_pipelines_tests.hardening.drivers cli [--announce-publish DIR] -- run --only H ...

``--announce-publish DIR``: touch ``DIR/<pid>.<n>`` as each publish starts its write transaction
(before waiting for the lock), so a test holding the lock can release it once every process is there.

``--pause-in-publish-after-rows N [--spill]``: inside the publish transaction, after the stale rows
were deleted and N rows inserted, write ``--ready`` and sleep (``--spill``: with changed pages
already written to the database file, as in a large publish). ``--pause-after-renames N``: after the
N-th file renamed into place under ``--under``, write ``--ready`` and sleep.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

PAUSE_SECONDS = 600
PROJECT_ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------ helpers for tests


def spawn(*args: str, env: dict | None = None):
    """This module in a fresh Python process (no DAGSTER_HOME: an ephemeral Dagster instance)."""
    import subprocess

    environment = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    environment.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "autonomath_pipelines_tests.hardening.drivers", *map(str, args)],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Forked:
    """``target(*args)`` in a forked child of this process: a real, separate process (killable with
    SIGKILL, its own SQLite connections and locks) without the seconds a fresh interpreter spends
    importing Dagster and the loops. ``setup`` runs in the child first (the stopping-point patches)."""

    def __init__(self, target, *args, setup=None, **kwargs):
        import sys as _sys

        _sys.stdout.flush()
        _sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                if setup is not None:
                    setup()
                result = target(*args, **kwargs)
                code = 0 if getattr(result, "success", True) else 1
                if code:
                    print("\n".join(step_errors(result)), file=_sys.stderr)
            except BaseException as exc:  # noqa: BLE001
                print(f"forked run failed: {exc!r}", file=_sys.stderr)
            finally:
                _sys.stdout.flush()
                _sys.stderr.flush()
                os._exit(code)
        self.returncode = None

    def kill(self) -> None:
        import signal

        os.kill(self.pid, signal.SIGKILL)

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def communicate(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"forked run {self.pid} did not finish")
            time.sleep(0.02)
        return "", ""


def wait_ready(proc, ready: Path, timeout: float = 90.0) -> None:
    """Until the driver says it is paused at its stopping point (fails if it exits first)."""
    deadline = time.monotonic() + timeout
    while not Path(ready).exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"driver exited ({proc.returncode}) before its stopping point:\n{out}\n{err[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("driver never reached its stopping point")
        time.sleep(0.05)


def sigkill(proc) -> None:
    import signal

    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, proc.returncode


def finish(proc, timeout: float = 120.0) -> tuple[int, str, str]:
    if isinstance(proc, InProcessRun):
        return proc.finish(timeout)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def dump(db_path) -> dict[str, list[tuple]]:
    """Every table's schema and rows (sorted), read the way the loops read: through the resource."""
    from autonomath_pipelines.resources import AutonomathDatabase

    with AutonomathDatabase(path=str(db_path)).read_only() as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        out = {
            "__schema__": sorted(
                conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall(), key=lambda r: (r[0], r[1])
            )
        }
        for table in tables:
            if "_fts" in table:  # FTS5 shadow tables: covered by their content
                continue
            out[table] = sorted(conn.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr)
    return out


def rows(db_path, table: str, drop: tuple[str, ...] = ()) -> list[dict]:
    """``table``'s rows as dicts without the ``drop`` columns (run ids, timestamps), sorted."""
    from autonomath_pipelines.resources import AutonomathDatabase

    frame = AutonomathDatabase(path=str(db_path)).read_frame(f"SELECT * FROM {table}")
    records = frame.drop(columns=[c for c in drop if c in frame.columns]).to_dict("records")
    return sorted(records, key=repr)


def run_in_process(
    loop,
    db_path,
    tmp: Path,
    partition: str,
    *,
    execute: bool = True,
    embedding_cache=None,
    database=None,
    repo: Path | None = None,
):
    """One loop partition through Dagster in this process, files under ``repo`` (default tmp/repo)."""
    import dagster as dg

    from autonomath_pipelines.loops.common import source_specs
    from autonomath_pipelines.resources import LoopSettings
    from autonomath_pipelines_tests.loops.harness import loop_resources

    storage = tmp / "storage"
    resources = loop_resources(
        db_path, storage, execute=execute, loop_id=loop.spec.loop_id, embedding_cache=embedding_cache
    )
    resources["loop_settings"] = LoopSettings(
        execute_loops=[loop.spec.loop_id] if execute else [],
        reports_dir=str(storage / "reports"),
        repo_root=str(repo or tmp / "repo"),
    )
    if database is not None:
        resources["autonomath_db"] = database
    return dg.materialize(
        [*source_specs(), *loop.assets],
        selection=loop.assets,
        partition_key=partition,
        resources=resources,
        raise_on_error=False,
    )


def step_errors(result) -> list[str]:
    """``step: Type: message`` of each failed step (the user's exception behind Dagster's wrappers)."""
    import dagster as dg

    from autonomath_pipelines.operations.runs import root_cause

    return [
        f"{e.step_key}: {root_cause(e.step_failure_data.error)}"
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_FAILURE and e.step_failure_data.error
    ]


def _signal_and_sleep(ready: str) -> None:
    Path(ready).write_text(str(os.getpid()), encoding="utf-8")
    time.sleep(PAUSE_SECONDS)
    raise SystemExit("driver was not killed while paused")


def pause_in_publish(after_rows: int, ready: str, *, spill: bool = False) -> None:
    """Stop inside the write transaction after ``after_rows`` rows of the publish's upsert. With
    ``spill``, a one-page cache makes SQLite write changed pages to the database file before the
    commit, as a large publish does: the kill then leaves a hot journal to roll back."""
    from autonomath_pipelines.resources import AutonomathDatabase

    original = AutonomathDatabase.write_transaction

    class Pausing:
        def __init__(self, conn):
            self._conn = conn

        def __getattr__(self, name):
            return getattr(self._conn, name)

        def execute(self, *args, **kwargs):
            return self._conn.execute(*args, **kwargs)

        def executemany(self, sql, rows):
            rows = list(rows)
            if not sql.lstrip().upper().startswith("INSERT") or len(rows) <= after_rows:
                return self._conn.executemany(sql, rows)
            if spill:
                self._conn.execute("PRAGMA cache_size = 1")
            self._conn.executemany(sql, rows[:after_rows])
            assert self._conn.in_transaction
            _signal_and_sleep(ready)

    @contextlib.contextmanager
    def write_transaction(self, output_tables=()):
        with original(self, output_tables) as conn:
            yield Pausing(conn)

    AutonomathDatabase.write_transaction = write_transaction


def announcing(original, folder):
    """``write_transaction`` that first touches ``<folder>/<pid>.<thread>.<n>`` (before waiting for the
    lock), so a test holding the lock knows when every run has reached its publish."""
    import threading

    count = 0

    def write_transaction(self, output_tables=()):
        nonlocal count
        count += 1
        Path(folder, f"{os.getpid()}.{threading.get_ident()}.{count}").touch()
        return original(self, output_tables)

    return write_transaction


def announce_publish(folder: str) -> None:
    from autonomath_pipelines.resources import AutonomathDatabase

    AutonomathDatabase.write_transaction = announcing(AutonomathDatabase.write_transaction, folder)


class InProcessRun:
    """A loop run in a thread of this process, with the same poll()/finish() as a driver subprocess."""

    def __init__(self, target, *args, **kwargs):
        import threading

        self.result = None
        self.error: BaseException | None = None

        def body():
            try:
                self.result = target(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - reported by finish()
                self.error = exc

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()

    def poll(self):
        return None if self.thread.is_alive() else 0

    def finish(self, timeout: float = 120.0) -> tuple[int, str, str]:
        self.thread.join(timeout)
        if self.error is not None:
            return 1, "", repr(self.error)
        success = getattr(self.result, "success", True)
        return (0 if success else 1), "", "" if success else "; ".join(step_errors(self.result))


def pause_after_renames(count: int, under: str, ready: str) -> None:
    """Stop right after the ``count``-th file renamed into place under ``under`` (not temp files)."""
    real_replace = os.replace
    folder = Path(under).resolve()
    done = 0

    def replace(src, dst, *args, **kwargs):
        nonlocal done
        real_replace(src, dst, *args, **kwargs)
        target = Path(dst).resolve()
        if folder in target.parents and not target.name.startswith("."):
            done += 1
            if done == count:
                _signal_and_sleep(ready)

    os.replace = replace


def generation_renderer(original, tag: str):
    """Loop G's ``render_stub`` with ``# generation: <tag>`` added (still marked as generated), so an
    old and a new run's stubs differ and a test can tell which run a file came from."""
    from autonomath_pipelines.lib.files import GENERATED_MARK, mark_generated

    def render_stub(group, partition_key):
        body = original(group, partition_key).rpartition(GENERATED_MARK)[0]
        return mark_generated(f"{body}# generation: {tag}\n")

    return render_stub


def tag_generation(tag: str) -> None:
    import autonomath_pipelines.loops.loop_g_invariant_expansion as loop_g

    loop_g.render_stub = generation_renderer(loop_g.render_stub, tag)


def run_loop(args) -> int:
    import dagster as dg

    from autonomath_pipelines.loops import LOOP_DEFINITIONS
    from autonomath_pipelines.loops.common import source_specs
    from autonomath_pipelines.resources import LoopSettings
    from autonomath_pipelines_tests.loops.harness import loop_resources

    [loop] = [lp for lp in LOOP_DEFINITIONS if args.loop in (lp.spec.letter, lp.spec.loop_id)]
    storage = Path(args.storage)
    resources = loop_resources(
        args.db,
        storage,
        execute=args.execute,
        loop_id=loop.spec.loop_id,
        embedding_cache=Path(args.embedding_cache) if args.embedding_cache else None,
    )
    resources["loop_settings"] = LoopSettings(
        execute_loops=[loop.spec.loop_id] if args.execute else [],
        reports_dir=str(storage / "reports"),
        repo_root=args.repo,
    )
    result = dg.materialize(
        [*source_specs(), *loop.assets],
        selection=loop.assets,
        partition_key=args.partition,
        resources=resources,
        raise_on_error=False,
    )
    if result.success:
        print(f"ok {loop.spec.letter} {args.partition}")
        return 0
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_failure_data.error:
            from autonomath_pipelines.operations.runs import root_cause

            print(f"{event.step_key}: {root_cause(event.step_failure_data.error)}", file=sys.stderr)
    return 1


def run_promote(args) -> int:
    from autonomath_pipelines.resources import AutonomathDatabase
    from autonomath_pipelines.review.service import ReviewService

    outcome = ReviewService(AutonomathDatabase(path=args.db), args.repo, actor="fault-test").promote(
        args.ids.split(","), execute=True
    )
    print(f"promoted {len(outcome.transitions)} as promotion {outcome.promotion_id}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="drivers")
    sub = parser.add_subparsers(dest="command", required=True)
    cli = sub.add_parser("cli", help="autonomath-loops with the arguments after --")
    cli.add_argument("--announce-publish")
    cli.add_argument("argv", nargs=argparse.REMAINDER)
    loop = sub.add_parser("loop")
    loop.add_argument("--loop", required=True)
    loop.add_argument("--db", required=True)
    loop.add_argument("--storage", required=True)
    loop.add_argument("--repo", required=True)
    loop.add_argument("--partition", required=True)
    loop.add_argument("--execute", action="store_true")
    loop.add_argument("--embedding-cache")
    loop.add_argument("--generation")
    promote = sub.add_parser("promote")
    promote.add_argument("--db", required=True)
    promote.add_argument("--repo", required=True)
    promote.add_argument("--ids", required=True)
    for p in (loop, promote):
        p.add_argument("--announce-publish")
        p.add_argument("--pause-in-publish-after-rows", type=int)
        p.add_argument("--spill", action="store_true", help="with --pause-in-publish-after-rows: a one-page cache")
        p.add_argument("--pause-after-renames", type=int)
        p.add_argument("--under")
        p.add_argument("--ready")
    args = parser.parse_args(argv)
    if args.announce_publish:
        announce_publish(args.announce_publish)
    if args.command == "cli":
        from autonomath_pipelines.cli import main as cli_main

        return cli_main([a for a in args.argv if a != "--"])
    if args.pause_in_publish_after_rows is not None:
        pause_in_publish(args.pause_in_publish_after_rows, args.ready, spill=args.spill)
    if args.pause_after_renames is not None:
        pause_after_renames(args.pause_after_renames, args.under, args.ready)
    if getattr(args, "generation", None):
        tag_generation(args.generation)
    return run_loop(args) if args.command == "loop" else run_promote(args)


if __name__ == "__main__":
    sys.exit(main())
