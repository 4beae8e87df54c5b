"""gold.agent_context: one screen per customer for an agent, with a next best action.

Next best action: the rules file lists rules in priority order; each has a Spark SQL ``when``
over the agent features (listed in the rules file) and a ``reason`` template naming features in
braces. The first rule that holds gives ``next_best_action``, its filled-in reason and its id.
The default rules put a failed, unfixed self-service first (the customer has already tried
alone), then a case that has crossed channels (the customer must not repeat the story), then
negative sentiment, any open case, a lapsing high-value customer and a cross-sell.
"""

from __future__ import annotations

import re
from pathlib import Path

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.curate.cases import open_case_struct
from jobs.curate.frames import combine, days_before
from jobs.curate.rules import (
    ActionRule,
    CurationRules,
    RuleError,
    checked_predicate,
    rule_predicate,
)
from jobs.lakehouse.spark_schema import conform
from schemas.consent import CONSENT_PURPOSES
from schemas.tables import AGENT_CONTEXT


def agent_context(
    events: DataFrame,
    cases: DataFrame,
    c360: DataFrame,
    profile: DataFrame,
    rules: CurationRules,
    as_of: Column,
    rules_path: Path,
) -> DataFrame:
    """One screen per customer: who, what is open, what happened lately, what to do next."""
    parts = [
        profile.select("customer_id", "full_name"),
        _agent_cases(cases),
        _last_interactions(events, rules.last_interactions_per_channel),
        _failed_self_service(events, rules, as_of),
        _recent_sentiment(events, rules, as_of),
    ]
    features = combine(["customer_id"], c360, parts).withColumns(
        {
            "failed_self_service_open": F.coalesce("failed_self_service_open", F.lit(0)),
            "top_open_case_channels": F.coalesce(F.size("top_open_case.channel_path"), F.lit(0)),
            "top_open_case_id": F.col("top_open_case.case_id"),
            "top_open_case_history": F.col("top_open_case.channel_history"),
            "top_open_case_status": F.col("top_open_case.last_status"),
        }
    )
    action, reason, rule = next_best_action(features, rules.next_best_actions, rules_path)
    return conform(
        features.withColumns(
            {
                "display_name": F.initcap("full_name"),
                "consents": F.array_compact(
                    F.array(*[F.when(F.col(f"consent_{p}"), F.lit(p)) for p in CONSENT_PURPOSES])
                ),
                "open_cases": F.coalesce("open_cases", F.array()),
                "last_interactions": F.coalesce("last_interactions", F.array()),
                "failed_self_service": F.coalesce("failed_self_service", F.array()),
                "last_contact_at": F.array_max(F.map_values("last_contact_at")),
                "next_best_action": action,
                "next_best_action_reason": reason,
                "next_best_action_rule": rule,
            }
        ),
        AGENT_CONTEXT,
    )


def _newest_first(key: Column, value: Column) -> Column:
    """collect_list of ``value`` ordered by ``key`` descending."""
    pairs = F.sort_array(F.collect_list(F.struct(key.alias("k"), value.alias("v"))), asc=False)
    return F.transform(pairs, lambda p: p["v"])


def _agent_cases(cases: DataFrame) -> DataFrame:
    """Open cases, most recently active first, and the one that most needs ownership: the open
    case that crossed most channels (then the most recently active)."""
    return (
        cases.where("is_open")
        .groupBy("customer_id")
        .agg(
            _newest_first(F.col("last_activity_at"), open_case_struct()).alias("open_cases"),
            F.max_by(
                open_case_struct(), F.struct(F.size("channel_path"), "last_activity_at")
            ).alias("top_open_case"),
        )
    )


def _last_interactions(events: DataFrame, per_channel: int) -> DataFrame:
    newest = Window.partitionBy("customer_id", "channel").orderBy(
        F.col("ts").desc(), F.col("interaction_id").desc()
    )
    recent = events.withColumn("_n", F.row_number().over(newest)).where(F.col("_n") <= per_channel)
    item = F.struct("channel", "ts", "type", "status", "summary")
    return recent.groupBy("customer_id").agg(
        _newest_first(F.struct("ts", "interaction_id"), item).alias("last_interactions")
    )


def _failed_self_service(events: DataFrame, rules: CurationRules, as_of: Column) -> DataFrame:
    """Recent failed self-service; resolved only if an agent contact closed after it."""
    closing_agent = rule_predicate(rules, "agent_contact") & F.col("status").isin(
        rules.closing_statuses
    )
    last_fix = events.where(closing_agent).groupBy("customer_id").agg(F.max("ts").alias("_fix"))
    failed = events.where(
        rule_predicate(rules, "failed_self_service")
        & (F.col("ts") > days_before(as_of, rules.recent_days))
    ).join(last_fix, "customer_id", "left")
    resolved = F.coalesce(F.col("_fix") > F.col("ts"), F.lit(False))
    item = F.struct("ts", "channel", "type", "summary", resolved.alias("resolved_after"))
    return failed.groupBy("customer_id").agg(
        _newest_first(F.struct("ts", "interaction_id"), item).alias("failed_self_service"),
        F.count(F.when(~resolved, 1)).alias("failed_self_service_open"),
        F.max_by("summary", F.when(~resolved, F.struct("ts", "interaction_id"))).alias(
            "last_failed_self_service"
        ),
    )


def _recent_sentiment(events: DataFrame, rules: CurationRules, as_of: Column) -> DataFrame:
    recent = events.where(
        (F.col("initiated_by") == "customer")
        & F.col("sentiment").isNotNull()
        & (F.col("ts") > days_before(as_of, rules.recent_days))
    )
    return recent.groupBy("customer_id").agg(
        F.round(F.avg("sentiment"), 2).alias("recent_sentiment")
    )


def next_best_action(
    features: DataFrame, action_rules: list[ActionRule], rules_path: Path
) -> tuple[Column, Column, Column]:
    """(action, reason, rule id) of the first rule that holds, as columns of ``features``."""
    action = reason = rule = F.lit(None).cast("string")
    for r in reversed(action_rules):  # built inside out so the first rule is checked first
        where = f"{rules_path}: next_best_actions rule '{r.id}'"
        holds = F.coalesce(checked_predicate(features, r.when, where), F.lit(False))
        action = F.when(holds, F.lit(r.action)).otherwise(action)
        reason = F.when(holds, reason_text(features, r.reason, where)).otherwise(reason)
        rule = F.when(holds, F.lit(r.id)).otherwise(rule)
    return action, reason, rule


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def reason_text(features: DataFrame, template: str, where: str) -> Column:
    """``template`` with each ``{feature}`` replaced by its value ("none" when null)."""
    parts: list[Column] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        name = match.group(1)
        if name not in features.columns:
            raise RuleError(
                f"{where}: the reason names unknown column '{name}' "
                f"(available: {', '.join(sorted(features.columns))})"
            )
        parts += [
            F.lit(template[position : match.start()]),
            F.coalesce(F.col(name).cast("string"), F.lit("none")),
        ]
        position = match.end()
    return F.concat(*parts, F.lit(template[position:]))
