"""The Parquet IO manager: one file per partition, ranges split and reassembled, atomic writes."""

import dagster as dg
import pandas as pd
import pytest

from autonomath_pipelines.resources.io_manager import PartitionedParquetIOManager

DAYS = dg.DailyPartitionsDefinition(start_date="2026-11-01", timezone="Asia/Tokyo")


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def rows_per_day(context: dg.AssetExecutionContext) -> pd.DataFrame:
    return pd.DataFrame({"partition_key": list(context.partition_keys), "n": range(len(context.partition_keys))})


@dg.asset(partitions_def=DAYS)
def doubled(rows_per_day: pd.DataFrame) -> pd.DataFrame:
    return rows_per_day.assign(n=rows_per_day["n"] * 2)


@dg.asset(partitions_def=DAYS)
def not_a_frame() -> dict:
    return {"x": 1}


def test_single_partition_round_trip(tmp_path):
    io = PartitionedParquetIOManager(base_dir=str(tmp_path))
    result = dg.materialize([rows_per_day, doubled], partition_key="2026-11-03", resources={"io_manager": io})
    assert result.success
    assert (tmp_path / "rows_per_day" / "2026-11-03.parquet").exists()
    assert result.output_for_node("doubled")["partition_key"].tolist() == ["2026-11-03"]


def test_single_run_range_is_split_per_partition_and_read_back(tmp_path):
    io = PartitionedParquetIOManager(base_dir=str(tmp_path))
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [rows_per_day],
            instance=instance,
            resources={"io_manager": io},
            tags={
                "dagster/asset_partition_range_start": "2026-11-02",
                "dagster/asset_partition_range_end": "2026-11-04",
            },
        )
        assert result.success
        files = sorted(p.name for p in (tmp_path / "rows_per_day").glob("*.parquet"))
        assert files == ["2026-11-02.parquet", "2026-11-03.parquet", "2026-11-04.parquet"]
        one = dg.materialize(
            [doubled, rows_per_day.to_source_asset()],
            partition_key="2026-11-03",
            instance=instance,
            resources={"io_manager": io},
            selection=[doubled],
        )
    assert one.output_for_node("doubled").to_dict("records") == [{"partition_key": "2026-11-03", "n": 2}]


def test_missing_upstream_partition_is_named(tmp_path):
    io = PartitionedParquetIOManager(base_dir=str(tmp_path))
    with pytest.raises(Exception, match="rows_per_day partition 2026-11-05 has not been materialized"):
        dg.materialize(
            [doubled, rows_per_day.to_source_asset()],
            partition_key="2026-11-05",
            resources={"io_manager": io},
            selection=[doubled],
        )


def test_non_frames_are_refused(tmp_path):
    io = PartitionedParquetIOManager(base_dir=str(tmp_path))
    with pytest.raises(Exception, match="stores pandas DataFrames only"):
        dg.materialize([not_a_frame], partition_key="2026-11-05", resources={"io_manager": io})


def test_no_temporary_files_left_behind(tmp_path):
    io = PartitionedParquetIOManager(base_dir=str(tmp_path))
    dg.materialize([rows_per_day], partition_key="2026-11-03", resources={"io_manager": io})
    assert not list(tmp_path.rglob("*.tmp"))
