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
true matches no rule finds. Those are not few: POS, call center and social records have no
email or date of birth, so most of one person's cross-channel pairs escape the rules, and they
land exactly in the agreement levels (exact name, exact phone) whose u they inflate several
times over (on 2,000 simulated people: 5.7e-5 for an exact rare name where different people
reach 1.1e-5; 3.5e-5 for one person's phone where they reach 6e-7).

So once m and lambda are trained, u is estimated again from the same sample with each pair
counted as the share of it that is a non-match, 1 - its match probability under the trained
model: the expectation step of EM, applied to a random sample instead of blocked pairs, with
m held. A pair the model calls a match no longer counts towards u; a pair it cannot decide
counts in part. A level never seen among the sampled non-matches gets u = 1 / (pairs counted):
"rarer than this sample can show". The pairs come from two disjoint, hash-selected halves of
the records, so the sample is the same on every run over the same data, whatever the
partitioning.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from pyspark.sql import Column, DataFrame
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


def _level_counts(
    scored: DataFrame, comparisons: list[str], weight: Column
) -> dict[str, dict[int, float]]:
    """comparison -> {gamma value: summed pair weight}, nulls (-1) excluded; one small aggregate."""
    counts = scored.select(
        weight.alias("w"),
        F.explode(
            F.array(
                *[
                    F.struct(F.lit(name).alias("comparison"), F.col(f"gamma_{name}").alias("gamma"))
                    for name in comparisons
                ]
            )
        ).alias("c"),
    ).where("c.gamma != -1")
    table: dict[str, dict[int, float]] = {name: {} for name in comparisons}
    sums = counts.groupBy("c.comparison", "c.gamma").agg(F.sum("w").alias("w"))
    for row in sums.collect():
        table[row["comparison"]][int(row["gamma"])] = float(row["w"])
    return table


def with_sampled_u(
    linker: Linker,
    features: DataFrame,
    model: dict[str, Any],
    max_pairs: float,
    *,
    weigh_by_non_match: bool = False,
) -> dict[str, Any]:
    """``model`` (a Splink settings dict) with u of every level estimated from sampled pairs.

    With ``weigh_by_non_match`` each pair counts as 1 - its match probability under the
    linker's current (trained) model, else as one (module doc). Levels whose u is fixed in the
    model keep it. A comparison level's gamma value counts down from the top level: with n
    non-null levels, the first has gamma n-1 and "else" 0.
    """
    names = [c["output_column_name"] for c in model["comparisons"]]
    weight = 1 - F.col("match_probability") if weigh_by_non_match else F.lit(1.0)
    counts = _level_counts(_scored_sample(linker, features, max_pairs), names, weight)
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
