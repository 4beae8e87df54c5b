"""Cases: one row per customer and case, with the channels it went through and its status.

A case is open unless its latest status is a closing status; a case idle for more than
``case_idle_close_days`` is no longer shown as open.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.curate.frames import days_before
from jobs.curate.rules import CurationRules


def case_summaries(events: DataFrame, rules: CurationRules, as_of: Column) -> DataFrame:
    """One row per (customer, case): when it opened, the channels it went through, its status.

    Outbound replies count as touches (they often open the case); the channel path merges
    consecutive touches on one channel, so social, social, web, call reads social -> web -> call.
    """
    touches = events.where(F.col("case_id").isNotNull())
    ordered = F.array_sort(F.collect_list(F.struct("ts", "interaction_id", "channel")))
    cases = touches.groupBy("customer_id", "case_id").agg(
        F.min("ts").alias("opened_at"),
        F.max("ts").alias("last_activity_at"),
        F.count(F.lit(1)).alias("touches"),
        F.transform(ordered, lambda t: t["channel"]).alias("_channels"),
        F.max_by(
            "status", F.when(F.col("status").isNotNull(), F.struct("ts", "interaction_id"))
        ).alias("last_status"),
        F.max_by(
            "reason", F.when(F.col("reason").isNotNull(), F.struct("ts", "interaction_id"))
        ).alias("reason"),
        F.min(F.when(F.col("status").isin(rules.closing_statuses), _contact_end())).alias(
            "resolved_at"
        ),
    )
    path = F.filter(F.col("_channels"), lambda c, i: (i == 0) | (c != F.get("_channels", i - 1)))
    closed = F.coalesce(F.col("last_status").isin(rules.closing_statuses), F.lit(False))
    idle = F.col("last_activity_at") <= days_before(as_of, rules.case_idle_close_days)
    return (
        cases.withColumn("channel_path", path)
        .withColumns(
            {
                "channel_history": F.array_join("channel_path", " -> "),
                "start_channel": F.col("_channels")[0],
                "is_open": ~closed & ~idle,
            }
        )
        .drop("_channels")
    )


def _contact_end() -> Column:
    """When a contact ended: a call lasts its handle time; other events are instants."""
    return F.col("ts") + F.make_interval(secs=F.coalesce("handle_time_s", F.lit(0)))


def open_case_struct() -> Column:
    return F.struct(
        "case_id",
        "opened_at",
        "last_activity_at",
        "channel_path",
        "channel_history",
        "touches",
        "last_status",
        "reason",
    )
