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

from splink.internals.splink_dataframe import SplinkDataFrame

from identity.engines import LinkerSession
from identity.model import deterministic_rules


def _half(session: LinkerSession, low: float, high: float, name: str) -> SplinkDataFrame:
    """The records whose record_id hashes into [low, high) of the unit interval, as a table."""
    unit = session.engine.unit_hash("record_id")
    return session.sql(
        f"SELECT * FROM {session.input_table.physical_name}"
        f" WHERE {unit} >= {low!r} AND {unit} < {high!r}",
        name,
    )


def _scored_sample(session: LinkerSession, max_pairs: float, record_count: int) -> str:
    """The physical name of the scored pairs (one record from each half) that no
    deterministic rule calls a match."""
    share = min(0.5, math.sqrt(max_pairs) / max(record_count, 1))
    left = _half(session, 0.0, share, "omnicdp_u_sample_left")
    right = _half(session, share, 2 * share, "omnicdp_u_sample_right")
    scored = session.linker.inference.score_pairs(left, right)
    matches = " OR ".join(
        f"coalesce({rule}, false)" for rule in deterministic_rules("{name}_{side}")
    )
    kept = session.sql(f"SELECT * FROM {scored.physical_name} WHERE NOT ({matches})", "u_sample")
    return kept.physical_name


def _level_counts(
    session: LinkerSession, scored: str, comparisons: list[str], weight: str
) -> dict[str, dict[int, float]]:
    """comparison -> {gamma value: summed pair weight}, nulls (-1) excluded; one small aggregate."""
    levels = " UNION ALL ".join(
        f"SELECT '{name}' AS comparison, gamma_{name} AS gamma, {weight} AS w FROM {scored}"
        for name in comparisons
    )
    table: dict[str, dict[int, float]] = {name: {} for name in comparisons}
    query = f"SELECT comparison, gamma, sum(w) FROM ({levels}) WHERE gamma != -1 GROUP BY 1, 2"
    for comparison, gamma, w in session.rows(query):
        table[comparison][int(gamma)] = float(w)
    return table


def with_sampled_u(
    session: LinkerSession,
    model: dict[str, Any],
    max_pairs: float,
    record_count: int,
    *,
    weigh_by_non_match: bool = False,
) -> dict[str, Any]:
    """``model`` (a Splink settings dict) with u of every level estimated from sampled pairs.

    With ``weigh_by_non_match`` each pair counts as 1 - its match probability under the
    session's current (trained) model, else as one (module doc). ``record_count`` is the
    session's number of records, which sets the sample's share of them. Levels whose u is
    fixed in the model keep it. A comparison level's gamma value counts down from the top
    level: with n non-null levels, the first has gamma n-1 and "else" 0.
    """
    names = [c["output_column_name"] for c in model["comparisons"]]
    weight = "1 - match_probability" if weigh_by_non_match else "1.0"
    scored = _scored_sample(session, max_pairs, record_count)
    counts = _level_counts(session, scored, names, weight)
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
