"""From new web and app events to the agent's screen: silver, identity, curated rows, serving.

``omnicdp stream`` lands web and app events in bronze. ``omnicdp microbatch`` takes it from
there: a second Structured Streaming query reads the rows the bronze tables gain (Delta's
streaming source, checkpointed in ``MICROBATCH_CHECKPOINT``) and, per micro-batch, for just
the records and customers those rows touch:

1. rebuilds their silver rows (:func:`jobs.standardize.standardize_increment`);
2. rebuilds the golden records of the customers owning the records it changed or gave new
   events to (:func:`identity.increment.refresh_known`), then their timeline, 360 and agent context
   rows (:func:`jobs.curate.curate_customers`), and replaces their rows in the serving store's
   current generation (:func:`jobs.publish.publish_customers`), where the agent API reads them;
3. gives the new records a customer id, joining an existing customer or starting a new one
   (:func:`identity.increment.resolve_new_records`), and curates and serves the customers
   they joined or started as in step 2.

Known customers come first: they are the ones an agent may have on the phone, and matching
new records with Splink is the longest step of a micro-batch, so they no longer wait for it.
A customer a new record joins is served twice: at step 2 with the events of its known
records, at step 3 with the new record's too.

``--once`` (trigger ``availableNow``) processes every bronze row not yet processed and stops,
for schedulers (the ``omnicdp_microbatch`` DAG runs ``stream --once`` and then this); without
it a micro-batch starts every ``OMNICDP_STREAM_INTERVAL_SECONDS`` until Ctrl-C / SIGTERM.

Exactly once: the checkpoint commits a micro-batch only after all three steps returned, so a
micro-batch killed half-way is run again on restart with the same bronze rows. Every step
rebuilds its rows from the current tables and writes them with a keyed Delta MERGE or a
selective overwrite of the touched customers (or one store transaction), so running a
micro-batch again writes the same rows: nothing is lost, nothing doubles. Replaying files that were
already ingested adds no bronze rows, so it triggers nothing here. Commits that rewrite bronze
rows instead of adding them (an erasure, a killed ingest's leftovers being replaced) are
skipped (``skipChangeCommits``): they carry no new events.

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

from identity.increment import IdentityIncrement, refresh_known, resolve_new_records
from identity.storage import latest_version, table_exists
from jobs.catalog import MICROBATCH_CHECKPOINT, bronze_table
from jobs.curate import curate_customers
from jobs.publish import CustomersPublishSummary, publish_customers
from jobs.settings import Settings
from jobs.standardize import (
    SilverIncrement,
    standardize_increment,
    standardized_bronze_versions,
    touched_keys,
)
from jobs.stream import STREAM_SOURCES, MicroBatches, Progress, run_until_done

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
    customers: int = 0  # customers served at step 2: owners of the records already resolved
    new_record_customers: int = 0  # customers served at step 3: joined or started by new records
    served_rows: dict[str, int] = field(default_factory=dict)
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
        with clock("profiles"):
            known = refresh_known(spark, settings, silver.affected)
        known_served = self._curate_and_serve(spark, known, clock, "")
        with clock("identity"):
            identity = resolve_new_records(spark, settings, silver.record_ids)
        new_served = (
            self._curate_and_serve(spark, identity.customer_ids, clock, " new")
            if identity.new_records
            else None
        )
        self._add(bronze_rows, silver, identity, known_served, new_served, clock)
        self._progress(
            f"micro-batch {micro_batch}: {bronze_rows} bronze rows -> {silver.records} records, "
            f"{silver.interactions} interactions; {known_served.customers} known customers "
            f"served; {identity.new_records} new records ({identity.joined} joined a customer, "
            f"{identity.new_customers} new customers, {identity.undecided} left for the "
            f"nightly run), {new_served.customers if new_served else 0} of their customers "
            f"served ({clock})"
        )

    def _curate_and_serve(
        self, spark: SparkSession, customer_ids: list[str], clock: _Clock, label: str
    ) -> CustomersPublishSummary:
        with clock(f"curate{label}"):
            curate_customers(spark, self._settings, customer_ids)
        with clock(f"serve{label}"):
            return publish_customers(spark, self._settings, customer_ids)

    def _add(
        self,
        bronze_rows: int,
        silver: SilverIncrement,
        identity: IdentityIncrement,
        known_served: CustomersPublishSummary,
        new_served: CustomersPublishSummary | None,
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
            s.customers += known_served.customers
            s.new_record_customers += new_served.customers if new_served else 0
            for publication in filter(None, (known_served, new_served)):
                for table, rows in publication.rows.items():
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
