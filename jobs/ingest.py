"""Bronze: batch ingest of landing files into Delta, accounting for every line.

Each new landing file is read as text lines with their 1-based line numbers, parsed against its
source's contract (``schemas.sources``) and split into accepted rows (``bronze.<source>``) and
rejected rows (``quarantine.rejected_rows``, with file, line and reason). Nothing is dropped:
for every file, data lines = bronze rows + quarantined rows, and the manifest
``ops.ingested_files`` records those counts.

Idempotency: a file already in the manifest is skipped; a file's bronze and quarantine rows are
written after removing any rows of that file that another batch left behind, and the manifest
row last, so a run killed half-way is completed, not duplicated, by the next one. The same
content delivered again under another name is quarantined line by line as a duplicate delivery,
naming the original file.

The streaming ingest of web and app events (:mod:`jobs.stream`) runs the same parsing, checks,
counting and manifest through :func:`ingest_lines`, so a line is accepted or rejected for the
same reason whichever path read it, and a file ingested by one is skipped by the other.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import reduce

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.lakehouse.spark_schema import spark_schema
from schemas.catalog import INGESTED_FILES, QUARANTINE_ROWS
from schemas.catalog import bronze_table as bronze_table_for
from schemas.settings import Settings
from schemas.sources import METADATA_COLUMNS, SOURCES, FileFormat, SourceSpec

log = logging.getLogger(__name__)

_CSV_FIELD_SPLIT = r',(?=(?:[^"]*"[^"]*")*[^"]*$)'  # commas outside double quotes
_CORRUPT = "_corrupt_record"
_MAX_CSV_FIELDS = 64  # a line with more fields than this is rejected by the field count anyway
_PRIME = 2_147_483_647  # keeps per-line hashes small enough to sum without overflow


@dataclass
class FileReport:
    """What happened to one landing file."""

    source_file: str
    lines: int
    header_lines: int
    bronze_rows: int
    quarantined_rows: int
    note: str = ""

    @property
    def reconciled(self) -> bool:
        return self.lines - self.header_lines == self.bronze_rows + self.quarantined_rows


@dataclass
class SourceReport:
    """What happened to one source's new files in one run (or one stream)."""

    source: str
    files: list[FileReport] = field(default_factory=list)
    skipped_files: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def bronze_rows(self) -> int:
        return sum(f.bronze_rows for f in self.files)

    @property
    def quarantined_rows(self) -> int:
        return sum(f.quarantined_rows for f in self.files)

    @property
    def input_lines(self) -> int:
        return sum(f.lines - f.header_lines for f in self.files)


@dataclass
class IngestSummary:
    batch_id: str
    sources: dict[str, SourceReport]

    @property
    def reconciled(self) -> bool:
        return all(f.reconciled for s in self.sources.values() for f in s.files)


def ingest_batch(
    spark: SparkSession, settings: Settings, sources: tuple[str, ...] = tuple(SOURCES)
) -> IngestSummary:
    """Ingest every landing file not yet ingested, for the given sources, in one pass.

    The files of every source are read as one text scan and counted, fingerprinted and
    checked for duplicate deliveries together; each source's rows then go to its bronze
    table, and the rejected rows of all and the manifest rows of all in one commit each.
    A source costs its parsing and its bronze commit, not a round of queries and commits
    of its own (Spark's fixed cost per query is most of the time on small files).
    """
    batch_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    known = ingested_files(spark, settings)
    landing_uri = landing_root(spark, settings)
    reports, new_files = {}, {}
    for name in sources:
        files = list_landing_files(spark, landing_uri, SOURCES[name])
        relative = {f: _relative(f, landing_uri) for f in files}
        new_files[name] = [f for f in files if relative[f] not in known]
        reports[name] = SourceReport(name, skipped_files=len(files) - len(new_files[name]))
    every_new = [f for files in new_files.values() for f in files]
    if every_new:
        # Read each file once: stats, counts and the writes reuse the cached rows.
        lines = read_lines(spark, every_new, landing_uri).persist()
        by_source = {
            name: [_relative(f, landing_uri) for f in files]
            for name, files in new_files.items()
            if files
        }
        outcomes = ingest_lines(spark, settings, lines, by_source, batch_id)
        lines.unpersist()
        for name, (file_reports, reasons) in outcomes.items():
            reports[name].files, reports[name].quarantine_reasons = file_reports, reasons
    for name, report in reports.items():
        log.info(
            "ingest %s: %d new files, %d lines -> %d bronze + %d quarantined",
            name,
            len(report.files),
            report.input_lines,
            report.bronze_rows,
            report.quarantined_rows,
        )
    return IngestSummary(batch_id=batch_id, sources=reports)


@dataclass(frozen=True)
class IdempotentWrite:
    """Delta's idempotent-write identity: a second commit of (app_id, version) is skipped.

    The stream passes (its query's id, micro-batch id): a micro-batch replayed after a crash
    writes nothing a first attempt already committed, table by table (Delta keeps the last
    version of each app id in each table's own log).
    """

    app_id: str
    version: int

    def options(self) -> dict[str, str]:
        return {"txnAppId": self.app_id, "txnVersion": str(self.version)}


def ingest_lines(
    spark: SparkSession,
    settings: Settings,
    lines: DataFrame,
    files: dict[str, list[str]],
    batch_id: str,
    txn: IdempotentWrite | None = None,
) -> dict[str, tuple[list[FileReport], dict[str, int]]]:
    """Parse, count and write the numbered lines of new files: bronze, quarantine, manifest.

    ``files`` maps each source to its new files (relative to landing), whose lines
    ``lines`` (from :func:`number_lines`) holds; it should be cached by the caller: stats,
    counts and the writes each read it. Per source, its file reports and rejection reasons.
    The manifest is written last, so a crash before it leaves the files to be ingested
    again, replacing (batch) or skipping (``txn``) what was already written.
    """
    every_file = [f for source_files in files.values() for f in source_files]
    stats = file_stats(lines, every_file)
    duplicates = duplicate_deliveries(spark, settings, stats)
    stamp = {"batch_id": F.lit(batch_id), "ingested_at": F.current_timestamp()}
    parsed = {
        name: parse_lines(
            lines.where(F.col("source_file").isin(source_files)), SOURCES[name], duplicates
        )
        .withColumns(stamp)
        .persist()
        for name, source_files in files.items()
    }
    outcomes = count_outcomes(parsed, stats, files)
    for reports, _ in outcomes.values():
        for f in reports:
            f.note = _file_note(f.lines, duplicates.get(f.source_file))
    for name, rows in parsed.items():
        bronze_path = bronze_table_for(name).path(settings)
        replace_rows(
            spark, bronze_path, accepted_rows(rows, SOURCES[name]), files[name], batch_id, txn
        )
    rejected = reduce(
        DataFrame.unionByName, [rejected_rows(rows, SOURCES[n]) for n, rows in parsed.items()]
    )
    replace_rows(spark, QUARANTINE_ROWS.path(settings), rejected, every_file, batch_id, txn)
    record_manifest(spark, settings, stats, outcomes, batch_id, txn)
    for rows in parsed.values():
        rows.unpersist()
    return outcomes


def landing_root(spark: SparkSession, settings: Settings) -> str:
    """The landing folder as a qualified URI ending in ``/``: the prefix file names drop."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    root = jvm.org.apache.hadoop.fs.Path(str(settings.landing))
    return root.getFileSystem(conf).makeQualified(root).toString().rstrip("/") + "/"


def landing_pattern(landing_uri: str, specs: list[SourceSpec]) -> str:
    """Glob of the sources' landing files, ``<source>/<date>/*.<ext>``; batch and stream share it.

    Several sources must share one file format; they become one Hadoop ``{a,b}`` alternative.
    """
    formats = {spec.file_format for spec in specs}
    if len(formats) != 1:
        raise ValueError(f"one landing pattern needs one file format, got {sorted(formats)}")
    names = [spec.name for spec in specs]
    folders = names[0] if len(names) == 1 else "{" + ",".join(names) + "}"
    return f"{landing_uri}{folders}/*/*.{formats.pop()}"


def list_landing_files(spark: SparkSession, landing_uri: str, spec: SourceSpec) -> list[str]:
    """List ``<landing>/<source>/<date>/*.<ext>`` through Hadoop, so object stores work too."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    pattern = jvm.org.apache.hadoop.fs.Path(landing_pattern(landing_uri, [spec]))
    statuses = pattern.getFileSystem(conf).globStatus(pattern) or []
    return sorted(s.getPath().toString() for s in statuses if s.isFile())


def _relative(uri: str, landing_uri: str) -> str:
    return uri[len(landing_uri) :] if uri.startswith(landing_uri) else uri


def ingested_files(spark: SparkSession, settings: Settings) -> set[str]:
    """Files already in the manifest: one small row per file, fine to bring to the driver."""
    if not DeltaTable.isDeltaTable(spark, INGESTED_FILES.path(settings)):
        return set()
    rows = spark.read.format("delta").load(INGESTED_FILES.path(settings)).select("source_file")
    return {r.source_file for r in rows.collect()}


def read_lines(spark: SparkSession, files: list[str], landing_uri: str) -> DataFrame:
    """Text lines of these files, numbered (see :func:`number_lines`)."""
    return number_lines(text_with_file(spark.read.text(files)), landing_uri)


def text_with_file(text: DataFrame) -> DataFrame:
    """Lines of Spark's text source (batch or streaming) with the file each came from."""
    return text.select(F.col("value"), F.col("_metadata.file_path").alias("file_uri"))


def number_lines(text: DataFrame, landing_uri: str) -> DataFrame:
    """Text lines with file (relative to landing), 1-based line number and landing date.

    ``text`` comes from :func:`text_with_file`. Line numbers come from the read order within
    each file; the window is per file, so one task sorts one file and nothing is gathered on
    the driver.
    """
    raw = text.withColumn("_pos", F.monotonically_increasing_id())
    relative = F.expr(f"substring(file_uri, {len(landing_uri) + 1})")
    return raw.select(
        relative.alias("source_file"),
        F.row_number().over(Window.partitionBy("file_uri").orderBy("_pos")).alias("line_no"),
        F.regexp_extract(relative, r"^[^/]+/(\d{4}-\d{2}-\d{2})/", 1).alias("landing_date"),
        F.col("value").alias("_raw"),
    )


@dataclass(frozen=True)
class FileStat:
    source_file: str
    lines: int
    fingerprint: str


def file_stats(lines: DataFrame, files: list[str]) -> list[FileStat]:
    """Per file: line count and an order-sensitive content fingerprint (computed distributed).

    Empty files have no lines to group, so they are added from the file list with zero lines.
    """
    rows = (
        lines.groupBy("source_file")
        .agg(
            F.count("*").alias("lines"),
            F.concat_ws(
                "-",
                F.sum(F.pmod(F.xxhash64("line_no", "_raw"), F.lit(_PRIME))),
                F.sum(F.pmod(F.hash("line_no", "_raw"), F.lit(_PRIME))),
            ).alias("fingerprint"),
        )
        .collect()
    )  # one row per new file
    found = {r.source_file: FileStat(r.source_file, r["lines"], r.fingerprint) for r in rows}
    return [found.get(f, FileStat(f, 0, "")) for f in sorted(files)]


def duplicate_deliveries(
    spark: SparkSession, settings: Settings, stats: list[FileStat]
) -> dict[str, str]:
    """Map each new file whose content was already delivered to the file that delivered it."""
    seen: dict[tuple[int, str], str] = {}
    non_empty = [s for s in stats if s.lines > 0]
    if non_empty and DeltaTable.isDeltaTable(spark, INGESTED_FILES.path(settings)):
        manifest = spark.read.format("delta").load(INGESTED_FILES.path(settings))
        matches = manifest.where(F.col("fingerprint").isin([s.fingerprint for s in non_empty]))
        for r in matches.collect():
            seen[(r.lines, r.fingerprint)] = r.source_file
    duplicates = {}
    for stat in non_empty:
        key = (stat.lines, stat.fingerprint)
        if key in seen:
            duplicates[stat.source_file] = seen[key]
        else:
            seen[key] = stat.source_file
    return duplicates


def parse_lines(
    lines: DataFrame, spec: SourceSpec, duplicates: dict[str, str] | None = None
) -> DataFrame:
    """Parse data lines (CSV headers are not data) and give each a ``reason`` if it is rejected."""
    if spec.file_format == FileFormat.CSV:
        parsed, structural = _parse_csv(lines, spec)
    else:
        parsed, structural = _parse_json(lines, spec)
    checks = [_duplicate_check(duplicates or {}), _utf8_check(), structural]
    checks += [_required_check(c) for c in spec.required]
    checks += [_typed_check(c, t) for c, t in spec.typed.items()]
    checks += [_plausible_time_check(c) for c, t in spec.typed.items() if t == "timestamp"]
    return parsed.withColumn("reason", F.coalesce(*checks))


def accepted_rows(parsed: DataFrame, spec: SourceSpec) -> DataFrame:
    """Bronze rows: the source's fields as they arrived, plus ingestion metadata."""
    return parsed.where(F.col("reason").isNull()).select(
        *[F.col(f"`{c}`") for c in spec.columns], *METADATA_COLUMNS
    )


def rejected_rows(parsed: DataFrame, spec: SourceSpec) -> DataFrame:
    """Quarantine rows: where the line came from, why it was rejected, and the line itself."""
    return parsed.where(F.col("reason").isNotNull()).select(
        F.lit(spec.name).alias("source"),
        "source_file",
        "line_no",
        "landing_date",
        "reason",
        "_raw",
        "batch_id",
        "ingested_at",
    )


def _parse_csv(lines: DataFrame, spec: SourceSpec) -> tuple[DataFrame, Column]:
    """Parse CSV data lines by each file's own header, so reordered columns still map by name."""
    header = F.transform(F.split(F.regexp_replace("_raw", "^\ufeff", ""), ","), F.trim)
    headers = lines.where("line_no = 1").select("source_file", header.alias("_header"))
    data = lines.where("line_no > 1").join(F.broadcast(headers), "source_file")
    header_size = F.size("_header")
    field_count = F.size(F.split("_raw", _CSV_FIELD_SPLIT, -1))
    token_schema = ", ".join(f"f{i} string" for i in range(_MAX_CSV_FIELDS))
    data = data.withColumn("_tokens", F.from_csv("_raw", token_schema, {"mode": "PERMISSIVE"}))
    tokens = F.array(*[F.col(f"_tokens.f{i}") for i in range(_MAX_CSV_FIELDS)])
    data = data.withColumns(
        {c: F.get(tokens, F.array_position("_header", c).cast("int") - 1) for c in spec.columns}
    )
    missing = F.array_compact(
        F.array(*[F.when(~F.array_contains("_header", c), F.lit(c)) for c in spec.required])
    )
    structural = F.coalesce(
        F.when(
            F.size(missing) > 0,
            F.concat(F.lit("missing column(s) in header: "), F.array_join(missing, ", ")),
        ),
        F.when(
            F.length(F.regexp_replace("_raw", '[^"]', "")) % 2 == 1,
            F.lit("unbalanced double quote (truncated line?)"),
        ),
        F.when(
            field_count != header_size,
            F.format_string("expected %d fields, found %d", header_size, field_count),
        ),
    )
    return data, structural


def _parse_json(lines: DataFrame, spec: SourceSpec) -> tuple[DataFrame, Column]:
    """Parse JSON lines against the source layout; unknown fields are kept only in ``_raw``."""
    schema = spark_schema(spec.schema).add(_CORRUPT, "string")
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT}
    data = lines.withColumn("_json", F.from_json("_raw", schema, options)).select(
        "*",
        *[F.col(f"_json.`{c}`").alias(c) for c in spec.columns],
        F.col(f"_json.{_CORRUPT}").alias(_CORRUPT),
    )
    is_object = F.trim("_raw").startswith("{") & F.get_json_object("_raw", "$").isNotNull()
    structural = F.when(
        F.col(_CORRUPT).isNotNull(),
        F.when(
            is_object,
            F.lit(
                f"JSON does not match the {spec.name} layout (a nested field "
                "holds the wrong kind of value)"
            ),
        ).otherwise(F.lit("not a JSON object (malformed or truncated line)")),
    )
    return data, structural


def _duplicate_check(duplicates: dict[str, str]) -> Column:
    mapping = (
        F.create_map(*[F.lit(x) for pair in duplicates.items() for x in pair])
        if duplicates
        else None
    )
    if mapping is None:
        return F.lit(None).cast("string")
    original = mapping[F.col("source_file")]
    return F.when(original.isNotNull(), F.concat(F.lit("duplicate delivery of "), original))


def _utf8_check() -> Column:
    return F.when(~F.expr("is_valid_utf8(_raw)"), F.lit("invalid UTF-8 bytes in line"))


def _required_check(column: str) -> Column:
    value = F.col(column)
    return F.when(value.isNull() | (F.trim(value) == ""), F.lit(f"missing required field {column}"))


def _typed_check(column: str, sql_type: str) -> Column:
    value = F.col(column)
    present = value.isNotNull() & (F.trim(value) != "")
    bad = present & F.expr(f"try_cast(trim({_quoted(column)}) as {sql_type})").isNull()
    return F.when(bad, F.lit(f"field {column} is not a valid {sql_type.split('(')[0]}"))


# Event times outside this window are typos or broken clocks (a year 2206, a till reset to
# 1970), not events: accepted, they would sort a purchase decades away from the customer's
# others and break recency, timelines and journey metrics downstream.
EARLIEST_EVENT_TIME = "2000-01-01"
FUTURE_TOLERANCE = "2 days"


def _plausible_time_check(column: str) -> Column:
    value = F.expr(f"try_cast(trim({_quoted(column)}) as timestamp)")
    implausible = (value < F.lit(EARLIEST_EVENT_TIME).cast("timestamp")) | (
        value > F.current_timestamp() + F.expr(f"INTERVAL {FUTURE_TOLERANCE}")
    )
    return F.when(
        value.isNotNull() & implausible,
        F.lit(
            f"field {column} is not a plausible time "
            f"(before {EARLIEST_EVENT_TIME} or over {FUTURE_TOLERANCE} ahead)"
        ),
    )


def _quoted(column: str) -> str:
    return ".".join(f"`{part}`" for part in column.split("."))


def replace_rows(
    spark: SparkSession,
    path: str,
    rows: DataFrame,
    files: list[str],
    batch_id: str,
    txn: IdempotentWrite | None = None,
) -> None:
    """Write these files' rows, first removing any that another, killed, run left behind.

    Files reach here only when the manifest does not list them, so usually there is nothing to
    remove (and Delta commits nothing for it); after a crash between this write and the
    manifest, the rerun replaces the partial rows instead of duplicating them. Rows of this very
    ``batch_id`` stay: a replayed stream micro-batch keeps what its first attempt committed, and
    ``txn`` makes Delta skip writing them again. The landing_date filter prunes partitions.

    ``mergeSchema``: a field added to a source's contract becomes a new bronze column (null in
    rows written before), so the contract can grow without a migration.
    """
    if DeltaTable.isDeltaTable(spark, path):
        dates = sorted({f.split("/")[1] for f in files if f.count("/") >= 2})
        DeltaTable.forPath(spark, path).delete(
            F.col("landing_date").isin(dates)
            & F.col("source_file").isin(files)
            & (F.col("batch_id") != batch_id)
        )
    writer = rows.write.format("delta").mode("append").option("mergeSchema", "true")
    writer.options(**(txn.options() if txn else {})).partitionBy("landing_date").save(path)


def count_outcomes(
    parsed: dict[str, DataFrame], stats: list[FileStat], files: dict[str, list[str]]
) -> dict[str, tuple[list[FileReport], dict[str, int]]]:
    """Count, per new file, its accepted and rejected rows, and per source the rejection
    reasons: one query over every source's parsed lines (files x reasons rows)."""
    outcomes = reduce(
        DataFrame.unionByName,
        [
            rows.select(F.lit(name).alias("source"), "source_file", "reason")
            for name, rows in parsed.items()
        ],
    )
    bronze_counts: dict[str, int] = {}
    quarantine_counts: dict[str, int] = {}
    reasons: dict[str, dict[str, int]] = {name: {} for name in parsed}
    for r in outcomes.groupBy("source", "source_file", "reason").count().collect():
        if r.reason is None:
            bronze_counts[r.source_file] = r["count"]
        else:
            quarantine_counts[r.source_file] = quarantine_counts.get(r.source_file, 0) + r["count"]
            by_reason = reasons[r.source]
            by_reason[r.reason] = by_reason.get(r.reason, 0) + r["count"]
    lines = {s.source_file: s.lines for s in stats}
    result = {}
    for name in parsed:
        header_lines = 1 if SOURCES[name].file_format == FileFormat.CSV else 0
        reports = [
            FileReport(
                source_file=f,
                lines=lines[f],
                header_lines=min(header_lines, lines[f]),
                bronze_rows=bronze_counts.get(f, 0),
                quarantined_rows=quarantine_counts.get(f, 0),
            )
            for f in sorted(files[name])
        ]
        result[name] = (reports, reasons[name])
    return result


def _file_note(lines: int, duplicate_of: str | None) -> str:
    if lines == 0:
        return "empty file"
    if duplicate_of:
        return f"duplicate delivery of {duplicate_of}"
    return ""


def record_manifest(
    spark: SparkSession,
    settings: Settings,
    stats: list[FileStat],
    outcomes: dict[str, tuple[list[FileReport], dict[str, int]]],
    batch_id: str,
    txn: IdempotentWrite | None = None,
) -> None:
    """Add the new files to the manifest, after their rows are written (so a crash re-runs them)."""
    fingerprints = {s.source_file: s.fingerprint for s in stats}
    manifest = spark.createDataFrame(
        [
            (
                name,
                f.source_file,
                f.lines,
                f.header_lines,
                fingerprints[f.source_file],
                f.bronze_rows,
                f.quarantined_rows,
                f.note,
                batch_id,
            )
            for name, (reports, _) in outcomes.items()
            for f in reports
        ],
        "source string, source_file string, lines long, header_lines long, fingerprint string,"
        " bronze_rows long, quarantined_rows long, note string, batch_id string",
    ).withColumn("ingested_at", F.current_timestamp())
    # mergeSchema: manifests written before header_lines was recorded gain the column (null)
    (
        manifest.write.format("delta")
        .mode("append")
        .option("mergeSchema", "true")
        .options(**(txn.options() if txn else {}))
        .save(INGESTED_FILES.path(settings))
    )
