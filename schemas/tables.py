"""Schemas of the silver and gold tables that more than one step reads.

Jobs write exactly these columns (``jobs.lakehouse.spark_schema.conform`` enforces it); identity,
curation, serving and tests rely on them. Identifiers are normalized here once: email
lower-case, phone E.164, names cleaned. The types are engine-neutral (``schemas.types``); Spark
and Arrow get them through their adapters.
"""

from __future__ import annotations

from schemas.types import (
    BOOLEAN,
    DATE,
    DOUBLE,
    INT,
    LONG,
    STRING,
    TIMESTAMP,
    Array,
    Decimal,
    Field,
    Map,
    Struct,
    fields,
)

# One row per identity record seen in any source: record_id = "<source>:<normalized key>".
CUSTOMER_RECORDS = Struct(
    Field("record_id", STRING, nullable=False),
    Field("source", STRING, nullable=False),
    Field("source_key", STRING, nullable=False),
    Field("country", STRING),  # ISO 3166 alpha-2 the record was captured in
    *fields("first_name last_name full_name", STRING),  # lower-case, accents folded
    Field("dob", DATE),
    Field("email", STRING),  # lower-case, trimmed, validated shape
    Field("phone", STRING),  # E.164 (+821012345678), invalid -> null
    *fields("address_line postcode city", STRING),
    *fields("loyalty_id app_account_id device_id social_handle", STRING),
    *fields("email_opt_in sms_opt_in push_opt_in ads_opt_in", BOOLEAN),
    *fields("first_seen_at last_seen_at", TIMESTAMP),
    Field("interaction_count", LONG),
)

# Every purchase, visit, call, chat, DM, return... in one schema; record_id null = anonymous.
INTERACTIONS = Struct(
    Field("interaction_id", STRING, nullable=False),
    Field("source", STRING, nullable=False),
    Field("channel", STRING, nullable=False),
    Field("record_id", STRING),
    Field("ts", TIMESTAMP, nullable=False),  # UTC
    Field("type", STRING, nullable=False),
    Field("status", STRING),
    Field("amount", Decimal(12, 2)),
    Field("currency", STRING),
    Field("case_id", STRING),
    Field("reason", STRING),
    Field("categories", STRING),  # product categories, "|"-joined
    Field("text", STRING),
    Field("sentiment", DOUBLE),
    Field("handle_time_s", LONG),
    Field("escalated", BOOLEAN),
    Field("transferred", BOOLEAN),
    Field("source_file", STRING, nullable=False),
    Field("line_no", LONG, nullable=False),
)

# Source record -> customer_id.
IDENTITY_XREF = Struct(
    Field("record_id", STRING, nullable=False),
    Field("source", STRING, nullable=False),
    Field("customer_id", STRING, nullable=False),
    Field("cluster_size", LONG, nullable=False),
    Field("resolved_at", TIMESTAMP, nullable=False),
)


# Merges and splits of customer ids across resolution runs (identity/stable_ids.py): a ``merge``
# retires ``previous_id`` into ``current_id``; a ``split`` moved ``records`` of ``previous_id``
# (which lives on) to ``current_id``.
CUSTOMER_ID_HISTORY = Struct(
    Field("event_id", STRING, nullable=False),
    *fields("event previous_id current_id", STRING),
    Field("records", LONG),
    Field("reason", STRING),
    Field("changed_at", TIMESTAMP),
    Field("model_version", STRING),
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
PROVENANCE = Struct(
    *fields("source record_id", STRING),
    Field("observed_at", TIMESTAMP),
    Field("rule", STRING),
)

# One row per customer_id: the golden record. ``provenance.<key>`` says where each attribute
# (``SURVIVED_ATTRIBUTES`` keys and the consent columns) came from. The identifier lists, counts
# and first/last seen summarise all records of the customer (gold.identity_xref lists them).
CUSTOMER_PROFILE = Struct(
    Field("customer_id", STRING, nullable=False),
    *fields("first_name last_name full_name email phone", STRING),
    Field("dob", DATE),
    *fields("address_line postcode city country loyalty_id", STRING),
    *fields("loyalty_ids app_account_ids social_handles sources", Array(STRING)),
    *fields(" ".join(CONSENT_ATTRIBUTES), BOOLEAN),
    Field("record_count", LONG, nullable=False),
    *fields("first_seen_at last_seen_at", TIMESTAMP),
    Field("interaction_count", LONG),
    Field(
        "provenance",
        Struct(*fields(" ".join([*SURVIVED_ATTRIBUTES, *CONSENT_ATTRIBUTES]), PROVENANCE)),
    ),
    Field("model_version", STRING, nullable=False),
    Field("resolved_at", TIMESTAMP, nullable=False),
)


# --- curated gold (jobs/curate/, jobs/segments.py; the rules are documented there) ------------

_MONEY = Decimal(14, 2)  # amounts converted to the reporting currency

# Every interaction of a resolved customer, in time order, with a one-line summary free of PII.
CUSTOMER_TIMELINE = Struct(
    Field("customer_id", STRING, nullable=False),
    Field("seq", LONG, nullable=False),  # 1 = the customer's first interaction
    Field("ts", TIMESTAMP, nullable=False),
    *fields("channel source type status initiated_by case_id reason", STRING),
    Field("amount", Decimal(12, 2)),
    Field("currency", STRING),
    Field("amount_reporting", _MONEY),
    Field("categories", STRING),
    Field("sentiment", DOUBLE),
    Field("handle_time_s", LONG),
    *fields("escalated transferred", BOOLEAN),
    *fields("summary interaction_id record_id", STRING),
)

# One row per customer: value, channels, cases, interests and consent, for marketers.
CUSTOMER_360 = Struct(
    Field("customer_id", STRING, nullable=False),
    *fields("country language tier", STRING),
    *fields("first_seen_at last_seen_at", TIMESTAMP),
    *fields("interaction_count order_count", LONG),
    *fields("first_order_at last_order_at", TIMESTAMP),
    Field("recency_days", INT),
    Field("frequency", LONG),
    *fields("monetary lifetime_value avg_order_value", _MONEY),
    Field("reporting_currency", STRING),
    *fields("orders_by_channel channel_mix", Map(STRING, LONG)),
    Field("preferred_channel", STRING),
    Field("last_contact_at", Map(STRING, TIMESTAMP)),
    Field("days_since_last_contact", INT),
    Field("open_case_count", LONG),
    Field("open_case_ids", Array(STRING)),
    Field("contact_reasons", Map(STRING, LONG)),
    Field("category_affinity", Map(STRING, DOUBLE)),
    Field("top_category", STRING),
    *fields("consent_email consent_sms consent_push consent_ads", BOOLEAN),
    Field("as_of", TIMESTAMP, nullable=False),
)

OPEN_CASE = Struct(
    Field("case_id", STRING),
    *fields("opened_at last_activity_at", TIMESTAMP),
    Field("channel_path", Array(STRING)),  # channels in order, repeats merged
    Field("channel_history", STRING),  # "social -> web -> call_center"
    Field("touches", LONG),
    *fields("last_status reason", STRING),
)
RECENT_INTERACTION = Struct(
    Field("channel", STRING),
    Field("ts", TIMESTAMP),
    *fields("type status summary", STRING),
)
FAILED_SELF_SERVICE = Struct(
    Field("ts", TIMESTAMP),
    *fields("channel type summary", STRING),
    Field("resolved_after", BOOLEAN),  # an agent closed a contact since
)

# One row per customer: what an agent needs on one screen, and what to do next.
AGENT_CONTEXT = Struct(
    Field("customer_id", STRING, nullable=False),
    *fields("display_name tier language country preferred_channel", STRING),
    Field("lifetime_value", _MONEY),
    Field("reporting_currency", STRING),
    Field("consents", Array(STRING)),  # purposes consented: email, sms, ...
    Field("open_case_count", LONG),
    Field("open_cases", Array(OPEN_CASE)),  # most recently active first
    Field("last_interactions", Array(RECENT_INTERACTION)),  # newest first
    Field("failed_self_service", Array(FAILED_SELF_SERVICE)),  # newest first
    Field("recent_sentiment", DOUBLE),
    Field("last_contact_at", TIMESTAMP),
    *fields("next_best_action next_best_action_reason next_best_action_rule", STRING),
    Field("as_of", TIMESTAMP, nullable=False),
)

# Who is in which marketer-defined audience; only customers with the required consent.
SEGMENT_MEMBERSHIP = Struct(
    Field("segment", STRING, nullable=False),
    Field("customer_id", STRING, nullable=False),
    Field("consent_purpose", STRING, nullable=False),
    Field("as_of", TIMESTAMP, nullable=False),
)

# Per day and channel: how customers adopt channels and how issues travel between them.
JOURNEY_METRICS = Struct(
    Field("day", DATE, nullable=False),
    Field("channel", STRING, nullable=False),
    *fields("active_customers new_adopters cumulative_adopters", LONG),
    Field("adoption_rate", DOUBLE),
    *fields("cases_started channel_switches", LONG),
    *fields("self_service_attempts escalations_to_agent", LONG),
    Field("escalation_rate", DOUBLE),
    Field("cases_resolved", LONG),
    *fields("mean_resolution_hours p90_resolution_hours", DOUBLE),
    *fields("service_contacts repeat_contacts_7d", LONG),
    Field("repeat_contact_rate", DOUBLE),
)

# The last segment build (jobs/segments.py), one row per segment: customers matching its
# predicate, those left out for lack of consent, and members; beside gold.segment_membership,
# whose later commits (an erasure's deletes) would otherwise hide the build's own.
SEGMENT_BUILD = Struct(
    Field("segment", STRING, nullable=False),
    Field("consent_purpose", STRING, nullable=False),
    *fields("matched excluded_no_consent members", LONG),
    *fields("as_of built_at", TIMESTAMP),
)

# An erasure request (jobs/privacy.py): the identifier only as the SHA-256 of its normalized
# form; the customer ids it resolved to; and, once done, the rows deleted per table by the run
# that completed it (one run serves every request pending at its start).
ERASURE_REQUEST = Struct(
    Field("request_id", STRING, nullable=False),
    *fields("kind identifier_sha256", STRING),
    Field("requested_at", TIMESTAMP),
    Field("customer_ids", Array(STRING)),
    *fields("resolved_at completed_at", TIMESTAMP),
    Field("rows_deleted", Map(STRING, LONG)),
)
