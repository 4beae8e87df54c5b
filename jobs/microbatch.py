"""From new web and app events to the agent's screen: silver, identity, curated rows, serving.

``omnicdp stream`` lands web and app events in bronze. ``omnicdp microbatch`` takes it from
there: a second Structured Streaming query reads the rows the bronze tables gain (Delta's
streaming source, checkpointed in ``MICROBATCH_CHECKPOINT``) and, per micro-batch, for just
the records and customers those rows touch:

1. rebuilds their silver rows (:func:`jobs.standardize.standardize_increment`);
2. gives the new records a customer id, joining an existing customer or starting a new one,
   and computes the xref rows and golden records of every customer the micro-batch touched:
   the owners of its known records and the customers its new records joined or started
   (:func:`identity.increment.resolve_increment`);
3. computes their timeline, 360 and agent context rows (:func:`jobs.curate.curate_customers`);
4. replaces their rows in the serving store's current generation, where the agent API reads
   them (:func:`jobs.publish.publish_customers`), from the rows computed at steps 2 and 3;
5. stores those rows in gold, one commit per table, gold.identity_xref last
   (:func:`jobs.lakehouse.delta.store_customer_rows`), and serves them again if a full
   ``omnicdp publish`` switched the store to a new generation since step 4: that publish may
   have read gold before step 5.

Serving comes before storing because the agent waits for serving only: the five gold commits
took 9.7-11.9 s of each 1,000-event micro-batch on the benchmark lakehouse (11.7-14.6 s of each
10,000-event one). Known and new records are served together: matching new records first
delays the known customers' events, but serving those first meant curating and serving the
customers new records joined a second time, after matching, and a new record's events reached
the agent 33-45 s after the known customers' ones. The xref is stored last so that until the
micro-batch is done its new records are new: a run killed before then matches them again on
restart, to the same ids.

``--once`` (trigger ``availableNow``) processes every bronze row not yet processed and stops,
for schedulers (the ``omnicdp_microbatch`` DAG runs ``stream --once`` and then this); without
it a micro-batch starts every ``OMNICDP_STREAM_INTERVAL_SECONDS`` until Ctrl-C / SIGTERM.

Exactly once: the checkpoint commits a micro-batch only after all five steps returned, so a
micro-batch killed half-way is run again on restart with the same bronze rows. Every step
rebuilds its rows from the current tables and writes them with a keyed Delta MERGE or a
selective overwrite of the touched customers (or one store transaction), so running a
micro-batch again writes the same rows: nothing is lost, nothing doubles. A micro-batch killed
after serving and before storing leaves the store ahead of gold until its restart stores the
rows. Replaying files that were already ingested adds no bronze rows, so it triggers nothing
here. Commits that rewrite bronze rows instead of adding them (an erasure, a killed ingest's
leftovers being replaced) are skipped (``skipChangeCommits``): they carry no new events.

What the increments do not decide, the nightly batch does: merging two customers a new record
bridges, moving a changed record to another customer, aggregates over everyone (journey
metrics, segments). It rebuilds every table from bronze, so it also reconciles whatever an
increment got wrong.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from identity.increment import IdentityIncrement, resolve_increment
from jobs.curate import curate_customers
from jobs.lakehouse.delta import latest_version, store_customer_rows, table_exists
from jobs.publish import CustomersPublishSummary, publish_customers
from jobs.standardize import (
    SilverIncrement,
    standardize_increment,
    standardized_bronze_versions,
    touched_keys,
)
from jobs.stream import STREAM_SOURCES, MicroBatches, Progress, run_until_done
from schemas.catalog import MICROBATCH_CHECKPOINT, bronze_table
from schemas.settings import Settings

log = logging.getLogger(__name__)

QUERY_NAME = "omnicdp_microbatch"


@dataclass
class MicrobatchSummary:
    """What one ``omnicdp microbatch`` run did, summed over its micro-batches (counts only)."""

    once: bool
    micro_batches: int = 0
    bronze_rows: int = 0
    records: int = 0
    interactions: int = 0
    new_records: int = 0
    joined: int = 0
    new_customers: int = 0
    undecided: int = 0
    customers: int = 0  # customers served: owners of known records, joined or started by new
    served_rows: dict[str, int] = field(default_factory=dict)
    served_at: float | None = None  # time.monotonic() when the last customers were served
    step_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def run_microbatches(
    spark: SparkSession,
    settings: Settings,
    once: bool = True,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> MicrobatchSummary:
    """Carry new bronze web and app rows through to the serving store (module doc)."""
    started = time.monotonic()
    summary = MicrobatchSummary(once)
    sources = [s for s in STREAM_SOURCES if table_exists(spark, settings, bronze_table(s))]
    if sources:
        work = _Increment(settings, summary, progress or log.info)
        micro_batches = MicroBatches(work)
        query = _start_query(spark, settings, sources, micro_batches, once)
        run_until_done(query, micro_batches, stop)
    summary.seconds = time.monotonic() - started
    return summary


def new_bronze_keys(
    spark: SparkSession, settings: Settings, source: str, standardized: dict[str, int]
) -> DataFrame:
    """A stream of ``source, key, anonymous_key`` of the rows ``source``'s bronze table gains.

    Its first start (no checkpoint yet) begins after the bronze version the last full
    standardize read (``standardized``): silver already holds everything before it.
    """
    path = bronze_table(source).path(settings)
    reader = (
        spark.readStream.format("delta")
        .option("skipChangeCommits", "true")
        .option("maxFilesPerTrigger", settings.stream_max_files_per_trigger)
    )
    if source in standardized:
        latest = latest_version(spark, path)
        after = standardized[source] + 1
        reader = reader.option("startingVersion", str(after) if after <= latest else "latest")
    return touched_keys(reader.load(path), source)


def _start_query(
    spark: SparkSession,
    settings: Settings,
    sources: list[str],
    micro_batches: MicroBatches,
    once: bool,
) -> StreamingQuery:
    standardized = standardized_bronze_versions(spark, settings)
    keys = new_bronze_keys(spark, settings, sources[0], standardized)
    for source in sources[1:]:
        keys = keys.unionByName(new_bronze_keys(spark, settings, source, standardized))
    interval = f"{settings.stream_interval_seconds} seconds"
    trigger: dict[str, Any] = {"availableNow": True} if once else {"processingTime": interval}
    return (
        keys.writeStream.queryName(QUERY_NAME)
        .option("checkpointLocation", MICROBATCH_CHECKPOINT.path(settings))
        .foreachBatch(micro_batches)
        .trigger(**trigger)
        .start()
    )


class _Increment:
    """The work of one micro-batch: the three steps of the module doc, then a progress line."""

    def __init__(self, settings: Settings, summary: MicrobatchSummary, progress: Progress) -> None:
        self._settings = settings
        self._summary = summary
        self._progress = progress
        self._lock = threading.Lock()

    def __call__(self, keys: DataFrame, micro_batch: int) -> None:
        spark, settings = keys.sparkSession, self._settings
        clock = _Clock()
        touched = keys.groupBy("source", "key", "anonymous_key").count().localCheckpoint()
        bronze_rows = int(touched.agg(F.sum("count")).first()[0] or 0)
        with clock("silver"):
            silver = standardize_increment(spark, settings, touched.drop("count"))
        with clock("identity"):
            identity = resolve_increment(spark, settings, silver.affected, silver.record_ids)
        ids = identity.customer_ids
        served, served_at = None, None
        if ids:
            with clock("curate"):
                curated = curate_customers(spark, settings, ids, identity.rows)
            rows = {**curated.rows, **identity.rows}  # the xref last (module doc)
            with clock("serve"):
                served = publish_customers(spark, settings, ids, rows)
            served_at = time.monotonic()
            with clock("store"):
                store_customer_rows(spark, settings, ids, rows)
                publish_customers(spark, settings, ids, rows, served.generation)
        self._add(bronze_rows, silver, identity, served, served_at, clock)
        self._progress(
            f"micro-batch {micro_batch}: {bronze_rows} bronze rows -> {silver.records} records, "
            f"{silver.interactions} interactions; {len(ids)} customers served; "
            f"{identity.new_records} new records ({identity.joined} joined a customer, "
            f"{identity.new_customers} new customers, {identity.undecided} left for the "
            f"nightly run) ({clock})"
        )

    def _add(
        self,
        bronze_rows: int,
        silver: SilverIncrement,
        identity: IdentityIncrement,
        served: CustomersPublishSummary | None,
        served_at: float | None,
        clock: _Clock,
    ) -> None:
        with self._lock:
            s = self._summary
            s.micro_batches += 1
            s.bronze_rows += bronze_rows
            s.records += silver.records
            s.interactions += silver.interactions
            s.new_records += identity.new_records
            s.joined += identity.joined
            s.new_customers += identity.new_customers
            s.undecided += identity.undecided
            if served is not None:
                s.customers += served.customers
                s.served_at = served_at
                for table, rows in served.rows.items():
                    s.served_rows[table] = s.served_rows.get(table, 0) + rows
            for step, seconds in clock.seconds.items():
                s.step_seconds[step] = s.step_seconds.get(step, 0.0) + seconds


class _Clock:
    """Seconds per named step, for the progress line and the summary."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[step] = time.monotonic() - started

    def __str__(self) -> str:
        return ", ".join(f"{step} {seconds:.1f} s" for step, seconds in self.seconds.items())
