"""Reading and writing the identity tables, always through the catalog.

Every gold table is rewritten whole with a Delta overwrite: the new version becomes visible in
one commit, and a run that fails before the commit leaves readers on the previous version.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from jobs.catalog import Table
from jobs.settings import Settings


def table_exists(spark: SparkSession, settings: Settings, table: Table) -> bool:
    """Whether the catalog table has been written (optional tables: history, links)."""
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, table.path(settings))


def read_table(spark: SparkSession, settings: Settings, table: Table) -> DataFrame:
    """The current version of a Delta table from the catalog."""
    return spark.read.format("delta").load(table.path(settings))


def overwrite_table(df: DataFrame, settings: Settings, table: Table) -> None:
    """Replace ``table`` with ``df`` atomically; the schema follows ``df`` (model changes)."""
    (
        df.write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .save(table.path(settings))
    )
