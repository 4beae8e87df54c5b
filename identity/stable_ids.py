"""Stable customer ids: each new cluster inherits the id its records had, merges and splits
are recorded, and a retired id can always be followed to the id that replaced it.

Marketers' audiences, agents' notes and downstream systems hold on to ``customer_id``s, so a
resolution run must not renumber customers. Ids are assigned against the previous
``gold.identity_xref`` by a deterministic rule that needs no sequential matching (it runs as
joins and window functions, so it scales with the data):

1. For every previous id, its *home* is the new cluster that holds most of its records
   (ties: the cluster whose smallest record id sorts first).
2. Every cluster that is home to at least one previous id keeps one of them: the one with the
   most of its records in the cluster (ties: the id that sorts first). So when clusters merge,
   the id that brings the most records survives; when a cluster splits, the larger part keeps
   the id.
3. A previous id that its home cluster did not keep is *retired*: ``merge`` into the id its
   home kept.
4. A cluster that is nobody's home (only new records, or the smaller part of a split) gets a
   new id, ``"C"`` + the first 12 hex digits of SHA-256 of its smallest record id, or, if that
   id was ever issued before, of that record id salted with the run's previous xref version.
5. Records that left an id for a cluster with another id, without retiring it, are a
   ``split``: the previous id lives on and the history names where the records went.

On the first run (no previous xref) every cluster gets a new id by rule 4, so identical input
always yields identical ids, and a rerun on unchanged data keeps every id and records nothing.

gold.customer_id_history has one row per (previous id, new id, event) with the number of
records that moved; rows are keyed by ``event_id`` (a hash of the event and the xref version it
was computed from) and inserted with a Delta MERGE, so a run retried after a crash between
writing the history and the xref does not record its events twice. Consumers resolve a retired
id by following ``merge`` rows (:func:`retired_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.lakehouse.delta import latest_version, overwrite_table, read_table, table_exists
from jobs.lakehouse.spark_schema import conform
from schemas.catalog import GOLD_CUSTOMER_ID_HISTORY, GOLD_IDENTITY_XREF
from schemas.settings import Settings
from schemas.tables import CUSTOMER_ID_HISTORY, IDENTITY_XREF

# How many merge hops ``retired_ids`` follows; a longer chain means an id was merged again in
# that many consecutive runs, or the history loops: either needs a person to look.
MAX_MERGE_HOPS = 32


@dataclass(frozen=True)
class PreviousIds:
    """The xref a run assigns against, and every id ever issued (current or in the history)."""

    xref: DataFrame  # record_id, customer_id
    issued: DataFrame  # customer_id
    version: int  # Delta version of the previous xref; -1 on the first run


def new_id(record_id: Column) -> Column:
    """A new customer id from a cluster's smallest record id."""
    return F.concat(F.lit("C"), F.substring(F.sha2(record_id, 256), 1, 12))


def previous_ids(spark: SparkSession, settings: Settings) -> PreviousIds:
    """What earlier runs assigned; empty frames on the first run."""
    xref_path = GOLD_IDENTITY_XREF.path(settings)
    version = latest_version(spark, xref_path)
    if version is None:
        empty = spark.createDataFrame([], "record_id string, customer_id string")
        return PreviousIds(empty, empty.select("customer_id"), -1)
    xref = spark.read.format("delta").option("versionAsOf", version).load(xref_path)
    xref = xref.select("record_id", "customer_id")
    issued = xref.select("customer_id")
    if table_exists(spark, settings, GOLD_CUSTOMER_ID_HISTORY):
        history = read_table(spark, settings, GOLD_CUSTOMER_ID_HISTORY)
        issued = issued.unionByName(
            history.select(F.col("previous_id").alias("customer_id"))
        ).unionByName(history.select(F.col("current_id").alias("customer_id")))
    return PreviousIds(xref, issued.distinct(), version)


def assign_ids(clusters: DataFrame, previous: PreviousIds) -> tuple[DataFrame, DataFrame]:
    """``(assigned, moves)`` for ``clusters`` (record_id, source, cluster_id).

    ``assigned``: record_id, source, cluster_id, customer_id. ``moves``: previous_id,
    current_id, records, home for every (previous id, cluster) pair whose ids differ.
    """
    keyed = clusters.withColumn(
        "cluster_key", F.min("record_id").over(Window.partitionBy("cluster_id"))
    )
    overlap = (
        keyed.join(previous.xref.withColumnRenamed("customer_id", "previous_id"), "record_id")
        .groupBy("cluster_id", "cluster_key", "previous_id")
        .agg(F.count(F.lit(1)).alias("records"))
    )
    home_rank = F.row_number().over(
        Window.partitionBy("previous_id").orderBy(F.desc("records"), "cluster_key")
    )
    homes = overlap.withColumn("home", home_rank == 1)
    kept_rank = F.row_number().over(
        Window.partitionBy("cluster_id").orderBy(F.desc("records"), "previous_id")
    )
    kept = (
        homes.where("home")
        .withColumn("rank", kept_rank)
        .where("rank = 1")
        .select("cluster_id", F.col("previous_id").alias("customer_id"))
    )
    cluster_ids = _with_new_ids(
        keyed.select("cluster_id", "cluster_key").distinct().join(kept, "cluster_id", "left"),
        previous,
    )
    assigned = keyed.join(cluster_ids, "cluster_id").select(
        "record_id", "source", "cluster_id", "customer_id"
    )
    moves = (
        homes.join(cluster_ids, "cluster_id")
        .where(F.col("previous_id") != F.col("customer_id"))
        .select("previous_id", F.col("customer_id").alias("current_id"), "records", "home")
    )
    return assigned, moves


def _with_new_ids(clusters: DataFrame, previous: PreviousIds) -> DataFrame:
    """Fill ``customer_id`` of clusters that kept none with a new id never issued before."""
    plain = new_id(F.col("cluster_key"))
    salted = new_id(F.concat_ws("#", "cluster_key", F.lit(str(previous.version))))
    taken = previous.issued.select(F.col("customer_id").alias("_taken"), F.lit(True).alias("_t"))
    return (
        clusters.withColumn("_plain", plain)
        .join(taken, F.col("_plain") == F.col("_taken"), "left")
        .select(
            "cluster_id",
            F.coalesce(
                "customer_id", F.when(F.col("_t").isNull(), F.col("_plain")).otherwise(salted)
            ).alias("customer_id"),
        )
    )


def history_events(
    moves: DataFrame, previous: PreviousIds, changed_at: datetime, model_version: str
) -> DataFrame:
    """gold.customer_id_history rows for the moves of one run.

    A move to the previous id's home cluster means the home kept another id: the previous id is
    retired (``merge``). Any other move is part of its records leaving it (``split``).
    """
    event = F.when(F.col("home"), F.lit("merge")).otherwise(F.lit("split"))
    reason = F.when(
        F.col("event") == "merge",
        F.format_string(
            "merged: its %d record(s) joined a cluster that kept %s", "records", "current_id"
        ),
    ).otherwise(F.format_string("split: %d of its records moved to %s", "records", "current_id"))
    return conform(
        moves.withColumn("event", event).select(
            F.sha2(
                F.concat_ws("|", "event", "previous_id", "current_id", F.lit(previous.version)),
                256,
            ).alias("event_id"),
            "event",
            "previous_id",
            "current_id",
            "records",
            reason.alias("reason"),
            F.lit(changed_at).cast("timestamp").alias("changed_at"),
            F.lit(model_version).alias("model_version"),
        ),
        CUSTOMER_ID_HISTORY,
    )


def write_ids(
    spark: SparkSession,
    settings: Settings,
    clusters: DataFrame,
    previous: PreviousIds,
    resolved_at: datetime,
    model_version: str,
) -> dict[str, int]:
    """Assign ids to ``clusters``, record the run's merges and splits, then replace
    gold.identity_xref; returns the number of history events per kind.

    The history goes first: a run that dies before the xref is replaced is retried against
    the same previous xref, and its events (same ids) are not inserted again.
    """
    assigned, moves = assign_ids(clusters, previous)
    assigned, moves = assigned.localCheckpoint(), moves.localCheckpoint()
    events = history_events(moves, previous, resolved_at, model_version)
    counts = {r.event: r["count"] for r in events.groupBy("event").count().collect()}
    record_history(spark, settings, events)  # also creates the (empty) table on a first run
    overwrite_table(xref_table(assigned, resolved_at), settings, GOLD_IDENTITY_XREF)
    return counts


def xref_table(assigned: DataFrame, resolved_at: datetime) -> DataFrame:
    """gold.identity_xref: each record once, with its customer id and its cluster's size."""
    customer = Window.partitionBy("customer_id")
    return conform(
        assigned.select(
            "record_id",
            "source",
            "customer_id",
            F.count(F.lit(1)).over(customer).alias("cluster_size"),
            F.lit(resolved_at).cast("timestamp").alias("resolved_at"),
        ),
        IDENTITY_XREF,
    )


def record_history(spark: SparkSession, settings: Settings, events: DataFrame) -> None:
    """Insert ``events`` not yet in gold.customer_id_history (created on first use)."""
    from delta.tables import DeltaTable

    path = GOLD_CUSTOMER_ID_HISTORY.path(settings)
    if not table_exists(spark, settings, GOLD_CUSTOMER_ID_HISTORY):
        events.write.format("delta").mode("append").save(path)
        return
    (
        DeltaTable.forPath(spark, path)
        .alias("h")
        .merge(events.alias("e"), "h.event_id = e.event_id")
        .whenNotMatchedInsertAll()
        .execute()
    )


def retired_ids(history: DataFrame) -> DataFrame:
    """``retired_id, surviving_id``: every retired id and the id it lives on as today.

    Merge chains (A into B in one run, B into C in a later one) are followed on the history
    table, which is small, one hop per pass until no surviving id is itself retired.
    """
    merges = history.where(F.col("event") == "merge").select(
        F.col("previous_id").alias("retired_id"), F.col("current_id").alias("surviving_id")
    )
    resolved = merges
    for _ in range(MAX_MERGE_HOPS):
        hop = merges.select(F.col("retired_id").alias("_via"), F.col("surviving_id").alias("_to"))
        step = resolved.join(hop, F.col("surviving_id") == F.col("_via"), "left")
        if step.where(F.col("_via").isNotNull()).isEmpty():
            return resolved
        resolved = step.select(
            "retired_id", F.coalesce("_to", "surviving_id").alias("surviving_id")
        ).localCheckpoint()
    raise RuntimeError(
        f"{GOLD_CUSTOMER_ID_HISTORY.qualified_name}: a merge chain is longer than "
        f"{MAX_MERGE_HOPS} hops or loops; the table needs a look"
    )
