"""Loop G — invariant expansion: recurring failures become Hypothesis property-test stubs.

error_log (+ wrong-answer customer_feedback naming a program) → invariant_expansion_snapshot →
invariant_expansion_groups (Sentry-style fingerprint groups; wrong-answer reports grouped by program)
→ invariant_expansion_candidates (one stub per group of ≥ min_group_size not already covered by a
file in the repo's tests/properties/; blocking gates: compiles, pytest collects, safe names, cap) →
property_stubs_published (files under <repo_root>/tests/properties/_candidates/).
"""

import json

import dagster as dg
import pandas as pd
from pydantic import Field

from autonomath_pipelines.catalog import loop_spec
from autonomath_pipelines.lib import badrows
from autonomath_pipelines.lib.failure_modes import DEFAULT_IN_APP_PREFIXES, GROUP_COLUMNS, error_groups, feedback_groups
from autonomath_pipelines.lib.files import is_safe_file_name
from autonomath_pipelines.lib.property_stubs import (
    CANDIDATE_GATES,
    MAX_STUBS,
    as_list,
    collected_by_pytest,
    compiles,
    covered_modes,
    earlier_stubs,
    operator_edited,
    render_stub,
    stub_file_name,
)
from autonomath_pipelines.loops.common import (
    FilePublishPlan,
    LoopDefinition,
    Window,
    asset_defaults,
    frame_metadata,
    gate_results,
    gate_specs,
    published_asset,
    snapshot_result,
    window_for,
)
from autonomath_pipelines.resources import AutonomathDatabase, LoopSettings

SPEC = loop_spec("loop_g_invariant_expansion")
COMMON = asset_defaults(SPEC)
#: Where the loop writes its stubs, and where review moves a completed one (relative to the repo root).
CANDIDATES_FOLDER = SPEC.candidates_folder
PROPERTIES_FOLDER = SPEC.promotes_to


class SnapshotConfig(dg.Config):
    lookback_days: int | None = Field(
        default=None, description="Read this many days up to the partition end instead of the partition month."
    )


class GroupsConfig(dg.Config):
    min_wrong_answer_reports: int = Field(
        default=5,
        description="A program needs at least this many wrong-answer reports in the window to become a failure mode.",
    )
    in_app_prefixes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_IN_APP_PREFIXES),
        description=(
            "Path prefixes of the service's own code: only frames under them key a group (Sentry's in-app). "
            "Empty: every frame that is not stdlib, site-packages, <frozen …> or <string>. Library paths are "
            "never in-app, whatever is listed."
        ),
    )


class CandidatesConfig(dg.Config):
    min_group_size: int = Field(default=5, description="A failure mode needs at least this many occurrences.")
    max_stubs: int = Field(default=20, description=f"At most this many stubs per run (≤ {MAX_STUBS}).")


#: The columns loop G reads must be well-formed; other rows are skipped and counted (lib/badrows.py).
#: Tracebacks may be long (a RecursionError prints thousands of frames) and truncated: the parser
#: copes with both, so only their type is checked here.
ERROR_RULES = badrows.TableRules(
    "error_log",
    "id",
    (
        badrows.timestamp("ts"),
        badrows.text("endpoint"),
        badrows.text("traceback"),
        badrows.text("exception_type", nullable=True),
        badrows.text("message", nullable=True),
    ),
)
FEEDBACK_RULES = badrows.TableRules(
    "customer_feedback",
    "id",
    (
        badrows.timestamp("ts"),
        badrows.text("program_id", required=True),
        badrows.text("query_text", nullable=True),
        badrows.text("comment", nullable=True),
    ),
)


# ---------------------------------------------------------------------------------------- assets


@dg.asset(
    name="invariant_expansion_snapshot", deps=["error_log", "customer_feedback"], kinds={"sqlite", "parquet"}, **COMMON
)
def invariant_expansion_snapshot(
    context: dg.AssetExecutionContext, config: SnapshotConfig, autonomath_db: AutonomathDatabase
) -> dg.MaterializeResult[pd.DataFrame]:
    """error_log rows of the month, and the wrong-answer reports that name a program. Malformed rows
    are skipped and counted."""
    autonomath_db.preflight(SPEC.reads, context=SPEC.loop_id)
    window = window_for(context, SPEC, config.lookback_days)
    params = (window.start_iso, window.end_iso)
    errors, bad = badrows.read_checked(
        autonomath_db.read_only,
        "SELECT 'error_log' AS source, id, ts, endpoint, exception_type, message, traceback, NULL AS program_id, "
        f"NULL AS query_text FROM error_log WHERE ts >= ? AND ts < ? AND {ERROR_RULES.good('error_log')} ORDER BY id",
        params,
        table="error_log",
        key="id",
    )
    feedback, bad = badrows.read_checked(
        autonomath_db.read_only,
        "SELECT 'wrong_answer_feedback' AS source, id, ts, NULL AS endpoint, NULL AS exception_type, comment AS "
        "message, "
        "NULL AS traceback, program_id, query_text FROM customer_feedback "
        "WHERE wrong_answer = 1 AND program_id IS NOT NULL AND ts >= ? AND ts < ? "
        f"AND {FEEDBACK_RULES.good('customer_feedback')} ORDER BY id",
        params,
        table="customer_feedback",
        key="id",
        bad=bad,
    )
    with autonomath_db.read_only() as conn:
        bad.extend(badrows.count_bad(conn, ERROR_RULES, "ts >= ? AND ts < ?", params))
        bad.extend(
            badrows.count_bad(
                conn, FEEDBACK_RULES, "ts >= ? AND ts < ? AND wrong_answer = 1 AND program_id IS NOT NULL", params
            )
        )
    snapshot = pd.concat([errors, feedback], ignore_index=True) if len(feedback) else errors
    return snapshot_result(
        context,
        snapshot,
        ["source", "id", "ts", "endpoint", "exception_type"],
        bad,
        **window.metadata(),
        error_rows=len(errors),
        wrong_answer_reports=len(feedback),
    )


@dg.asset(name="invariant_expansion_groups", kinds={"pandas", "parquet"}, **COMMON)
def invariant_expansion_groups(
    config: GroupsConfig, invariant_expansion_snapshot: pd.DataFrame
) -> dg.MaterializeResult[pd.DataFrame]:
    """Fingerprint groups of the month's errors (count, first/last seen, a sample trace, example
    messages), and one group per program with enough wrong-answer reports."""
    snapshot = invariant_expansion_snapshot
    errors = snapshot[snapshot["source"] == "error_log"]
    feedback = snapshot[snapshot["source"] == "wrong_answer_feedback"]
    rows = error_groups(errors, tuple(config.in_app_prefixes)) + feedback_groups(
        feedback, config.min_wrong_answer_reports
    )
    groups = (
        pd.DataFrame(rows, columns=GROUP_COLUMNS)
        .sort_values(["count", "mode"], ascending=[False, True], kind="mergesort")
        .reset_index(drop=True)
    )
    grouped = int(groups.loc[groups["kind"] == "exception", "count"].sum()) if len(groups) else 0
    return dg.MaterializeResult(
        value=groups,
        metadata=frame_metadata(
            groups,
            ["mode", "kind", "count", "first_seen", "last_seen"],
            groups=len(groups),
            errors=len(errors),
            errors_ungrouped=len(errors) - grouped,
            param_in_app_prefixes=", ".join(config.in_app_prefixes) or "(every non-library path)",
        ),
    )


CANDIDATE_COLUMNS = [
    "mode",
    "kind",
    "count",
    "first_seen",
    "last_seen",
    "file_name",
    "content",
    "compiles",
    "collected",
    "evidence_json",
]


@dg.asset(
    name="invariant_expansion_candidates",
    kinds={"jinja", "parquet"},
    check_specs=gate_specs("invariant_expansion_candidates", CANDIDATE_GATES),
    **COMMON,
)
def invariant_expansion_candidates(
    context: dg.AssetExecutionContext,
    config: CandidatesConfig,
    loop_settings: LoopSettings,
    invariant_expansion_groups: pd.DataFrame,
):
    """One Hypothesis property stub per failure mode of ≥ min_group_size occurrences not yet covered
    under tests/properties/, xfail(strict) until completed. Blocking gates before publishing."""
    if config.max_stubs > MAX_STUBS:
        raise ValueError(f"max_stubs {config.max_stubs} exceeds the per-run cap of {MAX_STUBS}")
    window = window_for(context, SPEC)
    covered = covered_modes(loop_settings.repo_path() / PROPERTIES_FOLDER)
    groups = invariant_expansion_groups
    large = groups[groups["count"] >= config.min_group_size] if len(groups) else groups
    fresh = large[~large["mode"].isin(covered)] if len(large) else large
    rows = []
    for group in fresh.head(config.max_stubs).to_dict("records"):
        name = stub_file_name(group["mode"])
        text = render_stub(group, window.partition_key)
        rows.append(
            {
                "mode": group["mode"],
                "kind": group["kind"],
                "count": int(group["count"]),
                "first_seen": group["first_seen"],
                "last_seen": group["last_seen"],
                "file_name": name,
                "content": text,
                "compiles": compiles(text, name),
                "evidence_json": json.dumps(
                    {"fingerprint": group["fingerprint"], "ids": [int(i) for i in as_list(group["ids"])][:50]},
                    ensure_ascii=False,
                ),
            }
        )
    collected = collected_by_pytest({r["file_name"]: r["content"] for r in rows if is_safe_file_name(r["file_name"])})
    for r in rows:
        r["collected"] = collected.get(r["file_name"], False)
    candidates = pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)
    return dg.MaterializeResult(
        value=candidates,
        metadata=frame_metadata(
            candidates,
            ["mode", "kind", "count", "file_name", "collected"],
            stubs_proposed=len(candidates),
            groups_large_enough=len(large),
            groups_already_covered=int(len(large) - len(fresh)),
            param_min_group_size=int(config.min_group_size),
        ),
        check_results=gate_results("invariant_expansion_candidates", CANDIDATE_GATES, candidates),
    )


def property_stubs_plan(
    context: dg.AssetExecutionContext, settings: LoopSettings, window: Window, candidates: pd.DataFrame
) -> FilePublishPlan:
    folder = settings.repo_path() / CANDIDATES_FOLDER
    files = dict(zip(candidates["file_name"], candidates["content"]))
    stale = earlier_stubs(folder, window.partition_key)
    edited = operator_edited(folder, [*files, *stale])
    if edited:
        context.log.warning(f"kept {len(edited)} stubs the operator edited: {', '.join(edited)}")
    return FilePublishPlan(
        folder=CANDIDATES_FOLDER,
        files={n: t for n, t in files.items() if n not in edited},
        stale=[n for n in stale if n not in edited],
        metadata={"stubs_kept_operator_edits": len(edited)},
    )


property_stubs_published = published_asset(
    SPEC,
    "property_stubs_published",
    plan=property_stubs_plan,
    description="The month's stubs under <repo_root>/tests/properties/_candidates/ (dry run: nothing written). "
    "Re-running replaces this partition's earlier stubs — except those the operator has edited.",
)

LOOP = LoopDefinition.of(
    SPEC,
    invariant_expansion_snapshot,
    invariant_expansion_groups,
    invariant_expansion_candidates,
    property_stubs_published,
)
