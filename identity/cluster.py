"""Group linked records into customers.

Clusters are the connected components of the pairs at or above the match threshold (Splink's
clustering); a record linked to nothing is a cluster of one. Which ``customer_id`` a cluster
carries is decided against the previous run by :mod:`identity.stable_ids`.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from splink import Linker
from splink.internals.splink_dataframe import SplinkDataFrame


def cluster_records(
    linker: Linker, predictions: SplinkDataFrame, match_threshold: float
) -> DataFrame:
    """``record_id, source, cluster_id`` for every input record, singletons included."""
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=match_threshold
    )
    return clusters.as_spark_dataframe().select("record_id", "source", "cluster_id")
