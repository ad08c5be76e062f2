"""Loop G — invariant expansion: recurring failures become Hypothesis property-test stubs.

error_log (+ wrong-answer customer_feedback naming a program) → invariant_expansion_snapshot →
invariant_expansion_groups (Sentry-style fingerprint groups; wrong-answer reports grouped by program)
→ invariant_expansion_candidates (one stub per group of ≥ min_group_size not already covered by a
file in the repo's tests/properties/; blocking gates: compiles, pytest collects, safe names, cap) →
property_stubs_published (files under <repo_root>/tests/properties/_candidates/).
"""


import functools
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
import jinja2
import pandas as pd
from pydantic import Field

from autonomath_pipelines import CODE_VERSION
from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.lib import stacktrace as st
from autonomath_pipelines.lib.files import edited_since_generated, is_safe_file_name, mark_generated
from autonomath_pipelines.lib.gates import Gate, GateResult
from autonomath_pipelines.lib import badrows, gates
from autonomath_pipelines.loops.common import (
    OWNERS, FilePublishPlan, LoopDefinition, bad_rows_metadata, frame_metadata, gate_results, gate_specs,
    log_bad_rows, partitions_for, publish_files, published_check_specs, window_for,
)
from autonomath_pipelines.resources import AutonomathDatabase, LoopSettings

SPEC = loop_spec("loop_g_invariant_expansion")
PARTITIONS = partitions_for(SPEC)
COMMON = dict(group_name=SPEC.group_name, owners=OWNERS, partitions_def=PARTITIONS, code_version=CODE_VERSION)
TEMPLATE = "property_stub.py.j2"
CANDIDATES_FOLDER = "tests/properties/_candidates"
PROPERTIES_FOLDER = "tests/properties"
MAX_STUBS = 50
#: Where the service's package is deployed (its Docker image); notebook cells are always in-app.
DEFAULT_IN_APP_PREFIXES = ("/srv/autonomath/app/",)
MARKER = re.compile(r"^#\s*autonomath-invariant:\s*([a-z0-9_]+)\s*$", re.MULTILINE)
PARTITION_MARKER = re.compile(r"^#\s*autonomath-partition:\s*(\S+)\s*$", re.MULTILINE)


class SnapshotConfig(dg.Config):
    lookback_days: int | None = Field(default=None, description="Read this many days up to the partition end "
                                      "instead of the partition month.")


class GroupsConfig(dg.Config):
    min_wrong_answer_reports: int = Field(default=5, description="A program needs at least this many wrong-answer "
                                          "reports in the window to become a failure mode.")
    in_app_prefixes: list[str] = Field(default_factory=lambda: list(DEFAULT_IN_APP_PREFIXES), description=(
        "Path prefixes of the service's own code: only frames under them key a group (Sentry's in-app). "
        "Empty: every frame that is not stdlib, site-packages, <frozen …> or <string>. Library paths are "
        "never in-app, whatever is listed."))


class CandidatesConfig(dg.Config):
    min_group_size: int = Field(default=5, description="A failure mode needs at least this many occurrences.")
    max_stubs: int = Field(default=20, description=f"At most this many stubs per run (≤ {MAX_STUBS}).")


#: The columns loop G reads must be well-formed; other rows are skipped and counted (lib/badrows.py).
#: Tracebacks may be long (a RecursionError prints thousands of frames) and truncated: the parser
#: copes with both, so only their type is checked here.
ERROR_RULES = badrows.TableRules("error_log", "id", (
    badrows.timestamp("ts"), badrows.text("endpoint"), badrows.text("traceback"),
    badrows.text("exception_type", nullable=True), badrows.text("message", nullable=True)))
FEEDBACK_RULES = badrows.TableRules("customer_feedback", "id", (
    badrows.timestamp("ts"), badrows.text("program_id", required=True), badrows.text("query_text", nullable=True),
    badrows.text("comment", nullable=True)))


# ---------------------------------------------------------------------------------------- assets

@dg.asset(name="invariant_expansion_snapshot", deps=["error_log", "customer_feedback"], kinds={"sqlite", "parquet"},
          **COMMON)
def invariant_expansion_snapshot(context: dg.AssetExecutionContext, config: SnapshotConfig,
                                 autonomath_db: AutonomathDatabase) -> dg.MaterializeResult[pd.DataFrame]:
    """error_log rows of the month, and the wrong-answer reports that name a program. Malformed rows
    are skipped and counted."""
    autonomath_db.preflight(SPEC.reads, context=SPEC.loop_id)
    window = window_for(context, SPEC, config.lookback_days)
    params = (window.start_iso, window.end_iso)
    errors, bad = badrows.read_checked(
        autonomath_db.read_only,
        "SELECT 'error_log' AS source, id, ts, endpoint, exception_type, message, traceback, NULL AS program_id, "
        f"NULL AS query_text FROM error_log WHERE ts >= ? AND ts < ? AND {ERROR_RULES.good('error_log')} ORDER BY id",
        params, table="error_log", key="id")
    feedback, bad = badrows.read_checked(
        autonomath_db.read_only,
        "SELECT 'wrong_answer_feedback' AS source, id, ts, NULL AS endpoint, NULL AS exception_type, comment AS message, "
        "NULL AS traceback, program_id, query_text FROM customer_feedback "
        "WHERE wrong_answer = 1 AND program_id IS NOT NULL AND ts >= ? AND ts < ? "
        f"AND {FEEDBACK_RULES.good('customer_feedback')} ORDER BY id",
        params, table="customer_feedback", key="id", bad=bad)
    with autonomath_db.read_only() as conn:
        bad.extend(badrows.count_bad(conn, ERROR_RULES, "ts >= ? AND ts < ?", params))
        bad.extend(badrows.count_bad(conn, FEEDBACK_RULES, "ts >= ? AND ts < ? AND wrong_answer = 1 "
                                     "AND program_id IS NOT NULL", params))
    log_bad_rows(context, bad)
    snapshot = pd.concat([errors, feedback], ignore_index=True) if len(feedback) else errors
    return dg.MaterializeResult(value=snapshot, metadata=frame_metadata(
        snapshot, ["source", "id", "ts", "endpoint", "exception_type"], **window.metadata(),
        error_rows=len(errors), wrong_answer_reports=len(feedback), **bad_rows_metadata(bad)))


GROUP_COLUMNS = ["mode", "kind", "fingerprint", "exc_type", "count", "first_seen", "last_seen", "endpoints",
                 "sample_trace", "messages", "example_inputs", "ids"]


def assign_fingerprints(errors: pd.DataFrame, in_app_prefixes=DEFAULT_IN_APP_PREFIXES) -> pd.DataFrame:
    """``errors`` with ``mode``/``fingerprint``/``exc_type``: each trace by its root cause's Sentry-style
    fingerprint; a trace cut before its first exception line joins the largest group whose full frame
    sequence starts with its own (else mode None)."""
    parsed = [st.parse_traceback(t) for t in errors["traceback"]]
    fps = [st.fingerprint(p, fallback_type=e if isinstance(e, str) else None, in_app_prefixes=in_app_prefixes)
           for p, e in zip(parsed, errors["exception_type"])]
    whole = [fp is not None for fp in fps]
    modes: list[str | None] = [fp.name if fp and ok else None for fp, ok in zip(fps, whole)]
    sequences: dict[tuple[str, ...], dict[str, int]] = {}
    for p, mode in zip(parsed, modes):
        if mode:
            counts = sequences.setdefault(st.all_frames(p), {})
            counts[mode] = counts.get(mode, 0) + 1
    for i, (p, mode) in enumerate(zip(parsed, modes)):
        if mode is None:
            prefix = st.all_frames(p)
            if prefix and prefix[-1] == "#":
                prefix = prefix[:-1]
            best: dict[str, int] = {}
            for seq, counts in sequences.items():
                if prefix and seq[:len(prefix)] == prefix:
                    for m, c in counts.items():
                        best[m] = best.get(m, 0) + c
            if best:
                modes[i] = max(sorted(best), key=best.get)
    by_name = {fp.name: fp for fp, ok in zip(fps, whole) if fp and ok}
    out = errors.copy()
    out["mode"] = modes
    out["fingerprint"] = [by_name[m].key if m in by_name else None for m in modes]
    out["exc_type"] = [by_name[m].exc_type if m in by_name else None for m in modes]
    return out


def _errors_groups(errors: pd.DataFrame, in_app_prefixes) -> list[dict]:
    rows = []
    if errors.empty:
        return rows
    assigned = assign_fingerprints(errors, in_app_prefixes)
    for mode, members in assigned[assigned["mode"].notna()].groupby("mode", sort=True):
        members = members.sort_values(["ts", "id"], kind="mergesort")
        messages = list(dict.fromkeys(m for m in members["message"] if isinstance(m, str) and m))
        literals = list(dict.fromkeys(x for m in messages for x in st.message_literals(m)))
        rows.append({
            "mode": mode, "kind": "exception", "fingerprint": members["fingerprint"].iloc[0],
            "exc_type": members["exc_type"].iloc[0], "count": len(members), "first_seen": members["ts"].iloc[0],
            "last_seen": members["ts"].iloc[-1], "endpoints": sorted(set(members["endpoint"].dropna())),
            "sample_trace": next((t for t, c in zip(members["traceback"], members["fingerprint"]) if c), ""),
            "messages": messages[:5], "example_inputs": literals[:5], "ids": [int(i) for i in members["id"]],
        })
    return rows


def _feedback_groups(feedback: pd.DataFrame, min_reports: int) -> list[dict]:
    rows = []
    for program_id, members in feedback.groupby("program_id", sort=True):
        if len(members) < min_reports:
            continue
        members = members.sort_values(["ts", "id"], kind="mergesort")
        queries = list(dict.fromkeys(q for q in members["query_text"] if isinstance(q, str) and q))
        comments = list(dict.fromkeys(c for c in members["message"] if isinstance(c, str) and c))
        rows.append({
            "mode": f"wrong_answer_{st.slug(str(program_id))}"[:st.NAME_MAX], "kind": "wrong_answer",
            "fingerprint": f"wrong_answer|{program_id}", "exc_type": None, "count": len(members),
            "first_seen": members["ts"].iloc[0], "last_seen": members["ts"].iloc[-1],
            "endpoints": [f"program {program_id}"], "sample_trace": "\n".join(comments[:3]),
            "messages": comments[:5], "example_inputs": queries[:5], "ids": [int(i) for i in members["id"]],
        })
    return rows


@dg.asset(name="invariant_expansion_groups", kinds={"pandas", "parquet"}, **COMMON)
def invariant_expansion_groups(config: GroupsConfig,
                               invariant_expansion_snapshot: pd.DataFrame) -> dg.MaterializeResult[pd.DataFrame]:
    """Fingerprint groups of the month's errors (count, first/last seen, a sample trace, example
    messages), and one group per program with enough wrong-answer reports."""
    snapshot = invariant_expansion_snapshot
    errors = snapshot[snapshot["source"] == "error_log"]
    feedback = snapshot[snapshot["source"] == "wrong_answer_feedback"]
    rows = _errors_groups(errors, tuple(config.in_app_prefixes)) + _feedback_groups(feedback, config.min_wrong_answer_reports)
    groups = (pd.DataFrame(rows, columns=GROUP_COLUMNS).sort_values(["count", "mode"], ascending=[False, True],
                                                                     kind="mergesort").reset_index(drop=True))
    grouped = int(groups.loc[groups["kind"] == "exception", "count"].sum()) if len(groups) else 0
    return dg.MaterializeResult(value=groups, metadata=frame_metadata(
        groups, ["mode", "kind", "count", "first_seen", "last_seen"], groups=len(groups),
        errors=len(errors), errors_ungrouped=len(errors) - grouped,
        param_in_app_prefixes=", ".join(config.in_app_prefixes) or "(every non-library path)"))


# ------------------------------------------------------------------------------------- rendering

@functools.cache
def template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("autonomath_pipelines.lib", "templates"),
                             autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template(TEMPLATE)


def comment_text(value: object, limit: int = 200) -> str:
    """One line safe inside a ``#`` comment: no line breaks or other non-printable characters."""
    text = "" if value is None else str(value)
    return "".join(ch if ch.isprintable() else " " for ch in text)[:limit]


def stub_file_name(mode: str) -> str:
    return f"test_{mode}.py"


def as_list(value) -> list:
    """A list column after a parquet round trip (numpy array, list or missing) as a plain list."""
    if value is None or isinstance(value, (str, bytes, float)):
        return []
    try:
        return list(value)
    except TypeError:
        return []


def render_stub(group: dict, partition_key: str) -> str:
    sample = [comment_text(line) for line in str(group.get("sample_trace") or "").splitlines()[:60]]
    examples = [repr(comment_text(x, 80)) for x in as_list(group.get("example_inputs"))]
    reason = (f"candidate invariant for {group['mode']} ({group['count']} occurrences): not written yet")
    return mark_generated(template().render(
        mode=group["mode"], partition_key=comment_text(partition_key), kind=group["kind"], count=int(group["count"]),
        first_seen=comment_text(group["first_seen"]), last_seen=comment_text(group["last_seen"]),
        endpoints=comment_text(", ".join(as_list(group.get("endpoints")))), fingerprint=comment_text(group["fingerprint"]),
        examples_text=[comment_text(m) for m in as_list(group.get("messages"))], sample_lines=sample,
        examples=examples, reason=repr(reason), todo=repr(f"complete the invariant for {group['mode']}")))


def covered_modes(repo: Path) -> set[str]:
    """Failure modes a file under tests/properties/ (outside _candidates) already covers: by its name
    (``test_<mode>.py`` / ``<mode>.py``) or an ``# autonomath-invariant: <mode>`` marker."""
    folder = repo / PROPERTIES_FOLDER
    covered: set[str] = set()
    if not folder.is_dir():
        return covered
    for path in folder.rglob("*.py"):
        if "_candidates" in path.relative_to(folder).parts:
            continue
        covered.add(path.stem.removeprefix("test_"))
        try:
            covered.update(MARKER.findall(path.read_text(encoding="utf-8", errors="replace")[:4000]))
        except OSError:
            pass
    return covered


def earlier_stubs(repo: Path, partition_key: str) -> list[str]:
    """Candidate files an earlier run of this partition wrote (by their partition marker)."""
    folder = repo / CANDIDATES_FOLDER
    names = []
    if folder.is_dir():
        for path in sorted(folder.glob("*.py")):
            try:
                head = path.read_text(encoding="utf-8", errors="replace")[:400]
            except OSError:
                continue
            if partition_key in PARTITION_MARKER.findall(head) and is_safe_file_name(path.name):
                names.append(path.name)
    return names


def compiles(text: str, name: str) -> bool:
    try:
        compile(text, name, "exec")
        return True
    except (SyntaxError, ValueError):
        return False


def collected_by_pytest(files: dict[str, str], timeout: float = 120.0) -> dict[str, bool]:
    """Which stubs ``pytest --collect-only`` collects, run in a subprocess over a temp dir copy."""
    if not files:
        return {}
    with tempfile.TemporaryDirectory(prefix="invariant_stubs_") as tmp:
        folder = Path(tmp)
        (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-c",
             str(folder / "pytest.ini"), "--rootdir", str(folder), *sorted(files)],
            cwd=folder, capture_output=True, text=True, timeout=timeout)
    collected = {line.split("::", 1)[0] for line in proc.stdout.splitlines() if "::" in line}
    return {name: name in collected for name in files}


CANDIDATE_COLUMNS = ["mode", "kind", "count", "first_seen", "last_seen", "file_name", "content", "compiles",
                     "collected", "evidence_json"]


def _all_true(column: str, name: str, description: str) -> Gate:
    def evaluate(frame: pd.DataFrame) -> GateResult:
        bad = sorted(frame.loc[~frame[column].astype(bool), "file_name"]) if len(frame) else []
        return GateResult(not bad, f"{len(bad)} stubs failing" + (f": {bad[:5]}" if bad else ""), {"failing": len(bad)})
    return Gate(name, description, evaluate)


def _safe_names(frame: pd.DataFrame) -> GateResult:
    bad = [n for n in frame["file_name"] if not is_safe_file_name(n)] if len(frame) else []
    return GateResult(not bad, f"{len(bad)} unsafe file names" + (f": {bad[:5]}" if bad else ""), {"unsafe": len(bad)})


CANDIDATE_GATES = (
    _all_true("compiles", "stubs_compile", "Every stub is valid Python (compile())."),
    _all_true("collected", "stubs_collected", "pytest --collect-only collects every stub."),
    Gate("file_names_safe", "Every file name is a plain name that cannot leave the candidates folder.", _safe_names),
    gates.row_cap(MAX_STUBS),
)


@dg.asset(name="invariant_expansion_candidates", kinds={"jinja", "parquet"},
          check_specs=gate_specs("invariant_expansion_candidates", CANDIDATE_GATES), **COMMON)
def invariant_expansion_candidates(context: dg.AssetExecutionContext, config: CandidatesConfig,
                                   loop_settings: LoopSettings, invariant_expansion_groups: pd.DataFrame):
    """One Hypothesis property stub per failure mode of ≥ min_group_size occurrences not yet covered
    under tests/properties/, xfail(strict) until completed. Blocking gates before publishing."""
    if config.max_stubs > MAX_STUBS:
        raise ValueError(f"max_stubs {config.max_stubs} exceeds the per-run cap of {MAX_STUBS}")
    window = window_for(context, SPEC)
    covered = covered_modes(loop_settings.repo_path())
    groups = invariant_expansion_groups
    large = groups[groups["count"] >= config.min_group_size] if len(groups) else groups
    fresh = large[~large["mode"].isin(covered)] if len(large) else large
    rows = []
    for group in fresh.head(config.max_stubs).to_dict("records"):
        name = stub_file_name(group["mode"])
        text = render_stub(group, window.partition_key)
        rows.append({"mode": group["mode"], "kind": group["kind"], "count": int(group["count"]),
                     "first_seen": group["first_seen"], "last_seen": group["last_seen"], "file_name": name,
                     "content": text, "compiles": compiles(text, name),
                     "evidence_json": json.dumps({"fingerprint": group["fingerprint"], "ids": [int(i) for i in as_list(group["ids"])][:50]},
                                                 ensure_ascii=False)})
    collected = collected_by_pytest({r["file_name"]: r["content"] for r in rows if is_safe_file_name(r["file_name"])})
    for r in rows:
        r["collected"] = collected.get(r["file_name"], False)
    candidates = pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)
    return dg.MaterializeResult(
        value=candidates,
        metadata=frame_metadata(candidates, ["mode", "kind", "count", "file_name", "collected"],
                                stubs_proposed=len(candidates), groups_large_enough=len(large),
                                groups_already_covered=int(len(large) - len(fresh)),
                                param_min_group_size=int(config.min_group_size)),
        check_results=gate_results("invariant_expansion_candidates", CANDIDATE_GATES, candidates),
    )


@dg.asset(name="property_stubs_published", kinds={"python"},
          check_specs=published_check_specs("property_stubs_published"), **COMMON)
def property_stubs_published(context: dg.AssetExecutionContext, loop_settings: LoopSettings,
                             invariant_expansion_candidates: pd.DataFrame) -> dg.MaterializeResult:
    """The month's stubs under <repo_root>/tests/properties/_candidates/ (dry run: nothing written).
    Re-running replaces this partition's earlier stubs — except those the operator has edited."""
    window = window_for(context, SPEC)
    files = dict(zip(invariant_expansion_candidates["file_name"], invariant_expansion_candidates["content"]))
    stale = earlier_stubs(loop_settings.repo_path(), window.partition_key)
    edited = operator_edited(loop_settings.repo_path(), [*files, *stale])
    if edited:
        context.log.warning(f"kept {len(edited)} stubs the operator edited: {', '.join(edited)}")
    plan = FilePublishPlan(folder=CANDIDATES_FOLDER, files={n: t for n, t in files.items() if n not in edited},
                           stale=[n for n in stale if n not in edited], snapshot="invariant_expansion_snapshot")
    return publish_files(context, SPEC, loop_settings, plan, stubs_kept_operator_edits=len(edited))


def operator_edited(repo: Path, names) -> list[str]:
    """Candidate files that exist and are no longer the loop's own text: work in progress toward
    promotion, never overwritten or removed by a re-run."""
    folder = repo / CANDIDATES_FOLDER
    return sorted({name for name in names if is_safe_file_name(name) and (folder / name).is_file()
                   and edited_since_generated((folder / name).read_text(encoding="utf-8", errors="replace"))})


LOOP = LoopDefinition(
    spec=SPEC,
    assets=[invariant_expansion_snapshot, invariant_expansion_groups, invariant_expansion_candidates,
            property_stubs_published],
    snapshot=invariant_expansion_snapshot.key,
    candidates=invariant_expansion_candidates.key,
    published=property_stubs_published.key,
)
