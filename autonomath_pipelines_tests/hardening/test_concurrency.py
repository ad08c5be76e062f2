"""Races: the same loop partition published by two runs at once, a backfill overlapping the
scheduled run of one of its partitions, and two processes filling the embedding cache together.

A "run" here is a separate process — the real ``autonomath-loops run`` CLI in a fresh interpreter, or
a fork of the test process (``drivers.Forked``, no import cost) — or a thread of the test process
running the loop through Dagster in-process (cheaper; SQLite's locking between two connections is
the same). The H races have a real second process; E and G race two threads over the same writes.

What keeps them safe is that every publish is one ``BEGIN IMMEDIATE`` transaction of idempotent
writes (delete the partition's earlier rows, upsert on the table's key): the two publishes
serialize, and the second replaces the first. To make the publishes really collide, the test holds
the database's write lock until every process has reached its publish (``--announce-publish``),
then lets them all go at once. The outcome must equal a single clean run: no duplicate rows, no
lost rows, the operator's review decisions kept.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import autonomath_pipelines.loops.loop_g_invariant_expansion as loop_g
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.lib.embedding_cache import EmbeddingCache
from autonomath_pipelines.loops.loop_b_testimonial_seo import LOOP as LOOP_B
from autonomath_pipelines.loops.loop_g_invariant_expansion import CANDIDATES_FOLDER
from autonomath_pipelines.loops.loop_g_invariant_expansion import LOOP as LOOP_G
from autonomath_pipelines.loops.loop_h_cache_warming import LOOP as LOOP_H
from autonomath_pipelines.loops.loop_i_doc_freshness import LOOP as LOOP_I
from autonomath_pipelines.resources import AutonomathDatabase
from autonomath_pipelines.review import ReviewService
from autonomath_pipelines_tests.conftest import LAST_DAY, LAST_FULL_WEEK
from autonomath_pipelines_tests.hardening import drivers
from autonomath_pipelines_tests.hardening.drivers import rows, run_in_process, step_errors

RUN_COLUMNS = ("run_id", "computed_at", "ttl_until", "created_at", "candidate_id")


def pristine_copy(pristine: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "autonomath.db"
    shutil.copyfile(pristine, path)
    return path


@pytest.fixture
def announced(tmp_path, monkeypatch) -> Path:
    """A folder each publish of this process (and of drivers given ``--announce-publish``) touches a
    file in as it starts."""
    folder = tmp_path / "announced"
    folder.mkdir()
    monkeypatch.setattr(
        AutonomathDatabase, "write_transaction", drivers.announcing(AutonomathDatabase.write_transaction, folder)
    )
    return folder


def in_thread(loop, db: Path, tmp: Path, partition: str, **kwargs) -> drivers.InProcessRun:
    return drivers.InProcessRun(run_in_process, loop, db, tmp, partition, **kwargs)


def run_together(procs, announced: Path, db: Path, expected_publishes: int, timeout: float = 120.0):
    """Hold the write lock until ``expected_publishes`` publishes have started, then release it and
    wait for every run; returns their (returncode, stdout, stderr). The lock is taken right after
    the runs start (each spends a second or more reading before it publishes), never before a fork:
    a SQLite connection must not be carried across fork()."""
    holder = sqlite3.connect(str(db), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        deadline = time.monotonic() + timeout
        while len(list(announced.iterdir())) < expected_publishes:
            if any(p.poll() is not None for p in procs):
                break  # one finished or failed early: report below
            assert time.monotonic() < deadline, "the processes never reached their publish"
            time.sleep(0.05)
        time.sleep(0.2)  # both are now blocked on the lock
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    return [drivers.finish(p, timeout) for p in procs]


def test_two_runs_of_the_same_partition_publish_once(small_world_pristine, tmp_path, announced):
    """Loop H, one day, two runs — a separate (forked) process and a thread here — publishing at the
    same moment into one database, sharing one storage folder."""
    db = pristine_copy(small_world_pristine, tmp_path / "race")
    runs = [drivers.Forked(run_in_process, LOOP_H, db, tmp_path, LAST_DAY), in_thread(LOOP_H, db, tmp_path, LAST_DAY)]
    outcomes = run_together(runs, announced, db, expected_publishes=2)
    assert [code for code, _, _ in outcomes] == [0, 0], outcomes
    assert len(list(announced.iterdir())) == 2

    clean = pristine_copy(small_world_pristine, tmp_path / "clean")
    assert run_in_process(LOOP_H, clean, tmp_path / "clean", LAST_DAY).success
    raced = rows(db, "query_cache", RUN_COLUMNS)
    assert raced == rows(clean, "query_cache", RUN_COLUMNS) and len(raced) > 150
    run_ids = {r["run_id"] for r in rows(db, "query_cache")}
    assert len(run_ids) == 1  # one run's publish replaced the other's whole


def test_two_runs_of_a_candidate_loop_keep_review_decisions(small_world_pristine, tmp_path, announced):
    """Loop I (refetch candidates keyed by (source_url, partition_key), status kept across re-runs),
    after an operator approved one candidate: two concurrent re-runs leave exactly the first run's
    candidates, the approval kept."""
    db = pristine_copy(small_world_pristine, tmp_path / "race")
    assert run_in_process(LOOP_I, db, tmp_path, LAST_FULL_WEEK).success
    first = rows(db, "source_refetch_queue")
    assert len(first) > 100
    approved = first[0]
    with sqlite3.connect(str(db)) as conn:
        conn.execute(
            "UPDATE source_refetch_queue SET status = 'approved' WHERE source_url = ? AND partition_key = ?",
            (approved["source_url"], approved["partition_key"]),
        )
    for entry in announced.iterdir():
        entry.unlink()
    runs = [in_thread(LOOP_I, db, tmp_path / f"run{i}", LAST_FULL_WEEK) for i in range(2)]
    outcomes = run_together(runs, announced, db, expected_publishes=2)
    assert [code for code, _, _ in outcomes] == [0, 0], outcomes

    raced = rows(db, "source_refetch_queue")
    keys = [(r["source_url"], r["partition_key"]) for r in raced]
    assert len(keys) == len(set(keys)) == len(first)  # no duplicate, none lost
    by_key = {(r["source_url"], r["partition_key"]): r for r in raced}
    assert by_key[(approved["source_url"], approved["partition_key"])]["status"] == "approved"
    assert sum(r["status"] == "approved" for r in raced) == 1
    strip = RUN_COLUMNS + ("status", "queued_at")
    assert rows(db, "source_refetch_queue", strip) == sorted(
        ({k: v for k, v in r.items() if k not in strip} for r in first), key=repr
    )


def test_a_promotion_while_a_loop_publishes(small_world_pristine, tmp_path, announced):
    """The operator promotes an approved loop B page at the moment loop H publishes the day's cache:
    the two writes take the lock in turn, both succeed, and each leaves what it would alone."""
    db = pristine_copy(small_world_pristine, tmp_path / "race")
    repo = tmp_path / "repo"
    assert run_in_process(LOOP_B, db, tmp_path / "b", "2026-10-01", repo=repo).success
    service = ReviewService(AutonomathDatabase(path=str(db)), repo, actor="yamada")
    page = service.list("B", status="pending_review")[0].id
    service.decide("approve", [page], execute=True)
    for entry in announced.iterdir():
        entry.unlink()
    promote = drivers.InProcessRun(service.promote, [page], execute=True)
    loop = in_thread(LOOP_H, db, tmp_path, LAST_DAY)
    outcomes = run_together([loop, promote], announced, db, expected_publishes=2)
    assert [code for code, _, _ in outcomes] == [0, 0], outcomes
    assert len(list(announced.iterdir())) == 2  # both really waited on the lock together

    assert service.show(page).status == "promoted"
    assert [p.state for p in service.promotions("B")] == ["applied"]
    clean = pristine_copy(small_world_pristine, tmp_path / "clean")
    assert run_in_process(LOOP_H, clean, tmp_path / "clean", LAST_DAY).success
    assert rows(db, "query_cache", RUN_COLUMNS) == rows(clean, "query_cache", RUN_COLUMNS)


def test_backfill_overlapping_the_scheduled_run(small_world_pristine, tmp_path, announced):
    """``autonomath-loops run --only H --from 11-18 --to 11-20 --execute`` (the backfill, a separate
    process) while the scheduled run of 11-20 publishes: the same rows as the day's run alone, since
    a backfill range publishes only its last partition into the live cache (issue 14, defect 3)."""
    db = pristine_copy(small_world_pristine, tmp_path / "race")
    env = {
        "AUTONOMATH_STORAGE": str(tmp_path / "storage"),
        "AUTONOMATH_REPO_ROOT": str(tmp_path / "repo"),
        "AUTONOMATH_EMBEDDING_CACHE": str(tmp_path / "embeddings.sqlite"),
    }
    backfill = drivers.spawn(
        "cli",
        "--announce-publish",
        announced,
        "--",
        "run",
        "--execute",
        "--only",
        "H",
        "--db",
        db,
        "--reports-dir",
        tmp_path / "reports",
        "--from",
        "2026-11-18",
        "--to",
        LAST_DAY,
        env=env,
    )
    scheduled = in_thread(LOOP_H, db, tmp_path, LAST_DAY)
    outcomes = run_together([backfill, scheduled], announced, db, expected_publishes=2)
    assert [code for code, _, _ in outcomes] == [0, 0], outcomes
    assert len(list(announced.iterdir())) == 4  # 3 backfill publishes + 1 scheduled

    clean = pristine_copy(small_world_pristine, tmp_path / "clean")
    assert run_in_process(LOOP_H, clean, tmp_path / "clean", LAST_DAY).success
    # Which run last upserted a row (its run id, TTL) depends on the order; what it caches does not.
    order_free = ("query_hash", "query_text", "payload_json", "loop_id", "code_version")
    pick = lambda path: sorted(([r[c] for c in order_free] for r in rows(path, "query_cache")), key=repr)  # noqa: E731
    raced, expected = pick(db), pick(clean)
    assert len(raced) == len({r[0] for r in raced}) == len(expected)
    assert raced == expected
    by_day = AutonomathDatabase(path=str(db)).read_frame(
        "SELECT partition_key, COUNT(*) AS n FROM query_cache GROUP BY partition_key"
    )
    assert set(by_day["partition_key"]) == {LAST_DAY}


def test_two_runs_writing_the_same_candidate_files(small_world_pristine, tmp_path, monkeypatch):
    """Loop G, two runs publishing the same month's stubs into one repo at once: the clean run's
    files, whole, and no temporary file left."""
    # The stubs' pytest-collection gate (a pytest subprocess per run) is loop G's own test's business.
    monkeypatch.setattr(loop_g, "collected_by_pytest", lambda files, **_: dict.fromkeys(files, True))
    db = pristine_copy(small_world_pristine, tmp_path / "race")
    runs = [in_thread(LOOP_G, db, tmp_path / f"run{i}", "2026-10-01", repo=tmp_path / "repo") for i in range(2)]
    outcomes = [drivers.finish(r) for r in runs]
    assert [code for code, _, _ in outcomes] == [0, 0], outcomes
    clean = pristine_copy(small_world_pristine, tmp_path / "clean")
    result = run_in_process(LOOP_G, clean, tmp_path / "clean", "2026-10-01")
    assert result.success, step_errors(result)
    texts = lambda folder: {p.name: p.read_bytes() for p in sorted(folder.iterdir())}  # noqa: E731
    raced = texts(tmp_path / "repo" / CANDIDATES_FOLDER)
    assert raced == texts(tmp_path / "clean" / "repo" / CANDIDATES_FOLDER) and raced
    assert not [n for n in raced if n.startswith(".")]


EMBED_WORKER = r"""
import sys, time
from pathlib import Path
import numpy as np
from autonomath_pipelines.lib.embedding_cache import EmbeddingCache

path, go, offset = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
while not go.exists():
    time.sleep(0.01)
cache = EmbeddingCache(path)                     # both create the same fresh file at once
texts = [f"text {i}" for i in range(600)]
encode = lambda batch: np.array([[len(t) + 1.0, sum(map(ord, t)) % 97, 1.0, float(t[-1].isdigit())] for t in batch])
for start in range(0, 600, 10):
    chunk = texts[(start + offset) % 600:][:10] + texts[start:start + 10]
    cache.embed("m", chunk, encode)
cache.close()
print("ok")
"""


def test_embedding_cache_two_writer_processes(tmp_path):
    """Two processes create one fresh cache file and fill it with overlapping texts in many small
    transactions: both succeed, every text is cached once, with the vector its text maps to."""
    path, go = tmp_path / "cache.sqlite", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", EMBED_WORKER, str(path), str(go), str(offset)],
            cwd=drivers.PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for offset in (0, 300)
    ]
    time.sleep(0.5)
    go.touch()
    outcomes = [drivers.finish(p, 60) for p in procs]
    assert outcomes[0][0] == 0 and outcomes[1][0] == 0, outcomes
    cache = EmbeddingCache(path)
    texts = [f"text {i}" for i in range(600)]

    def fail(_):
        raise AssertionError("every text should be cached")

    batch = cache.embed("m", texts, fail)
    assert batch.cache_misses == 0 and batch.vectors.shape == (600, 4)
    expected = np.array([[len(t) + 1.0, sum(map(ord, t)) % 97, 1.0, float(t[-1].isdigit())] for t in texts])
    expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(batch.vectors, expected, rtol=1e-6)
    with sqlite3.connect(str(path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 600
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cache.close()


def test_embedding_cache_writer_killed_mid_transaction(tmp_path):
    """A process killed while inserting into the cache leaves it readable and without that batch."""
    path = tmp_path / "cache.sqlite"
    EmbeddingCache(path).embed("m", ["kept"], lambda ts: np.ones((len(ts), 4)))
    ready = tmp_path / "ready"
    code = r"""
import sys, time
from pathlib import Path
import numpy as np
from autonomath_pipelines.lib.embedding_cache import EmbeddingCache
cache = EmbeddingCache(sys.argv[1])
conn = cache._conn
conn.execute("BEGIN IMMEDIATE")
vector = np.ones(4, np.float32).tobytes()
conn.executemany("INSERT INTO embeddings VALUES (?, 'm', 4, ?)", [(f"k{i}", vector) for i in range(5000)])
Path(sys.argv[2]).touch()
time.sleep(600)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path), str(ready)],
        cwd=drivers.PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    drivers.wait_ready(proc, ready, timeout=60)
    drivers.sigkill(proc)
    cache = EmbeddingCache(path)
    assert cache.embed("m", ["kept"], lambda ts: pytest.fail("cached")).cache_hits == 1
    with sqlite3.connect(str(path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 1
    cache.embed("m", ["new"], lambda ts: np.ones((len(ts), 4)))  # and it takes writes again
    cache.close()


def _open_instance_at(home: str, at: float) -> None:
    import os

    from autonomath_pipelines.orchestrator import dagster_instance

    os.environ["DAGSTER_HOME"] = home
    time.sleep(max(0.0, at - time.time()))
    with dagster_instance() as instance:
        instance.get_runs(limit=1)


def test_processes_opening_a_fresh_dagster_home_at_once_all_succeed(tmp_path):
    """Two loops started together on a fresh DAGSTER_HOME used to fail one of them ("table runs
    already exists": the instance's SQLite storages were created by both at once)."""
    processes = []
    start = time.time() + 1.0
    for home in range(4):
        folder = tmp_path / f"home-{home}"
        folder.mkdir()
        (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
        processes += [drivers.Forked(_open_instance_at, str(folder), start + home) for _ in range(6)]
    for process in processes:
        process.communicate(timeout=120)
    assert [p.returncode for p in processes] == [0] * len(processes)
