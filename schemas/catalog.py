"""The one table catalog: every bronze, silver, gold and quarantine table and its path.

No other module builds a table path; they ask the catalog, so moving the lakehouse to object
storage is a setting (``OMNICDP_LAKEHOUSE=s3a://...``), not a code change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.settings import Settings


class Stage(StrEnum):
    """The step of the daily pipeline that writes a table. Gates, orchestration (which tables a
    step publishes as Airflow assets) and tests ask :func:`stage_tables` instead of keeping
    their own lists."""

    INGEST = "ingest"
    STANDARDIZE = "standardize"
    IDENTITY = "identity"
    CURATED = "curated"
    SEGMENTS = "segments"
    PRIVACY = "privacy"


class Layer(StrEnum):
    BRONZE = "bronze"
    SILVER = "silver"
    GOLD = "gold"
    QUARANTINE = "quarantine"
    OPS = "ops"


@dataclass(frozen=True)
class Table:
    """A Delta table of the lakehouse.

    ``deletion_vectors``: the table is written with Delta deletion vectors, so a delete or a
    selective overwrite marks the rows it removes in a small side file instead of rewriting
    every data file that holds one. Only for the per-customer tables each micro-batch replaces
    a few hundred customers' rows of (:func:`jobs.lakehouse.delta.replace_customer_rows`): in the
    100,000-person benchmark lakehouse that cut replacing about 3,000 rows of the 1.1-million-row
    timeline from 3.3-4.4 s to 1.0-1.7 s. Scans of a table with them took about twice as long
    (0.35 s against 0.8 s for the same timeline), which is why the silver tables and those a
    micro-batch only adds to or merges into do not have them. Readers of these tables need
    deletion-vector support (Spark with Delta 2.3 or later; delta-rs through its query engine,
    ``deltalake.QueryBuilder``, not through its PyArrow dataset).

    ``row_key``: for a table of rows per customer that a micro-batch replaces customer by
    customer, the columns a row is unique on (``jobs.lakehouse.delta.store_customer_rows``).

    ``internal``: state a step keeps for its own next run (identity's features and id history)
    or for its own commands (the segment build's counts); no other step reads it, so
    :func:`stage_tables` leaves it out.
    """

    layer: Layer
    name: str
    description: str
    stage: Stage
    deletion_vectors: bool = False
    row_key: tuple[str, ...] = ()
    internal: bool = False

    @property
    def properties(self) -> dict[str, str]:
        """The Delta table properties it is written with (``jobs.lakehouse.delta``)."""
        return {"delta.enableDeletionVectors": "true"} if self.deletion_vectors else {}

    @property
    def qualified_name(self) -> str:
        return f"{self.layer}.{self.name}"

    def path(self, settings: Settings) -> str:
        """Where the Delta table lives under the configured lakehouse root."""
        return f"{str(settings.lakehouse).rstrip('/')}/{self.layer}/{self.name}"


BRONZE_POS = Table(
    Layer.BRONZE, "pos_transactions", "POS till exports, one row per basket", Stage.INGEST
)
BRONZE_WEB = Table(Layer.BRONZE, "web_events", "web clickstream and account events", Stage.INGEST)
BRONZE_APP = Table(Layer.BRONZE, "app_events", "mobile app events", Stage.INGEST)
BRONZE_CALL_CENTER = Table(
    Layer.BRONZE, "call_center_calls", "call center CRM call log", Stage.INGEST
)
BRONZE_SOCIAL = Table(Layer.BRONZE, "social_messages", "social DMs and mentions", Stage.INGEST)
QUARANTINE_ROWS = Table(
    Layer.QUARANTINE, "rejected_rows", "input lines that could not be parsed", Stage.INGEST
)
INGESTED_FILES = Table(
    Layer.OPS, "ingested_files", "one row per landing file ingested", Stage.INGEST
)
ERASURE_REQUESTS = Table(
    Layer.OPS,
    "erasure_requests",
    "erasure requests (identifier hashes) and what each erased",
    Stage.PRIVACY,
)

SILVER_CUSTOMER_RECORDS = Table(
    Layer.SILVER,
    "customer_records",
    "one standardized identity record per source key",
    Stage.STANDARDIZE,
)
SILVER_INTERACTIONS = Table(
    Layer.SILVER, "interactions", "every interaction in one schema", Stage.STANDARDIZE
)

GOLD_IDENTITY_LINKS = Table(
    Layer.GOLD, "identity_links", "scored record pairs with evidence", Stage.IDENTITY
)
GOLD_IDENTITY_XREF = Table(
    Layer.GOLD,
    "identity_xref",
    "source record -> customer_id",
    Stage.IDENTITY,
    row_key=("record_id",),
)
GOLD_IDENTITY_FEATURES = Table(
    Layer.GOLD,
    "identity_features",
    "each resolved record as the linkage model compares it (its PII is erased with the record)",
    Stage.IDENTITY,
    internal=True,
)
GOLD_CUSTOMER_ID_HISTORY = Table(
    Layer.GOLD, "customer_id_history", "merges and splits of ids", Stage.IDENTITY, internal=True
)
GOLD_CUSTOMER_PROFILE = Table(
    Layer.GOLD,
    "customer_profile",
    "golden record with provenance",
    Stage.IDENTITY,
    deletion_vectors=True,
    row_key=("customer_id",),
)
GOLD_CUSTOMER_360 = Table(
    Layer.GOLD,
    "customer_360",
    "RFM, value, channels, cases, consent",
    Stage.CURATED,
    deletion_vectors=True,
    row_key=("customer_id",),
)
GOLD_CUSTOMER_TIMELINE = Table(
    Layer.GOLD,
    "customer_timeline",
    "every interaction of a customer, time-ordered, summarized",
    Stage.CURATED,
    deletion_vectors=True,
    row_key=("interaction_id",),
)
GOLD_AGENT_CONTEXT = Table(
    Layer.GOLD,
    "agent_context",
    "one screen per customer for an agent, with next best action",
    Stage.CURATED,
    deletion_vectors=True,
    row_key=("customer_id",),
)
GOLD_SEGMENT_MEMBERSHIP = Table(
    Layer.GOLD, "segment_membership", "marketers' audiences, consent applied", Stage.SEGMENTS
)
SEGMENT_BUILDS = Table(
    Layer.OPS,
    "segment_builds",
    "the last segment build: per segment, customers matched, left out for consent, members",
    Stage.SEGMENTS,
    internal=True,
)
GOLD_JOURNEY_METRICS = Table(
    Layer.GOLD,
    "journey_metrics",
    "adoption, switches, escalations, resolution per day/channel",
    Stage.CURATED,
)

ALL_TABLES: tuple[Table, ...] = (
    BRONZE_POS,
    BRONZE_WEB,
    BRONZE_APP,
    BRONZE_CALL_CENTER,
    BRONZE_SOCIAL,
    QUARANTINE_ROWS,
    INGESTED_FILES,
    SILVER_CUSTOMER_RECORDS,
    SILVER_INTERACTIONS,
    GOLD_IDENTITY_LINKS,
    GOLD_IDENTITY_XREF,
    GOLD_IDENTITY_FEATURES,
    GOLD_CUSTOMER_ID_HISTORY,
    GOLD_CUSTOMER_PROFILE,
    GOLD_CUSTOMER_360,
    GOLD_CUSTOMER_TIMELINE,
    GOLD_AGENT_CONTEXT,
    GOLD_SEGMENT_MEMBERSHIP,
    SEGMENT_BUILDS,
    GOLD_JOURNEY_METRICS,
)


def stage_tables(stage: Stage) -> tuple[Table, ...]:
    """The tables ``stage`` writes for other steps to read, in catalog order (its internal
    state left out)."""
    return tuple(t for t in ALL_TABLES if t.stage == stage and not t.internal)


@dataclass(frozen=True)
class Checkpoint:
    """Where a streaming query keeps its offsets and commits: under the lakehouse, beside the
    tables it writes, so a copy of the lakehouse carries its streams' positions along."""

    name: str
    description: str

    def path(self, settings: Settings) -> str:
        return f"{str(settings.lakehouse).rstrip('/')}/_checkpoints/{self.name}"


STREAM_EVENTS_CHECKPOINT = Checkpoint(
    "stream_events", "omnicdp stream: web and app landing files -> bronze, quarantine, manifest"
)

MICROBATCH_CHECKPOINT = Checkpoint(
    "microbatch",
    "omnicdp microbatch: new web and app bronze rows -> silver, identity, curated, serving",
)

BRONZE_TABLES: dict[str, Table] = {
    "pos": BRONZE_POS,
    "web": BRONZE_WEB,
    "app": BRONZE_APP,
    "call_center": BRONZE_CALL_CENTER,
    "social": BRONZE_SOCIAL,
}


def bronze_table(source: str) -> Table:
    """The bronze table of one source system (names as in ``schemas.sources.SOURCES``)."""
    return BRONZE_TABLES[source]
