"""Resolve identities: silver customer records -> scored links, customer ids, golden records.

One run reads the current silver.customer_records, loads the saved model (training one first
when there is none, when the model specification changed, or when asked to), and rewrites
gold.identity_features (the records as the model compares them, which micro-batches match new
records against), gold.identity_links, gold.identity_xref and gold.customer_profile, keeping
customer ids stable across runs and recording merges and splits in gold.customer_id_history (see
:mod:`identity.stable_ids`). Each table is replaced in one Delta commit, in that order, and
every row carries the run's ``resolved_at`` (and the links and profiles the ``model_version``),
so a consumer can tell which run produced what it reads. A run that fails leaves each table at
its previous version.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from identity.artifact import SavedModel, load_model
from identity.cluster import cluster_records
from identity.engines import open_linker
from identity.features import load_features
from identity.predict import links_table, predict_pairs
from identity.profile import profile_table
from identity.stable_ids import previous_ids, write_ids
from identity.survivorship import load_survivorship_rules
from identity.train import train_model
from jobs.lakehouse.delta import overwrite_table, read_table
from schemas.catalog import (
    GOLD_CUSTOMER_PROFILE,
    GOLD_IDENTITY_FEATURES,
    GOLD_IDENTITY_LINKS,
    GOLD_IDENTITY_XREF,
    SILVER_CUSTOMER_RECORDS,
)
from schemas.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolveSummary:
    """Counts of what one resolution run wrote (aggregates only, no PII)."""

    model_version: str
    trained: bool
    record_count: int
    link_count: int
    matched_pair_count: int
    customer_count: int
    multi_record_customers: int
    largest_cluster: int
    merged_ids: int  # customer ids retired into another this run
    split_ids: int  # (previous id, new id) pairs where records left an id that lives on
    seconds: float


def _model(spark: SparkSession, settings: Settings, retrain: bool) -> tuple[SavedModel, bool]:
    """The model to resolve with, and whether it was trained by this run."""
    model = None if retrain else load_model(settings.resolved_model_path)
    if model is not None and model.is_current_spec:
        return model, False
    if model is not None:
        log.info("saved model %s predates the model specification; retraining", model.model_version)
    train_model(spark, settings)
    trained = load_model(settings.resolved_model_path)
    if trained is None:  # train_model always saves; this guards a storage that lost the file
        raise RuntimeError(f"no model at {settings.resolved_model_path} after training")
    return trained, True


def _cluster_stats(xref: DataFrame) -> tuple[int, int, int, int]:
    """Records, customers, customers with several records and the largest cluster size."""
    row = (
        xref.groupBy("customer_id")
        .agg(F.count(F.lit(1)).alias("n"))
        .agg(
            F.sum("n").alias("records"),
            F.count(F.lit(1)).alias("customers"),
            F.sum(F.when(F.col("n") > 1, 1).otherwise(0)).alias("multi"),
            F.max("n").alias("largest"),
        )
        .first()
    )
    return tuple(int(v or 0) for v in row)  # type: ignore[return-value]


def _link_and_cluster(
    spark: SparkSession, settings: Settings, model: SavedModel, resolved_at: datetime
) -> dict[str, int]:
    """Score pairs into gold.identity_links, cluster them into gold.identity_xref with stable
    ids, record merges and splits in gold.customer_id_history; the events per kind."""
    started = time.monotonic()
    previous = previous_ids(spark, settings)
    features = load_features(spark, settings)
    with open_linker(spark, settings, features, model.splink_settings) as session:
        # what increments match against
        overwrite_table(session.features, settings, GOLD_IDENTITY_FEATURES)
        predictions = predict_pairs(session.linker, settings.match_threshold)
        links = links_table(session.to_spark(predictions), model.model_version, resolved_at)
        overwrite_table(links, settings, GOLD_IDENTITY_LINKS)
        log.info("links written after %.1fs", time.monotonic() - started)
        clusters = cluster_records(session, predictions, settings.match_threshold)
        counts = write_ids(spark, settings, clusters, previous, resolved_at, model.model_version)
    log.info("xref written after %.1fs (id changes: %s)", time.monotonic() - started, counts)
    return counts


def _summary(
    spark: SparkSession,
    settings: Settings,
    model: SavedModel,
    trained: bool,
    started: float,
    id_changes: dict[str, int],
) -> ResolveSummary:
    """Counts of the tables just written, from Delta (aggregates only)."""
    links = read_table(spark, settings, GOLD_IDENTITY_LINKS)
    link_count, matched = links.agg(
        F.count(F.lit(1)),
        F.sum((F.col("match_probability") >= settings.match_threshold).cast("int")),
    ).first()
    records, customers, multi, largest = _cluster_stats(
        read_table(spark, settings, GOLD_IDENTITY_XREF)
    )
    return ResolveSummary(
        model_version=model.model_version,
        trained=trained,
        record_count=records,
        link_count=int(link_count),
        matched_pair_count=int(matched or 0),
        customer_count=customers,
        multi_record_customers=multi,
        largest_cluster=largest,
        merged_ids=id_changes.get("merge", 0),
        split_ids=id_changes.get("split", 0),
        seconds=time.monotonic() - started,
    )


def resolve_identities(
    spark: SparkSession, settings: Settings, retrain: bool = False
) -> ResolveSummary:
    """Link, cluster and profile silver customer records into the gold identity tables."""
    started = time.monotonic()
    survivorship = load_survivorship_rules(settings.survivorship_rules)  # fail before linking
    model, trained = _model(spark, settings, retrain)
    resolved_at = datetime.now(UTC).replace(microsecond=0)
    log.info("resolving with model %s", model.model_version)
    id_changes = _link_and_cluster(spark, settings, model, resolved_at)
    profiles = profile_table(
        read_table(spark, settings, SILVER_CUSTOMER_RECORDS),
        read_table(spark, settings, GOLD_IDENTITY_XREF),
        model.model_version,
        resolved_at,
        survivorship,
    )
    overwrite_table(profiles, settings, GOLD_CUSTOMER_PROFILE)
    summary = _summary(spark, settings, model, trained, started, id_changes)
    log.info(
        "resolved %d records into %d customers (%d with several records, largest %d) "
        "from %d links in %.1fs",
        summary.record_count,
        summary.customer_count,
        summary.multi_record_customers,
        summary.largest_cluster,
        summary.link_count,
        summary.seconds,
    )
    return summary
