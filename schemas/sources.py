"""Landing-file contracts: what each source system exports, as it really exports it.

Files land as ``<landing>/<source>/<YYYY-MM-DD>/<name>.<csv|jsonl>``. Every field is read as a
string in bronze (a raw copy of what arrived); ``typed`` lists the fields that must be castable
to a type for the row to be accepted, and ``required`` those that must be present. Silver does
the real typing and standardization.

Identity: the field named by ``identity_key`` identifies one customer record in that source
(records without it are anonymous interactions). The simulator's truth file uses the same keys,
normalized with :func:`normalize_source_key`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.types import STRING, Array, DataType, Field, Struct

# A field layout: leaf names map to None (a string), nested records to a dict, arrays of records
# to a one-element list holding the record's layout.
Layout = dict[str, "Layout | list[Layout] | None"]


def to_struct(layout: Layout) -> Struct:
    """Turn a field layout into a schema whose every leaf is a string."""

    def to_type(value: object) -> DataType:
        if value is None:
            return STRING
        if isinstance(value, list):
            return Array(to_type(value[0]))
        return to_struct(value)  # type: ignore[arg-type]

    return Struct(*(Field(name, to_type(v)) for name, v in layout.items()))


def _leaves(names: str) -> Layout:
    return dict.fromkeys(names.split())


# The columns ingest adds to every bronze row, after the source's own fields: where the row came
# from (file, line, landing date), which run took it and when, and the raw line itself.
METADATA_COLUMNS = ("source_file", "line_no", "landing_date", "batch_id", "ingested_at", "_raw")


class FileFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


@dataclass(frozen=True)
class SourceSpec:
    """One source system's export: format, fields, and the rules a row must pass to enter bronze."""

    name: str
    channel: str
    file_format: FileFormat
    layout: Layout
    required: tuple[str, ...]
    typed: dict[str, str]
    identity_key: str

    @property
    def schema(self) -> Struct:
        """The parse schema: every leaf a string, so bad values are caught field by field."""
        return to_struct(self.layout)

    @property
    def columns(self) -> list[str]:
        return list(self.layout)


_ORDER: Layout = {
    **_leaves("order_id amount currency"),
    "items": [_leaves("sku category qty unit_price")],
    "ship_to": _leaves("name address postcode city phone"),
}

POS = SourceSpec(
    name="pos",
    channel="store",
    file_format=FileFormat.CSV,
    # basket: lines "sku:category:qty:unit_price" joined by "|"; ts: store-local time.
    layout=_leaves(
        "transaction_id store_id store_country till_id ts loyalty_card customer_name phone"
        " basket amount currency"
    ),
    required=("transaction_id", "store_id", "store_country", "ts", "amount"),
    typed={"ts": "timestamp", "amount": "decimal(12,2)"},
    identity_key="loyalty_card",
)

WEB = SourceSpec(
    name="web",
    channel="web",
    file_format=FileFormat.JSONL,
    # event_type: page_view | login | order | return_request | profile_update | consent_update
    layout={
        **_leaves("event_id ts cookie_id login_email site_country event_type page"),
        "order": _ORDER,
        "return_request": _leaves("order_id status reason error"),
        "profile": _leaves("first_name last_name dob phone address postcode city"),
        "consent": _leaves("email_opt_in sms_opt_in ads_opt_in"),
    },
    required=("event_id", "ts", "cookie_id", "event_type"),
    typed={"ts": "timestamp", "order.amount": "decimal(12,2)"},
    identity_key="login_email",
)

APP = SourceSpec(
    name="app",
    channel="app",
    file_format=FileFormat.JSONL,
    # event_type: app_open | signup | product_view | order | support_chat | push_open
    layout={
        **_leaves("event_id ts device_id account_id app_country platform push_opt_in event_type"),
        "account": _leaves("email first_name last_name phone dob"),
        "order": _ORDER,
        "chat": _leaves("case_id text"),
        "product": _leaves("sku category"),
    },
    required=("event_id", "ts", "device_id", "event_type"),
    typed={"ts": "timestamp", "order.amount": "decimal(12,2)", "push_opt_in": "boolean"},
    identity_key="account_id",
)

CALL_CENTER = SourceSpec(
    name="call_center",
    channel="call_center",
    file_format=FileFormat.CSV,
    # caller_name: as heard and typed by the agent; one case may span several calls.
    layout=_leaves(
        "call_id case_id ts_start caller_number caller_name center_country reason disposition"
        " handle_time_s transferred escalated"
    ),
    required=("call_id", "case_id", "ts_start", "center_country"),
    typed={
        "ts_start": "timestamp",
        "handle_time_s": "int",
        "transferred": "boolean",
        "escalated": "boolean",
    },
    identity_key="case_id",
)

SOCIAL = SourceSpec(
    name="social",
    channel="social",
    file_format=FileFormat.JSONL,
    # direction: inbound (customer wrote) | outbound (brand replied); text may carry email/phone.
    layout=_leaves("message_id ts platform handle display_name direction text sentiment case_id"),
    required=("message_id", "ts", "handle"),
    typed={"ts": "timestamp", "sentiment": "double"},
    identity_key="handle",
)

SOURCES: dict[str, SourceSpec] = {s.name: s for s in (POS, WEB, APP, CALL_CENTER, SOCIAL)}


def normalize_source_key(source: str, raw_key: str) -> str:
    """Canonical form of a source's identity key (emails and handles are case-insensitive)."""
    key = raw_key.strip()
    if source in ("web", "social"):
        key = key.lower().lstrip("@")
    return key


def record_id(source: str, raw_key: str) -> str:
    """The id of a customer record across the platform: ``<source>:<normalized key>``."""
    return f"{source}:{normalize_source_key(source, raw_key)}"
