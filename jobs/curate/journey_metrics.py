"""gold.journey_metrics: per UTC day and channel, how customers move between channels."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.curate.frames import combine
from jobs.curate.rules import CurationRules, rule_predicate
from jobs.lakehouse.spark_schema import conform
from schemas.tables import JOURNEY_METRICS

_DAY_SECONDS = 86400


# Journey counts per day and channel that add up over days, so the report totals them per
# channel; zero where a day and channel had none.
JOURNEY_TOTALS = (
    "new_adopters",
    "cases_started",
    "channel_switches",
    "self_service_attempts",
    "escalations_to_agent",
    "cases_resolved",
    "service_contacts",
    "repeat_contacts_7d",
)


def journey_metrics(events: DataFrame, cases: DataFrame, rules: CurationRules) -> DataFrame:
    """Per UTC day and channel: adoption, switches, escalations, resolution, repeat contacts."""
    customer = events.where(F.col("initiated_by") == "customer")
    parts = [
        *_adoption(customer),
        _cases_started(cases),
        _channel_switches(events),
        _escalations(events, rules),
        _resolutions(cases),
        _repeat_contacts(customer.where(rule_predicate(rules, "service_contact")), rules),
    ]
    result = combine(["day", "channel"], _day_channel_grid(events), parts)
    result = result.fillna(0, subset=["active_customers", *JOURNEY_TOTALS])
    result = _with_cumulative_adoption(result, customer)
    return conform(
        result.withColumns(
            {
                "escalation_rate": _ratio("escalations_to_agent", "self_service_attempts"),
                "repeat_contact_rate": _ratio("repeat_contacts_7d", "service_contacts"),
            }
        ),
        JOURNEY_METRICS,
    )


def _ratio(numerator: str, denominator: str) -> Column:
    return F.when(F.col(denominator) > 0, F.round(F.col(numerator) / F.col(denominator), 4))


def _day_channel_grid(events: DataFrame) -> DataFrame:
    """Every day from the first to the last event, for every channel seen: charts need zeros."""
    bounds = events.agg(F.min(F.to_date("ts")).alias("lo"), F.max(F.to_date("ts")).alias("hi"))
    days = bounds.select(F.explode(F.sequence("lo", "hi")).alias("day"))
    return days.crossJoin(events.select("channel").distinct())


def _adoption(customer_events: DataFrame) -> list[DataFrame]:
    """Active customers, and adopters: customers using the channel for the first time."""
    daily = customer_events.select("customer_id", "channel", F.to_date("ts").alias("day"))
    active = daily.groupBy("day", "channel").agg(
        F.count_distinct("customer_id").alias("active_customers")
    )
    first = daily.groupBy("customer_id", "channel").agg(F.min("day").alias("day"))
    adopters = first.groupBy("day", "channel").agg(F.count(F.lit(1)).alias("new_adopters"))
    return [active, adopters]


def _with_cumulative_adoption(grid: DataFrame, customer_events: DataFrame) -> DataFrame:
    """Adopters so far on the channel over customers seen so far on any channel.

    The windows run over the day x channel grid, which is small whatever the data size.
    """
    first_day = customer_events.groupBy("customer_id").agg(F.min(F.to_date("ts")).alias("day"))
    new_customers = first_day.groupBy("day").agg(F.count(F.lit(1)).alias("_new"))
    so_far = Window.orderBy("day").rowsBetween(Window.unboundedPreceding, 0)
    known = (
        grid.select("day")
        .distinct()
        .join(new_customers, "day", "left")
        .withColumn("_known", F.sum(F.coalesce("_new", F.lit(0))).over(so_far))
    )
    per_channel = (
        Window.partitionBy("channel").orderBy("day").rowsBetween(Window.unboundedPreceding, 0)
    )
    return (
        grid.join(known.select("day", "_known"), "day")
        .withColumn("cumulative_adopters", F.sum("new_adopters").over(per_channel))
        .withColumn("adoption_rate", _ratio("cumulative_adopters", "_known"))
    )


def _cases_started(cases: DataFrame) -> DataFrame:
    return cases.groupBy(
        F.to_date("opened_at").alias("day"), F.col("start_channel").alias("channel")
    ).agg(F.count(F.lit(1)).alias("cases_started"))


def _channel_switches(events: DataFrame) -> DataFrame:
    """A switch is a case touch on another channel than the touch before it; it counts on the
    day it happened, for the channel the customer left."""
    in_order = Window.partitionBy("customer_id", "case_id").orderBy("ts", "interaction_id")
    touches = events.where(F.col("case_id").isNotNull()).withColumn(
        "_from", F.lag("channel").over(in_order)
    )
    switches = touches.where(F.col("_from").isNotNull() & (F.col("_from") != F.col("channel")))
    return switches.groupBy(F.to_date("ts").alias("day"), F.col("_from").alias("channel")).agg(
        F.count(F.lit(1)).alias("channel_switches")
    )


def _escalations(events: DataFrame, rules: CurationRules) -> DataFrame:
    """Self-service attempts, and those followed by an agent contact of the same customer within
    the escalation window; on the attempt's day and channel."""
    flagged = events.withColumns(
        {
            "_self": rule_predicate(rules, "self_service"),
            "_agent": rule_predicate(rules, "agent_contact"),
        }
    ).where(F.col("_self") | F.col("_agent"))
    later = (
        Window.partitionBy("customer_id")
        .orderBy("ts", "interaction_id")
        .rowsBetween(1, Window.unboundedFollowing)
    )
    next_agent = F.min(F.when(F.col("_agent"), F.col("ts"))).over(later)
    attempts = flagged.withColumn("_next_agent", next_agent).where("_self")
    window_s = rules.escalation_window_hours * 3600
    escalated = (F.unix_seconds("_next_agent") - F.unix_seconds("ts")) <= window_s
    return attempts.groupBy(F.to_date("ts").alias("day"), "channel").agg(
        F.count(F.lit(1)).alias("self_service_attempts"),
        F.count(F.when(escalated, 1)).alias("escalations_to_agent"),
    )


def _resolutions(cases: DataFrame) -> DataFrame:
    hours = (F.unix_seconds("resolved_at") - F.unix_seconds("opened_at")) / 3600.0
    resolved = cases.where(F.col("resolved_at").isNotNull()).withColumn("_hours", hours)
    return resolved.groupBy(
        F.to_date("resolved_at").alias("day"), F.col("start_channel").alias("channel")
    ).agg(
        F.count(F.lit(1)).alias("cases_resolved"),
        F.round(F.avg("_hours"), 2).alias("mean_resolution_hours"),
        F.round(F.percentile("_hours", 0.9), 2).alias("p90_resolution_hours"),
    )


def _repeat_contacts(contacts: DataFrame, rules: CurationRules) -> DataFrame:
    """Service contacts (one per customer, channel and day) and those followed by another
    contact of the same customer, on any channel, within ``repeat_contact_days``."""
    daily = contacts.groupBy("customer_id", "channel", F.to_date("ts").alias("day")).agg(
        F.min("ts").alias("ts")
    )
    following = Window.partitionBy("customer_id").orderBy("ts", "channel")
    window_s = rules.repeat_contact_days * _DAY_SECONDS
    gap = F.unix_seconds(F.lead("ts").over(following)) - F.unix_seconds("ts")
    flagged = daily.withColumn("_repeat", gap <= window_s)
    return flagged.groupBy("day", "channel").agg(
        F.count(F.lit(1)).alias("service_contacts"),
        F.count(F.when(F.col("_repeat"), 1)).alias("repeat_contacts_7d"),
    )
