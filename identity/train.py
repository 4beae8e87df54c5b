"""Train the linkage model on the current silver customer records, without labels.

Training follows Splink's unsupervised recipe in four steps:

- u probabilities (how often records of different people land in each comparison level) from
  a fixed random sample of record pairs, leaving out pairs a deterministic rule calls a match
  (:mod:`identity.u_sampling` says why);
- ``probability_two_random_records_match`` (lambda) from the deterministic rules and their
  assumed recall;
- m probabilities (how often one person's records land in each level) by expectation
  maximisation over pairs blocked on date of birth, then on email; levels whose m EM cannot
  observe carry a fixed prior (see :mod:`identity.model`);
- u once more from the same sample, each pair counted as the share of it the trained model
  calls a non-match: the matches no deterministic rule finds no longer inflate u.

The blocking analysis that motivates the prediction rules is logged and stored with the model,
and the match weights are charted for people reviewing it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from splink import Linker
from splink.internals.exceptions import EMTrainingException

from identity.artifact import SavedModel, new_saved_model, save_model
from identity.engines import open_linker
from identity.features import load_features
from identity.model import (
    DETERMINISTIC_RECALL,
    deterministic_rules,
    em_blocking_rules,
    settings_creator,
)
from identity.u_sampling import with_sampled_u
from schemas.settings import Settings

log = logging.getLogger(__name__)

# Where a training run reports its steps: a log by default, the console for a CLI user.
Progress = Callable[[str], None]

# Record pairs sampled to estimate u: enough to see levels as rare as one in a million.
U_MAX_PAIRS = 2e6


@dataclass(frozen=True)
class TrainSummary:
    """What a training run produced."""

    model_version: str
    model_path: Path
    record_count: int
    probability_two_random_records_match: float
    blocking_comparisons: dict[str, int]
    seconds: float


def _blocking_analysis(linker: Linker) -> dict[str, int]:
    """Exact marginal pair counts of each prediction blocking rule, in rule order."""
    counts = linker.blocking_analysis.count_comparisons_from_blocking_rules(
        record_sample_proportion=1.0
    )
    marginal = {c["blocking_rule"]: int(c["marginal_comparison_count"]) for c in counts}
    total = int(counts[-1]["cumulative_comparison_count"]) if counts else 0
    log.info("blocking: %d candidate pairs in total", total)
    for rule, n in marginal.items():
        log.info("blocking: %10d new pairs from %s", n, rule)
    return marginal


def _estimate_m_and_lambda(linker: Linker, progress: Progress) -> dict[str, Any]:
    """Lambda from deterministic rules, m by EM (u stays fixed); the trained settings.

    An EM pass whose blocking rule brings no pairs together (a table brought to
    ``identity resolve --input`` without dates of birth or emails) is skipped: the levels it
    would train keep their documented starting m (:mod:`identity.model`).
    """
    linker.training.estimate_probability_two_random_records_match(
        deterministic_rules(), recall=DETERMINISTIC_RECALL
    )
    for rule in em_blocking_rules():
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                rule, estimate_without_term_frequencies=True
            )
        except EMTrainingException:
            progress(
                f"EM pass {rule.get_blocking_rule('spark').blocking_rule_sql} skipped: no pairs"
            )
    return linker.misc.save_model_to_json()


def _write_charts(
    spark: SparkSession, settings: Settings, features: DataFrame, model: SavedModel
) -> None:
    """Match weights and m/u charts of the saved model, as HTML for people reviewing it."""
    out = settings.reports_dir / "identity"
    out.mkdir(parents=True, exist_ok=True)
    with open_linker(spark, settings, features, model.splink_settings) as session:
        charts = {
            "match_weights": session.linker.visualisations.match_weights_chart(),
            "m_u_parameters": session.linker.visualisations.m_u_parameters_chart(),
        }
        for name, chart in charts.items():
            (out / f"{name}.html").write_text(chart.to_html(inline=True), encoding="utf-8")
    log.info("model %s charts written to %s", model.model_version, out)


def fit_model(
    spark: SparkSession,
    settings: Settings,
    features: DataFrame,
    progress: Progress = log.info,
) -> SavedModel:
    """Train the model on ``features`` (linkage feature columns, cached by the caller), unsaved.

    The pipeline trains on silver (:func:`train_model`), ``identity resolve --input`` on a
    user's own table (:mod:`identity.byod`): the same procedure, whatever the records' origin.
    ``progress`` hears about each step (counts and seconds only).
    """
    started = time.monotonic()
    record_count = features.count()
    progress(f"training on {record_count} records")
    untrained = settings_creator()
    with open_linker(spark, settings, features, untrained) as session:
        blocking = _blocking_analysis(session.linker)
        progress(f"blocking: {sum(blocking.values())} candidate pairs; estimating u")
        untrained_settings = untrained.create_settings_dict(session.engine.dialect)
        with_u = with_sampled_u(session, untrained_settings, U_MAX_PAIRS, record_count)
        progress(f"u estimated after {time.monotonic() - started:.1f}s; EM for m")
        session.use_model(with_u)
        trained = with_sampled_u(
            session,
            _estimate_m_and_lambda(session.linker, progress),
            U_MAX_PAIRS,
            record_count,
            weigh_by_non_match=True,
        )
    lam = float(trained["probability_two_random_records_match"])
    progress(f"model trained in {time.monotonic() - started:.1f}s (lambda={lam:.3g})")
    return new_saved_model(
        trained,
        record_count,
        training={
            "blocking_comparisons": blocking,
            "deterministic_recall": DETERMINISTIC_RECALL,
            "u_max_pairs": U_MAX_PAIRS,
        },
    )


def train_model(spark: SparkSession, settings: Settings) -> TrainSummary:
    """Train on silver.customer_records and save the model to ``settings.resolved_model_path``."""
    started = time.monotonic()
    features = load_features(spark, settings).cache()
    try:
        model = fit_model(spark, settings, features)
        save_model(model, settings.resolved_model_path)
        log.info("model %s saved to %s", model.model_version, settings.resolved_model_path)
        _write_charts(spark, settings, features, model)
    finally:
        features.unpersist()
    return TrainSummary(
        model_version=model.model_version,
        model_path=settings.resolved_model_path,
        record_count=model.record_count,
        probability_two_random_records_match=float(
            model.splink_settings["probability_two_random_records_match"]
        ),
        blocking_comparisons=model.training["blocking_comparisons"],
        seconds=time.monotonic() - started,
    )
