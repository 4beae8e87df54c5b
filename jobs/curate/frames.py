"""Frame and column helpers the curated tables share."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def combine(keys: list[str], anchor: DataFrame, parts: list[DataFrame]) -> DataFrame:
    """``anchor`` with the columns of ``parts`` beside it, like a chain of left joins on ``keys``.

    Each part has at most one row per key and its own columns, so a union and one aggregation
    give the same rows with one shuffle instead of one per join, whatever the number of parts.
    """
    union = anchor.withColumn("_anchor", F.lit(True))
    for part in parts:
        union = union.unionByName(part, allowMissingColumns=True)
    values = [c for c in union.columns if c not in keys]
    combined = union.groupBy(*keys).agg(*[F.first(c, ignorenulls=True).alias(c) for c in values])
    return combined.where("_anchor").drop("_anchor")


def days_before(as_of: Column, days: int) -> Column:
    return as_of - F.make_interval(days=F.lit(days))
