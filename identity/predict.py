"""Score candidate record pairs and shape them into gold.identity_links.

Every pair a prediction blocking rule produces is scored; pairs that are not even a remote
possibility are dropped, the rest are kept with their evidence: per comparison the level
reached (``gamma_<comparison>``, -1 when a side was null) and its match weight, the log2 Bayes
factor (``mw_<comparison>``, plus ``mw_tf_adj_<comparison>`` where a term-frequency adjustment
applies). A reviewer can see why two records were or were not joined without re-running the
model. Attribute values are not copied into the links table:
it holds no PII, only record ids and scores.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from splink import Linker
from splink.internals.splink_dataframe import SplinkDataFrame

# Pairs below this probability are not evidence worth keeping for review.
LINK_MIN_PROBABILITY = 0.01

_KEY_COLUMNS = (
    "record_id_l",
    "record_id_r",
    "source_l",
    "source_r",
    "match_weight",
    "match_probability",
    "match_key",
)


def predict_pairs(linker: Linker, match_threshold: float) -> SplinkDataFrame:
    """Scored pairs worth keeping: at least ``LINK_MIN_PROBABILITY`` (or the match threshold)."""
    return linker.inference.predict(
        threshold_match_probability=min(LINK_MIN_PROBABILITY, match_threshold)
    )


def links_table(predictions: DataFrame, model_version: str, resolved_at: datetime) -> DataFrame:
    """gold.identity_links rows: pair ids and scores, evidence columns, model and run stamp."""
    evidence = [c for c in predictions.columns if c.startswith(("gamma_", "mw_"))]
    return predictions.select(
        *_KEY_COLUMNS,
        *evidence,
        F.lit(model_version).alias("model_version"),
        F.lit(resolved_at).cast("timestamp").alias("resolved_at"),
    )
