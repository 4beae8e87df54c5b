"""Answers to "why were these two linked?" and "what makes up this customer?".

``explain_pair`` scores two silver records with the saved model (the same Splink model, term
frequencies from the same records as a resolution run) and returns the match weight each
comparison contributes, the prior and the final probability; the waterfall chart is written as
HTML for people reviewing it. Both carry weights and level labels only: Splink's
``remove_sensitive_data`` keeps names, emails and phones out of the chart, and nothing here
prints a compared value.

``customer_why`` lists the records of one customer (a retired id is followed to the id it lives
on as) and the scored links among them at or above the match threshold: the edges that hold
the cluster together, each with its per-comparison match weights from gold.identity_links.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from identity.artifact import SavedModel, load_model
from identity.engines import open_linker
from identity.features import load_features
from identity.stable_ids import retired_ids
from jobs.lakehouse.delta import read_table, table_exists
from schemas.catalog import (
    GOLD_CUSTOMER_ID_HISTORY,
    GOLD_IDENTITY_LINKS,
    GOLD_IDENTITY_XREF,
    SILVER_CUSTOMER_RECORDS,
)
from schemas.settings import Settings

# Links of one customer shown by ``why``: enough to see every edge of any sane cluster.
MAX_LINKS_SHOWN = 200


@dataclass(frozen=True)
class Evidence:
    """One step of the waterfall: a comparison's level and the match weight it adds."""

    comparison: str
    level: str
    match_weight: float


@dataclass(frozen=True)
class PairExplanation:
    """How the model scores two records."""

    model_version: str
    prior_match_weight: float
    evidence: list[Evidence]
    match_weight: float
    match_probability: float
    chart_path: Path


def _model_or_fail(settings: Settings) -> SavedModel:
    model = load_model(settings.resolved_model_path)
    if model is None:
        raise FileNotFoundError(
            f"no saved model at {settings.resolved_model_path}: run `omnicdp identity train`"
        )
    return model


def explain_pair(
    spark: SparkSession, settings: Settings, record_a: str, record_b: str
) -> PairExplanation:
    """Score ``record_a`` against ``record_b`` and write the waterfall chart."""
    model = _model_or_fail(settings)
    records = read_table(spark, settings, SILVER_CUSTOMER_RECORDS)
    pair = {"RECORD_A": record_a, "RECORD_B": record_b}
    for label, record in pair.items():
        if records.where(F.col("record_id") == record).isEmpty():
            # the id is the user's input and may hold an email: named, not echoed
            raise ValueError(f"{label} is not a record of silver.customer_records")
    features = load_features(spark, settings)
    with open_linker(spark, settings, features, model.splink_settings) as session:
        sides = [
            session.register(
                session.features.where(F.col("record_id") == record), f"explain_{label}"
            )
            for label, record in pair.items()
        ]
        scored = session.linker.inference.score_pair(*sides).as_record_list()[0]
        chart = session.linker.visualisations.waterfall_chart(
            [scored], filter_nulls=False, remove_sensitive_data=True
        )
        chart_path = _write_chart(chart.to_html(inline=True), settings)
        steps = list(chart.chart_data)
    evidence = [
        Evidence(s["column_name"], _level(s), float(s["log2_bayes_factor"]))
        for s in steps
        if s["column_name"] not in ("Prior", "Final score")
        and not (s["term_frequency_adjustment"] and s["log2_bayes_factor"] == 0)
    ]
    return PairExplanation(
        model_version=model.model_version,
        prior_match_weight=float(steps[0]["log2_bayes_factor"]),
        evidence=evidence,
        match_weight=float(scored["match_weight"]),
        match_probability=float(scored["match_probability"]),
        chart_path=chart_path,
    )


def _level(step: dict[str, Any]) -> str:
    """The level's chart label; null levels say so instead of showing their SQL."""
    if step["comparison_vector_value"] == -1:
        return "missing on one side (neutral)"
    return str(step["label_for_charts"])


def _write_chart(html: str, settings: Settings) -> Path:
    path = settings.reports_dir / "identity" / "explain_waterfall.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


@dataclass(frozen=True)
class Link:
    """A scored edge between two of the customer's records."""

    record_id_l: str
    record_id_r: str
    match_probability: float
    match_weights: dict[str, float]


@dataclass
class CustomerWhy:
    """The records that form one customer and the links that hold them together."""

    asked_id: str
    customer_id: str
    records: list[tuple[str, str]]  # (record_id, source)
    links: list[Link] = field(default_factory=list)
    links_total: int = 0


def customer_why(spark: SparkSession, settings: Settings, customer_id: str) -> CustomerWhy:
    """Records and holding links of ``customer_id`` (or the id it was merged into)."""
    current = _current_id(spark, settings, customer_id)
    xref = read_table(spark, settings, GOLD_IDENTITY_XREF).where(F.col("customer_id") == current)
    records = [(r.record_id, r.source) for r in xref.orderBy("record_id").collect()]
    if not records:
        raise ValueError(f"customer {customer_id} is not in gold.identity_xref")
    links = _holding_links(spark, settings, xref)
    shown = [_link(r.asDict()) for r in links.limit(MAX_LINKS_SHOWN).collect()]
    return CustomerWhy(customer_id, current, records, shown, links.count())


def _current_id(spark: SparkSession, settings: Settings, customer_id: str) -> str:
    if not table_exists(spark, settings, GOLD_CUSTOMER_ID_HISTORY):
        return customer_id
    hit = (
        retired_ids(read_table(spark, settings, GOLD_CUSTOMER_ID_HISTORY))
        .where(F.col("retired_id") == customer_id)
        .first()
    )
    return hit.surviving_id if hit else customer_id


def _holding_links(spark: SparkSession, settings: Settings, xref: DataFrame) -> DataFrame:
    """Links between two of the customer's records at or above the match threshold."""
    members = xref.select("record_id")
    return (
        read_table(spark, settings, GOLD_IDENTITY_LINKS)
        .where(F.col("match_probability") >= settings.match_threshold)
        .join(members.withColumnRenamed("record_id", "record_id_l"), "record_id_l", "left_semi")
        .join(members.withColumnRenamed("record_id", "record_id_r"), "record_id_r", "left_semi")
        .orderBy(F.desc("match_probability"), "record_id_l", "record_id_r")
    )


def _link(row: dict[str, Any]) -> Link:
    weights = {
        name.removeprefix("mw_"): float(value)
        for name, value in row.items()
        if name.startswith("mw_") and not name.startswith("mw_tf_adj_") and value is not None
    }
    for name, value in row.items():  # fold term-frequency adjustments into their comparison
        if name.startswith("mw_tf_adj_") and value is not None and not math.isnan(value):
            key = name.removeprefix("mw_tf_adj_")
            weights[key] = weights.get(key, 0.0) + float(value)
    return Link(row["record_id_l"], row["record_id_r"], float(row["match_probability"]), weights)
