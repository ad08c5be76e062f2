"""Loop G end to end on the small demo world, through Dagster."""

import subprocess
import sys

import dagster as dg

from autonomath_pipelines.demo import load_truth
from autonomath_pipelines.lib.failure_modes import assign_fingerprints
from autonomath_pipelines.lib.files import is_safe_file_name
from autonomath_pipelines.lib.scoring import ari_with_noise
from autonomath_pipelines.loops.common import source_specs
from autonomath_pipelines.loops.loop_g_invariant_expansion import CANDIDATES_FOLDER, LOOP
from autonomath_pipelines.resources import AutonomathDatabase, LoopSettings
from autonomath_pipelines_tests.loops.harness import check_outcomes, loop_resources, materialized, metadata, sha256

MONTH = "2026-10-01"


def run(db, tmp_path, partition=MONTH, *, execute=False):
    resources = loop_resources(db, tmp_path / "storage", execute=execute, loop_id=LOOP.spec.loop_id)
    resources["loop_settings"] = LoopSettings(
        execute_loops=[LOOP.spec.loop_id] if execute else [],
        reports_dir=str(tmp_path / "storage" / "reports"),
        repo_root=str(tmp_path / "repo"),
    )
    return dg.materialize(
        [*source_specs(), *LOOP.assets],
        selection=LOOP.assets,
        partition_key=partition,
        resources=resources,
        raise_on_error=False,
    )


def stub_files(tmp_path) -> dict[str, str]:
    folder = tmp_path / "repo" / CANDIDATES_FOLDER
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*"))} if folder.exists() else {}


def test_grouping_matches_planted_failure_modes(small_world):
    errors = AutonomathDatabase(path=str(small_world)).read_frame("SELECT * FROM error_log ORDER BY id")
    assigned = assign_fingerprints(errors)
    truth = load_truth(small_world)["error_modes"]
    codes = {m: i for i, m in enumerate(sorted(set(assigned["mode"].dropna())))}
    predicted = [codes[m] if isinstance(m, str) else -1 for m in assigned["mode"]]
    ari = ari_with_noise([truth[str(i)] for i in assigned["id"]], predicted)
    print(f"loop G fingerprint ARI on the small world: {ari:.4f}")
    assert ari >= 0.95


def test_every_log_format_groups_with_its_planted_mode(small_world):
    """Issue 13: 3.13 markers, log prefixes, JSON records and escapes, IPython frames and exception
    groups in error_log: each planted mode still gets one group, whatever format carried it."""
    errors = AutonomathDatabase(path=str(small_world)).read_frame("SELECT * FROM error_log ORDER BY id")
    assigned = assign_fingerprints(errors)
    truth = load_truth(small_world)
    formats, malformed = truth["error_formats"], truth["error_malformed"]
    seen: dict[str, set] = {}
    for i, mode in zip(assigned["id"], assigned["mode"]):
        if str(i) not in malformed:
            assert isinstance(mode, str), (i, formats[str(i)])
            seen.setdefault(truth["error_modes"][str(i)], set()).add(mode)
    assert all(len(modes) == 1 for modes in seen.values()), seen
    assert len({m for modes in seen.values() for m in modes}) == len(seen)


def test_in_app_prefixes_choose_the_frames_that_key_a_group(small_world):
    errors = AutonomathDatabase(path=str(small_world)).read_frame("SELECT * FROM error_log ORDER BY id")
    nothing_in_app = assign_fingerprints(errors, in_app_prefixes=("/nowhere/",))
    default = assign_fingerprints(errors)
    keys = set(nothing_in_app["fingerprint"].dropna())
    assert keys and all("|msg:" in k for k in keys)  # fallback: type + normalized message
    assert not any("|msg:" in k for k in default["fingerprint"].dropna())


def test_backfill_execute_writes_collectable_stubs_idempotently(small_world, tmp_path):
    before = sha256(small_world)
    # Two-month backfill, September then October. September's window ends before the small world's
    # logs begin: an empty window publishes nothing and fails its named check.
    september = run(small_world, tmp_path, "2026-09-01", execute=True)
    assert not september.success and check_outcomes(september)["window_not_abnormally_small"] is False
    assert stub_files(tmp_path) == {}
    result = run(small_world, tmp_path, execute=True)
    assert result.success and "property_stubs_published" in materialized(result)
    assert sha256(small_world) == before
    files = stub_files(tmp_path)
    candidates = result.output_for_node("invariant_expansion_candidates")
    assert set(files) == set(candidates["file_name"]) and files
    assert all(is_safe_file_name(n) and n.startswith("test_") for n in files)
    assert all(f"# autonomath-partition: {MONTH}" in t for t in files.values())
    some = next(t for t in files.values() if "@example(value=" in t)
    assert "pytest.mark.xfail(strict=True" in some and "occurrences:" in some
    folder = tmp_path / "copy"  # run the stubs outside the repo (hypothesis writes a cache)
    folder.mkdir()
    ran = sorted(files)[:6]  # the gate already collected all; run a few end to end
    for name in ran:
        (folder / name).write_text(files[name], encoding="utf-8")
    (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "pytest.ini", "--rootdir", ".", *ran],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Every stub is collected and xfails: none can pass before an operator completes it.
    assert f"{len(ran)} xfailed" in proc.stdout, proc.stdout[-2000:]

    again = run(small_world, tmp_path, execute=True)
    assert again.success
    assert stub_files(tmp_path) == files


def test_dry_run_writes_nothing_and_covered_mode_is_not_proposed_again(small_world, tmp_path):
    before = sha256(small_world)
    first = run(small_world, tmp_path)
    assert first.success
    assert sha256(small_world) == before
    assert stub_files(tmp_path) == {}
    assert all(check_outcomes(first).values()) and len(check_outcomes(first)) == 5  # 4 gates + window
    assert metadata(first, "property_stubs_published")["dry_run"] is True
    groups = first.output_for_node("invariant_expansion_groups")
    assert (groups["kind"] == "exception").sum() >= 10 and (groups["kind"] == "wrong_answer").any()
    assert len(first.output_for_node("invariant_expansion_candidates")) >= 5

    modes = list(first.output_for_node("invariant_expansion_candidates")["mode"])
    covered_by_name, covered_by_marker = modes[0], modes[1]
    properties = tmp_path / "repo" / "tests" / "properties"
    properties.mkdir(parents=True)
    (properties / f"test_{covered_by_name}.py").write_text("def test_ok():\n    pass\n", encoding="utf-8")
    (properties / "test_whatever.py").write_text(f"# autonomath-invariant: {covered_by_marker}\n", encoding="utf-8")
    second = run(small_world, tmp_path)
    assert second.success
    remaining = set(second.output_for_node("invariant_expansion_candidates")["mode"])
    assert covered_by_name not in remaining and covered_by_marker not in remaining
    assert set(modes) - {covered_by_name, covered_by_marker} <= remaining  # the cap lets others in
    assert metadata(second, "invariant_expansion_candidates")["groups_already_covered"] == 2


def test_a_rerun_never_overwrites_a_stub_the_operator_is_completing(small_world, tmp_path):
    assert run(small_world, tmp_path, execute=True).success
    written = stub_files(tmp_path)
    edited_name, untouched_name = sorted(written)[:2]
    folder = tmp_path / "repo" / CANDIDATES_FOLDER
    completed = written[edited_name].replace("raise NotImplementedError", "assert value == value  # was: raise")
    (folder / edited_name).write_text(completed, encoding="utf-8")
    (folder / untouched_name).unlink()
    again = run(small_world, tmp_path, execute=True)
    assert again.success
    after = stub_files(tmp_path)
    assert after[edited_name] == completed  # the operator's work survives the re-run
    assert after[untouched_name] == written[untouched_name]  # the loop's own files are rewritten
    assert metadata(again, "property_stubs_published")["stubs_kept_operator_edits"] == 1
