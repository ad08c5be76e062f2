"""Running one loop's assets through Dagster against a demo world, as the loop tests need it."""

import hashlib
from pathlib import Path

import dagster as dg

from autonomath_pipelines import resources
from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.loops.common import LoopDefinition, source_specs
from autonomath_pipelines.resources import AutonomathDatabase, EmbeddingModel, LoopSettings


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def table_digests(db: Path, tables) -> dict[str, str]:
    """sha256 of each table's rows as stored (text as bytes, so invalid UTF-8 too; rowid order)."""
    conn = sqlite3.connect(str(db))
    conn.text_factory = bytes
    try:
        out = {}
        for table in tables:
            h = hashlib.sha256()
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY rowid"):
                h.update(repr(row).encode())
            out[table] = h.hexdigest()
        return out
    finally:
        conn.close()


def loop_resources(db_path, storage: Path, *, execute: bool, loop_id: str, embedding_cache: Path | None = None) -> dict:
    """``resources.loop_resources`` over a test world, every file under ``storage``."""
    return resources.loop_resources(
        AutonomathDatabase(path=str(db_path)),
        LoopSettings(execute_loops=[loop_id] if execute else [], reports_dir=str(storage / "reports")),
        storage_dir=str(storage / "parquet"),
        search_index_dir=str(storage / "search_index"),
        embeddings=EmbeddingModel(cache_path=str(embedding_cache or storage / "embedding_cache.sqlite")),
    )


def run_loops_at(
    *, db_path, reports_dir, storage_dir, execute: bool = False, only=None, embedding_cache=None, **kwargs
):
    """``orchestrator.run_loops`` as ``autonomath-loops run [--only …] [--execute]`` calls it, over a test world."""
    from autonomath_pipelines.loops import LOOP_DEFINITIONS
    from autonomath_pipelines.orchestrator import run_loops, run_settings

    settings = run_settings(
        only, execute=execute, reports_dir=str(reports_dir), loops=kwargs.get("loops", LOOP_DEFINITIONS)
    )
    return run_loops(
        AutonomathDatabase(path=str(db_path)),
        settings,
        only=only,
        storage_dir=str(storage_dir),
        embeddings=EmbeddingModel(cache_path=str(embedding_cache)) if embedding_cache else None,
        **kwargs,
    )


def run_loop(
    loop: LoopDefinition,
    db_path,
    storage: Path,
    partition: str,
    *,
    execute: bool = False,
    run_config: dict | None = None,
    embedding_cache: Path | None = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*source_specs(), *loop.assets],
        selection=loop.assets,
        partition_key=partition,
        resources=loop_resources(
            db_path, storage, execute=execute, loop_id=loop.spec.loop_id, embedding_cache=embedding_cache
        ),
        run_config=run_config,
        raise_on_error=False,
    )


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset)]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def check_outcomes(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
