"""Reading and writing the identity tables, always through the catalog.

A batch run rewrites a gold table whole with a Delta overwrite; an incremental run replaces only
the rows of the customers it touched with one selective Delta overwrite
(:func:`replace_customer_rows`) and upserts records with one MERGE (:func:`upsert_rows`). Either
way the new version becomes visible in one commit, and a run that fails before the commit leaves
readers on the previous version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import reduce
from operator import and_
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DataType, MapType, StructType

from schemas.catalog import Table
from schemas.settings import Settings

if TYPE_CHECKING:
    from delta.tables import DeltaMergeBuilder, DeltaTable


def table_exists(spark: SparkSession, settings: Settings, table: Table) -> bool:
    """Whether the catalog table has been written (optional tables: history, links)."""
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, table.path(settings))


def latest_version(spark: SparkSession, path: str) -> int | None:
    """The newest commit version of the Delta table at ``path``; None when there is none."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return None
    return DeltaTable.forPath(spark, path).history(1).first().version


def merge_commit_metric(target: DeltaTable, merge: DeltaMergeBuilder, metric: str) -> int:
    """Execute ``merge`` into ``target`` and return ``metric`` (``numTargetRowsInserted``,
    ``numTargetRowsDeleted``, ...) of its commit. A MERGE that changes nothing may commit
    nothing, and the latest commit is then an older one, so it counts only if it is new."""
    before = target.history(1).first().version
    merge.execute()
    commit = target.history(1).select("version", "operation", "operationMetrics").first()
    if commit.version == before or commit.operation != "MERGE":
        return 0
    return int(commit.operationMetrics.get(metric, 0))


def read_table(spark: SparkSession, settings: Settings, table: Table) -> DataFrame:
    """The current version of a Delta table from the catalog."""
    return spark.read.format("delta").load(table.path(settings))


def upsert_rows(
    spark: SparkSession, settings: Settings, table: Table, rows: DataFrame, key: str
) -> None:
    """Insert ``rows`` (one per ``key``) into ``table``, updating the rows already there, in one
    Delta MERGE: running it again with the same rows leaves the same table."""
    from delta.tables import DeltaTable

    (
        DeltaTable.forPath(spark, table.path(settings))
        .alias("t")
        .merge(rows.alias("s"), f"t.`{key}` = s.`{key}`")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )


def overwrite_table(df: DataFrame, settings: Settings, table: Table) -> None:
    """Replace ``table`` with ``df`` atomically; the schema follows ``df`` (model changes), and
    the table gets the catalog's properties (:attr:`schemas.catalog.Table.properties`)."""
    path = table.path(settings)
    (
        df.write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .options(**table.properties)
        .save(path)
    )
    apply_table_properties(df.sparkSession, settings, table)


def apply_table_properties(spark: SparkSession, settings: Settings, table: Table) -> None:
    """Give ``table`` the catalog's properties it lacks (:attr:`schemas.catalog.Table.properties`).

    Writer options set properties only on the write that creates a table, so a lakehouse built
    before a property joined the catalog gets it here, at its next batch run, in one commit.
    """
    from delta.tables import DeltaTable

    if not table.properties:
        return
    path = table.path(settings)
    held = DeltaTable.forPath(spark, path).detail().select("properties").first().properties
    missing = {k: v for k, v in table.properties.items() if held.get(k) != v}
    if missing:
        assignments = ", ".join(f"'{k}' = '{v}'" for k, v in missing.items())
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({assignments})")


def collect_customer_ids(customers: DataFrame) -> list[str]:
    """The distinct non-null ``customer_id`` values of ``customers``, sorted, on the driver.

    For the micro-batch path, whose customers are a micro-batch's worth: their ids become
    overwrite predicates and serving-store keys.
    """
    ids = customers.select("customer_id").where(F.col("customer_id").isNotNull()).distinct()
    return sorted(r.customer_id for r in ids.toLocalIterator())


def customer_id_frame(spark: SparkSession, customer_ids: Sequence[str]) -> DataFrame:
    """Collected ids as a one-column ``customer_id`` frame, to narrow tables with a semi-join;
    built from the list, it holds exactly these ids however often it is evaluated."""
    return spark.createDataFrame([(i,) for i in customer_ids], "customer_id string")


def replace_customer_rows(
    spark: SparkSession,
    settings: Settings,
    table: Table,
    customer_ids: Sequence[str],
    rows: DataFrame,
    key: list[str],
) -> int:
    """Make the rows of ``table`` that belong to ``customer_ids`` exactly ``rows``, in one commit;
    the rows it inserted, updated and deleted.

    Incremental runs (a micro-batch touching a few thousand customers) cannot afford to rewrite
    a whole table, yet readers must never see a customer half-replaced: one selective Delta
    overwrite (``replaceWhere customer_id IN (...)``) deletes the customers' stored rows and
    writes their new ones in a single commit, and a run that fails before it leaves the
    previous version. A MERGE would join the table with its source and then read the matched
    files again: replacing about 300 customers' rows in the 1.1-million-row timeline of the
    100,000-person benchmark lakehouse took 7.9-11.3 s this way and 12.3-17.4 s with a MERGE
    (three runs each). A few hundred customers are spread over nearly every file, so without
    deletion vectors every one of them is rewritten: in that benchmark each timeline overwrite
    copied 1.08-1.10 million rows to replace 363-29,457 (micro-batches of 100 to 10,000
    events). Tables the catalog gives deletion vectors (:class:`schemas.catalog.Table`) keep
    their files and mark the replaced rows instead.

    ``customer_ids`` are on the driver already (they are the overwrite's predicate; see
    :func:`collect_customer_ids`), so a caller replacing rows of several tables collects them
    once; ``rows`` has the table's columns and holds only those customers' rows, unique on
    ``key``; a row of another customer
    raises ``ValueError`` before any commit (its customer's stored rows would be replaced
    too). Rows are compared on ``customer_id`` plus ``key``, so a row whose key moves to another
    customer leaves the old one and joins the new one, provided both customers are in
    ``customer_ids``.

    Only customers whose rows differ from the stored ones (maps compared by content) are
    rewritten, so a rerun with the same inputs commits nothing and changes 0 rows. The table is
    read twice: for the customers' stored rows, and by the overwrite of those whose rows
    differ; ``rows`` is computed once.

    A table that does not exist yet is created with ``rows``; with no customers nothing is
    written.
    """
    from delta.tables import DeltaTable

    columns = rows.columns
    ids = sorted(set(customer_ids))
    if not ids:
        return 0
    # Computed once, before the commit: the comparison and the write need them, and ``rows``
    # may read this very table.
    rows = rows.localCheckpoint()
    path = table.path(settings)
    if not table_exists(spark, settings, table):
        rows.write.format("delta").mode("errorifexists").options(**table.properties).save(path)
        written = DeltaTable.forPath(spark, path).history(1).first()
        return int(written.operationMetrics.get("numOutputRows", 0)) if written else 0

    match = list(dict.fromkeys(["customer_id", *key]))
    same_key = reduce(and_, [F.col(f"t.{c}") == F.col(f"s.{c}") for c in match])
    same_values = reduce(
        and_,
        [
            _comparable(F.col(f"t.{f.name}"), f.dataType).eqNullSafe(
                _comparable(F.col(f"s.{f.name}"), f.dataType)
            )
            for f in rows.schema.fields
        ],
    )
    held = (
        spark.read.format("delta")
        .load(path)
        .where(F.expr(_in_list("customer_id", ids)))
        .select(*columns)
        .persist()
    )
    try:
        changed = rows.alias("s").join(held.alias("t"), same_key & same_values, "left_anti")
        gone = held.select(*match).join(rows.select(*match), match, "left_anti")
        per_customer = changed.select(*match).unionByName(gone).groupBy("customer_id").count()
        differences = {r.customer_id: r["count"] for r in per_customer.toLocalIterator()}
        if not differences:
            return 0
        outsiders = differences.keys() - set(ids)
        if outsiders:
            raise ValueError(
                f"{table.qualified_name}: rows of {len(outsiders)} customers not among the "
                "customers to replace"
            )
        replaced = _in_list("customer_id", sorted(differences))
        new_rows = rows.where(F.expr(replaced))
        new_rows.write.format("delta").mode("overwrite").option("replaceWhere", replaced).save(path)
        return sum(differences.values())
    finally:
        held.unpersist()


def store_customer_rows(
    spark: SparkSession,
    settings: Settings,
    customer_ids: Sequence[str],
    rows: Mapping[Table, DataFrame],
) -> dict[str, int]:
    """Replace these customers' rows of each table in ``rows`` (:func:`replace_customer_rows`,
    on the table's ``row_key``), one commit per table in the mapping's order; rows changed per
    table.

    A run that stops between two commits leaves the tables after it on their previous version;
    running the same replacement again completes it.
    """
    return {
        table.qualified_name: replace_customer_rows(
            spark, settings, table, customer_ids, frame, list(table.row_key)
        )
        for table, frame in rows.items()
    }


def _in_list(column: str, values: list[str]) -> str:
    """``column IN ('a', 'b')`` as SQL text, each value quoted as a string literal."""
    quoted = (v.replace("\\", "\\\\").replace("'", "\\'") for v in values)
    return f"`{column}` IN (" + ", ".join(f"'{v}'" for v in quoted) + ")"


def _comparable(column: Column, dtype: DataType) -> Column:
    """``column`` in a form Spark can compare: maps become their entries sorted by key.

    Spark refuses equality on maps, and two equal maps may list their entries in different
    orders (they are collected after a shuffle), which must not count as a change.
    """
    if not _has_map(dtype):
        return column
    if isinstance(dtype, MapType):
        value_type = dtype.valueType
        entries = F.transform(
            F.map_entries(column),
            lambda e: F.struct(
                e["key"].alias("key"), _comparable(e["value"], value_type).alias("value")
            ),
        )
        return F.array_sort(entries)
    if isinstance(dtype, ArrayType):
        element_type = dtype.elementType
        return F.transform(column, lambda e: _comparable(e, element_type))
    assert isinstance(dtype, StructType)
    fields = [_comparable(column[f.name], f.dataType).alias(f.name) for f in dtype.fields]
    return F.when(column.isNotNull(), F.struct(*fields))


def _has_map(dtype: DataType) -> bool:
    if isinstance(dtype, MapType):
        return True
    if isinstance(dtype, ArrayType):
        return _has_map(dtype.elementType)
    if isinstance(dtype, StructType):
        return any(_has_map(f.dataType) for f in dtype.fields)
    return False
