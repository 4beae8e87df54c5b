"""Survivorship: one golden record per customer, every attribute with its provenance.

First-cut rules, chosen to be explainable to an agent or a marketer in one sentence each:

- An attribute comes from the most complete record of the customer that has it (the record
  with the most identity fields filled); ties go to the most recently seen record, then to the
  smallest ``record_id``, so the choice is deterministic. Attributes that only make sense
  together are chosen together from one record: the name (first, last, full; a record with
  structured first and last name beats one with only a full name) and the postal address
  (address line, postcode, city). ``<attr>_source_record`` names the record it came from.
- Identifiers that may legitimately be several (loyalty cards, app accounts, social handles)
  are all kept, sorted.
- Consent is the most restrictive value any record states: one ``false`` wins over any number
  of ``true``; no statement at all stays null (unknown), never becomes consent.
- Counts, sources and first/last seen summarise all records of the customer.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from schemas.tables import CUSTOMER_PROFILE, conform

# The identity fields whose presence makes a record "more complete".
_COMPLETENESS_FIELDS = (
    "first_name",
    "last_name",
    "full_name",
    "dob",
    "email",
    "phone",
    "address_line",
    "postcode",
    "city",
)


def _groups() -> dict[str, tuple[tuple[str, ...], Column]]:
    """Attributes chosen from one record each: provenance name -> (columns, presence score)."""
    return {
        "name": (
            ("first_name", "last_name", "full_name"),
            F.when(F.col("first_name").isNotNull() & F.col("last_name").isNotNull(), 2)
            .when(F.col("full_name").isNotNull(), 1)
            .otherwise(0),
        ),
        "email": (("email",), F.col("email").isNotNull().cast("int")),
        "phone": (("phone",), F.col("phone").isNotNull().cast("int")),
        "dob": (("dob",), F.col("dob").isNotNull().cast("int")),
        "address": (
            ("address_line", "postcode", "city"),
            (F.col("address_line").isNotNull() | F.col("postcode").isNotNull()).cast("int"),
        ),
        "country": (("country",), F.col("country").isNotNull().cast("int")),
    }


_MULTI_VALUED = {
    "loyalty_ids": "loyalty_id",
    "app_account_ids": "app_account_id",
    "social_handles": "social_handle",
    "sources": "source",
}

_CONSENT = ("email_opt_in", "sms_opt_in", "push_opt_in", "ads_opt_in")


def _joined_name() -> Column:
    """ "first last" for a record that has structured names but no full name."""
    first, last = F.col("first_name"), F.col("last_name")
    return F.when(first.isNotNull() | last.isNotNull(), F.concat_ws(" ", first, last))


def _completeness() -> Column:
    return sum(F.col(c).isNotNull().cast("int") for c in _COMPLETENESS_FIELDS)


def _preference(presence: Column) -> Column:
    """Smaller is better: has the attribute, most complete, most recent, smallest record id."""
    return F.struct(
        (-presence).alias("presence"),
        (-F.col("_completeness")).alias("completeness"),
        (-F.coalesce(F.unix_seconds("last_seen_at"), F.lit(0))).alias("recency"),
        F.col("record_id"),
    )


def _survivor(group: str, columns: tuple[str, ...], presence: Column) -> Column:
    """The group's columns and ``record_id`` from the preferred record, as one struct."""
    chosen = F.struct(*columns, F.col("record_id").alias(f"{group}_source_record"))
    return F.min_by(F.when(presence > 0, chosen), _preference(presence)).alias(f"_{group}")


def _expand(group: str, columns: tuple[str, ...]) -> list[Column]:
    return [F.col(f"_{group}.{c}").alias(c) for c in (*columns, f"{group}_source_record")]


def profile_table(
    records: DataFrame, xref: DataFrame, model_version: str, resolved_at: datetime
) -> DataFrame:
    """gold.customer_profile from silver records and their customer ids."""
    members = records.join(xref.select("record_id", "customer_id"), "record_id").withColumn(
        "_completeness", _completeness()
    )
    groups = _groups()
    profiles = members.groupBy("customer_id").agg(
        *[_survivor(g, cols, presence) for g, (cols, presence) in groups.items()],
        *[F.array_sort(F.collect_set(c)).alias(name) for name, c in _MULTI_VALUED.items()],
        *[F.bool_and(c).alias(c) for c in _CONSENT],
        F.count(F.lit(1)).alias("record_count"),
        F.min("first_seen_at").alias("first_seen_at"),
        F.max("last_seen_at").alias("last_seen_at"),
        F.sum("interaction_count").alias("interaction_count"),
    )
    flat = profiles.select(
        "*", *[c for g, (cols, _) in groups.items() for c in _expand(g, cols)]
    ).withColumn("full_name", F.coalesce("full_name", _joined_name()))
    return conform(
        flat.withColumns(
            {
                "model_version": F.lit(model_version),
                "resolved_at": F.lit(resolved_at).cast("timestamp"),
            }
        ),
        CUSTOMER_PROFILE,
    )
