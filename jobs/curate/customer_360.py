"""gold.customer_360: value (RFM, lifetime value, tier), channels, cases, interests, consent."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.curate.frames import combine, days_before
from jobs.curate.rules import CurationRules, rule_predicate
from jobs.lakehouse.spark_schema import conform
from schemas.consent import CONSENT_PURPOSES
from schemas.tables import CUSTOMER_360


def customer_360(
    events: DataFrame,
    cases: DataFrame,
    profile: DataFrame,
    rules: CurationRules,
    as_of: Column,
) -> DataFrame:
    """One row per golden customer: value, channels, cases, reasons, interests and consent."""
    customer = events.where(F.col("initiated_by") == "customer")
    parts = [
        _activity(events),
        _orders(events, rules, as_of),
        _channel_usage(customer),
        _open_cases(cases),
        _contact_reasons(customer.where(rule_predicate(rules, "service_contact"))),
        _category_affinity(customer, rules.affinity_weights),
    ]
    customers = profile.select(
        "customer_id",
        "country",
        *[F.col(f"{p}_opt_in").alias(f"consent_{p}") for p in CONSENT_PURPOSES],
    )
    result = combine(["customer_id"], customers, parts)
    as_of_day = F.to_date(as_of)
    return conform(
        result.withColumns(
            {
                "language": _language(rules),
                "tier": _tier(rules),
                "interaction_count": F.coalesce("interaction_count", F.lit(0)),
                "order_count": F.coalesce("order_count", F.lit(0)),
                "frequency": F.coalesce("frequency", F.lit(0)),
                "monetary": F.coalesce("monetary", F.lit(0)),
                "lifetime_value": F.coalesce("lifetime_value", F.lit(0)),
                "recency_days": F.datediff(as_of_day, F.to_date("last_order_at")),
                "days_since_last_contact": F.datediff(as_of_day, F.to_date("_last_contact")),
                "open_case_count": F.coalesce("open_case_count", F.lit(0)),
                "reporting_currency": F.lit(rules.reporting_currency),
                "as_of": as_of,
            }
        ),
        CUSTOMER_360,
    )


def _activity(events: DataFrame) -> DataFrame:
    return events.groupBy("customer_id").agg(
        F.min("ts").alias("first_seen_at"),
        F.max("ts").alias("last_seen_at"),
        F.count(F.lit(1)).alias("interaction_count"),
    )


def _orders(events: DataFrame, rules: CurationRules, as_of: Column) -> DataFrame:
    """RFM and lifetime value; per channel first, then per customer, in one pass."""
    orders = events.where(F.col("type").isin(rules.order_types))
    recent = F.col("ts") > days_before(as_of, rules.rfm_window_days)
    per_channel = orders.groupBy("customer_id", "channel").agg(
        F.count(F.lit(1)).alias("n"),
        F.count(F.when(recent, 1)).alias("n_recent"),
        F.sum("amount_reporting").alias("spend"),
        F.sum(F.when(recent, F.col("amount_reporting"))).alias("spend_recent"),
        F.min("ts").alias("first"),
        F.max("ts").alias("last"),
    )
    return (
        per_channel.groupBy("customer_id")
        .agg(
            F.sum("n").alias("order_count"),
            F.sum("n_recent").alias("frequency"),
            F.coalesce(F.sum("spend"), F.lit(0)).alias("lifetime_value"),
            F.coalesce(F.sum("spend_recent"), F.lit(0)).alias("monetary"),
            F.min("first").alias("first_order_at"),
            F.max("last").alias("last_order_at"),
            F.map_from_entries(F.collect_list(F.struct("channel", "n"))).alias("orders_by_channel"),
        )
        .withColumn("avg_order_value", F.col("lifetime_value") / F.col("order_count"))
    )


def _channel_usage(customer_events: DataFrame) -> DataFrame:
    """Active days and last contact per channel; the preferred channel has most active days."""
    per_channel = customer_events.groupBy("customer_id", "channel").agg(
        F.count_distinct(F.to_date("ts")).alias("days"), F.max("ts").alias("last")
    )
    return per_channel.groupBy("customer_id").agg(
        F.map_from_entries(F.collect_list(F.struct("channel", "days"))).alias("channel_mix"),
        F.map_from_entries(F.collect_list(F.struct("channel", "last"))).alias("last_contact_at"),
        F.max_by("channel", F.struct("days", "last", "channel")).alias("preferred_channel"),
        F.max("last").alias("_last_contact"),
    )


def _open_cases(cases: DataFrame) -> DataFrame:
    return (
        cases.where("is_open")
        .groupBy("customer_id")
        .agg(
            F.count(F.lit(1)).alias("open_case_count"),
            F.array_sort(F.collect_list("case_id")).alias("open_case_ids"),
        )
    )


def _contact_reasons(contacts: DataFrame) -> DataFrame:
    per_reason = (
        contacts.where(F.col("reason").isNotNull()).groupBy("customer_id", "reason").count()
    )
    return per_reason.groupBy("customer_id").agg(
        F.map_from_entries(F.collect_list(F.struct("reason", "count"))).alias("contact_reasons")
    )


def _category_affinity(customer_events: DataFrame, weights: dict[str, float]) -> DataFrame:
    """Share of weighted category mentions per customer, rounded to 3 places, and the top one."""
    weight = F.create_map(*[x for t, w in weights.items() for x in (F.lit(t), F.lit(w))])
    mentions = customer_events.where(
        F.col("categories").isNotNull() & F.col("type").isin(list(weights))
    ).select(
        "customer_id",
        F.explode(F.split("categories", r"\|")).alias("category"),
        weight[F.col("type")].alias("w"),
    )
    per_category = mentions.groupBy("customer_id", "category").agg(F.sum("w").alias("w"))
    total = Window.partitionBy("customer_id")
    shares = per_category.withColumn("share", F.round(F.col("w") / F.sum("w").over(total), 3))
    return shares.groupBy("customer_id").agg(
        F.map_from_entries(F.collect_list(F.struct("category", "share"))).alias(
            "category_affinity"
        ),
        F.min_by("category", F.struct((-F.col("w")).alias("w"), "category")).alias("top_category"),
    )


def _language(rules: CurationRules) -> Column:
    languages = F.create_map(*[F.lit(x) for kv in rules.languages.items() for x in kv])
    return F.coalesce(languages[F.upper("country")], F.lit(rules.default_language))


def _tier(rules: CurationRules) -> Column:
    """The tier with the highest minimum the lifetime value reaches."""
    ltv = F.coalesce("lifetime_value", F.lit(0))
    highest, *others = sorted(rules.tiers, key=lambda t: t.min_lifetime_value, reverse=True)
    tier = F.when(ltv >= F.lit(highest.min_lifetime_value), F.lit(highest.name))
    for t in others:
        tier = tier.when(ltv >= F.lit(t.min_lifetime_value), F.lit(t.name))
    return tier
