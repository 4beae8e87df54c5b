"""gold.customer_timeline: every interaction of a resolved customer, with a one-line summary."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.curate.rules import CurationRules
from jobs.lakehouse.spark_schema import conform
from schemas.tables import CUSTOMER_TIMELINE

_MONEY = "decimal(14,2)"


def customer_timeline(interactions: DataFrame, xref: DataFrame, rules: CurationRules) -> DataFrame:
    """Resolved interactions with customer, case, money in the reporting currency and summary."""
    events = interactions.join(xref.select("record_id", "customer_id"), "record_id")
    events = events.withColumns(
        {
            "case_id": F.coalesce("case_id", _case_from_page(rules.case_page_pattern)),
            "initiated_by": F.when(
                F.col("type").isin(rules.brand_initiated_types), "brand"
            ).otherwise("customer"),
            "amount_reporting": to_reporting_currency(F.col("amount"), F.col("currency"), rules),
        }
    )
    events = events.withColumn("summary", event_summary(rules.negative_sentiment))
    order = Window.partitionBy("customer_id").orderBy("ts", "interaction_id")
    return conform(events.withColumn("seq", F.row_number().over(order)), CUSTOMER_TIMELINE)


def _case_from_page(pattern: str) -> Column:
    found = F.regexp_extract(F.coalesce("text", F.lit("")), pattern, 1)
    return F.when(found != "", found)


def to_reporting_currency(amount: Column, currency: Column, rules: CurationRules) -> Column:
    """``amount`` in the reporting currency, rounded to cents; unknown currency gives null."""
    rates = F.create_map(
        *[x for c, r in rules.currency_per_reporting_unit.items() for x in (F.lit(c), F.lit(r))]
    )
    return (amount / rates[F.upper(currency)]).cast(_MONEY)


def event_summary(negative_sentiment: float) -> Column:
    """One line per event, such as "Web: return request failed (wrong size): <web error>".

    Only structured fields and system texts (page paths, web error messages) are used; what a
    customer typed can hold an email or phone number and stays out of gold summaries.
    """
    label = F.initcap(F.regexp_replace("channel", "_", " "))
    money = F.when(
        F.col("amount").isNotNull(),
        F.concat_ws(" ", F.col("amount").cast("string"), F.col("currency")),
    )
    categories = _parenthesized(F.regexp_replace("categories", r"\|", ", "))
    on_case = F.when(F.col("case_id").isNotNull(), F.concat(F.lit("on case "), "case_id"))
    kind = F.col("type")
    phrase = (
        F.when(kind.isin("purchase", "order"), F.concat_ws(" ", kind, money, categories))
        .when(kind == "page_view", F.concat_ws(" ", F.lit("page view"), F.col("text")))
        .when(kind == "return_request", _return_phrase())
        .when(kind == "call", _call_phrase())
        .when(kind == "dm_inbound", _dm_phrase(on_case, negative_sentiment))
        .when(kind == "dm_outbound", F.concat_ws(" ", F.lit("reply by brand"), on_case))
        .when(kind == "support_chat", F.concat_ws(" ", F.lit("support chat"), on_case))
        .when(kind == "product_view", F.concat_ws(" ", F.lit("product view"), categories))
        .otherwise(F.concat_ws(" ", F.regexp_replace(kind, "_", " "), F.col("status")))
    )
    return F.concat(label, F.lit(": "), phrase)


def _parenthesized(value: Column) -> Column:
    return F.when(value.isNotNull(), F.concat(F.lit("("), value, F.lit(")")))


def _return_phrase() -> Column:
    reason = _parenthesized(F.col("reason"))
    head = F.concat_ws(" ", F.lit("return request"), F.col("status"), reason)
    failed = (F.col("status") == "failed") & F.col("text").isNotNull()
    return F.when(failed, F.concat(head, F.lit(": "), F.col("text"))).otherwise(head)


def _call_phrase() -> Column:
    minutes = F.when(
        F.col("handle_time_s").isNotNull(),
        F.format_string("%.1f min", F.col("handle_time_s") / 60.0),
    )
    details = F.concat_ws(
        ", ",
        F.col("status"),
        minutes,
        F.when(F.col("escalated"), F.lit("escalated")),
        F.when(F.col("transferred"), F.lit("transferred")),
    )
    about = F.when(F.col("reason").isNotNull(), F.concat(F.lit("about "), "reason"))
    case = F.when(F.col("case_id").isNotNull(), F.concat(F.lit("case "), "case_id"))
    inner = F.concat_ws(": ", case, F.when(details != "", details))
    return F.concat_ws(" ", F.lit("call"), about, _parenthesized(F.when(inner != "", inner)))


def _dm_phrase(on_case: Column, negative: float) -> Column:
    sentiment = F.col("sentiment")
    mood = (
        F.when(sentiment <= negative, "negative")
        .when(sentiment >= -negative, "positive")
        .when(sentiment.isNotNull(), "neutral")
    )
    return F.concat_ws(" ", F.lit("message from customer"), on_case, _parenthesized(mood))
