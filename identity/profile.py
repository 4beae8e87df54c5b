"""Survivorship: one golden record per customer, every attribute with its provenance.

Which record an attribute is taken from is configuration (the rules file, read and checked by
:mod:`identity.survivorship`), so a business can say "the app account's birth date beats the
web's" without a code change. This module runs those rules in Spark:

- Only records that have the attribute compete for it. Attributes that only make sense together
  are chosen together from one record: the name (first, last, full) and the postal address
  (address line, postcode, city); a record needs a full name or both structured names to offer a
  name, and an address line or postcode to offer an address.
- Each step of an attribute's rule chain becomes one part of a sort key (smaller is better, never
  null), ``record_id`` ends it, and ``min_by`` over the customer's records picks the winner: the
  choice is deterministic and needs no ranking window per attribute. All attributes are chosen in
  one aggregation after one shuffle by ``customer_id``; ``most_frequent`` counts the customer's
  records holding the same value with a window partitioned by customer and value, which Spark
  runs inside that same shuffle (a customer's records are already in one partition).
- ``provenance.<attribute>`` names the winning record: its source, ``record_id``, when it was
  last seen (``observed_at``: silver keeps each record's latest values, seen by
  ``last_seen_at``) and the attribute's configured rule.
- Consent is the most restrictive value any record states, whatever the rules file says: one
  ``false`` wins over any number of ``true``; no statement at all stays null (unknown), never
  becomes consent. Its provenance is the latest record stating the winning value.
- Identifiers that may legitimately be several (loyalty cards, app accounts, social handles)
  are all kept, sorted; counts, sources and first/last seen summarise all records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from identity.survivorship import AttributeRule, RuleKind, SurvivorshipRules
from jobs.lakehouse.spark_schema import conform
from schemas.tables import CONSENT_ATTRIBUTES, CUSTOMER_PROFILE, SURVIVED_ATTRIBUTES

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

_MULTI_VALUED = {
    "loyalty_ids": "loyalty_id",
    "app_account_ids": "app_account_id",
    "social_handles": "social_handle",
    "sources": "source",
}

_NEVER_SEEN = 2**62  # recency rank of a record without last_seen_at: after every seen record
_CONSENT_RULE = "most_restrictive"


@dataclass(frozen=True)
class _Attribute:
    """How survivorship reads one attribute off a record."""

    columns: tuple[str, ...]
    present: Column  # the record offers the attribute
    value: Column  # what two records must share to hold "the same value" (most_frequent)


def _attributes() -> dict[str, _Attribute]:
    """Every survived attribute; name and address need more than any one of their fields."""
    special = {
        "name": _Attribute(
            SURVIVED_ATTRIBUTES["name"],
            F.col("full_name").isNotNull()
            | (F.col("first_name").isNotNull() & F.col("last_name").isNotNull()),
            F.coalesce("full_name", _joined_name()),  # "anna schmidt" typed either way
        ),
        "address": _Attribute(
            SURVIVED_ATTRIBUTES["address"],
            F.col("address_line").isNotNull() | F.col("postcode").isNotNull(),
            F.struct("address_line", "postcode"),
        ),
    }
    return {
        name: special.get(name)
        or _Attribute(columns, F.col(columns[0]).isNotNull(), F.col(columns[0]))
        for name, columns in SURVIVED_ATTRIBUTES.items()
    }


def _joined_name() -> Column:
    """ "first last" for a record that has structured names but no full name."""
    first, last = F.col("first_name"), F.col("last_name")
    return F.when(first.isNotNull() | last.isNotNull(), F.concat_ws(" ", first, last))


def _filled(columns: tuple[str, ...]) -> Column:
    return sum(F.col(c).isNotNull().cast("int") for c in columns)


def _frequency(name: str) -> str:
    return f"_frequency_{name}"


def _members(
    records: DataFrame,
    xref: DataFrame,
    attributes: dict[str, _Attribute],
    rules: SurvivorshipRules,
) -> DataFrame:
    """Each record with its customer_id and the per-record facts the rules rank on.

    The explicit shuffle by customer_id is the only one: the frequency windows (partitioned by
    customer and value) and the aggregation by customer both reuse it.
    """
    members = (
        records.join(xref.select("record_id", "customer_id"), "record_id")
        .repartition("customer_id")
        .withColumn("_completeness", _filled(_COMPLETENESS_FIELDS))
    )
    return members.withColumns(
        {
            _frequency(name): F.count(F.when(attributes[name].present, 1)).over(
                Window.partitionBy("customer_id", attributes[name].value)
            )
            for name, rule in rules.items()
            if "most_frequent" in rule.steps
        }
    )


def _newest_first() -> Column:
    return F.coalesce(-F.unix_micros("last_seen_at"), F.lit(_NEVER_SEEN))


def _position(sources: tuple[str, ...]) -> Column:
    """The record's source's place in ``sources``; unlisted sources rank after all listed."""
    places = F.create_map(*[F.lit(x) for i, s in enumerate(sources) for x in (s, i)])
    return F.coalesce(places[F.col("source")], F.lit(len(sources)))


def _rank(step: RuleKind, name: str, attribute: _Attribute, rule: AttributeRule) -> Column:
    """One step of a rule chain as a sort key of a record: smaller is better, never null."""
    if step == "source_priority":
        return _position(rule.sources)
    if step == "verified_first":
        return F.when(F.col("source").isin(*rule.verified_sources), 0).otherwise(1)
    if step == "most_recent":
        return _newest_first()
    if step == "most_frequent":
        return -F.col(_frequency(name))
    # most_complete: most of the attribute's own fields, then most identity fields overall
    return F.struct(-_filled(attribute.columns), -F.col("_completeness"))


def _provenance(rule: str) -> Column:
    return F.struct(
        "source",
        "record_id",
        F.col("last_seen_at").alias("observed_at"),
        F.lit(rule).alias("rule"),
    )


def _survivor(name: str, attribute: _Attribute, rule: AttributeRule) -> Column:
    """The attribute's columns and provenance from the record its rule chain ranks first."""
    order = F.struct(
        *[_rank(step, name, attribute, rule).alias(step) for step in rule.steps], "record_id"
    )
    chosen = F.struct(*attribute.columns, _provenance(rule.rule).alias("provenance"))
    return F.min_by(chosen, F.when(attribute.present, order)).alias(f"_{name}")


def _consent(column: str) -> Column:
    """Most restrictive statement (false sorts before true), the latest record saying it."""
    stated = F.col(column)
    order = F.struct(stated.cast("int"), _newest_first(), F.col("record_id"))
    chosen = F.struct(stated.alias("value"), _provenance(_CONSENT_RULE).alias("provenance"))
    return F.min_by(chosen, F.when(stated.isNotNull(), order)).alias(f"_{column}")


def _golden_columns() -> list[Column]:
    """The chosen values as profile columns, and one provenance struct keyed by attribute."""
    values = [F.col(f"_{key}.{c}").alias(c) for key, cs in SURVIVED_ATTRIBUTES.items() for c in cs]
    consents = [F.col(f"_{c}.value").alias(c) for c in CONSENT_ATTRIBUTES]
    keys = (*SURVIVED_ATTRIBUTES, *CONSENT_ATTRIBUTES)
    provenance = F.struct(*[F.col(f"_{key}.provenance").alias(key) for key in keys])
    return [*values, *consents, provenance.alias("provenance")]


def profile_table(
    records: DataFrame,
    xref: DataFrame,
    model_version: str,
    resolved_at: datetime,
    rules: SurvivorshipRules,
) -> DataFrame:
    """gold.customer_profile from silver records, their customer ids and survivorship rules."""
    attributes = _attributes()
    members = _members(records, xref, attributes, rules)
    profiles = members.groupBy("customer_id").agg(
        *[_survivor(name, attributes[name], rules[name]) for name in SURVIVED_ATTRIBUTES],
        *[_consent(c) for c in CONSENT_ATTRIBUTES],
        *[F.array_sort(F.collect_set(c)).alias(name) for name, c in _MULTI_VALUED.items()],
        F.count(F.lit(1)).alias("record_count"),
        F.min("first_seen_at").alias("first_seen_at"),
        F.max("last_seen_at").alias("last_seen_at"),
        F.sum("interaction_count").alias("interaction_count"),
    )
    golden = profiles.select("*", *_golden_columns()).withColumn(
        "full_name", F.coalesce("full_name", _joined_name())
    )
    return conform(
        golden.withColumns(
            {
                "model_version": F.lit(model_version),
                "resolved_at": F.lit(resolved_at).cast("timestamp"),
            }
        ),
        CUSTOMER_PROFILE,
    )
