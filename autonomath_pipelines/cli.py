"""``autonomath-loops``: build the demo world, run loops, list the catalog, benchmark.

Exit codes: 0 success; 1 a loop failed; 2 the request itself is wrong (unknown loop, bad
partition key, missing, empty, non-SQLite or corrupt database) — reported in one line naming the problem.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Sequence

from autonomath_pipelines.catalog import LOOP_SPECS
from autonomath_pipelines.contract.schema import SchemaError
from autonomath_pipelines.resources.db import DatabaseFileError, default_db_path

EXIT_OK, EXIT_LOOP_FAILED, EXIT_USAGE = 0, 1, 2
#: ``demo.world.SCALES`` by name, spelled out so that parsing the command line does not import the
#: generator (numpy, pandas); a test keeps the two equal.
WORLD_SCALES = ("small", "medium", "production", "production-10x")


def _say(line: str) -> None:
    print(line, flush=True)


def _progress_bar(stage: str, done: int, total: int) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    end = "\n" if done >= total else ""
    print(f"\r  {stage:<28} [{'#' * filled}{'.' * (width - filled)}] {done:>10,}/{total:,}", end=end, flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from autonomath_pipelines.demo import SCALES, build_world, truth_path

    as_of = dt.date.fromisoformat(args.as_of) if args.as_of else None
    _say(f"building the {args.scale} demo world (seed {args.seed}) at {args.db} ...")
    summary = build_world(args.db, scale=args.scale, seed=args.seed, as_of=as_of, progress=_progress_bar)
    days = SCALES[args.scale].days
    _say(f"built in {summary.seconds:.1f} s; logs cover the {days} JST days before {summary.as_of} 00:00 JST:")
    for table, count in summary.row_counts.items():
        _say(f"  {table:<26} {count:>12,}")
    _say(f"planted truth: {truth_path(args.db)}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from autonomath_pipelines.orchestrator import run_loops, run_settings
    from autonomath_pipelines.resources import AutonomathDatabase

    database = AutonomathDatabase(path=args.db) if args.db else AutonomathDatabase()
    report = run_loops(
        database,
        run_settings(args.only, execute=args.execute, reports_dir=args.reports_dir),
        only=args.only,
        partition=args.partition,
        until=args.to,
        progress=_say,
        log_level="DEBUG" if args.verbose else "WARNING",
    )
    _say("")
    _say(
        f"{'loop':<30} {'partition':<12} {'status':<10} {'scanned':>9} {'proposed':>9} {'executed':>9} {'CPU s':>7} "
        f"{'ceiling':>8}"
    )
    for r in report.results:
        _say(
            f"{r.loop_id:<30} {r.partition_key:<12} {r.status:<10} {r.scanned:>9,} {r.actions_proposed:>9,} "
            f"{r.actions_executed:>9,} {r.cpu_seconds:>7.1f} {r.cost_ceiling_cpu_seconds:>7.0f}s"
        )
    mode = "dry run (nothing written; add --execute to write)" if report.dry_run else "executed"
    _say(
        f"\n{report.loops_succeeded}/{report.loops_total} loop runs succeeded, {mode}; "
        f"scanned {report.totals['scanned']:,}, proposed {report.totals['actions_proposed']:,}, "
        f"executed {report.totals['actions_executed']:,}"
    )
    _say(f"report: {report.report_path}")
    return EXIT_OK if report.ok else EXIT_LOOP_FAILED


def cmd_loops(args: argparse.Namespace) -> int:
    from autonomath_pipelines.loops import LOOP_DEFINITIONS

    implemented = {loop.spec.loop_id for loop in LOOP_DEFINITIONS}
    for spec in LOOP_SPECS:
        state = "implemented" if spec.loop_id in implemented else "planned"
        _say(
            f"{spec.letter}  {spec.loop_id:<30} {spec.cadence_text:<24} window: {spec.window:<40} "
            f"ceiling {spec.cost_ceiling_cpu_min:g} CPU-min  [{state}]"
        )
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    if args.target == "clustering":
        from autonomath_pipelines.bench.clustering import run_clustering_benchmark

        run_clustering_benchmark(out_dir=args.out, say=_say)
        return EXIT_OK
    if args.target == "scaling":
        from autonomath_pipelines.bench.scaling import SCALED_LOOPS as SCALING_LOOPS
        from autonomath_pipelines.bench.scaling import run_scaling_benchmark
        from autonomath_pipelines.orchestrator import UsageError

        try:
            sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
            loops = [loop_letter(x) for x in args.only] if args.only else list(SCALING_LOOPS)
            result = run_scaling_benchmark(sizes, loops, args.out, say=_say, rebuild=args.rebuild)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return EXIT_OK if all(r["success"] for r in result["results"]) else EXIT_LOOP_FAILED
    if args.target == "load":
        from autonomath_pipelines.bench.load import run_load_benchmark
        from autonomath_pipelines.orchestrator import UsageError

        only = [loop_letter(x) for x in args.only] if args.only else None
        try:
            result = run_load_benchmark(
                args.factor, only, args.out, say=_say, repeats=max(3, args.repeats), rebuild=args.rebuild
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return EXIT_OK if all(result["targets"].values()) else EXIT_LOOP_FAILED
    from autonomath_pipelines.bench.loop_h import run_benchmark
    from autonomath_pipelines.resources.db import AutonomathDatabase

    database = AutonomathDatabase(path=args.db)
    if database.resolved_path().exists() and not args.rebuild:
        database.require_exists()  # an unusable file is reported (exit 2), not benchmarked or built over
    if args.target == "loops":
        from autonomath_pipelines.bench.loops import run_loops_benchmark

        if not database.resolved_path().exists():
            from autonomath_pipelines.demo import build_world

            _say(f"building the {args.scale} world at {args.db} first ...")
            build_world(args.db, scale=args.scale, seed=args.seed, progress=_progress_bar)
        only = [loop_letter(x) for x in args.only] if args.only else None  # default: all ten
        result = run_loops_benchmark(args.db, only, args.out, say=_say, repeats=max(3, args.repeats))
        return EXIT_OK if all(r["status"] == "succeeded" for r in result["loops"]) else EXIT_LOOP_FAILED
    return run_benchmark(
        db_path=args.db,
        scale=args.scale,
        seed=args.seed,
        queries=args.queries,
        repeats=args.repeats,
        out_dir=args.out,
        rebuild=args.rebuild,
        say=_say,
        progress=_progress_bar,
    )


def loop_letter(loop_id: str) -> str:
    """The catalog letter of a loop id or letter; an unknown one is a usage error (exit 2)."""
    from autonomath_pipelines.catalog import loop_spec
    from autonomath_pipelines.orchestrator import UsageError

    try:
        return loop_spec(loop_id).letter
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None


def cmd_eval(args: argparse.Namespace) -> int:
    from autonomath_pipelines.quality.runner import run_from_args

    if args.only:
        args.only = [loop_letter(x) for x in args.only]
    return run_from_args(args, say=_say)


def cmd_review(args: argparse.Namespace) -> int:
    from autonomath_pipelines.resources.db import AutonomathDatabase
    from autonomath_pipelines.review import ReviewService, render

    database = AutonomathDatabase(path=args.db) if args.db else AutonomathDatabase()
    database.require_exists()
    from autonomath_pipelines.resources import LoopSettings

    service = ReviewService(database, args.repo_root or LoopSettings().repo_root, actor=args.actor)
    action = args.review_command
    if action == "list":
        lines = render.candidate_lines(
            service.list(args.loop, status=args.status, partition=args.partition, limit=args.limit)
        )
    elif action == "show":
        lines = render.candidate_detail(service.show(args.candidate_id))
    elif action == "promotions":
        lines = render.promotion_lines(service.promotions(args.loop))
    elif action in ("approve", "reject"):
        lines = render.outcome_lines(
            service.decide(
                action,
                args.ids,
                loop=args.loop,
                partition=args.partition,
                min_score=args.min_score,
                limit=args.limit,
                reason=args.reason,
                execute=args.execute,
            )
        )
    elif action == "promote":
        lines = render.outcome_lines(service.promote(args.ids, loop=args.loop, execute=args.execute))
    else:
        lines = render.outcome_lines(service.rollback(args.promotion_id, execute=args.execute))
    for line in lines:
        _say(line)
    return EXIT_OK


def cmd_digest(args: argparse.Namespace) -> int:
    import datetime as dt
    import os

    from autonomath_pipelines.operations.digest import build_digest
    from autonomath_pipelines.orchestrator import UsageError, dagster_instance
    from autonomath_pipelines.resources import AutonomathDatabase, LoopSettings

    if args.days < 1:
        raise UsageError(f"--days must be at least 1, got {args.days}")
    if not os.environ.get("DAGSTER_HOME"):
        _say(
            "note: DAGSTER_HOME is not set, so there is no run history to read (export "
            "DAGSTER_HOME=$PWD/.dagster_home, where `autonomath-loops run` and `dagster dev` keep it)"
        )
    database = AutonomathDatabase(path=args.db) if args.db else AutonomathDatabase()
    reports = LoopSettings(**({"reports_dir": args.reports_dir} if args.reports_dir else {})).reports_path()
    with dagster_instance() as instance:
        digest = build_digest(instance, database, dt.datetime.now(dt.timezone.utc), days=args.days, reports_dir=reports)
    for line in digest.lines:
        _say(line)
    return EXIT_OK


def _review_parser(sub) -> None:
    review = sub.add_parser("review", help="list, approve, reject, promote and roll back candidates (audited)")
    actions = review.add_subparsers(dest="review_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db", default=None, help="AutonoMath database (default: $AUTONOMATH_DB or data/autonomath.db)"
    )
    common.add_argument(
        "--repo-root", default=None, help="service repo for file targets (default: $AUTONOMATH_REPO_ROOT or .)"
    )
    common.add_argument(
        "--actor", default=None, help="who acts, for the audit log (default: $AUTONOMATH_OPERATOR or the login name)"
    )
    writes = argparse.ArgumentParser(add_help=False)
    writes.add_argument("--execute", action="store_true", help="apply the change (default: dry run, shows it)")
    selection = argparse.ArgumentParser(add_help=False)
    selection.add_argument("ids", nargs="*", metavar="ID", help="candidate ids, e.g. A:12 E:3 J:2026-10/cand-…")
    selection.add_argument(
        "--loop", help="loop letter or id (with no ids: every pending candidate of the loop that matches the filters)"
    )

    listing = actions.add_parser("list", parents=[common], help="candidates with status and a summary")
    listing.add_argument("--loop", help="loop letter or id (default: every reviewable loop)")
    listing.add_argument("--status", help="pending_review, approved, rejected, promoted or rolled_back")
    listing.add_argument("--partition", help="only this partition key")
    listing.add_argument("--limit", type=int)
    show = actions.add_parser("show", parents=[common], help="one candidate with its evidence")
    show.add_argument("candidate_id")
    for name, text in (("approve", "approve pending candidates"), ("reject", "reject pending candidates (--reason)")):
        decide = actions.add_parser(name, parents=[common, writes, selection], help=text)
        decide.add_argument("--partition", help="filter: only this partition key")
        decide.add_argument("--min-score", type=float, help="filter: only candidates scoring at least this")
        decide.add_argument("--limit", type=int, help="filter: at most this many")
        decide.add_argument("--reason", required=name == "reject", help="why (required to reject)")
    actions.add_parser(
        "promote",
        parents=[common, writes, selection],
        help="promote approved candidates of one loop into production, in one transaction",
    )
    rollback = actions.add_parser(
        "rollback", parents=[common, writes], help="restore the exact state before a promotion"
    )
    rollback.add_argument("promotion_id", type=int)
    actions.add_parser("promotions", parents=[common], help="promotions and their state").add_argument(
        "--loop", help="loop letter or id"
    )
    review.set_defaults(func=cmd_review)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autonomath-loops", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="build the synthetic AutonoMath database with planted truth")
    demo.add_argument("--scale", choices=WORLD_SCALES, default="small")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--as-of", help="JST date the logs end at (default: today)")
    demo.add_argument(
        "--db", default=default_db_path(), help="output path (default: $AUTONOMATH_DB or data/autonomath.db)"
    )
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="run loops through Dagster in-process and write the run report")
    run.add_argument("--execute", action="store_true", help="write to the database (default: dry run)")
    run.add_argument("--only", action="append", metavar="LOOP_ID", help="run only this loop (id or letter); repeatable")
    run.add_argument(
        "--partition",
        "--from",
        dest="partition",
        metavar="KEY",
        help="partition key (default: the last complete partition); first key of a range with --to",
    )
    run.add_argument("--to", metavar="KEY", help="last partition key of a range (a backfill, one run per partition)")
    run.add_argument("--db", default=None, help="AutonoMath database (default: $AUTONOMATH_DB or data/autonomath.db)")
    run.add_argument("--verbose", "-v", action="store_true", help="show Dagster's event log")
    run.add_argument("--reports-dir", default=None, help="report folder (default: $AUTONOMATH_REPORTS_DIR or reports)")
    run.set_defaults(func=cmd_run)

    loops = sub.add_parser("loops", help="list the ten loops of the catalog")
    loops.set_defaults(func=cmd_loops)

    bench = sub.add_parser("bench", help="benchmarks on a production-scale world (figures + PNG, never a test)")
    bench.add_argument(
        "target",
        nargs="?",
        choices=["loop-h", "loops", "load", "scaling", "clustering"],
        default="loop-h",
        help="loop-h: loop H cost and cache-hit vs cold search latency; loops: cold/warm cost, CPU, "
        "wall and peak memory of every loop (or --only) in fresh processes, per month vs target; "
        "load: the same at 1x and --factor x the service side by side, plus writers at once; "
        "scaling: loops A and E at --sizes window rows; clustering: DBSCAN core at 10k/100k vectors",
    )
    bench.add_argument(
        "--only",
        action="append",
        metavar="LOOP_ID",
        help="with 'loops' / 'load' / 'scaling': which loops (repeatable; default all ten / A and E)",
    )
    bench.add_argument(
        "--sizes", default="10000,100000,1000000", help="with 'scaling': query_log rows in the window, comma-separated"
    )
    bench.add_argument("--db", default="data/bench/autonomath-production.db")
    bench.add_argument(
        "--factor", type=int, default=10, help="with 'load': the world's size in services (1× is measured beside it)"
    )
    bench.add_argument("--scale", choices=WORLD_SCALES, default="production")
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument("--queries", type=int, default=2000, help="head queries timed (>= 2000 for the issue's figure)")
    bench.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="loop H runs / warm runs per loop with 'loops' (at least 3; the median is reported)",
    )
    bench.add_argument("--out", default="reports/bench", help="folder for the figures (JSON, PNG)")
    bench.add_argument("--rebuild", action="store_true", help="rebuild the world even if the file exists")
    bench.set_defaults(func=cmd_bench)

    evaluate = sub.add_parser(
        "eval",
        help="run every loop on the demo world (dry run) and score it against the "
        "planted truth: Markdown table + JSON + PNG",
    )
    from autonomath_pipelines.quality.runner import add_arguments as eval_arguments

    eval_arguments(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    _review_parser(sub)

    digest = sub.add_parser(
        "digest",
        help="the self-improvement line of the last days, from the Dagster run "
        "history ($DAGSTER_HOME) and the review audit log, with consecutive-failure warnings",
    )
    digest.add_argument("--days", type=int, default=7)
    digest.add_argument(
        "--db", default=None, help="AutonoMath database (default: $AUTONOMATH_DB or data/autonomath.db)"
    )
    digest.add_argument(
        "--reports-dir", default=None, help="where loop_failures.jsonl is (default: $AUTONOMATH_REPORTS_DIR or reports)"
    )
    digest.set_defaults(func=cmd_digest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    # Dagster marks some APIs beta/preview; the operator's terminal is not the place for that.
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", message=".*(Beta|Preview)Warning.*")
    from autonomath_pipelines.orchestrator import UsageError
    from autonomath_pipelines.review import ReviewError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, DatabaseFileError, SchemaError, ReviewError) as exc:
        print(f"autonomath-loops: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("autonomath-loops: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
