"""Splink on Spark: the identity engine of a cluster.

Splink materialises its intermediate tables (input with term frequencies, blocked pairs,
comparison vectors, predictions, clustering iterations) to break Spark's query lineage. It has
to be a real break: with ``persist`` the cached data is reused but the logical plan keeps
growing through the iterations of connected components until the analyzer overflows its stack.
So intermediates are written as Parquet (``break_lineage_method="parquet"``), into a scratch
folder of this run under the Spark checkpoint directory that
``jobs.lakehouse.session.get_spark`` sets up, and the folder is deleted when the session is
closed, also when a step fails. The input features are written there first too: their plan
(joins, aggregates, windows) is deep, and Splink refers to its input in every branch of its
blocking and training queries, so handing it the plan instead of the data makes Spark re-plan it
dozens of times (minutes, even on 50 rows).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from splink import Linker, SparkAPI
from splink.internals.splink_dataframe import SplinkDataFrame

from identity.engines import Engine, LinkerSession, Model, new_linker
from schemas.settings import Settings


class _ScratchSparkAPI(SparkAPI):
    """Splink's Spark backend writing its Parquet intermediates under one folder per run."""

    def __init__(self, *, scratch_dir: str, **kwargs: Any) -> None:
        self._scratch_dir = scratch_dir
        super().__init__(**kwargs)

    def _get_checkpoint_dir_path(self, spark_df: DataFrame) -> str:
        return self._scratch_dir


def _scratch_dir(spark: SparkSession) -> str:
    checkpoint_dir = spark.sparkContext._jsc.sc().getCheckpointDir()
    if checkpoint_dir.isEmpty():
        raise RuntimeError(
            "the SparkSession has no checkpoint directory; use jobs.lakehouse.session.get_spark"
        )
    return f"{checkpoint_dir.get().rstrip('/')}/splink-{uuid.uuid4().hex}"


def _delete_dir(spark: SparkSession, path: str) -> None:
    """Recursively delete ``path`` on whatever file system it is (local, HDFS, object store)."""
    hadoop_path = spark._jvm.org.apache.hadoop.fs.Path(path)
    hadoop_path.getFileSystem(spark._jsc.hadoopConfiguration()).delete(hadoop_path, True)


class SparkEngine(Engine):
    """Splink's Spark backend over the session's own cluster."""

    dialect = "spark"

    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        super().__init__(spark, settings)
        # Views registered into the session's catalog, dropped when the linker closes: a
        # running stream keeps one session, and its next micro-batch registers its own.
        self._views: list[str] = []

    @contextmanager
    def open(self, features: DataFrame, model: Model, materialize: bool) -> Iterator[LinkerSession]:
        scratch = _scratch_dir(self.spark)
        db_api = _ScratchSparkAPI(
            scratch_dir=scratch,
            spark_session=self.spark,
            break_lineage_method="parquet",
            num_partitions_on_repartition=self.settings.shuffle_partitions,
        )
        try:
            written = features
            if materialize:
                features.write.parquet(f"{scratch}/input")
                written = self.spark.read.parquet(f"{scratch}/input")
            table = db_api.register(written)
            yield LinkerSession(self, new_linker(table, model, self.dialect), written, table)
        finally:
            db_api.delete_tables_created_by_splink_from_db()
            for view in self._views:
                self.spark.catalog.dropTempView(view)
            _delete_dir(self.spark, scratch)

    def to_spark(self, table: SplinkDataFrame) -> DataFrame:
        return table.as_spark_dataframe()

    def register(self, linker: Linker, frame: DataFrame, name: str) -> SplinkDataFrame:
        self._views.append(name)
        return linker.table_management.register_table(frame, name, overwrite=True)

    def rows(self, linker: Linker, query: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.spark.sql(query).collect()]

    def unit_hash(self, column: str) -> str:
        # The first 32 bits of the MD5 of the value, as DuckDB computes them too.
        return (
            f"(cast(conv(substr(md5(cast({column} AS string)), 1, 8), 16, 10) AS bigint)"
            " / 4294967296.0)"
        )
