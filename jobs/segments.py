"""Segments: audiences marketers define in YAML, built over gold.customer_360, consent applied.

A segment is one YAML file in ``Settings.segments_dir`` (``jobs/segment_definitions/`` by
default)::

    name: beauty_fans                      # lower-case letters, digits, _ and -
    description: Customers who mostly buy or browse beauty.
    consent: email                         # purpose required: email | sms | push | ads
    windows:                               # optional: per-customer counts over recent activity
      app_visits_14d: {days: 14, channels: [app], types: [app_open]}
    where: category_affinity['beauty'] >= 0.3 AND app_visits_14d >= 1

``where`` is Spark SQL over the columns of ``gold.customer_360`` and the segment's windows. A
window counts the customer's interactions (``measure: count``) or sums their order value in the
reporting currency (``measure: amount``) in the ``days`` before the 360's ``as_of``, optionally
only on some ``channels``, ``types`` or ``statuses``. Every definition is checked against the
real schema before anything is built, and a mistake names the file, the segment and the column.

``build_segments`` rebuilds ``gold.segment_membership`` (segment, customer_id, consent purpose,
as_of) for every definition in one atomic Delta overwrite. Customers who match but have not
given the segment's consent (opted out, or never asked: unknown is not consent) are left out and
counted; the counts go to their own table, ``ops.segment_builds``, right after the membership
is written, and ``list_segments`` reports them with sizes and overlaps. They used to be the
membership commit's ``userMetadata``, which any later commit to that table (an erasure's
deletes) hid, so built segments read as "not built". A build killed between the two writes
leaves the previous counts beside the new membership until the next build.

``export_segment`` writes one segment for an ad platform: ``segment, customer_id,
email_sha256, phone_sha256``, where the email is hashed lower-case and trimmed and the phone in
E.164 with its leading ``+`` (the golden record's form), and never in clear. Consent is checked
again against the current golden record, so a withdrawal since the build is respected; members
with neither an email nor a phone are left out. Spark writes the file with one partition into a
temporary folder beside the output, and the single part file is then renamed to the requested
path, so the output is one file (a local path), replaced atomically.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, StringConstraints
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.curate import RuleError, checked_predicate
from jobs.lakehouse.delta import overwrite_table, read_table, table_exists
from jobs.lakehouse.spark_schema import conform, spark_schema
from schemas.catalog import (
    GOLD_CUSTOMER_360,
    GOLD_CUSTOMER_PROFILE,
    GOLD_CUSTOMER_TIMELINE,
    GOLD_SEGMENT_MEMBERSHIP,
    SEGMENT_BUILDS,
    Table,
)
from schemas.consent import CONSENT_PURPOSES, ConsentPurpose
from schemas.rule_files import load_rule_file
from schemas.settings import Settings
from schemas.tables import SEGMENT_BUILD, SEGMENT_MEMBERSHIP

ExportFormat = Literal["csv", "parquet"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
_NAME = r"^[a-z0-9][a-z0-9_-]*$"
WindowName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*$")]


class SegmentError(RuleError):
    """A segment definition or request that cannot be served; the message says which and why."""


class Window(BaseModel):
    """Recent activity of each customer, as one numeric column the predicate can use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: PositiveInt
    channels: list[str] | None = None
    types: list[str] | None = None
    statuses: list[str] | None = None
    measure: Literal["count", "amount"] = "count"


class SegmentDefinition(BaseModel):
    """One segment file; unknown keys are errors, so a typo never silently widens an audience."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    description: str
    consent: ConsentPurpose
    where: str
    windows: dict[WindowName, Window] = Field(default_factory=dict)


@dataclass(frozen=True)
class Segment:
    """A definition and the file it came from (for error messages)."""

    definition: SegmentDefinition
    path: Path

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def label(self) -> str:
        return f"{self.path}: segment '{self.name}'"


# --- definitions ---------------------------------------------------------------------------------


def load_segments(folder: Path) -> list[Segment]:
    """Every ``*.yaml`` / ``*.yml`` in ``folder``, parsed and checked, sorted by file name."""
    if not folder.is_dir():
        raise SegmentError(f"{folder}: the segments folder does not exist")
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    segments = [_load_one(path) for path in files]
    seen: dict[str, Path] = {}
    for s in segments:
        if s.name in seen:
            raise SegmentError(f"{s.label}: the name is already used by {seen[s.name]}")
        seen[s.name] = s.path
    return segments


def _load_one(path: Path) -> Segment:
    definition = load_rule_file(path, SegmentDefinition, error=SegmentError, label=_segment_label)
    return Segment(definition, path)


def _segment_label(data: object) -> str:
    """How a definition's mistakes name it: by the name it gives, "?" if none."""
    name = data.get("name", "?") if isinstance(data, dict) else "?"
    return f"segment '{name}'"


def segment_candidates(
    c360: DataFrame, timeline: DataFrame, segment: Segment, as_of: Column
) -> DataFrame:
    """The 360 with the segment's window columns, checked: a window may not hide a column."""
    windows = segment.definition.windows
    clash = sorted(set(windows) & set(c360.columns))
    if clash:
        raise SegmentError(f"{segment.label}: window '{clash[0]}' is already a customer_360 column")
    if not windows:
        return c360
    values = timeline.groupBy("customer_id").agg(
        *[_window_value(w, as_of).alias(name) for name, w in windows.items()]
    )
    return c360.join(values, "customer_id", "left").fillna(0, subset=list(windows))


def _window_value(window: Window, as_of: Column) -> Column:
    since = as_of - F.make_interval(days=F.lit(window.days))
    condition = (F.col("ts") > since) & (F.col("ts") <= as_of)
    for column, allowed in (
        ("channel", window.channels),
        ("type", window.types),
        ("status", window.statuses),
    ):
        if allowed is not None:
            condition &= F.col(column).isin(allowed)
    if window.measure == "amount":
        return F.coalesce(F.sum(F.when(condition, F.col("amount_reporting"))), F.lit(0))
    return F.count(F.when(condition, 1))


# --- build ---------------------------------------------------------------------------------------


@dataclass
class SegmentCounts:
    """Customers matching the predicate, those left out for lack of consent, and members."""

    consent: str
    matched: int = 0
    excluded_no_consent: int = 0
    members: int = 0


@dataclass
class SegmentBuildSummary:
    """Counts per segment of one build, and the customer_360 ``as_of`` it was built on."""

    segments: dict[str, SegmentCounts]
    as_of: str


def build_segments(spark: SparkSession, settings: Settings) -> SegmentBuildSummary:
    """Rebuild gold.segment_membership from every definition, or change nothing on any error."""
    segments = load_segments(settings.segments_dir)
    c360 = _read(spark, settings, GOLD_CUSTOMER_360, "omnicdp curate")
    timeline = _read(spark, settings, GOLD_CUSTOMER_TIMELINE, "omnicdp curate")
    latest = c360.agg(
        F.unix_micros(F.max("as_of")).alias("micros"),
        F.date_format(F.max("as_of"), "yyyy-MM-dd HH:mm:ss").alias("text"),
    ).first()
    if latest is None or latest.micros is None:
        raise SegmentError(f"{GOLD_CUSTOMER_360.qualified_name} is empty: nothing to segment")
    as_of = F.timestamp_micros(F.lit(latest.micros))
    matches = [_matches_of(c360, timeline, s, as_of) for s in segments]  # all checked first
    if not matches:
        raise SegmentError(f"{settings.segments_dir}: no segment definitions (*.yaml) found")
    everyone = _union(matches).persist()
    try:
        counts = _build_counts(everyone, segments)
        members = everyone.where("_consented").withColumn("as_of", as_of)
        overwrite_table(conform(members, SEGMENT_MEMBERSHIP), settings, GOLD_SEGMENT_MEMBERSHIP)
    finally:
        everyone.unpersist()
    _store_counts(spark, settings, counts, datetime.fromtimestamp(latest.micros / 1e6, UTC))
    return SegmentBuildSummary(segments=counts, as_of=latest.text)


def _store_counts(
    spark: SparkSession, settings: Settings, counts: dict[str, SegmentCounts], as_of: datetime
) -> None:
    """Replace ``ops.segment_builds`` with this build's counts, one row per segment."""
    built_at = datetime.now(UTC)
    rows = [
        (name, c.consent, c.matched, c.excluded_no_consent, c.members, as_of, built_at)
        for name, c in counts.items()
    ]
    frame = spark.createDataFrame(rows, spark_schema(SEGMENT_BUILD))
    overwrite_table(frame, settings, SEGMENT_BUILDS)


def _matches_of(c360: DataFrame, timeline: DataFrame, segment: Segment, as_of: Column) -> DataFrame:
    """Customers matching the predicate, with whether they gave the segment's consent."""
    candidates = segment_candidates(c360, timeline.where(F.col("ts") <= as_of), segment, as_of)
    try:
        predicate = checked_predicate(candidates, segment.definition.where, segment.label)
    except RuleError as err:
        raise SegmentError(str(err)) from None
    consent = segment.definition.consent
    return candidates.where(F.coalesce(predicate, F.lit(False))).select(
        F.lit(segment.name).alias("segment"),
        "customer_id",
        F.lit(consent).alias("consent_purpose"),
        F.coalesce(F.col(f"consent_{consent}"), F.lit(False)).alias("_consented"),
    )


def _union(frames: list[DataFrame]) -> DataFrame:
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _build_counts(everyone: DataFrame, segments: list[Segment]) -> dict[str, SegmentCounts]:
    counts = {s.name: SegmentCounts(consent=s.definition.consent) for s in segments}
    rows = everyone.groupBy("segment").agg(
        F.count(F.lit(1)).alias("matched"), F.count(F.when(F.col("_consented"), 1)).alias("members")
    )
    for r in rows.collect():  # one row per segment
        c = counts[r.segment]
        c.matched, c.members = r.matched, r.members
        c.excluded_no_consent = r.matched - r.members
    return counts


def _read(spark: SparkSession, settings: Settings, table: Table, step: str) -> DataFrame:
    from delta.tables import DeltaTable

    path = table.path(settings)
    if not DeltaTable.isDeltaTable(spark, path):
        raise SegmentError(f"{table.qualified_name} does not exist at {path}: run `{step}` first")
    return spark.read.format("delta").load(path)


# --- list ----------------------------------------------------------------------------------------


@dataclass
class SegmentInfo:
    """A segment as ``list`` shows it; ``counts`` is None until a build includes it."""

    name: str
    description: str
    consent: str
    built: bool
    counts: SegmentCounts | None


@dataclass
class SegmentListing:
    """Every defined or built segment with its counts, and members shared by each pair."""

    segments: list[SegmentInfo]
    overlaps: dict[tuple[str, str], int] = field(default_factory=dict)


def list_segments(spark: SparkSession, settings: Settings) -> SegmentListing:
    """Definitions in the folder joined with what the last build stored."""
    definitions = {s.name: s.definition for s in load_segments(settings.segments_dir)}
    built = _built_counts(spark, settings)
    infos = [
        SegmentInfo(
            name=name,
            description=definitions[name].description if name in definitions else "(removed)",
            consent=definitions[name].consent if name in definitions else built[name].consent,
            built=name in built,
            counts=built.get(name),
        )
        for name in sorted(set(definitions) | set(built))
    ]
    overlaps = _overlaps(spark, settings) if built else {}
    return SegmentListing(segments=infos, overlaps=overlaps)


def _built_counts(spark: SparkSession, settings: Settings) -> dict[str, SegmentCounts]:
    """The counts the last build stored (none if never built)."""
    if not table_exists(spark, settings, SEGMENT_BUILDS):
        return {}
    return {
        r.segment: SegmentCounts(r.consent_purpose, r.matched, r.excluded_no_consent, r.members)
        for r in read_table(spark, settings, SEGMENT_BUILDS).collect()  # one row per segment
    }


def _overlaps(spark: SparkSession, settings: Settings) -> dict[tuple[str, str], int]:
    """Members in both segments, for each pair of segments that share any (a < b)."""
    members = _read(spark, settings, GOLD_SEGMENT_MEMBERSHIP, "omnicdp segment build")
    a = members.select(F.col("segment").alias("a"), "customer_id")
    b = members.select(F.col("segment").alias("b"), "customer_id")
    pairs = a.join(b, "customer_id").where(F.col("a") < F.col("b")).groupBy("a", "b").count()
    return {(r.a, r.b): r["count"] for r in pairs.collect()}  # at most segments^2 rows


# --- export --------------------------------------------------------------------------------------


@dataclass
class ExportSummary:
    """What an export wrote and whom it left out (consent withdrawn, no email or phone)."""

    segment: str
    members: int
    exported: int
    dropped_no_consent: int
    dropped_no_identifier: int
    path: str


def export_segment(
    spark: SparkSession, settings: Settings, name: str, fmt: ExportFormat, output: Path
) -> ExportSummary:
    """Write one segment's hashed identifiers to ``output`` (one CSV or Parquet file)."""
    if fmt not in EXPORT_FORMATS:
        raise SegmentError(
            f"unknown export format '{fmt}' (use one of {', '.join(EXPORT_FORMATS)})"
        )
    built = _built_counts(spark, settings)
    if name not in built:
        known = ", ".join(sorted(built)) or "none"
        raise SegmentError(f"segment '{name}' is not built (built segments: {known})")
    members = _read(spark, settings, GOLD_SEGMENT_MEMBERSHIP, "omnicdp segment build").where(
        F.col("segment") == name
    )
    profile = _read(spark, settings, GOLD_CUSTOMER_PROFILE, "omnicdp identity resolve")
    rows = hashed_members(members, profile, built[name].consent)
    totals = rows.agg(
        F.count(F.lit(1)).alias("members"),
        F.count(F.when(~F.col("_consented"), 1)).alias("no_consent"),
        F.count(F.when(F.col("_consented") & ~F.col("_identified"), 1)).alias("no_identifier"),
    ).first()
    exported = rows.where(F.col("_consented") & F.col("_identified")).select(
        "segment", "customer_id", "email_sha256", "phone_sha256"
    )
    write_single_file(exported.orderBy("customer_id"), fmt, output)
    return ExportSummary(
        segment=name,
        members=totals.members,
        exported=totals.members - totals.no_consent - totals.no_identifier,
        dropped_no_consent=totals.no_consent,
        dropped_no_identifier=totals.no_identifier,
        path=str(output),
    )


def hashed_members(members: DataFrame, profile: DataFrame, consent: str) -> DataFrame:
    """Members with SHA-256 of their normalized email and phone and their current consent."""
    if consent not in CONSENT_PURPOSES:
        raise SegmentError(f"unknown consent purpose '{consent}'")
    email = F.lower(F.trim("email"))
    phone = F.regexp_replace("phone", r"[^+0-9]", "")
    identifiers = profile.select(
        "customer_id",
        F.when(email != "", F.sha2(email, 256)).alias("email_sha256"),
        F.when(phone != "", F.sha2(phone, 256)).alias("phone_sha256"),
        F.coalesce(F.col(f"{consent}_opt_in"), F.lit(False)).alias("_consented"),
    )
    return (
        members.join(identifiers, "customer_id", "left")
        .withColumn("_consented", F.coalesce("_consented", F.lit(False)))
        .withColumn(
            "_identified", F.col("email_sha256").isNotNull() | F.col("phone_sha256").isNotNull()
        )
    )


def write_single_file(df: DataFrame, fmt: ExportFormat, output: Path) -> None:
    """Spark writes one part file into a temporary folder next to ``output``; it is then renamed
    to ``output``, so readers see the old file or the whole new one, never a partial one."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.{uuid.uuid4().hex}.tmp"
    try:
        writer = df.coalesce(1).write.mode("overwrite")
        if fmt == "csv":
            writer.option("header", "true").csv(str(staging))
        else:
            writer.parquet(str(staging))
        (part,) = staging.glob(f"part-*.{fmt}*")
        part.replace(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
