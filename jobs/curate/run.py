"""The curate job: ``curate`` rebuilds every curated table, ``curate_customers`` a few rows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.curate.agent_context import agent_context
from jobs.curate.cases import case_summaries
from jobs.curate.customer_360 import customer_360
from jobs.curate.journey_metrics import journey_metrics
from jobs.curate.report import write_journey_report
from jobs.curate.rules import CurationRules, checked_predicate, load_rules
from jobs.curate.timeline import customer_timeline
from jobs.lakehouse.delta import customer_id_frame, overwrite_table
from schemas.catalog import (
    GOLD_AGENT_CONTEXT,
    GOLD_CUSTOMER_360,
    GOLD_CUSTOMER_PROFILE,
    GOLD_CUSTOMER_TIMELINE,
    GOLD_IDENTITY_XREF,
    GOLD_JOURNEY_METRICS,
    SILVER_INTERACTIONS,
    Table,
)
from schemas.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class CurateSummary:
    """What ``curate`` built: rows per table, the reference time and the actions proposed."""

    as_of: datetime
    rows: dict[str, int]
    next_best_actions: dict[str, int] = field(default_factory=dict)
    report_path: str = ""


@dataclass(frozen=True)
class CustomerTables:
    """What ``curate_customers`` built: the reference time and, per table, the customers' rows,
    computed and not stored yet (``jobs.lakehouse.delta.store_customer_rows`` stores them)."""

    as_of: datetime
    rows: dict[Table, DataFrame]


# How a build step stores a table: write the frame, return the rows later steps should read.
_Store = Callable[[Table, DataFrame], DataFrame]


def curate(spark: SparkSession, settings: Settings) -> CurateSummary:
    """Rebuild customer_timeline, customer_360, agent_context and journey_metrics."""
    rules = load_rules(settings.curation_rules)

    def overwrite(table: Table, df: DataFrame) -> DataFrame:
        return _replace(spark, df, settings, table)

    timeline = overwrite(GOLD_CUSTOMER_TIMELINE, _timeline(spark, settings, rules))
    as_of_micros = _as_of_micros(timeline, settings)
    profile = _require(spark, settings, GOLD_CUSTOMER_PROFILE, "omnicdp identity resolve")
    built = {
        GOLD_CUSTOMER_TIMELINE: timeline,
        **_build_customer_tables(
            settings, rules, timeline, profile, as_of_micros, overwrite, journeys=True
        ),
    }
    report = write_journey_report(built[GOLD_JOURNEY_METRICS], settings)
    agents = built[GOLD_AGENT_CONTEXT]
    summary = CurateSummary(
        as_of=_as_of_datetime(as_of_micros),
        rows={t.qualified_name: df.count() for t, df in built.items()},
        next_best_actions={
            r.next_best_action: r["count"]
            for r in agents.groupBy("next_best_action").count().collect()
        },
        report_path=str(report),
    )
    log.info("curate: as of %s, rows %s", summary.as_of, summary.rows)
    return summary


def curate_customers(
    spark: SparkSession,
    settings: Settings,
    customer_ids: Sequence[str],
    identity: Mapping[Table, DataFrame],
) -> CustomerTables:
    """Build the timeline, customer_360 and agent_context rows of these customers only.

    The micro-batch path (``jobs.microbatch``) calls this for the few customers a micro-batch
    touched; rebuilding every customer's rows for them would cost a full ``curate``.
    ``customer_ids`` are on the driver (see :func:`jobs.lakehouse.delta.collect_customer_ids`;
    duplicates are fine, at least one). ``identity`` holds their gold.identity_xref and
    gold.customer_profile rows as the micro-batch computed them
    (:func:`identity.increment.resolve_increment`), which may be newer than the tables: the
    micro-batch serves the rows built here before it stores any of them.

    The rows are built by the functions ``curate`` uses, from the same tables narrowed to
    those customers: their interactions (through their xref records) and their golden records.
    Every table here is per customer, and each customer's whole history is rebuilt, so
    timeline ``seq`` numbers, cases and per-channel rankings are exactly what ``curate`` gives
    them at the same ``as_of``. ``as_of`` is ``Settings.as_of`` or, as in ``curate``, the
    latest interaction in the whole gold.customer_timeline once these customers' rows replace
    theirs.

    The rows come back computed, each table's once, in the order they are to be stored (timeline
    first). Left to the nightly ``curate``: gold.journey_metrics and gold.segment_membership,
    which aggregate over everyone, and the other customers' rows, which keep the ``as_of`` they
    were built at (customer_360's ``as_of`` column says which), so their recency and open-case
    ageing do not move until then.
    """
    rules = load_rules(settings.curation_rules)
    customers = sorted(set(customer_ids))
    ids = customer_id_frame(spark, customers)

    def own(table: Table) -> DataFrame:
        return identity[table].join(F.broadcast(ids), "customer_id", "left_semi")

    built: dict[Table, DataFrame] = {}

    def compute(table: Table, df: DataFrame) -> DataFrame:
        built[table] = df.localCheckpoint()
        return built[table]

    timeline = compute(
        GOLD_CUSTOMER_TIMELINE, _timeline(spark, settings, rules, own(GOLD_IDENTITY_XREF))
    )
    stored = _require(spark, settings, GOLD_CUSTOMER_TIMELINE, "omnicdp curate")
    others = stored.join(F.broadcast(ids), "customer_id", "left_anti").select("ts")
    as_of_micros = _as_of_micros(others.unionByName(timeline.select("ts")), settings)
    profile = own(GOLD_CUSTOMER_PROFILE)
    _build_customer_tables(
        settings, rules, timeline, profile, as_of_micros, compute, journeys=False
    )
    as_of = _as_of_datetime(as_of_micros)
    log.info("curate_customers: %d customers as of %s", len(customers), as_of)
    return CustomerTables(as_of=as_of, rows=built)


def _timeline(
    spark: SparkSession,
    settings: Settings,
    rules: CurationRules,
    xref: DataFrame | None = None,
) -> DataFrame:
    """The timeline of every resolved customer, or of the customers of ``xref`` (some
    customers' xref rows) only, with the rules' predicates checked against it."""
    interactions = _require(spark, settings, SILVER_INTERACTIONS, "omnicdp standardize")
    if xref is None:
        xref = _require(spark, settings, GOLD_IDENTITY_XREF, "omnicdp identity resolve")
    timeline = customer_timeline(interactions, xref, rules)
    _check_timeline_predicates(timeline, rules, settings.curation_rules)
    return timeline


def _build_customer_tables(
    settings: Settings,
    rules: CurationRules,
    timeline: DataFrame,
    profile: DataFrame,
    as_of_micros: int,
    store: _Store,
    journeys: bool,
) -> dict[Table, DataFrame]:
    """The tables built from the timeline as of one moment, each stored once and the stored
    rows read by the next; journey metrics only when ``timeline`` holds every customer."""
    as_of = F.timestamp_micros(F.lit(as_of_micros))
    events = timeline.where(F.col("ts") <= as_of)
    cases = case_summaries(events, rules, as_of).persist()  # read by three tables
    try:
        c360 = store(GOLD_CUSTOMER_360, customer_360(events, cases, profile, rules, as_of))
        agents = agent_context(events, cases, c360, profile, rules, as_of, settings.curation_rules)
        built = {GOLD_CUSTOMER_360: c360, GOLD_AGENT_CONTEXT: store(GOLD_AGENT_CONTEXT, agents)}
        if journeys:
            built[GOLD_JOURNEY_METRICS] = store(
                GOLD_JOURNEY_METRICS, journey_metrics(events, cases, rules)
            )
        return built
    finally:
        cases.unpersist()


def _require(spark: SparkSession, settings: Settings, table: Table, step: str) -> DataFrame:
    from delta.tables import DeltaTable

    path = table.path(settings)
    if not DeltaTable.isDeltaTable(spark, path):
        raise RuntimeError(f"{table.qualified_name} does not exist at {path}: run `{step}` first")
    return spark.read.format("delta").load(path)


def _replace(spark: SparkSession, df: DataFrame, settings: Settings, table: Table) -> DataFrame:
    """Overwrite ``table`` atomically with ``df`` and return the written table for the next
    step, so later steps read the stored rows instead of recomputing them."""
    overwrite_table(df, settings, table)
    return spark.read.format("delta").load(table.path(settings))


def _as_of_datetime(as_of_micros: int) -> datetime:
    """The reference time as a naive UTC datetime, as Spark returns timestamps."""
    return datetime.fromtimestamp(as_of_micros / 1e6, UTC).replace(tzinfo=None)


def _as_of_micros(timeline: DataFrame, settings: Settings) -> int:
    """The reference time in microseconds since the epoch: configured (naive = UTC) or the
    latest interaction; kept as a number so no local time zone can shift it."""
    if settings.as_of is not None:
        as_of = settings.as_of
        as_of = as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of.astimezone(UTC)
        return round(as_of.timestamp() * 1_000_000)
    latest = timeline.agg(F.unix_micros(F.max("ts")).alias("m")).first()
    if latest is None or latest.m is None:
        raise RuntimeError("no interaction belongs to a resolved customer: nothing to curate")
    return int(latest.m)


def _check_timeline_predicates(timeline: DataFrame, rules: CurationRules, path: Path) -> None:
    for key in ("self_service", "failed_self_service", "agent_contact", "service_contact"):
        checked_predicate(timeline, getattr(rules, key), f"{path}: {key}")
