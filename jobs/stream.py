"""Bronze, continuously: web and app events from landing files into Delta, exactly once.

``omnicdp stream --once`` (trigger ``availableNow``, for schedulers) ingests every web and app
landing file that has not been ingested yet, in micro-batches, and stops. ``omnicdp stream``
runs a micro-batch every ``OMNICDP_STREAM_INTERVAL_SECONDS`` until Ctrl-C or SIGTERM, and then
stops between micro-batches, never inside one.

One Structured Streaming query reads ``<landing>/{web,app}/<date>/*.jsonl`` as text lines, the
same files batch ingest reads. ``foreachBatch`` numbers each file's lines and hands them to
:func:`jobs.ingest.ingest_lines`, the function batch ingest uses: same bronze tables, same
metadata columns, same quarantine reasons, same ``ops.ingested_files`` manifest. A micro-batch
takes at most ``OMNICDP_STREAM_MAX_FILES_PER_TRIGGER`` files. Files must appear complete (written
elsewhere, then renamed into place), as for batch ingest: the lines a file has when it is listed
are the lines ingested.

Exactly once comes from three layers:

- The file source and its checkpoint (``STREAM_EVENTS_CHECKPOINT``) give each file to one
  micro-batch, and a restart continues after the last committed micro-batch: replaying the same
  files is a no-op. A file is never ignored for being old (a late delivery keeps its lines).
- A micro-batch that a crash interrupted is replayed on restart with the same files and id.
  Every Delta write carries ``txnAppId`` (query id + source) and ``txnVersion`` (the
  micro-batch id), so Delta skips the writes the first attempt committed and does the rest. The
  query id lives in the checkpoint, so a new checkpoint (whose ids restart at 0) gets a new one.
- Files the manifest already lists (batch-ingested, or ingested under a lost checkpoint) are
  skipped, and batch ingest skips the files the stream recorded there; content delivered again
  under a new name is quarantined as a duplicate delivery of the original, as in batch.

The two paths may share a landing folder one after the other, not at the same moment: a batch
ingest of web or app running while the stream holds the same new file could write it twice. When
the stream runs, schedule batch ingest for the other sources only (``--source pos --source
call_center --source social``), and ``omnicdp ingest --source web`` stays a way to catch up.

Schema evolution: lines are read as text and parsed with the source's declared layout
(``schemas.sources``). A field the contract does not name neither stops the stream nor rejects
the row: the parse ignores it and the row's ``_raw`` column keeps it, where it can be read until
the contract adds it; a field added to the contract becomes a new bronze column (``mergeSchema``)
that is null in older rows. A known field holding the wrong kind of value rejects only its line,
with the reason. Empty files have no lines, so the stream does not list them in the manifest.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from jobs.ingest import (
    IdempotentWrite,
    SourceReport,
    ingest_lines,
    ingested_files,
    landing_pattern,
    landing_root,
    number_lines,
    text_with_file,
)
from schemas.catalog import STREAM_EVENTS_CHECKPOINT
from schemas.settings import Settings
from schemas.sources import SOURCES

log = logging.getLogger(__name__)

STREAM_SOURCES: tuple[str, ...] = ("web", "app")
QUERY_NAME = "omnicdp_stream_events"
_POLL_SECONDS = 0.25  # how soon a finished query or a stop request is noticed
_NEVER_TOO_OLD = "36500d"  # the file source's maxFileAge: the manifest, not age, decides

Progress = Callable[[str], None]


@dataclass
class StreamSummary:
    """What one ``omnicdp stream`` run ingested, per source; counts only, never values."""

    once: bool
    sources: dict[str, SourceReport]
    micro_batches: int = 0
    seconds: float = 0.0

    @property
    def bronze_rows(self) -> int:
        return sum(s.bronze_rows for s in self.sources.values())

    @property
    def quarantined_rows(self) -> int:
        return sum(s.quarantined_rows for s in self.sources.values())

    @property
    def reconciled(self) -> bool:
        return all(f.reconciled for s in self.sources.values() for f in s.files)


class StreamStopping(RuntimeError):
    """Raised instead of starting a micro-batch after a stop was asked: the batch stays
    uncommitted in the checkpoint and is the first one the next start runs."""


def stream_ingest(
    spark: SparkSession,
    settings: Settings,
    once: bool = True,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> StreamSummary:
    """Stream web and app landing files into bronze: until none is left (``once``), or until
    ``stop`` is set (the CLI sets it on Ctrl-C / SIGTERM). One progress line per micro-batch."""
    started = time.monotonic()
    summary = StreamSummary(once, {name: SourceReport(name) for name in STREAM_SOURCES})
    landing_uri = landing_root(spark, settings)
    ingest = _IngestEvents(settings, landing_uri, summary, progress or log.info)
    micro_batches = MicroBatches(ingest)
    query = start_query(spark, settings, landing_uri, micro_batches, once)
    run_until_done(query, micro_batches, stop)
    summary.seconds = time.monotonic() - started
    return summary


def start_query(
    spark: SparkSession,
    settings: Settings,
    landing_uri: str,
    micro_batches: MicroBatches,
    once: bool,
) -> StreamingQuery:
    """Start the one query over both sources' landing folders, checkpointed in the lakehouse."""
    pattern = landing_pattern(landing_uri, [SOURCES[name] for name in STREAM_SOURCES])
    text = (
        spark.readStream.format("text")
        .option("maxFilesPerTrigger", settings.stream_max_files_per_trigger)
        .option("maxFileAge", _NEVER_TOO_OLD)
        .load(pattern)
    )
    interval = f"{settings.stream_interval_seconds} seconds"
    trigger = {"availableNow": True} if once else {"processingTime": interval}
    return (
        text_with_file(text)
        .writeStream.queryName(QUERY_NAME)
        .option("checkpointLocation", STREAM_EVENTS_CHECKPOINT.path(settings))
        .foreachBatch(micro_batches)
        .trigger(**trigger)
        .start()
    )


class MicroBatches:
    """A ``foreachBatch`` function that can be told to stop: runs ``work`` on each micro-batch.

    Once :meth:`close` was called it starts no new micro-batch, and :meth:`close` waits for the
    running one to finish its writes, so stopping the query afterwards interrupts nothing.
    """

    def __init__(self, work: Callable[[DataFrame, int], None]) -> None:
        self._work = work
        self._state = threading.Condition()
        self._running = 0
        self._closed = False
        self.refused = False

    def __call__(self, frame: DataFrame, micro_batch: int) -> None:
        with self._state:
            if self._closed:
                self.refused = True
                raise StreamStopping(f"micro-batch {micro_batch} is left for the next start")
            self._running += 1
        try:
            self._work(frame, micro_batch)
        finally:
            with self._state:
                self._running -= 1
                self._state.notify_all()

    def close(self) -> None:
        """Start no more micro-batches; return when the running one (if any) is written."""
        with self._state:
            self._closed = True
            self._state.wait_for(lambda: self._running == 0)


class _IngestEvents:
    """The stream's work per micro-batch: ingest its lines, add them to the summary."""

    def __init__(
        self, settings: Settings, landing_uri: str, summary: StreamSummary, progress: Progress
    ) -> None:
        self._settings = settings
        self._landing_uri = landing_uri
        self._summary = summary
        self._progress = progress
        self._lock = threading.Lock()

    def __call__(self, text: DataFrame, micro_batch: int) -> None:
        started = time.monotonic()
        reports = ingest_micro_batch(
            text.sparkSession, self._settings, self._landing_uri, text, micro_batch
        )
        with self._lock:
            self._summary.micro_batches += 1
            for name, report in reports.items():
                add_report(self._summary.sources[name], report)
        self._progress(progress_line(micro_batch, reports, time.monotonic() - started))


def ingest_micro_batch(
    spark: SparkSession,
    settings: Settings,
    landing_uri: str,
    text: DataFrame,
    micro_batch: int,
) -> dict[str, SourceReport]:
    """Ingest one micro-batch's lines, every source at once, with writes a replay will not
    repeat."""
    query_id = running_query_id(spark)
    lines = number_lines(text, landing_uri).persist()
    files = sorted(r.source_file for r in lines.select("source_file").distinct().collect())
    known = ingested_files(spark, settings)
    reports, new = {}, {}
    for name in STREAM_SOURCES:
        delivered = [f for f in files if f.split("/", 1)[0] == name]
        if delivered:
            new[name] = [f for f in delivered if f not in known]
            reports[name] = SourceReport(name, skipped_files=len(delivered) - len(new[name]))
    new = {name: source_files for name, source_files in new.items() if source_files}
    if new:
        outcomes = ingest_lines(
            spark,
            settings,
            lines.where(F.col("source_file").isin([f for fs in new.values() for f in fs])),
            new,
            batch_id=f"stream-{query_id}-{micro_batch}",
            txn=IdempotentWrite(f"omnicdp-stream-{query_id}", micro_batch),
        )
        for name, (source_files, reasons) in outcomes.items():
            reports[name].files, reports[name].quarantine_reasons = source_files, reasons
    lines.unpersist()
    return reports


def running_query_id(spark: SparkSession) -> str:
    """The id of the query running this micro-batch (Spark sets it on the batch's thread).

    It is kept in the checkpoint: the same across restarts, new with a new checkpoint, whose
    micro-batch ids restart at 0 and must not be mistaken for ones Delta has already seen.
    """
    query_id = spark.sparkContext.getLocalProperty("sql.streaming.queryId")
    if not query_id:
        raise RuntimeError("no streaming query id: called outside a micro-batch")
    return query_id


def add_report(total: SourceReport, part: SourceReport) -> None:
    """Add one micro-batch's report of a source to the run's."""
    total.files.extend(part.files)
    total.skipped_files += part.skipped_files
    for reason, count in part.quarantine_reasons.items():
        total.quarantine_reasons[reason] = total.quarantine_reasons.get(reason, 0) + count


def progress_line(micro_batch: int, reports: dict[str, SourceReport], seconds: float) -> str:
    """One line per micro-batch: files and rows per source (counts and file names, no values)."""
    parts = []
    for name, r in reports.items():
        part = f"{name}: {len(r.files)} file(s), {r.bronze_rows} bronze + {r.quarantined_rows}"
        part += " quarantined"
        if r.skipped_files:
            part += f", {r.skipped_files} file(s) already ingested"
        parts.append(part)
    return f"micro-batch {micro_batch}: {'; '.join(parts) or 'no lines'} ({seconds:.1f} s)"


def run_until_done(
    query: StreamingQuery, micro_batches: MicroBatches, stop: threading.Event | None
) -> None:
    """Wait for the query to end (or ``stop``), stop it between micro-batches, and raise if a
    micro-batch failed."""
    try:
        wait_for_end(query, stop or threading.Event())
    finally:
        micro_batches.close()
        query.stop()
    raise_failure(query, micro_batches)


def wait_for_end(query: StreamingQuery, stop: threading.Event) -> None:
    """Return when the query has ended (availableNow ran out of files, or it failed) or
    ``stop`` is set; polling keeps the main thread free to run signal handlers."""
    while query.isActive and not stop.wait(_POLL_SECONDS):
        pass


def raise_failure(query: StreamingQuery, micro_batches: MicroBatches) -> None:
    """Raise if a micro-batch failed, unless it was one refused because the stream stopped."""
    error = query.exception()
    if error is None or micro_batches.refused:
        return
    raise RuntimeError(
        "stream stopped by a failed micro-batch (the next start runs it again): "
        + without_values(str(error))
    ) from None


def without_values(message: str) -> str:
    """The first line of a Spark error with its quoted literals elided: Spark quotes offending
    values (``The value 'x' of the type ...``), and those may be personal data."""
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return re.sub(r"'[^']*'", "'…'", first_line)[:500]
