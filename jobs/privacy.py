"""Erasure: forget a customer everywhere the lakehouse and the serving store hold them.

A request names the customer by email, phone or customer id (``omnicdp privacy request``). Only
the SHA-256 of the normalized identifier is stored, in ``ops.erasure_requests``, so the request
log itself holds no contact details. ``omnicdp privacy erase`` (and the ``omnicdp_privacy``
DAG) then works through the pending requests:

1. **Resolve** each request to customer ids (an email or phone any of a customer's records
   carries, a current customer id, or a retired one followed to the id it lives on as) and save
   them on the request. From here on the run works from the saved ids, so a retry after a crash
   finds the same customers even when their records are already gone.
2. **Delete**, as Delta deletes (MERGE ... DELETE), in an order where every table a later
   deletion looks things up in is deleted after it: bronze rows (the customer's records by
   source key, and every row that silver interactions trace back to them by file and line, so
   anonymous web and app events stitched to them go too); quarantined lines that contain one of
   their emails or phone numbers; the serving store's rows (current and previous generation);
   the per-customer gold tables; identity links and id history; silver interactions and
   customer records; the records' linkage features; and last the xref, which maps customers
   to records.
3. **Close** the request with the rows deleted per table and the time.

A Delta delete on a table with deletion vectors (the per-customer gold tables,
:class:`schemas.catalog.Table`) only marks the rows deleted; the data files holding them stay in
the table. So each of those tables is purged (``REORG TABLE ... APPLY (PURGE)``) right after
its delete: the files are rewritten without the rows, and the old ones leave the table, for the
vacuum to remove.

Every deletion is idempotent, so running the job again after a failure completes the request;
a completed request is never processed again. Aggregates without a customer in them
(``gold.journey_metrics``, run reports, the trained model) are kept.

Deleted rows stay in older Delta versions (time travel) until ``omnicdp privacy vacuum``
removes files older than ``OMNICDP_ERASURE_RETENTION_HOURS`` (default 168, Delta's own default;
readers and writers slower than that could fail). An erasure is complete for the lakehouse once
a vacuum has run that long after it; the DAG vacuums after every erase.

Not covered: landing files are the source systems' exports and are never modified (DESIGN.md);
their retention is set where they are stored. They are not re-read (``ops.ingested_files``), so
erased rows do not come back, but a replay of landing from scratch would bring them back.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from identity.stable_ids import retired_ids
from jobs.lakehouse.delta import merge_commit_metric, read_table, table_exists
from jobs.lakehouse.spark_schema import spark_schema
from jobs.standardize import record_key
from schemas.catalog import (
    ALL_TABLES,
    BRONZE_TABLES,
    ERASURE_REQUESTS,
    GOLD_AGENT_CONTEXT,
    GOLD_CUSTOMER_360,
    GOLD_CUSTOMER_ID_HISTORY,
    GOLD_CUSTOMER_PROFILE,
    GOLD_CUSTOMER_TIMELINE,
    GOLD_IDENTITY_FEATURES,
    GOLD_IDENTITY_LINKS,
    GOLD_IDENTITY_XREF,
    GOLD_SEGMENT_MEMBERSHIP,
    QUARANTINE_ROWS,
    SILVER_CUSTOMER_RECORDS,
    SILVER_INTERACTIONS,
    Table,
)
from schemas.identifiers import normalize_email, normalize_phone
from schemas.settings import Settings
from schemas.sources import SOURCES, SourceSpec
from schemas.tables import ERASURE_REQUEST
from serving.store import open_store

log = logging.getLogger(__name__)

# Gold tables with one or more rows per customer_id.
CUSTOMER_TABLES = (
    GOLD_CUSTOMER_PROFILE,
    GOLD_CUSTOMER_360,
    GOLD_CUSTOMER_TIMELINE,
    GOLD_AGENT_CONTEXT,
    GOLD_SEGMENT_MEMBERSHIP,
)


# Tables erased or vacuumed at once: each takes a thread of the driver; more than this only
# queues on a small machine's cores.
_CONCURRENT_TABLES = 4


class PrivacyError(ValueError):
    """A request that cannot be accepted; the message never repeats the identifier."""


class IdentifierKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    CUSTOMER_ID = "customer_id"


@dataclass(frozen=True)
class ErasureSummary:
    """What one erase run did (counts only)."""

    requests: int
    customers: int
    rows_deleted: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def identifier_hash(kind: IdentifierKind, value: str) -> str:
    """SHA-256 of the identifier normalized as silver normalizes it (so hashes meet silver's)."""
    normalized = {
        IdentifierKind.EMAIL: normalize_email,
        IdentifierKind.PHONE: normalize_phone,
        IdentifierKind.CUSTOMER_ID: lambda v: v.strip() or None,
    }[kind](value)
    if normalized is None:
        raise PrivacyError(f"the {kind} given is not a valid {kind}; nothing was recorded")
    return hashlib.sha256(normalized.encode()).hexdigest()


@dataclass(frozen=True)
class RecordedRequest:
    """An erasure request as ``ops.erasure_requests`` holds it after ``request_erasure``."""

    request_id: str
    new: bool  # False: this request (same id, same identifier) was already recorded
    completed_at: datetime | None  # None: pending, for the next ``erase`` to carry out


def request_erasure(
    spark: SparkSession,
    settings: Settings,
    kind: IdentifierKind,
    value: str,
    request_id: str | None = None,
) -> RecordedRequest:
    """Record an erasure request (the identifier's hash only).

    A request id names one request. The same id for the same identifier again records nothing
    new and says how far the request got; for another identifier it is refused
    (``PrivacyError``): recording nothing without a word would leave the person who asked in
    every table. One MERGE inserts the row only when the id is new, so of two writers racing
    with one id, one fails on Delta's conflict check instead of both believing they recorded.
    """
    request_id = request_id or f"erase-{uuid.uuid4().hex[:12]}"
    sha256 = identifier_hash(kind, value)
    row = spark.createDataFrame(
        [(request_id, str(kind), sha256, datetime.now(UTC), *[None] * 4)],
        spark_schema(ERASURE_REQUEST),
    )
    if not table_exists(spark, settings, ERASURE_REQUESTS):
        row.limit(0).write.format("delta").save(ERASURE_REQUESTS.path(settings))
    target = _delta(spark, settings, ERASURE_REQUESTS)
    merge = (
        target.alias("t")
        .merge(row.alias("s"), "t.request_id = s.request_id")
        .whenNotMatchedInsertAll()
    )
    new = merge_commit_metric(target, merge, "numTargetRowsInserted") == 1
    stored = _requests(spark, settings).where(F.col("request_id") == request_id).first()
    if (stored.kind, stored.identifier_sha256) != (str(kind), sha256):
        raise PrivacyError(
            f"erasure request {request_id} is already recorded for another identifier; "
            "nothing was recorded: give this request its own --request-id"
        )
    log.info("erasure request %s %s (%s)", request_id, "recorded" if new else "exists", kind)
    return RecordedRequest(request_id, new, stored.completed_at)


def erase(
    spark: SparkSession, settings: Settings, progress: Callable[[str], None] | None = None
) -> ErasureSummary:
    """Carry out every pending erasure request (module doc); safe to re-run at any point."""
    started = time.monotonic()
    if not table_exists(spark, settings, ERASURE_REQUESTS):
        return ErasureSummary(requests=0, customers=0)
    _resolve_pending(spark, settings)
    pending = _requests(spark, settings).where(F.col("completed_at").isNull())
    request_ids = [r.request_id for r in pending.select("request_id").collect()]
    if not request_ids:
        return ErasureSummary(requests=0, customers=0)
    targets = (
        pending.select(F.explode("customer_ids").alias("customer_id")).distinct().localCheckpoint()
    )
    customers = targets.count()
    deleted = _delete_everything(spark, settings, targets, progress or (lambda _: None))
    _complete(spark, settings, request_ids, deleted)
    summary = ErasureSummary(
        requests=len(request_ids),
        customers=customers,
        rows_deleted=deleted,
        seconds=round(time.monotonic() - started, 1),
    )
    log.info(
        "erased %d customers for %d requests: %d rows",
        customers,
        len(request_ids),
        sum(deleted.values()),
    )
    return summary


def vacuum(spark: SparkSession, settings: Settings) -> list[str]:
    """Remove data files older than the retention from every table (erased rows included);
    the tables vacuumed. The tables are vacuumed side by side: each one's vacuum is a few
    small Spark jobs and file listings (on an 80-person lakehouse, 2 cores: 56.6 s one by one,
    50.7 s four at a time: the two cores were the limit)."""
    hours = settings.erasure_retention_hours
    present = [t for t in ALL_TABLES if table_exists(spark, settings, t)]
    with _session_conf(spark, _vacuum_conf(settings)):
        _side_by_side([lambda t=t: _delta(spark, settings, t).vacuum(hours) for t in present])
    log.info("vacuumed %d tables with %.0f h retention", len(present), hours)
    return [t.qualified_name for t in present]


def _side_by_side(calls: list[Callable[[], object]]) -> list[object]:
    """Run ``calls`` in threads of one Spark session (jobs of different tables do not wait for
    each other's driver work); their results in order, the first error raised."""
    with ThreadPoolExecutor(max_workers=_CONCURRENT_TABLES) as pool:
        return list(pool.map(lambda call: call(), calls))


def _vacuum_conf(settings: Settings) -> dict[str, str]:
    return {
        # Delta refuses a retention under its 7-day default unless told the caller knows why.
        "spark.databricks.delta.retentionDurationCheck.enabled": str(
            settings.erasure_retention_hours >= 168
        ).lower(),
        # Vacuum lists a table's files in this many tasks (10,000 by default, sized for big
        # clusters): on a small table that is minutes of task overhead for nothing.
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(
            settings.shuffle_partitions
        ),
    }


@contextmanager
def _session_conf(spark: SparkSession, conf: dict[str, str]) -> Iterator[None]:
    """Set session configuration for the block, then restore what was there."""
    previous = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


# --- resolving requests to customers ----------------------------------------------------------


def _requests(spark: SparkSession, settings: Settings) -> DataFrame:
    return read_table(spark, settings, ERASURE_REQUESTS)


def _resolve_pending(spark: SparkSession, settings: Settings) -> None:
    """Save the customer ids of every request not resolved yet (an empty list: none held)."""
    unresolved = _requests(spark, settings).where(F.col("customer_ids").isNull())
    found = (
        unresolved.join(
            _identifier_owners(spark, settings),
            (unresolved.identifier_sha256 == F.col("sha256"))
            & (unresolved.kind == F.col("owner_kind")),
            "left",
        )
        .groupBy("request_id")
        .agg(F.array_sort(F.collect_set("customer_id")).alias("customer_ids"))
        .withColumn("resolved_at", F.current_timestamp())
    )
    (
        _delta(spark, settings, ERASURE_REQUESTS)
        .alias("t")
        .merge(found.alias("s"), "t.request_id = s.request_id AND t.customer_ids IS NULL")
        .whenMatchedUpdate(set={"customer_ids": "s.customer_ids", "resolved_at": "s.resolved_at"})
        .execute()
    )


def _identifier_owners(spark: SparkSession, settings: Settings) -> DataFrame:
    """``owner_kind, sha256, customer_id``: every identifier a request can name, hashed."""
    xref = read_table(spark, settings, GOLD_IDENTITY_XREF).select("record_id", "customer_id")
    records = read_table(spark, settings, SILVER_CUSTOMER_RECORDS).join(xref, "record_id")
    owners = [
        records.select(*_owner(IdentifierKind.EMAIL, "email"), "customer_id"),
        records.select(*_owner(IdentifierKind.PHONE, "phone"), "customer_id"),
        xref.select(*_owner(IdentifierKind.CUSTOMER_ID, "customer_id"), "customer_id"),
    ]
    if table_exists(spark, settings, GOLD_CUSTOMER_ID_HISTORY):
        retired = retired_ids(read_table(spark, settings, GOLD_CUSTOMER_ID_HISTORY))
        owners.append(
            retired.select(
                *_owner(IdentifierKind.CUSTOMER_ID, "retired_id"),
                F.col("surviving_id").alias("customer_id"),
            )
        )
    union = owners[0]
    for frame in owners[1:]:
        union = union.unionByName(frame)
    return union.where(F.col("sha256").isNotNull())


def _owner(kind: IdentifierKind, column: str) -> list[Column]:
    """``owner_kind, sha256`` of one identifier column (a null value hashes to null)."""
    return [F.lit(str(kind)).alias("owner_kind"), F.sha2(F.col(column), 256).alias("sha256")]


# --- deleting ---------------------------------------------------------------------------------


def _delete_everything(
    spark: SparkSession, settings: Settings, targets: DataFrame, progress: Callable[[str], None]
) -> dict[str, int]:
    """Delete the targets' rows table by table, in the order the module doc gives: the tables
    of one phase side by side, as no deletion looks anything up in a table of its own phase."""
    xref = read_table(spark, settings, GOLD_IDENTITY_XREF)
    records = xref.join(targets, "customer_id", "left_semi").select("record_id", "source")
    records = records.localCheckpoint()
    record_ids = records.select("record_id")
    lineage = (
        read_table(spark, settings, SILVER_INTERACTIONS)
        .join(record_ids, "record_id", "left_semi")
        .select("source", "source_file", "line_no")
    )
    by_customer = partial(_delete_naming, spark, settings, ids=targets, columns=("customer_id",))
    by_record = partial(_delete_naming, spark, settings, ids=record_ids, columns=("record_id",))
    links = partial(by_record, columns=("record_id_l", "record_id_r"))
    bronze = {
        table: partial(_delete_bronze, spark, settings, SOURCES[source], records, lineage)
        for source, table in BRONZE_TABLES.items()
    }
    phases: list[dict[Table, Callable[[Table], int]]] = [
        {
            **bronze,
            QUARANTINE_ROWS: partial(_delete_quarantined, spark, settings, records),
            **dict.fromkeys(CUSTOMER_TABLES, by_customer),
            GOLD_IDENTITY_LINKS: links,
            GOLD_CUSTOMER_ID_HISTORY: partial(_delete_history, spark, settings, targets),
        },
        dict.fromkeys(
            (SILVER_INTERACTIONS, SILVER_CUSTOMER_RECORDS, GOLD_IDENTITY_FEATURES), by_record
        ),
        {GOLD_IDENTITY_XREF: by_record},
    ]
    deleted = {"serving": _erase_serving(settings, targets)}
    for phase in phases:
        present = [t for t in phase if table_exists(spark, settings, t)]
        rows = _side_by_side([partial(phase[t], t) for t in present])
        for table, count in zip(present, rows, strict=True):
            deleted[table.qualified_name] = count
            progress(f"erase: {count} rows from {table.qualified_name}")
    return deleted


def _delete_bronze(
    spark: SparkSession,
    settings: Settings,
    spec: SourceSpec,
    records: DataFrame,
    lineage: DataFrame,
    table: Table,
) -> int:
    """Rows of the targets' records by source key, and rows silver traced to them."""
    bronze = read_table(spark, settings, table)
    keys = records.where(F.col("source") == spec.name).select(
        F.expr("substr(record_id, length(source) + 2)").alias("_key")
    )
    by_key = (
        bronze.withColumn("_key", record_key(spec.name))
        .join(keys, "_key", "left_semi")
        .select("source_file", "line_no")
    )
    traced = lineage.where(F.col("source") == spec.name).select("source_file", "line_no")
    rows = by_key.unionByName(traced).distinct()
    return _delete_matching(spark, settings, table, rows, ["source_file", "line_no"])


def _delete_quarantined(
    spark: SparkSession, settings: Settings, records: DataFrame, table: Table
) -> int:
    """Quarantined lines (never parsed, so not traceable by key) containing one of the
    targets' emails, or a phone's last 8 digits among the line's digits (however it was typed:
    "010-3822-5148" holds the digits of +821038225148's subscriber number)."""
    details = read_table(spark, settings, SILVER_CUSTOMER_RECORDS).join(
        records.select("record_id"), "record_id", "left_semi"
    )
    needles = (
        details.select(F.col("email").alias("needle"), F.lit(False).alias("digits"))
        .unionByName(
            details.select(
                F.substring("phone", -8, 8).alias("needle"),
                F.lit(True).alias("digits"),
            )
        )
        .where(F.length("needle") >= 8)
        .distinct()
    )
    quarantine = read_table(spark, settings, table)
    text = F.lower(F.col("_raw"))
    digits = F.regexp_replace("_raw", "[^0-9]", "")
    hits = (
        quarantine.join(
            F.broadcast(needles),
            F.when(F.col("digits"), digits.contains(F.col("needle"))).otherwise(
                text.contains(F.col("needle"))
            ),
        )
        .select("source_file", "line_no")
        .distinct()
    )
    return _delete_matching(spark, settings, table, hits, ["source_file", "line_no"])


def _delete_history(
    spark: SparkSession, settings: Settings, targets: DataFrame, table: Table
) -> int:
    """History rows that name one of the targets or an id retired into one of them."""
    history = read_table(spark, settings, table)
    retired = (
        retired_ids(history)
        .join(targets.withColumnRenamed("customer_id", "surviving_id"), "surviving_id")
        .select(F.col("retired_id").alias("customer_id"))
    )
    ids = targets.unionByName(retired)
    return _delete_naming(spark, settings, table, ids, ("previous_id", "current_id"))


def _delete_matching(
    spark: SparkSession, settings: Settings, table: Table, keys: DataFrame, columns: list[str]
) -> int:
    """Delete the rows of ``table`` whose ``columns`` equal a row of ``keys``; rows deleted."""
    condition = " AND ".join(f"t.`{c}` = s.`{c}`" for c in columns)
    return _merge_delete(spark, settings, table, keys.select(*columns), condition)


def _delete_naming(
    spark: SparkSession, settings: Settings, table: Table, ids: DataFrame, columns: tuple[str, ...]
) -> int:
    """Delete the rows of ``table`` where any of ``columns`` holds one of ``ids`` (a one-column
    frame); one MERGE, so the table gets one new version however many columns."""
    source = ids.select(ids.columns[0]).toDF("id")
    condition = " OR ".join(f"t.`{c}` = s.id" for c in columns)
    return _merge_delete(spark, settings, table, source, condition)


def _merge_delete(
    spark: SparkSession, settings: Settings, table: Table, source: DataFrame, condition: str
) -> int:
    """One MERGE ... DELETE; rows deleted, from its commit."""
    target = _delta(spark, settings, table)
    merge = target.alias("t").merge(source.distinct().alias("s"), condition).whenMatchedDelete()
    deleted = merge_commit_metric(target, merge, "numTargetRowsDeleted")
    if table.deletion_vectors:
        _purge(spark, settings, table)
    return deleted


def _purge(spark: SparkSession, settings: Settings, table: Table) -> None:
    """Rewrite the table's files that hold rows deleted only by a deletion vector.

    With deletion vectors a delete marks rows in a small side file and leaves them in the data
    file, which stays in the table: the vacuum would never remove them. Run after every delete
    on a table the catalog gives deletion vectors, deleting or not, so a rerun after a crash
    between the two purges too. Other tables have none to purge: a REORG there commits nothing
    and only costs a look at every file (0.4-1.3 s a table in the benchmark lakehouse).
    """
    spark.sql(f"REORG TABLE delta.`{table.path(settings)}` APPLY (PURGE)")


def _erase_serving(settings: Settings, targets: DataFrame) -> int:
    """Delete the targets from every generation the serving store holds; rows deleted."""
    customer_ids = [r.customer_id for r in targets.toLocalIterator()]  # the requested few
    store = open_store(settings.resolved_serving_url)
    try:
        return store.erase_customers(customer_ids)
    finally:
        store.close()


def _complete(
    spark: SparkSession, settings: Settings, request_ids: Iterable[str], deleted: dict[str, int]
) -> None:
    done = spark.createDataFrame([(r,) for r in request_ids], "request_id string").select(
        "request_id",
        F.current_timestamp().alias("completed_at"),
        F.create_map(
            *[x for k, v in deleted.items() for x in (F.lit(k), F.lit(v).cast("long"))]
        ).alias("rows_deleted"),
    )
    (
        _delta(spark, settings, ERASURE_REQUESTS)
        .alias("t")
        .merge(done.alias("s"), "t.request_id = s.request_id")
        .whenMatchedUpdate(set={"completed_at": "s.completed_at", "rows_deleted": "s.rows_deleted"})
        .execute()
    )


def _delta(spark: SparkSession, settings: Settings, table: Table) -> DeltaTable:
    return DeltaTable.forPath(spark, table.path(settings))
