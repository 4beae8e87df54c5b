"""Publish: gold -> the serving store the agent API and MCP tools read (``omnicdp publish``).

What is published, per customer_id:

- ``customer``: the golden record (``gold.customer_profile``) and the agent's screen
  (``gold.agent_context``) as JSON text, with name, tier and open cases for lookup answers;
- ``lookup_key``: every identifier any of the customer's records carries
  (``silver.customer_records`` via ``gold.identity_xref``): email, E.164 phone, loyalty id,
  social handle, device id; the values are silver's, so lookups normalize the same way
  (``serving.customers.normalize``);
- ``retired_id``: ids identity resolution retired by a merge and the id each lives on as today,
  chains followed (``gold.customer_id_history`` via ``identity.stable_ids.retired_ids``, when
  that table exists);
- ``timeline``: ``gold.customer_timeline``, one JSON event per interaction;
- ``segment`` / ``segment_member``: ``gold.segment_membership``, customer_ids only.

Rows stream from Spark to the store one partition at a time (``toLocalIterator``), in partitions
of at most ``_ROWS_PER_FETCH`` rows, so the driver holds a bounded slice, not a table, and
millions of customers publish on a laptop. The store
switches to the new generation in one transaction (``serving.store``): readers see the previous
publish until then, and a failed publish leaves the previous one in place.

Between publishes, the micro-batch pipeline calls ``publish_customers`` with the customers a
micro-batch touched: their ``customer``, ``lookup_key`` and ``timeline`` rows, built by the same
functions as a full publish from gold restricted to those customers (a semi-join, so only their
rows reach the driver), replace theirs in the current generation in one transaction. The gold
rows it reads are the micro-batch's own, computed and not stored yet (``jobs.microbatch``).
Segments and retired ids are recomputed by the next full publish.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from identity.stable_ids import retired_ids
from jobs.lakehouse.delta import customer_id_frame
from schemas.catalog import (
    GOLD_AGENT_CONTEXT,
    GOLD_CUSTOMER_ID_HISTORY,
    GOLD_CUSTOMER_PROFILE,
    GOLD_CUSTOMER_TIMELINE,
    GOLD_IDENTITY_XREF,
    GOLD_SEGMENT_MEMBERSHIP,
    SILVER_CUSTOMER_RECORDS,
    Table,
)
from schemas.settings import Settings
from schemas.tables import AGENT_CONTEXT, CUSTOMER_PROFILE, CUSTOMER_TIMELINE
from schemas.types import Struct
from serving.customers import LookupKind
from serving.store import open_store
from serving.store.base import (
    CUSTOMER,
    LOOKUP_KEY,
    RETIRED_ID,
    SEGMENT,
    SEGMENT_MEMBER,
    TIMELINE,
    StoreTable,
)

log = logging.getLogger(__name__)

_JSON_OPTIONS = {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ssXXX", "dateFormat": "yyyy-MM-dd"}
_TIMESTAMP_TEXT = "yyyy-MM-dd'T'HH:mm:ssXXX"

# lookup kind -> the silver.customer_records column that holds it
LOOKUP_COLUMNS = {
    LookupKind.EMAIL: "email",
    LookupKind.PHONE: "phone",
    LookupKind.LOYALTY_ID: "loyalty_id",
    LookupKind.HANDLE: "social_handle",
    LookupKind.DEVICE_ID: "device_id",
}


@dataclass
class PublishSummary:
    store: str
    generation: int
    rows: dict[str, int]
    seconds: float


@dataclass
class CustomersPublishSummary:
    """What ``publish_customers`` did: counts only."""

    store: str
    customers: int  # distinct customer_ids replaced (deleted, then rewritten if still in gold)
    generation: int | None  # the generation replaced in; None: left alone (unless_generation)
    rows: dict[str, int]  # rows written per store table
    seconds: float


def publish(
    spark: SparkSession, settings: Settings, progress: Callable[[str], None] | None = None
) -> PublishSummary:
    """Publish the current gold tables as the serving store's next generation."""
    store = open_store(settings.resolved_serving_url)
    started = time.monotonic()
    with store.publish() as publication:
        # Gold is read once the store's writer lock is held: a micro-batch that serves after
        # this point waits for the lock and then updates the new generation; one that served
        # the current generation before it but stores its gold rows after this snapshot serves
        # them again once stored (publish_customers' unless_generation).
        frames = serving_frames(spark, settings)
        for table, frame in frames.items():
            rows = publication.load(table, _bounded_rows(frame))
            if progress:
                progress(f"publish: {rows} rows into {table.name}")
    summary = PublishSummary(
        store=store.display_url,
        generation=publication.number,
        rows=publication.rows,
        seconds=round(time.monotonic() - started, 1),
    )
    log.info("publish: generation %d, rows %s", summary.generation, summary.rows)
    return summary


def publish_customers(
    spark: SparkSession,
    settings: Settings,
    customer_ids: Sequence[str],
    computed: Mapping[Table, DataFrame] | None = None,
    unless_generation: int | None = None,
) -> CustomersPublishSummary:
    """Replace these customers' rows in the serving store's current generation (module doc).

    ``customer_ids``: the customers a micro-batch touched, on the driver (duplicates are
    fine). A customer no longer in gold (merged away, erased) ends up deleted from the store.
    ``computed``: those customers' rows of some gold tables, computed but not stored yet, read
    instead of the tables (the micro-batch serves before it stores; ``jobs.microbatch``).
    ``unless_generation``: see ``serving.store.base.ServingStore.upsert_customers``.
    Raises ``serving.store.base.NotPublishedError`` before the first ``omnicdp publish``.
    """
    store = open_store(settings.resolved_serving_url)
    started = time.monotonic()
    ids = sorted(set(customer_ids))
    # The ids the store deletes are exactly the ids gold is restricted to.
    touched = customer_id_frame(spark, ids)
    given = computed or {}
    read = {t: given[t] if t in given else _read(spark, settings, t) for t in _CUSTOMER_INPUTS}
    frames = _in_column_order(_customer_frames(read, touched))
    upserted = store.upsert_customers(
        ids, {table: _rows(frame) for table, frame in frames.items()}, unless_generation
    )
    summary = CustomersPublishSummary(
        store=store.display_url,
        customers=len(ids) if upserted.generation is not None else 0,
        generation=upserted.generation,
        rows=upserted.rows,
        seconds=round(time.monotonic() - started, 1),
    )
    log.info("publish_customers: %d customers, rows %s", summary.customers, summary.rows)
    return summary


def serving_frames(spark: SparkSession, settings: Settings) -> dict[StoreTable, DataFrame]:
    """One DataFrame per store table, columns in the table's order; fails fast on missing gold."""
    read = {t: _read(spark, settings, t) for t in _REQUIRED}
    frames = {
        **_customer_frames(read),
        SEGMENT: _segments(read[GOLD_SEGMENT_MEMBERSHIP]),
        SEGMENT_MEMBER: _segment_members(read[GOLD_SEGMENT_MEMBERSHIP]),
    }
    history = _read(spark, settings, GOLD_CUSTOMER_ID_HISTORY, required=False)
    if history is not None:
        frames[RETIRED_ID] = _retired_ids(history)
    return _in_column_order(frames)


def _customer_frames(
    read: Mapping[Table, DataFrame], only: DataFrame | None = None
) -> dict[StoreTable, DataFrame]:
    """The per-customer store tables (``serving.store.base.CUSTOMER_TABLES``) from gold, of every
    customer, or only of the customers in ``only`` (a small ``customer_id`` frame).

    Restricting each input by customer_id before the builders run gives the same rows as
    filtering their output (every builder keys its rows by the input's customer_id), while
    Spark reads and joins only those customers' rows.
    """

    def of(table: Table) -> DataFrame:
        frame = read[table]
        return frame if only is None else frame.join(F.broadcast(only), "customer_id", "left_semi")

    return {
        CUSTOMER: _customers(of(GOLD_CUSTOMER_PROFILE), of(GOLD_AGENT_CONTEXT)),
        LOOKUP_KEY: _lookup_keys(read[SILVER_CUSTOMER_RECORDS], of(GOLD_IDENTITY_XREF)),
        TIMELINE: _timeline(of(GOLD_CUSTOMER_TIMELINE)),
    }


def _in_column_order(frames: Mapping[StoreTable, DataFrame]) -> dict[StoreTable, DataFrame]:
    return {table: frame.select(*table.columns) for table, frame in frames.items()}


# Rows per partition fetched to the driver. Gold's partitions follow its files, and a file
# holds hundreds of thousands of rows: at 100,000 people the timeline came in two partitions
# of 620,000 rows, task results of hundreds of MB that Spark fetches through its block
# manager, where one was lost (TaskResultLost) and failed the publish. 25,000 rows of the
# widest table (customer, agent context JSON) are a few tens of MB.
_ROWS_PER_FETCH = 25_000


def _bounded_rows(frame: DataFrame) -> Iterator[Row]:
    """A whole table's rows, a bounded partition on the driver at a time; Spark starts when
    iterated.

    The count is cheap where it matters: Spark prunes it to the rows of the gold table under
    the frame (the JSON is not built), so only the fetch computes the rows.
    """
    partitions = max(1, math.ceil(frame.count() / _ROWS_PER_FETCH))
    yield from _rows(frame.repartition(partitions))


def _rows(frame: DataFrame) -> Iterator[Row]:
    """The frame's rows, one partition on the driver at a time; Spark starts when iterated. A
    micro-batch's customers are a few partitions' worth: no count, no repartition."""
    yield from frame.toLocalIterator(prefetchPartitions=True)


_CUSTOMER_INPUTS = (
    GOLD_CUSTOMER_PROFILE,
    GOLD_AGENT_CONTEXT,
    SILVER_CUSTOMER_RECORDS,
    GOLD_IDENTITY_XREF,
    GOLD_CUSTOMER_TIMELINE,
)
_REQUIRED = (*_CUSTOMER_INPUTS, GOLD_SEGMENT_MEMBERSHIP)


def _read(
    spark: SparkSession, settings: Settings, table: Table, required: bool = True
) -> DataFrame | None:
    from delta.tables import DeltaTable

    path = table.path(settings)
    if DeltaTable.isDeltaTable(spark, path):
        return spark.read.format("delta").load(path)
    if required:
        raise FileNotFoundError(
            f"{table.qualified_name} not found at {path}: run the steps that build it first"
        )
    return None


def _json_of(schema: Struct, drop: tuple[str, ...] = ("customer_id",)) -> Column:
    """The row's fields (bar ``drop``) as one JSON object; null fields are left out."""
    fields = [F.col(f.name) for f in schema.fields if f.name not in drop]
    return F.to_json(F.struct(*fields), _JSON_OPTIONS)


def _customers(profile: DataFrame, context: DataFrame) -> DataFrame:
    profiles = profile.select(
        "customer_id",
        F.initcap("full_name").alias("_profile_name"),
        _json_of(CUSTOMER_PROFILE).alias("profile"),
    )
    contexts = context.select(
        "customer_id",
        "display_name",
        "tier",
        "open_case_count",
        _json_of(AGENT_CONTEXT).alias("context"),
    )
    joined = profiles.join(contexts, "customer_id", "full")
    return joined.withColumn("display_name", F.coalesce("display_name", "_profile_name"))


def _lookup_keys(records: DataFrame, xref: DataFrame) -> DataFrame:
    """One row per (kind, value, customer_id), from one join of records to their owners.

    The identifier columns become rows with ``explode`` rather than one join per kind and a
    union: a micro-batch's few customers then cost one join, not five.
    """
    owned = records.join(xref.select("record_id", "customer_id"), "record_id")
    keys = F.array(
        *(
            F.struct(F.lit(kind.value).alias("kind"), F.col(column).alias("value"))
            for kind, column in LOOKUP_COLUMNS.items()
        )
    )
    return (
        owned.select(F.explode(keys).alias("key"), "customer_id")
        .select("key.kind", "key.value", "customer_id")
        .where(F.col("value").isNotNull() & (F.col("value") != ""))
        .distinct()
    )


def _timeline(timeline: DataFrame) -> DataFrame:
    return timeline.select("customer_id", "seq", _json_of(CUSTOMER_TIMELINE).alias("event"))


def _segments(membership: DataFrame) -> DataFrame:
    return membership.groupBy(F.col("segment").alias("name")).agg(
        F.countDistinct("customer_id").alias("members"),
        F.min("consent_purpose").alias("consent_purpose"),
        F.date_format(F.max("as_of"), _TIMESTAMP_TEXT).alias("as_of"),
    )


def _segment_members(membership: DataFrame) -> DataFrame:
    return membership.dropDuplicates(["segment", "customer_id"])


def _retired_ids(history: DataFrame) -> DataFrame:
    """Each retired id, the id it lives on as today, and when and why it was retired."""
    retirements = history.where(F.col("event") == "merge").select(
        F.col("previous_id").alias("retired_id"),
        F.date_format("changed_at", _TIMESTAMP_TEXT).alias("changed_at"),
        "reason",
    )
    return retired_ids(history).join(retirements, "retired_id").dropDuplicates(["retired_id"])
