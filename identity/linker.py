"""The one place that knows Splink runs on Spark: building a linker and cleaning up after it.

Splink materialises its intermediate tables (input with term frequencies, blocked pairs,
comparison vectors, predictions, clustering iterations) to break Spark's query lineage. It has
to be a real break: with ``persist`` the cached data is reused but the logical plan keeps
growing through the iterations of connected components until the analyzer overflows its stack.
So intermediates are written as Parquet (``break_lineage_method="parquet"``), into a scratch
folder of this run under the Spark checkpoint directory that
``jobs.lakehouse.session.get_spark`` sets up, and the folder is deleted when the linker is
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
from splink import Linker, SettingsCreator, SparkAPI

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


@contextmanager
def open_linker(
    spark: SparkSession,
    settings: Settings,
    features: DataFrame,
    model: SettingsCreator | dict[str, Any],
    materialize: bool = True,
) -> Iterator[tuple[Linker, DataFrame]]:
    """Yield a Splink linker over ``features`` with ``model``, and the features as written.

    ``materialize=False`` hands Splink ``features`` as they are: for a plain scan of a stored
    table, which costs nothing to re-plan and would only be copied. The linker's tables, the
    written features included, are removed afterwards.
    """
    scratch = _scratch_dir(spark)
    db_api = _ScratchSparkAPI(
        scratch_dir=scratch,
        spark_session=spark,
        break_lineage_method="parquet",
        num_partitions_on_repartition=settings.shuffle_partitions,
    )
    try:
        written = features
        if materialize:
            features.write.parquet(f"{scratch}/input")
            written = spark.read.parquet(f"{scratch}/input")
        yield Linker(db_api.register(written), model, log_level=None), written
    finally:
        db_api.delete_tables_created_by_splink_from_db()
        _delete_dir(spark, scratch)
