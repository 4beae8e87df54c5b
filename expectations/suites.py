"""The expectation suites of every layer, as code: what a table must satisfy to be promoted.

A suite validates one Spark DataFrame: a table from the catalog, or a small frame derived in
Spark from several tables when the rule spans tables (every silver record mapped exactly once in
the xref; exactly one golden record per customer). Expectations only count rows; none of them
reports values, so a failed gate can be described without repeating names, emails or phones.

Bronze: each ingested source's table has its contract's columns, its required fields filled and
one row per landing line, and its newest batch is not a 10x spike over its earlier ones.
Silver: one row per record id, formats standardize promises (lower-case email, E.164 phone),
consent as booleans, one row per interaction. Gold: one profile per
customer, every record in exactly one cluster, clusters within plausible bounds, and every
attribute of a golden record that has a value cites one of that customer's own records.
Curated (before publish): one customer_360 row and one agent screen per golden record, segment
members who consented to the segment's purpose, each customer's timeline numbered 1, 2, ...
once, journey rates between 0 and 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import great_expectations.expectations as gxe
from delta.tables import DeltaTable
from great_expectations.expectations import Expectation
from pyspark.sql import DataFrame, Row, SparkSession, Window
from pyspark.sql import functions as F

from schemas.catalog import (
    GOLD_AGENT_CONTEXT,
    GOLD_CUSTOMER_360,
    GOLD_CUSTOMER_PROFILE,
    GOLD_CUSTOMER_TIMELINE,
    GOLD_IDENTITY_LINKS,
    GOLD_IDENTITY_XREF,
    GOLD_JOURNEY_METRICS,
    GOLD_SEGMENT_MEMBERSHIP,
    INGESTED_FILES,
    SILVER_CUSTOMER_RECORDS,
    SILVER_INTERACTIONS,
    Table,
    bronze_table,
)
from schemas.consent import CONSENT_PURPOSES
from schemas.settings import Settings
from schemas.sources import METADATA_COLUMNS, SOURCES, SourceSpec
from schemas.tables import (
    CONSENT_ATTRIBUTES,
    CUSTOMER_PROFILE,
    CUSTOMER_RECORDS,
    CUSTOMER_TIMELINE,
    IDENTITY_XREF,
    INTERACTIONS,
    SURVIVED_ATTRIBUTES,
)
from schemas.types import Struct

# What silver promises: emails lower-cased and shaped like one, phones in E.164.
EMAIL_FORMAT = r"^[a-z0-9._%+'-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$"
E164_FORMAT = r"^\+[1-9][0-9]{6,14}$"
NOT_BLANK = r"\S"
CONSENT_COLUMNS = ("email_opt_in", "sms_opt_in", "push_opt_in", "ads_opt_in")
# One person rarely has more than a loyalty card, a web login, an app account, a social handle
# and a few call-center cases; a cluster far beyond that is records chained together by a shared
# phone or address (over-merging), which must not reach the golden record.
MAX_CLUSTER_SIZE = 50

FrameSource = Callable[[SparkSession, Settings], DataFrame]


@dataclass(frozen=True)
class Suite:
    """One expectation suite, the Spark frame it validates, and the tables that frame reads."""

    name: str
    frame: FrameSource
    expectations: Callable[[], list[Expectation]]
    reads: tuple[Table, ...]


def table_exists(spark: SparkSession, settings: Settings, table: Table) -> bool:
    return DeltaTable.isDeltaTable(spark, table.path(settings))


def read_table(spark: SparkSession, settings: Settings, table: Table) -> DataFrame:
    return spark.read.format("delta").load(table.path(settings))


def table_suite(table: Table, expectations: Callable[[], list[Expectation]]) -> Suite:
    """A suite over one catalog table, named like it."""
    return Suite(
        name=table.qualified_name,
        frame=lambda spark, settings: read_table(spark, settings, table),
        expectations=expectations,
        reads=(table,),
    )


def _present(column: str) -> list[Expectation]:
    """The column is filled: not null and not blank (sources send '' for missing)."""
    return [
        gxe.ExpectColumnValuesToNotBeNull(column=column),
        gxe.ExpectColumnValuesToMatchRegex(column=column, regex=NOT_BLANK),
    ]


def _unique_key(column: str) -> list[Expectation]:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column=column),
        gxe.ExpectColumnValuesToBeUnique(column=column),
    ]


def _exactly_once(column: str, description: str) -> Expectation:
    return gxe.ExpectColumnValuesToBeBetween(
        column=column, min_value=1, max_value=1, description=description
    )


# --- bronze ------------------------------------------------------------------------------------


def column_paths(schema: Struct, prefix: str = "") -> list[str]:
    """Every column and nested record field by dotted path, as GX lists a Spark table's columns."""
    paths = []
    for field in schema.fields:
        paths.append(prefix + field.name)
        if isinstance(field.type, Struct):
            paths += column_paths(field.type, f"{prefix}{field.name}.")
    return paths


def bronze_expectations(spec: SourceSpec) -> list[Expectation]:
    """A source's bronze rows: its contract's layout, required fields, one row per line."""
    return [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=[*column_paths(spec.schema), *METADATA_COLUMNS], exact_match=True
        ),
        *[e for column in spec.required for e in _present(column)],
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in METADATA_COLUMNS],
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["source_file", "line_no"],
            description="each landing line enters bronze at most once",
        ),
    ]


def bronze_suites(spark: SparkSession, settings: Settings) -> list[Suite]:
    """A suite per source that has a bronze table, and one batch-volume check over them all;
    sources never delivered have none to check.

    With no bronze table at all there is nothing to promote, so every source is listed and the
    gate reports each missing table.
    """
    suites = {
        name: table_suite(bronze_table(name), lambda spec=spec: bronze_expectations(spec))
        for name, spec in SOURCES.items()
    }
    delivered = [n for n, s in suites.items() if table_exists(spark, settings, s.reads[0])]
    if not delivered:
        return list(suites.values())
    return [*(suites[n] for n in delivered), volume_suite(spark, settings)]


# A source's newest batch with more than this many times the median lines of its earlier
# batches is held at the bronze gate: usually a re-sent history or an export stuck in a loop,
# sometimes a real event; either way a person should look before it reaches customers. The
# median needs a few batches to mean something.
VOLUME_SPIKE_FACTOR = 10
MIN_EARLIER_BATCHES = 3
# Files of a spiking batch named in the gate's message; paths are not personal data.
_FILES_SHOWN = 3


def batch_volumes(spark: SparkSession, settings: Settings) -> DataFrame:
    """One row per source in the manifest: data lines of its newest batch, the median of its
    earlier batches, their ratio (null with fewer than ``MIN_EARLIER_BATCHES`` earlier
    batches), and the first files of the newest batch by name (one more when there are more)."""
    newest_first = Window.partitionBy("source").orderBy(F.desc("at"), F.desc("batch_id"))
    batches = (
        read_table(spark, settings, INGESTED_FILES)
        .groupBy("source", "batch_id")
        .agg(
            F.sum(F.col("lines") - F.coalesce("header_lines", F.lit(0))).alias("lines"),
            F.max("ingested_at").alias("at"),
            F.slice(F.array_sort(F.collect_list("source_file")), 1, _FILES_SHOWN + 1).alias(
                "files"
            ),
        )
        .withColumn("newest", F.row_number().over(newest_first) == 1)
    )
    return (
        batches.groupBy("source")
        .agg(
            F.max(F.when(F.col("newest"), F.col("lines"))).alias("newest_lines"),
            F.percentile_approx(F.when(~F.col("newest"), F.col("lines")), 0.5).alias(
                "median_lines"
            ),
            F.sum((~F.col("newest")).cast("int")).alias("earlier_batches"),
            F.max(F.when(F.col("newest"), F.col("batch_id"))).alias("newest_batch"),
            F.max(F.when(F.col("newest"), F.col("files"))).alias("newest_files"),
        )
        .select(
            "*",
            F.when(
                (F.col("earlier_batches") >= MIN_EARLIER_BATCHES) & (F.col("median_lines") > 0),
                F.col("newest_lines") / F.col("median_lines"),
            ).alias("growth"),
        )
    )


def volume_suite(spark: SparkSession, settings: Settings) -> Suite:
    """The volume check of every source at once, its description naming the files of each
    source whose newest batch spikes (one small query: the manifest, one row per source)."""
    return Suite(
        name="bronze.volume",
        frame=lambda spark, settings: batch_volumes(spark, settings),
        expectations=lambda: [
            gxe.ExpectColumnValuesToBeBetween(
                column="growth",
                max_value=VOLUME_SPIKE_FACTOR,
                description=(
                    f"the newest batch of each source has at most {VOLUME_SPIKE_FACTOR}x the "
                    f"median lines of its earlier batches; {_spiking_files(spark, settings)}"
                ),
            )
        ],
        reads=(INGESTED_FILES,),
    )


def _spiking_files(spark: SparkSession, settings: Settings) -> str:
    """``pos: a.csv, b.csv`` for each source whose newest batch spikes, or that none does."""
    spiking = (
        batch_volumes(spark, settings)
        .where(F.col("growth") > VOLUME_SPIKE_FACTOR)
        .orderBy("source")
        .collect()
    )  # one row per spiking source
    if not spiking:
        return "no source spikes"
    return "; ".join(f"{row.source}: {_named(row)}" for row in spiking)


def _named(row: Row) -> str:
    more = f" and more (batch {row.newest_batch})" if len(row.newest_files) > _FILES_SHOWN else ""
    return ", ".join(row.newest_files[:_FILES_SHOWN]) + more


# --- silver ------------------------------------------------------------------------------------


def customer_records_expectations() -> list[Expectation]:
    return [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=CUSTOMER_RECORDS.names),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *_unique_key("record_id"),
        gxe.ExpectColumnValuesToBeInSet(column="source", value_set=list(SOURCES)),
        *_present("source_key"),
        gxe.ExpectColumnValuesToMatchRegex(
            column="email", regex=EMAIL_FORMAT, description="emails are lower-case and well formed"
        ),
        gxe.ExpectColumnValuesToMatchRegex(
            column="phone", regex=E164_FORMAT, description="phones are in E.164"
        ),
        *[
            gxe.ExpectColumnValuesToBeOfType(
                column=c, type_="BooleanType", description="consent is true, false or unknown"
            )
            for c in CONSENT_COLUMNS
        ],
    ]


def interactions_expectations() -> list[Expectation]:
    return [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=INTERACTIONS.names),
        *_unique_key("interaction_id"),
        gxe.ExpectColumnValuesToBeInSet(column="source", value_set=list(SOURCES)),
        *[
            gxe.ExpectColumnValuesToNotBeNull(column=c)
            for c in ("channel", "ts", "type", "source_file", "line_no")
        ],
    ]


def silver_suites(spark: SparkSession, settings: Settings) -> list[Suite]:
    return [
        table_suite(SILVER_CUSTOMER_RECORDS, customer_records_expectations),
        table_suite(SILVER_INTERACTIONS, interactions_expectations),
    ]


# --- gold --------------------------------------------------------------------------------------


def xref_expectations() -> list[Expectation]:
    return [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=IDENTITY_XREF.names),
        *_unique_key("record_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="customer_id"),
        gxe.ExpectColumnValuesToBeBetween(
            column="cluster_size",
            min_value=1,
            max_value=MAX_CLUSTER_SIZE,
            description=f"no customer merges more than {MAX_CLUSTER_SIZE} records",
        ),
    ]


def profile_expectations() -> list[Expectation]:
    return [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=column_paths(CUSTOMER_PROFILE)),
        *_unique_key("customer_id"),
        gxe.ExpectColumnValuesToBeBetween(column="record_count", min_value=1),
    ]


def links_expectations() -> list[Expectation]:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="match_probability"),
        gxe.ExpectColumnValuesToBeBetween(column="match_probability", min_value=0, max_value=1),
    ]


def xref_coverage(spark: SparkSession, settings: Settings) -> DataFrame:
    """Per record id: its rows in silver.customer_records and in gold.identity_xref."""
    records = read_table(spark, settings, SILVER_CUSTOMER_RECORDS)
    xref = read_table(spark, settings, GOLD_IDENTITY_XREF)
    return (
        records.groupBy("record_id")
        .agg(F.count(F.lit(1)).alias("silver_rows"))
        .join(
            xref.groupBy("record_id").agg(F.count(F.lit(1)).alias("xref_rows")), "record_id", "full"
        )
        .fillna(0, ["silver_rows", "xref_rows"])
    )


def xref_coverage_expectations() -> list[Expectation]:
    return [
        _exactly_once("xref_rows", "every silver record is mapped exactly once in the xref"),
        _exactly_once("silver_rows", "every xref record is a silver record"),
    ]


def profiles_per_customer(spark: SparkSession, settings: Settings) -> DataFrame:
    """Per customer id: its golden records and the records the xref maps to it."""
    xref = read_table(spark, settings, GOLD_IDENTITY_XREF)
    profiles = read_table(spark, settings, GOLD_CUSTOMER_PROFILE)
    return (
        xref.groupBy("customer_id")
        .agg(F.count(F.lit(1)).alias("records"))
        .join(
            profiles.groupBy("customer_id").agg(F.count(F.lit(1)).alias("profiles")),
            "customer_id",
            "full",
        )
        .fillna(0, ["records", "profiles"])
    )


def profiles_per_customer_expectations() -> list[Expectation]:
    return [
        _exactly_once("profiles", "exactly one golden record per customer_id"),
        gxe.ExpectColumnValuesToBeBetween(
            column="records",
            min_value=1,
            max_value=MAX_CLUSTER_SIZE,
            description=f"every profile has 1 to {MAX_CLUSTER_SIZE} records in the xref",
        ),
    ]


def profile_provenance(spark: SparkSession, settings: Settings) -> DataFrame:
    """Per customer and provenance key: whether the attribute has a value with provenance, and
    whether the provenance names a record the xref maps to that same customer."""
    columns = {**SURVIVED_ATTRIBUTES, **{c: (c,) for c in CONSENT_ATTRIBUTES}}
    cited = F.explode(
        F.array(
            *[
                F.struct(
                    F.lit(key).alias("attribute"),
                    F.coalesce(*cs).isNotNull().alias("valued"),
                    F.col(f"provenance.{key}.record_id").alias("record_id"),
                )
                for key, cs in columns.items()
            ]
        )
    )
    owners = read_table(spark, settings, GOLD_IDENTITY_XREF).select(
        "record_id", F.col("customer_id").alias("owner")
    )
    return (
        read_table(spark, settings, GOLD_CUSTOMER_PROFILE)
        .select("customer_id", cited.alias("a"))
        .select("customer_id", "a.*")
        .join(owners, "record_id", "left")
        .select(
            "customer_id",
            "attribute",
            (F.col("valued") == F.col("record_id").isNotNull()).cast("int").alias("cited"),
            F.coalesce(F.col("owner") == F.col("customer_id"), F.col("record_id").isNull())
            .cast("int")
            .alias("own_record"),
        )
    )


def profile_provenance_expectations() -> list[Expectation]:
    return [
        _exactly_once("cited", "a golden attribute has provenance exactly when it has a value"),
        _exactly_once("own_record", "provenance names one of the customer's own records"),
    ]


def gold_suites(spark: SparkSession, settings: Settings) -> list[Suite]:
    return [
        table_suite(GOLD_IDENTITY_XREF, xref_expectations),
        table_suite(GOLD_CUSTOMER_PROFILE, profile_expectations),
        table_suite(GOLD_IDENTITY_LINKS, links_expectations),
        Suite(
            "gold.xref_coverage",
            xref_coverage,
            xref_coverage_expectations,
            (SILVER_CUSTOMER_RECORDS, GOLD_IDENTITY_XREF),
        ),
        Suite(
            "gold.profiles_per_customer",
            profiles_per_customer,
            profiles_per_customer_expectations,
            (GOLD_IDENTITY_XREF, GOLD_CUSTOMER_PROFILE),
        ),
        Suite(
            "gold.profile_provenance",
            profile_provenance,
            profile_provenance_expectations,
            (GOLD_IDENTITY_XREF, GOLD_CUSTOMER_PROFILE),
        ),
    ]


# --- curated -----------------------------------------------------------------------------------


def customers_curated(spark: SparkSession, settings: Settings) -> DataFrame:
    """Per customer id of a golden record or a curated table: its rows in each of them."""
    counts = [
        read_table(spark, settings, table)
        .groupBy("customer_id")
        .agg(F.count(F.lit(1)).alias(column))
        for table, column in _CURATED_PER_CUSTOMER.items()
    ]
    joined = counts[0]
    for frame in counts[1:]:
        joined = joined.join(frame, "customer_id", "full")
    return joined.fillna(0, list(_CURATED_PER_CUSTOMER.values()))


_CURATED_PER_CUSTOMER = {
    GOLD_CUSTOMER_PROFILE: "profiles",
    GOLD_CUSTOMER_360: "customer_360_rows",
    GOLD_AGENT_CONTEXT: "agent_context_rows",
}


def customers_curated_expectations() -> list[Expectation]:
    return [
        _exactly_once("customer_360_rows", "exactly one customer_360 row per golden record"),
        _exactly_once("agent_context_rows", "exactly one agent screen per golden record"),
        _exactly_once("profiles", "every curated customer has a golden record"),
    ]


def segment_consent(spark: SparkSession, settings: Settings) -> DataFrame:
    """Per segment member: whether the customer consented to the segment's purpose today."""
    # One row per customer even if customer_360 has duplicates (gold.customers_curated reports
    # those): the most restrictive consent of its rows.
    consents = (
        read_table(spark, settings, GOLD_CUSTOMER_360)
        .groupBy("customer_id")
        .agg(*[F.bool_and(f"consent_{p}").alias(p) for p in CONSENT_PURPOSES])
        .select(
            "customer_id",
            F.create_map(*[x for p in CONSENT_PURPOSES for x in (F.lit(p), F.col(p))]).alias(
                "consent"
            ),
        )
    )
    return (
        read_table(spark, settings, GOLD_SEGMENT_MEMBERSHIP)
        .join(consents, "customer_id", "left")
        .select(
            "segment",
            "customer_id",
            "consent_purpose",
            F.coalesce(F.col("consent")[F.col("consent_purpose")], F.lit(False))
            .cast("int")
            .alias("consented"),
        )
    )


def segment_consent_expectations() -> list[Expectation]:
    return [
        gxe.ExpectColumnValuesToBeInSet(column="consent_purpose", value_set=list(CONSENT_PURPOSES)),
        _exactly_once("consented", "every segment member consented to the segment's purpose"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["segment", "customer_id"]),
    ]


def timeline_expectations() -> list[Expectation]:
    return [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=CUSTOMER_TIMELINE.names),
        gxe.ExpectColumnValuesToNotBeNull(column="customer_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="ts"),
        gxe.ExpectColumnValuesToBeBetween(column="seq", min_value=1),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["customer_id", "seq"]),
    ]


def journey_expectations() -> list[Expectation]:
    rates = ("adoption_rate", "escalation_rate", "repeat_contact_rate")
    return [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["day", "channel"]),
        *[gxe.ExpectColumnValuesToBeBetween(column=r, min_value=0, max_value=1) for r in rates],
    ]


def curated_suites(spark: SparkSession, settings: Settings) -> list[Suite]:
    """What marketers and agents read: one 360 and one agent screen per golden record, segment
    members who consented, a timeline in order, rates that are rates."""
    return [
        Suite(
            "gold.customers_curated",
            customers_curated,
            customers_curated_expectations,
            tuple(_CURATED_PER_CUSTOMER),
        ),
        Suite(
            "gold.segment_consent",
            segment_consent,
            segment_consent_expectations,
            (GOLD_SEGMENT_MEMBERSHIP, GOLD_CUSTOMER_360),
        ),
        table_suite(GOLD_CUSTOMER_TIMELINE, timeline_expectations),
        table_suite(GOLD_JOURNEY_METRICS, journey_expectations),
    ]


# The suites of each gate, by the gate's name (``expectations.gate.Gate``).
GATE_SUITES: dict[str, Callable[[SparkSession, Settings], list[Suite]]] = {
    "bronze": bronze_suites,
    "silver": silver_suites,
    "gold": gold_suites,
    "curated": curated_suites,
}
