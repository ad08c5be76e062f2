"""Privacy and safety of what the loops produce.

* No candidate output carries a customer's API key or raw customer id, except where the loop needs
  it: loop C's ``personalized_cache.customer_id`` (the cache is per customer by design; it holds the
  customer id, never the key). Scanned: every table the loops or review write, every file under the
  repo root and reports folder, and the metadata each asset shows in Dagster's UI.
* Generated files never leave their folder, whatever name a failure mode or partition gives them.
* (The read-only connection's refusals are in ``resources/test_db.py``.)
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autonomath_pipelines.contract.schema import contract
from autonomath_pipelines.lib.files import is_safe_file_name, replace_files, safe_path
from autonomath_pipelines.loops import LOOP_DEFINITIONS
from autonomath_pipelines.resources import AutonomathDatabase
from autonomath_pipelines.resources.io_manager import PartitionedParquetIOManager
from autonomath_pipelines_tests.conftest import LAST_DAY, LAST_FULL_WEEK
from autonomath_pipelines_tests.hardening.drivers import run_in_process, step_errors

PARTITION = {"daily": LAST_DAY, "weekly": LAST_FULL_WEEK, "monthly": "2026-10-01"}
#: (table, column) pairs allowed to hold a customer identifier, and why.
ALLOWED = {("personalized_cache", "customer_id"): "loop C caches each paid customer's own head queries"}
#: Loops whose intermediate (Parquet) assets and Dagster previews may show customer ids (never API
#: keys): they work per customer by design.
PER_CUSTOMER_LOOPS = {"loop_c_personalized_cache"}


@pytest.fixture(scope="module")
def executed_world(tmp_path_factory, small_world_pristine, embedding_cache):
    """All ten loops executed on a copy of the small world, files under a tmp repo root."""
    import shutil

    tmp = tmp_path_factory.mktemp("privacy")
    db = tmp / "autonomath.db"
    shutil.copyfile(small_world_pristine, db)
    results = {}
    for loop in LOOP_DEFINITIONS:
        result = run_in_process(loop, db, tmp, PARTITION[loop.spec.cadence], embedding_cache=embedding_cache)
        assert result.success, (loop.spec.loop_id, step_errors(result))
        results[loop.spec.loop_id] = result
    return db, tmp, results


def _pattern(values) -> re.Pattern:
    return re.compile("|".join(re.escape(v) for v in sorted(set(values), key=len, reverse=True)))


def secrets_of(db: Path) -> tuple[re.Pattern, re.Pattern]:
    """(any API key or customer id, any API key alone)."""
    keys = AutonomathDatabase(path=str(db)).read_frame("SELECT api_key, customer_id FROM api_keys")
    api_keys, customers = set(keys["api_key"].dropna()), set(keys["customer_id"].dropna())
    assert len(api_keys) > 100 and len(customers) > 100
    return _pattern(api_keys | customers), _pattern(api_keys)


def test_outputs_carry_no_api_key_or_customer_id(executed_world):
    db, tmp, results = executed_world
    secret, _ = secrets_of(db)
    sources = {name for name, table in contract().items() if table.section == "sources"}
    leaks: list[str] = []
    written: dict[str, int] = {}
    with AutonomathDatabase(path=str(db)).read_only() as conn:
        tables = [
            t
            for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            if t not in sources and "_fts" not in t
        ]
        for table in tables:
            cursor = conn.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cursor.description]
            count = 0
            for row in cursor:
                count += 1
                for name, value in zip(names, row):
                    if value is not None and (table, name) not in ALLOWED and secret.search(str(value)):
                        leaks.append(f"{table}.{name}: {str(value)[:80]}")
            written[table] = count
    # The scan saw real output: every loop's table has rows (forecast_calibration may be empty).
    assert sum(written.values()) > 1000 and written["personalized_cache"] > 0, written
    for folder in (tmp / "repo", tmp / "storage" / "reports"):
        for path in folder.rglob("*"):
            if path.is_file() and secret.search(path.read_text(encoding="utf-8", errors="replace")):
                leaks.append(f"file {path.relative_to(tmp)}")
    assert list((tmp / "repo").rglob("*.py")) and list((tmp / "repo").rglob("*.yaml"))  # G's and J's files
    assert leaks == []


def test_allowed_column_holds_customer_ids_not_keys(executed_world):
    db, _, _ = executed_world
    frame = AutonomathDatabase(path=str(db)).read_frame(
        "SELECT p.customer_id, k.api_key IS NOT NULL AS is_key FROM personalized_cache p "
        "LEFT JOIN api_keys k ON k.api_key = p.customer_id"
    )
    assert len(frame) and not frame["is_key"].any()
    known = set(AutonomathDatabase(path=str(db)).read_frame("SELECT customer_id FROM api_keys")["customer_id"])
    assert set(frame["customer_id"]) <= known


def test_dagster_metadata_carries_no_secrets(executed_world):
    """What the UI (and the run storage) shows: previews, evidence, counts. Loop C's previews list
    customer ids (per-customer heads, by design) — never an API key; no other loop shows either."""
    db, _, results = executed_world
    secret, api_key = secrets_of(db)
    leaks, customer_previews = [], 0
    for loop_id, result in results.items():
        pattern = api_key if loop_id in PER_CUSTOMER_LOOPS else secret
        for event in result.get_asset_materialization_events():
            for key, value in event.materialization.metadata.items():
                text = json.dumps(value.value, default=str, ensure_ascii=False)
                if pattern.search(text):
                    leaks.append(f"{loop_id} {event.asset_key.to_user_string()}.{key}")
                customer_previews += loop_id in PER_CUSTOMER_LOOPS and bool(secret.search(text))
    assert leaks == []
    assert customer_previews > 0  # the scan does see identifiers where they are


def test_intermediate_assets_hold_customer_ids_only_for_per_customer_loops(executed_world):
    """The Parquet intermediates (storage, git-ignored): no API key anywhere, customer ids only in C's."""
    db, tmp, _ = executed_world
    secret, api_key = secrets_of(db)
    group_of = {loop.spec.group_name: loop.spec.loop_id for loop in LOOP_DEFINITIONS}
    asset_loop = {
        key.to_user_string(): loop.spec.loop_id for loop in LOOP_DEFINITIONS for a in loop.assets for key in a.keys
    }
    leaks = []
    for path in (tmp / "storage" / "parquet").rglob("*.parquet"):
        asset = path.parent.name
        loop_id = asset_loop.get(asset, group_of.get(asset))
        pattern = api_key if loop_id in PER_CUSTOMER_LOOPS else secret  # C's hold customer ids, no keys
        frame = pd.read_parquet(path)
        for column in frame.columns:
            values = frame[column].dropna().astype(str)
            if values.map(lambda v: bool(pattern.search(v))).any():
                leaks.append(f"{asset}/{path.name}:{column}")
    assert leaks == []


# ------------------------------------------------------------------------------- safe file names

UNICODE_DOTS = ["\u2024", "\u2025", "\u2026", "\uff0e", "\u3002", "\ufe52", "\u0701", "\u00b7"]
SLASHES = ["/", "\\", "\uff0f", "\u2215", "\u2044", "\u29f8", "\uff3c"]
HOSTILE = st.one_of(
    st.text(alphabet=st.sampled_from(list("ab.-_/\\\x00\n ~:") + UNICODE_DOTS + SLASHES), max_size=30),
    st.builds(
        lambda pre, mid, post: pre + mid + post,
        st.sampled_from(
            [
                "",
                "../",
                "..\\",
                "/",
                "/etc/",
                "~/",
                "./",
                "....//",
                "%2e%2e%2f",
                "\x00",
                "C:\\",
                "\\\\server\\share\\",
                "a/../../",
                "\u2025/",
                "\uff0e\uff0e\uff0f",
            ]
        ),
        st.text(alphabet="abcXYZ019_.-", min_size=0, max_size=20),
        st.sampled_from(
            ["", ".py", ".py\n", "\n", "\x00.py", "/", "/..", " ", ".", "..", "\u2024py", "\r\n", ".yaml\x00.txt"]
        ),
    ),
    st.builds(lambda n, c: c * n, st.integers(140, 400), st.sampled_from(["a", ".", "_", "a."])),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=HOSTILE)
@example(name="../../etc/passwd")
@example(name="/etc/passwd")
@example(name="test_x.py\n")
@example(name="x\x00.py")
@example(name="\u2025\uff0f\u2025\uff0fetc")
@example(name="a" * 151)
@example(name="a" * 152)
@example(name=".")
@example(name="")
def test_generated_files_never_leave_their_folder(name):
    with tempfile.TemporaryDirectory() as base:
        outside = Path(base)
        folder = outside / "repo" / "evals" / "_candidates"
        folder.mkdir(parents=True)
        try:
            path = safe_path(folder, name)
        except ValueError:
            assert not is_safe_file_name(name)
        else:
            assert is_safe_file_name(name)
            assert path.parent == folder.resolve() and path.name == name
            assert not any(c in name for c in "/\\\x00\n\r") and ".." not in name and not name.startswith(".")
            assert len(name.encode()) <= 151
            replace_files({path: "x"})
            assert path.read_text() == "x"
        created = sorted(str(p.relative_to(outside)) for p in outside.rglob("*") if p.is_file())
        assert created in ([], [f"repo/evals/_candidates/{name}"])


def test_trailing_newline_names_are_refused():
    """Regression: ``$`` also matched before a trailing newline, so ``'x.py\\n'`` passed."""
    assert not is_safe_file_name("test_x.py\n")
    assert not is_safe_file_name("x\n")


def test_a_planted_symlink_is_not_followed_out_of_the_folder(tmp_path):
    folder, outside = tmp_path / "candidates", tmp_path / "outside.txt"
    folder.mkdir()
    outside.write_text("secret")
    (folder / "test_x.py").symlink_to(outside)
    with pytest.raises(ValueError, match="would leave"):
        safe_path(folder, "test_x.py")
    assert outside.read_text() == "secret"


def test_publish_files_refuses_hostile_names_before_writing_anything(tmp_path):
    from autonomath_pipelines.loops.common import FilePublishPlan, publish_files
    from autonomath_pipelines.loops.loop_j_gold_expansion import LOOP as LOOP_J
    from autonomath_pipelines.resources import LoopSettings

    for execute in (False, True):
        settings = LoopSettings(execute_loops=[LOOP_J.spec.loop_id] if execute else [], repo_root=str(tmp_path / "r"))
        plan = FilePublishPlan(folder="evals/_candidates", files={"ok.yaml": "a", "../../escape.yaml": "b"})
        with pytest.raises(ValueError, match="unsafe file name"):
            publish_files(dg.build_asset_context(), LOOP_J.spec, settings, plan)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(HOSTILE.filter(bool), min_size=1, max_size=3), partition=HOSTILE)
def test_parquet_paths_stay_under_the_storage_folder(parts, partition):
    base = Path(tempfile.gettempdir()) / "autonomath-storage-probe"
    io = PartitionedParquetIOManager(base_dir=str(base))
    for path in (io.path_for(dg.AssetKey(parts), partition or "p"), io.path_for(dg.AssetKey(parts), None)):
        resolved = path.resolve()
        assert base.resolve() in resolved.parents
        assert "\x00" not in str(path) and resolved == path  # no '..' or '.' component survives
