"""Estimate u probabilities from random record pairs that are not obvious matches.

u is how often two records of *different* people land in a comparison level. Splink's
``estimate_u_using_random_sampling`` counts levels over random pairs and assumes they are all
non-matches. In customer data that assumption breaks exactly where it matters: every person has
several records, so among random pairs that agree on an email or a phone almost all are the
same person, and u of those levels comes out tens of times too high (on 2,000 simulated people:
0.00027 sampled for an exact email, while different people never shared one). An exact email
could then never make a match on its own.

So the sample leaves out pairs that a deterministic rule (:func:`identity.model.
deterministic_rules`) calls a match before counting. What remains are non-matches plus the
few true matches no rule finds, which errs on the safe side (u slightly high). A level never
seen among the sampled non-matches gets u = 1 / (pairs counted): "rarer than this sample can
show". The pairs come from two disjoint, hash-selected halves of the records, so the sample is
the same on every run over the same data, whatever the partitioning.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from splink import Linker

from identity.model import deterministic_rules


def _half(features: DataFrame, low: float, high: float) -> DataFrame:
    """Records whose record_id hashes into [low, high) of the unit interval."""
    unit = F.pmod(F.xxhash64("record_id"), F.lit(1_000_003)) / F.lit(1_000_003.0)
    return features.where((unit >= low) & (unit < high))


def _scored_sample(linker: Linker, features: DataFrame, max_pairs: float) -> DataFrame:
    """Scored pairs (one record from each half) that no deterministic rule calls a match."""
    count = features.count()
    share = min(0.5, math.sqrt(max_pairs) / max(count, 1))
    left = linker.table_management.register_table(
        _half(features, 0.0, share), "omnicdp_u_sample_left", overwrite=True
    )
    right = linker.table_management.register_table(
        _half(features, share, 2 * share), "omnicdp_u_sample_right", overwrite=True
    )
    scored = linker.inference.score_pairs(left, right).as_spark_dataframe()
    matches = " OR ".join(
        f"coalesce({rule}, false)" for rule in deterministic_rules("{name}_{side}")
    )
    return scored.where(f"NOT ({matches})")


def _level_counts(scored: DataFrame, comparisons: list[str]) -> dict[str, dict[int, int]]:
    """comparison -> {gamma value: pairs}, nulls (-1) excluded; one small aggregate."""
    counts = scored.select(
        F.explode(
            F.array(
                *[
                    F.struct(F.lit(name).alias("comparison"), F.col(f"gamma_{name}").alias("gamma"))
                    for name in comparisons
                ]
            )
        ).alias("c")
    ).where("c.gamma != -1")
    table: dict[str, dict[int, int]] = {name: {} for name in comparisons}
    for row in counts.groupBy("c.comparison", "c.gamma").count().collect():
        table[row["comparison"]][int(row["gamma"])] = int(row["count"])
    return table


def with_sampled_u(
    linker: Linker, features: DataFrame, model: dict[str, Any], max_pairs: float
) -> dict[str, Any]:
    """``model`` (a Splink settings dict) with u of every level estimated from sampled pairs.

    Levels whose u is fixed in the model keep it. A comparison level's gamma value counts down
    from the top level: with n non-null levels, the first has gamma n-1 and "else" 0.
    """
    names = [c["output_column_name"] for c in model["comparisons"]]
    counts = _level_counts(_scored_sample(linker, features, max_pairs), names)
    estimated = copy.deepcopy(model)
    for comparison in estimated["comparisons"]:
        by_gamma = counts[comparison["output_column_name"]]
        total = sum(by_gamma.values())
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        for i, level in enumerate(levels):
            if level.get("fix_u_probability"):
                continue
            seen = by_gamma.get(len(levels) - 1 - i, 0)
            level["u_probability"] = max(seen, 1) / max(total, 1)
    return estimated
