"""Group linked records into customers and give every customer a stable id.

Clusters are the connected components of the pairs at or above the match threshold (Splink's
clustering); a record linked to nothing is a cluster of one. The customer id is derived from
the cluster's members, not from a counter or Splink's internal cluster id, so identical input
always yields identical ids: ``"C"`` + the first 12 hex digits of SHA-256 of the smallest
``record_id`` in the cluster. A cluster that gains records keeps its id as long as its smallest
record stays the same; merges and splits that change it are what gold.customer_id_history is for.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from splink import Linker
from splink.internals.splink_dataframe import SplinkDataFrame

from schemas.tables import IDENTITY_XREF, conform


def cluster_records(
    linker: Linker, predictions: SplinkDataFrame, match_threshold: float
) -> DataFrame:
    """``record_id, source, cluster_id`` for every input record, singletons included."""
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=match_threshold
    )
    return clusters.as_spark_dataframe().select("record_id", "source", "cluster_id")


def customer_id(record_id: Column) -> Column:
    """The customer id a cluster gets from its smallest record id."""
    return F.concat(F.lit("C"), F.substring(F.sha2(record_id, 256), 1, 12))


def xref_table(clusters: DataFrame, resolved_at: datetime) -> DataFrame:
    """gold.identity_xref: each record once, with its customer id and its cluster's size."""
    cluster = Window.partitionBy("cluster_id")
    return conform(
        clusters.select(
            "record_id",
            "source",
            customer_id(F.min("record_id").over(cluster)).alias("customer_id"),
            F.count(F.lit(1)).over(cluster).alias("cluster_size"),
            F.lit(resolved_at).cast("timestamp").alias("resolved_at"),
        ),
        IDENTITY_XREF,
    )
