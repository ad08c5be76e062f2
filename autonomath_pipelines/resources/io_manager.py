"""Partition-aware Parquet IO manager for the loops' intermediate assets.

One file per asset partition: ``<base_dir>/<asset key path>/<partition key>.parquet``
(``<base_dir>/<asset key path>.parquet`` when unpartitioned). A run that materializes a partition
range at once (single-run backfill) hands over one DataFrame with a ``partition_key`` column; it is
split into one file per partition, so a later single-partition run reads exactly its slice.
Files are written to a temporary name and renamed (``lib.files.replace_files``), so a killed run never
leaves half a file, and the files of one output change together: a write that fails (disk full,
read-only folder) raises ``FileWriteError`` naming the path and leaves every partition file as it was.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

from autonomath_pipelines.lib.files import replace_files

PARTITION_COLUMN = "partition_key"
_UNSAFE = re.compile(r"[^0-9A-Za-z._-]")


def _safe(part: str) -> str:
    """``part`` as one plain path component: unsafe characters become ``_``, and a component of dots
    only (``..``) or nothing at all becomes underscores, so no asset or partition key leaves ``base_dir``."""
    safe = _UNSAFE.sub("_", part)
    return safe if safe.strip(".") else "_" * max(1, len(safe))


class PartitionedParquetIOManager(dg.ConfigurableIOManager):
    """Stores DataFrames as Parquet under ``base_dir`` (env AUTONOMATH_STORAGE), one file per partition."""

    base_dir: str = Field(
        default_factory=lambda: os.environ.get("AUTONOMATH_STORAGE", "storage"),
        description="Folder of the intermediate Parquet files (git-ignored).",
    )

    def _asset_dir(self, asset_key: dg.AssetKey) -> Path:
        return Path(self.base_dir).expanduser().resolve().joinpath(*[_safe(p) for p in asset_key.path])

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | None) -> Path:
        base = self._asset_dir(asset_key)
        return base / f"{_safe(partition_key)}.parquet" if partition_key is not None else base.with_suffix(".parquet")

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | None) -> None:
        if obj is None:
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; "
                "the Parquet IO manager stores pandas DataFrames only"
            )
        if not context.has_asset_partitions:
            self._write({self.path_for(context.asset_key, None): obj})
            return
        keys = list(context.asset_partition_keys)
        if len(keys) == 1:
            self._write({self.path_for(context.asset_key, keys[0]): obj})
            return
        if PARTITION_COLUMN not in obj.columns:
            raise ValueError(
                f"{context.asset_key.to_user_string()} materialized {len(keys)} partitions at once "
                f"but its DataFrame has no '{PARTITION_COLUMN}' column to split them by"
            )
        unknown = set(obj[PARTITION_COLUMN].unique()) - set(keys)
        if unknown:
            raise ValueError(f"rows for partitions outside the run's range: {sorted(unknown)[:5]}")
        self._write({self.path_for(context.asset_key, key): obj[obj[PARTITION_COLUMN] == key] for key in keys})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        asset_key = context.asset_key
        if not context.has_asset_partitions:
            return self._read(self.path_for(asset_key, None), asset_key)
        frames = [self._read(self.path_for(asset_key, key), asset_key, key) for key in context.asset_partition_keys]
        if len(frames) == 1:
            return frames[0]
        return pd.concat(frames, ignore_index=True)

    @staticmethod
    def _write(frames: dict[Path, pd.DataFrame]) -> None:
        """Every frame to its file, as one change (all staged first, then renamed into place)."""

        def writer(frame: pd.DataFrame):
            return lambda tmp: frame.reset_index(drop=True).to_parquet(tmp, index=False)

        replace_files({path: writer(frame) for path, frame in frames.items()})

    @staticmethod
    def _read(path: Path, asset_key: dg.AssetKey, partition_key: str | None = None) -> pd.DataFrame:
        if not path.exists():
            which = f" partition {partition_key}" if partition_key else ""
            raise FileNotFoundError(f"{asset_key.to_user_string()}{which} has not been materialized (no {path})")
        return pd.read_parquet(path)
