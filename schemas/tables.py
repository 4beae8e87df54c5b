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
    LongType,
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


# One row per customer_id: the golden record. Each chosen attribute (group) names the record it
# came from in ``<attr>_source_record``; see identity/profile.py for the survivorship rules.
CUSTOMER_PROFILE = StructType(
    [
        StructField("customer_id", StringType(), nullable=False),
        *_fields("first_name last_name full_name name_source_record", StringType()),
        *_fields("email email_source_record phone phone_source_record", StringType()),
        StructField("dob", DateType()),
        StructField("dob_source_record", StringType()),
        *_fields("address_line postcode city address_source_record", StringType()),
        *_fields("country country_source_record", StringType()),
        *_fields("loyalty_ids app_account_ids social_handles sources", ArrayType(StringType())),
        *_fields("email_opt_in sms_opt_in push_opt_in ads_opt_in", BooleanType()),
        StructField("record_count", LongType(), nullable=False),
        *_fields("first_seen_at last_seen_at", TimestampType()),
        StructField("interaction_count", LongType()),
        StructField("model_version", StringType(), nullable=False),
        StructField("resolved_at", TimestampType(), nullable=False),
    ]
)
