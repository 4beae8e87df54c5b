"""Schemas of the silver and gold tables that more than one step reads.

Jobs write exactly these columns (``conform`` enforces it); identity, curation and tests rely on
them. Identifiers are normalized here once: email lower-case, phone E.164, names cleaned.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)


def _fields(spec: str, dtype) -> list[StructField]:
    return [StructField(name, dtype) for name in spec.split()]


# One row per identity record seen in any source: record_id = "<source>:<normalized key>".
CUSTOMER_RECORDS = StructType(
    [
        StructField("record_id", StringType(), nullable=False),
        StructField("source", StringType(), nullable=False),
        StructField("source_key", StringType(), nullable=False),
        StructField("country", StringType()),  # ISO 3166 alpha-2 the record was captured in
        *_fields("first_name last_name full_name", StringType()),  # lower-case, accents folded
        StructField("dob", DateType()),
        StructField("email", StringType()),  # lower-case, trimmed, validated shape
        StructField("phone", StringType()),  # E.164 (+821012345678), invalid -> null
        *_fields("address_line postcode city", StringType()),
        *_fields("loyalty_id app_account_id device_id social_handle", StringType()),
        *_fields("email_opt_in sms_opt_in push_opt_in ads_opt_in", BooleanType()),
        *_fields("first_seen_at last_seen_at", TimestampType()),
        StructField("interaction_count", LongType()),
    ]
)

# Every purchase, visit, call, chat, DM, return... in one schema; record_id null = anonymous.
INTERACTIONS = StructType(
    [
        StructField("interaction_id", StringType(), nullable=False),
        StructField("source", StringType(), nullable=False),
        StructField("channel", StringType(), nullable=False),
        StructField("record_id", StringType()),
        StructField("ts", TimestampType(), nullable=False),  # UTC
        StructField("type", StringType(), nullable=False),
        StructField("status", StringType()),
        StructField("amount", DecimalType(12, 2)),
        StructField("currency", StringType()),
        StructField("case_id", StringType()),
        StructField("reason", StringType()),
        StructField("categories", StringType()),  # product categories, "|"-joined
        StructField("text", StringType()),
        StructField("sentiment", DoubleType()),
        StructField("handle_time_s", LongType()),
        StructField("escalated", BooleanType()),
        StructField("transferred", BooleanType()),
        StructField("source_file", StringType(), nullable=False),
        StructField("line_no", LongType(), nullable=False),
    ]
)

# Source record -> customer_id.
IDENTITY_XREF = StructType(
    [
        StructField("record_id", StringType(), nullable=False),
        StructField("source", StringType(), nullable=False),
        StructField("customer_id", StringType(), nullable=False),
        StructField("cluster_size", LongType(), nullable=False),
        StructField("resolved_at", TimestampType(), nullable=False),
    ]
)


# Merges and splits of customer ids across resolution runs (identity/stable_ids.py): a ``merge``
# retires ``previous_id`` into ``current_id``; a ``split`` moved ``records`` of ``previous_id``
# (which lives on) to ``current_id``.
CUSTOMER_ID_HISTORY = StructType(
    [
        StructField("event_id", StringType(), nullable=False),
        *_fields("event previous_id current_id", StringType()),
        StructField("records", LongType()),
        StructField("reason", StringType()),
        StructField("changed_at", TimestampType()),
        StructField("model_version", StringType()),
    ]
)


def conform(df: DataFrame, schema: StructType, fill_missing: bool = False) -> DataFrame:
    """Select and cast ``df`` to exactly ``schema``'s columns, in order.

    A missing column fails, unless ``fill_missing`` (for unions of sources where some sources
    have no such field) makes it null.
    """
    missing = [f.name for f in schema.fields if f.name not in df.columns]
    if missing and not fill_missing:
        raise ValueError(f"cannot conform to schema: missing columns {missing}")
    return df.select(
        [
            (F.col(f.name) if f.name not in missing else F.lit(None)).cast(f.dataType).alias(f.name)
            for f in schema.fields
        ]
    )


# Golden-record attributes chosen by survivorship (identity/profile.py, rules in
# identity/survivorship.yaml): provenance key -> the profile columns it covers, always taken
# together from one record (a name or an address is never stitched from two records).
SURVIVED_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "name": ("first_name", "last_name", "full_name"),
    "email": ("email",),
    "phone": ("phone",),
    "dob": ("dob",),
    "address": ("address_line", "postcode", "city"),
    "country": ("country",),
    "loyalty_id": ("loyalty_id",),
}
# Consent per purpose: the most restrictive statement of any of the customer's records.
CONSENT_ATTRIBUTES = ("email_opt_in", "sms_opt_in", "push_opt_in", "ads_opt_in")

# Where one golden attribute came from: the silver record, its source, when that record was last
# seen (silver's ``last_seen_at``) and the rule that chose it; null when no record has a value.
PROVENANCE = StructType(
    [
        *_fields("source record_id", StringType()),
        StructField("observed_at", TimestampType()),
        StructField("rule", StringType()),
    ]
)

# One row per customer_id: the golden record. ``provenance.<key>`` says where each attribute
# (``SURVIVED_ATTRIBUTES`` keys and the consent columns) came from. The identifier lists, counts
# and first/last seen summarise all records of the customer (gold.identity_xref lists them).
CUSTOMER_PROFILE = StructType(
    [
        StructField("customer_id", StringType(), nullable=False),
        *_fields("first_name last_name full_name email phone", StringType()),
        StructField("dob", DateType()),
        *_fields("address_line postcode city country loyalty_id", StringType()),
        *_fields("loyalty_ids app_account_ids social_handles sources", ArrayType(StringType())),
        *_fields(" ".join(CONSENT_ATTRIBUTES), BooleanType()),
        StructField("record_count", LongType(), nullable=False),
        *_fields("first_seen_at last_seen_at", TimestampType()),
        StructField("interaction_count", LongType()),
        StructField(
            "provenance",
            StructType(_fields(" ".join([*SURVIVED_ATTRIBUTES, *CONSENT_ATTRIBUTES]), PROVENANCE)),
        ),
        StructField("model_version", StringType(), nullable=False),
        StructField("resolved_at", TimestampType(), nullable=False),
    ]
)


# --- curated gold (jobs/curate.py, jobs/segments.py; the rules are documented there) ------------

_MONEY = DecimalType(14, 2)  # amounts converted to the reporting currency

# Every interaction of a resolved customer, in time order, with a one-line summary free of PII.
CUSTOMER_TIMELINE = StructType(
    [
        StructField("customer_id", StringType(), nullable=False),
        StructField("seq", LongType(), nullable=False),  # 1 = the customer's first interaction
        StructField("ts", TimestampType(), nullable=False),
        *_fields("channel source type status initiated_by case_id reason", StringType()),
        StructField("amount", DecimalType(12, 2)),
        StructField("currency", StringType()),
        StructField("amount_reporting", _MONEY),
        StructField("categories", StringType()),
        StructField("sentiment", DoubleType()),
        StructField("handle_time_s", LongType()),
        *_fields("escalated transferred", BooleanType()),
        *_fields("summary interaction_id record_id", StringType()),
    ]
)

# One row per customer: value, channels, cases, interests and consent, for marketers.
CUSTOMER_360 = StructType(
    [
        StructField("customer_id", StringType(), nullable=False),
        *_fields("country language tier", StringType()),
        *_fields("first_seen_at last_seen_at", TimestampType()),
        *_fields("interaction_count order_count", LongType()),
        *_fields("first_order_at last_order_at", TimestampType()),
        StructField("recency_days", IntegerType()),
        StructField("frequency", LongType()),
        *_fields("monetary lifetime_value avg_order_value", _MONEY),
        StructField("reporting_currency", StringType()),
        *_fields("orders_by_channel channel_mix", MapType(StringType(), LongType())),
        StructField("preferred_channel", StringType()),
        StructField("last_contact_at", MapType(StringType(), TimestampType())),
        StructField("days_since_last_contact", IntegerType()),
        StructField("open_case_count", LongType()),
        StructField("open_case_ids", ArrayType(StringType())),
        StructField("contact_reasons", MapType(StringType(), LongType())),
        StructField("category_affinity", MapType(StringType(), DoubleType())),
        StructField("top_category", StringType()),
        *_fields("consent_email consent_sms consent_push consent_ads", BooleanType()),
        StructField("as_of", TimestampType(), nullable=False),
    ]
)

OPEN_CASE = StructType(
    [
        StructField("case_id", StringType()),
        *_fields("opened_at last_activity_at", TimestampType()),
        StructField("channel_path", ArrayType(StringType())),  # channels in order, repeats merged
        StructField("channel_history", StringType()),  # "social -> web -> call_center"
        StructField("touches", LongType()),
        *_fields("last_status reason", StringType()),
    ]
)
RECENT_INTERACTION = StructType(
    [
        StructField("channel", StringType()),
        StructField("ts", TimestampType()),
        *_fields("type status summary", StringType()),
    ]
)
FAILED_SELF_SERVICE = StructType(
    [
        StructField("ts", TimestampType()),
        *_fields("channel type summary", StringType()),
        StructField("resolved_after", BooleanType()),  # an agent closed a contact since
    ]
)

# One row per customer: what an agent needs on one screen, and what to do next.
AGENT_CONTEXT = StructType(
    [
        StructField("customer_id", StringType(), nullable=False),
        *_fields("display_name tier language country preferred_channel", StringType()),
        StructField("lifetime_value", _MONEY),
        StructField("reporting_currency", StringType()),
        StructField("consents", ArrayType(StringType())),  # purposes consented: email, sms, ...
        StructField("open_case_count", LongType()),
        StructField("open_cases", ArrayType(OPEN_CASE)),  # most recently active first
        StructField("last_interactions", ArrayType(RECENT_INTERACTION)),  # newest first
        StructField("failed_self_service", ArrayType(FAILED_SELF_SERVICE)),  # newest first
        StructField("recent_sentiment", DoubleType()),
        StructField("last_contact_at", TimestampType()),
        *_fields("next_best_action next_best_action_reason next_best_action_rule", StringType()),
        StructField("as_of", TimestampType(), nullable=False),
    ]
)

# Who is in which marketer-defined audience; only customers with the required consent.
SEGMENT_MEMBERSHIP = StructType(
    [
        StructField("segment", StringType(), nullable=False),
        StructField("customer_id", StringType(), nullable=False),
        StructField("consent_purpose", StringType(), nullable=False),
        StructField("as_of", TimestampType(), nullable=False),
    ]
)

# Per day and channel: how customers adopt channels and how issues travel between them.
JOURNEY_METRICS = StructType(
    [
        StructField("day", DateType(), nullable=False),
        StructField("channel", StringType(), nullable=False),
        *_fields("active_customers new_adopters cumulative_adopters", LongType()),
        StructField("adoption_rate", DoubleType()),
        *_fields("cases_started channel_switches", LongType()),
        *_fields("self_service_attempts escalations_to_agent", LongType()),
        StructField("escalation_rate", DoubleType()),
        StructField("cases_resolved", LongType()),
        *_fields("mean_resolution_hours p90_resolution_hours", DoubleType()),
        *_fields("service_contacts repeat_contacts_7d", LongType()),
        StructField("repeat_contact_rate", DoubleType()),
    ]
)

# An erasure request (jobs/privacy.py): the identifier only as the SHA-256 of its normalized
# form; the customer ids it resolved to; and, once done, the rows deleted per table by the run
# that completed it (one run serves every request pending at its start).
ERASURE_REQUEST = StructType(
    [
        StructField("request_id", StringType(), nullable=False),
        *_fields("kind identifier_sha256", StringType()),
        StructField("requested_at", TimestampType()),
        StructField("customer_ids", ArrayType(StringType())),
        *_fields("resolved_at completed_at", TimestampType()),
        StructField("rows_deleted", MapType(StringType(), LongType())),
    ]
)
