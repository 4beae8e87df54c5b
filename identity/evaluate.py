"""Measure a resolution against known truth: which records belong to the same person.

The truth file (the simulator writes one) is a CSV ``source,source_key,person_id``; a record's
id is ``"<source>:<source_key>"``. Only records present both in the truth and in
gold.identity_xref are scored; how many were missing on either side is reported too.

Pairwise precision and recall count record pairs, but no pair is ever built: the number of
pairs inside a group of n records is n(n-1)/2, so predicted pairs are summed over customer
ids, true pairs over persons, and correct pairs over (customer id, person) groups, all as
distributed aggregates. B-cubed scores every record by the overlap of its customer and its
person, which weighs a wrongly merged singleton as much as a large cluster.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.lakehouse.charts import line_chart, write_html_page
from jobs.lakehouse.delta import read_table, table_exists
from schemas.catalog import GOLD_IDENTITY_LINKS, GOLD_IDENTITY_XREF
from schemas.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationResult:
    """Quality of the current gold.identity_xref against truth."""

    records_evaluated: int
    records_missing_from_xref: int
    records_missing_from_truth: int
    persons: int
    customers: int
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f1: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float
    persons_split: int
    customers_merging_persons: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _ratio(num: float, den: float) -> float:
    """A ratio where an empty denominator means nothing could go wrong: 1.0."""
    return num / den if den else 1.0


def _pairs(n: str) -> Column:
    return F.col(n) * (F.col(n) - 1) / 2


def read_truth(spark: SparkSession, truth_path: Path) -> DataFrame:
    """``record_id, person_id`` from a truth CSV."""
    truth = spark.read.csv(
        str(truth_path), header=True, schema="source string, source_key string, person_id string"
    )
    return truth.select(
        F.concat_ws(":", "source", "source_key").alias("record_id"), "person_id"
    ).dropDuplicates(["record_id"])


def _group_sizes(scored: DataFrame) -> DataFrame:
    """One row per (customer, person) group with its size and its customer's and person's."""
    groups = scored.groupBy("customer_id", "person_id").agg(F.count(F.lit(1)).alias("n_cp"))
    by_customer = groups.groupBy("customer_id").agg(F.sum("n_cp").alias("n_c"))
    by_person = groups.groupBy("person_id").agg(F.sum("n_cp").alias("n_p"))
    return groups.join(by_customer, "customer_id").join(by_person, "person_id")


def _metrics(sizes: DataFrame) -> dict[str, float]:
    """All sums in one pass; sizes of customers and persons are counted once per group."""
    per_customer = F.col("n_cp") / F.col("n_c")
    per_person = F.col("n_cp") / F.col("n_p")
    row = sizes.agg(
        F.sum("n_cp").alias("records"),
        F.sum(_pairs("n_cp")).alias("correct_pairs"),
        F.sum(F.col("n_cp") * per_customer).alias("bcubed_precision_sum"),
        F.sum(F.col("n_cp") * per_person).alias("bcubed_recall_sum"),
        F.countDistinct("customer_id").alias("customers"),
        F.countDistinct("person_id").alias("persons"),
    ).first()
    return {k: float(v or 0) for k, v in row.asDict().items()}


def _totals(sizes: DataFrame, key: str, size: str) -> tuple[int, int]:
    """Pairs within, and entities split over more than one group, for customers or persons."""
    per_entity = sizes.groupBy(key).agg(F.first(size).alias("n"), F.count(F.lit(1)).alias("groups"))
    row = per_entity.agg(
        F.sum(_pairs("n")).alias("pairs"),
        F.sum(F.when(F.col("groups") > 1, 1).otherwise(0)).alias("split"),
    ).first()
    return int(row["pairs"] or 0), int(row["split"] or 0)


def score_assignment(assigned: DataFrame, truth: DataFrame) -> EvaluationResult:
    """Pairwise and B-cubed quality of ``assigned`` (``record_id, customer_id``) against
    ``truth`` (``record_id, person_id``): gold.identity_xref here, an ``identity resolve
    --input`` output in its benchmark."""
    joined = assigned.join(truth, "record_id", "full_outer").cache()
    try:
        missing = joined.agg(
            F.sum(F.col("customer_id").isNull().cast("int")).alias("no_xref"),
            F.sum(F.col("person_id").isNull().cast("int")).alias("no_truth"),
        ).first()
        sizes = _group_sizes(joined.dropna(subset=["customer_id", "person_id"])).cache()
        m = _metrics(sizes)
        predicted_pairs, customers_merging = _totals(sizes, "customer_id", "n_c")
        true_pairs, persons_split = _totals(sizes, "person_id", "n_p")
        sizes.unpersist()
    finally:
        joined.unpersist()
    records = int(m["records"])
    correct = int(m["correct_pairs"])
    precision = _ratio(correct, predicted_pairs)
    recall = _ratio(correct, true_pairs)
    b_precision = _ratio(m["bcubed_precision_sum"], records)
    b_recall = _ratio(m["bcubed_recall_sum"], records)
    return EvaluationResult(
        records_evaluated=records,
        records_missing_from_xref=int(missing["no_xref"] or 0),
        records_missing_from_truth=int(missing["no_truth"] or 0),
        persons=int(m["persons"]),
        customers=int(m["customers"]),
        true_pairs=true_pairs,
        predicted_pairs=predicted_pairs,
        correct_pairs=correct,
        pairwise_precision=precision,
        pairwise_recall=recall,
        pairwise_f1=_f1(precision, recall),
        bcubed_precision=b_precision,
        bcubed_recall=b_recall,
        bcubed_f1=_f1(b_precision, b_recall),
        persons_split=persons_split,
        customers_merging_persons=customers_merging,
    )


def evaluate(spark: SparkSession, settings: Settings, truth_path: Path) -> EvaluationResult:
    """Pairwise and B-cubed precision/recall/F1 of gold.identity_xref against ``truth_path``."""
    truth = read_truth(spark, truth_path)
    xref = read_table(spark, settings, GOLD_IDENTITY_XREF).select("record_id", "customer_id")
    result = score_assignment(xref, truth)
    curve = (
        threshold_curve(read_table(spark, settings, GOLD_IDENTITY_LINKS), truth, result.true_pairs)
        if table_exists(spark, settings, GOLD_IDENTITY_LINKS)
        else []
    )
    result_path = _write_report(result, curve, settings)
    log.info(
        "evaluation: pairwise P=%.4f R=%.4f F1=%.4f; B-cubed F1=%.4f; %d persons split, "
        "%d customers merging persons; report %s",
        result.pairwise_precision,
        result.pairwise_recall,
        result.pairwise_f1,
        result.bcubed_f1,
        result.persons_split,
        result.customers_merging_persons,
        result_path,
    )
    return result


def threshold_curve(links: DataFrame, truth: DataFrame, true_pairs: int) -> list[dict[str, float]]:
    """Pairwise precision, recall and F1 of the scored links if every pair at or above a
    threshold were a match, for thresholds 0.01 to 1.00 (before clustering: what the threshold
    alone does). Links are bucketed by probability in Spark; only the 100 buckets come back."""
    person = truth.select("record_id", "person_id")
    labelled = (
        links.select("record_id_l", "record_id_r", "match_probability")
        .join(person.toDF("record_id_l", "person_l"), "record_id_l")
        .join(person.toDF("record_id_r", "person_r"), "record_id_r")
    )
    bucket = F.least(F.floor(F.col("match_probability") * 100), F.lit(99)).cast("int")
    counts = {
        r.bucket: (r.pairs, r.correct)
        for r in labelled.groupBy(bucket.alias("bucket"))
        .agg(
            F.count(F.lit(1)).alias("pairs"),
            F.sum((F.col("person_l") == F.col("person_r")).cast("int")).alias("correct"),
        )
        .collect()
    }
    curve, predicted, correct = [], 0, 0
    for b in range(99, 0, -1):  # from the strictest threshold down, accumulating
        pairs, right = counts.get(b, (0, 0))
        predicted, correct = predicted + pairs, correct + (right or 0)
        precision, recall = _ratio(correct, predicted), _ratio(correct, true_pairs)
        curve.append(
            {
                "threshold": b / 100,
                "precision": precision,
                "recall": recall,
                "f1": _f1(precision, recall),
            }
        )
    return curve[::-1]


def _write_report(
    result: EvaluationResult, curve: list[dict[str, float]], settings: Settings
) -> Path:
    """evaluation.json and evaluation.html (metrics, threshold curve, the model's charts)."""
    out = settings.reports_dir / "identity"
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(
        json.dumps({**result.to_dict(), "threshold_curve": curve}, indent=2), encoding="utf-8"
    )
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:.4f}</td></tr>"
        if isinstance(v, float)
        else f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>"
        for k, v in result.to_dict().items()
    )
    chart = line_chart(
        "pairwise precision / recall / F1 of scored links by match threshold",
        [f"{c['threshold']:.2f}" for c in curve],
        {m: [c[m] for c in curve] for m in ("precision", "recall", "f1")},
    )
    model_charts = " · ".join(
        f'<a href="{name}.html">{name.replace("_", " ")}</a>'
        for name in ("match_weights", "m_u_parameters")
        if (out / f"{name}.html").exists()
    )
    body = (
        f"<h2>Against the truth file</h2><table>{rows}</table>"
        f"<h2>Threshold curve</h2>{chart}"
        f"<p>Configured threshold: {settings.match_threshold}. Clustering joins records "
        "transitively, so the clustered result can differ from a threshold's pairs.</p>"
        f"<h2>The model</h2><p>{model_charts or 'no model charts: train the model first'}</p>"
    )
    path = out / "evaluation.html"
    write_html_page(path, "Identity evaluation", "gold.identity_xref against known truth.", body)
    return path
