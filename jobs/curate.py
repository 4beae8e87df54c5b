"""Curated gold: the tables marketers and agents read, rebuilt from silver and gold identity.

``curate`` reads ``silver.interactions``, ``gold.identity_xref`` and ``gold.customer_profile``
(never bronze) and replaces four tables, each with one Delta overwrite, so a rerun on the same
inputs writes the same rows and a failed run leaves readers on the previous version:

``gold.customer_timeline``
    Every interaction of a resolved customer (anonymous and unresolved records have no
    customer), numbered in time order, with a one-line ``summary`` built from structured fields
    only: free text such as DMs can carry emails and phone numbers, so it never enters a summary.
    A web page about a case (``case_page_pattern``) becomes a touch of that case, so a case that
    starts on social and continues on the web shows both.
``gold.customer_360``
    Recency (days since the last order), frequency and monetary (orders and spend in the last
    ``rfm_window_days``) over store purchases and web/app orders; lifetime value (all spend,
    historical, not predicted) and a tier from it. Money is converted to one reporting currency
    with the fixed rates of the rules file, because customers buy in KRW and USD. Channel mix
    counts active days per channel rather than events, so a web session's twenty page views do
    not outweigh a store visit; the preferred channel has the most active days (ties: the most
    recently used). Brand-initiated events (our DM replies) are not customer activity. Category
    affinity adds each event type's weight to the categories it names, normalized to sum 1.
    Consent per purpose comes from the golden record (the most restrictive statement wins).
``gold.agent_context``
    One row per customer: golden name, tier, language, preferred channel; open cases with the
    channels they travelled through in order (``social -> web -> call_center``); the last
    interactions per channel; recent failed self-service (a failed web return), marked resolved
    only when an agent contact closed with a closing status afterwards; and a next best action.
``gold.journey_metrics``
    Per UTC day and channel: adoption (customers whose first activity on the channel falls that
    day, and the cumulative share of known customers who use it); channel switches inside one
    case, counted on the channel the customer left; escalations, i.e. self-service attempts
    followed by an agent contact within ``escalation_window_hours``, counted on the self-service
    channel; mean and p90 resolution time of cases resolved that day, by the channel the case
    started on (resolution = the end of the first contact with a closing status); repeat
    contacts, i.e. service contacts (one per customer, channel and day) followed by another
    within ``repeat_contact_days``. An HTML report with inline SVG charts goes to
    ``reports/journey_metrics.html``.

``curate_customers`` builds the timeline, 360 and agent context rows of a few customers only (the
micro-batch path) with the same functions, for the micro-batch to serve and then store in place
of theirs; journey metrics, over everyone, wait for the next ``curate``.

A case is open unless its latest status is a closing status; a case idle for more than
``case_idle_close_days`` is no longer shown as open.

Next best action: the rules file lists rules in priority order; each has a Spark SQL ``when``
over the agent features (listed in the rules file) and a ``reason`` template naming features in
braces. The first rule that holds gives ``next_best_action``, its filled-in reason and its id.
The default rules put a failed, unfixed self-service first (the customer has already tried
alone), then a case that has crossed channels (the customer must not repeat the story), then
negative sentiment, any open case, a lapsing high-value customer and a cross-sell.

Everything is relative to ``as_of``: ``Settings.as_of`` or the latest interaction, never the
wall clock, so rebuilding the same inputs gives the same tables.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError
from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType

from jobs.lakehouse.charts import line_chart, write_html_page
from jobs.lakehouse.delta import customer_id_frame, overwrite_table
from jobs.lakehouse.spark_schema import conform
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
from schemas.consent import CONSENT_PURPOSES
from schemas.settings import Settings
from schemas.tables import (
    AGENT_CONTEXT,
    CUSTOMER_360,
    CUSTOMER_TIMELINE,
    JOURNEY_METRICS,
)

log = logging.getLogger(__name__)

_MONEY = "decimal(14,2)"
_DAY_SECONDS = 86400


# --- rules ---------------------------------------------------------------------------------------


class _Strict(BaseModel):
    """Rules models refuse unknown keys, so a misspelt rule is an error rather than ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(_Strict):
    """A customer tier and the lifetime value (reporting currency) from which it applies."""

    name: str
    min_lifetime_value: Decimal


class ActionRule(_Strict):
    """One next-best-action rule: a predicate over agent features, an action and its reason."""

    id: str
    when: str
    action: str
    reason: str


class CurationRules(_Strict):
    """The rules file (``Settings.curation_rules``); every field is explained in it."""

    reporting_currency: str
    currency_per_reporting_unit: dict[str, Decimal]
    rfm_window_days: PositiveInt
    order_types: list[str]
    brand_initiated_types: list[str]
    affinity_weights: dict[str, float]
    tiers: list[Tier] = Field(min_length=1)
    languages: dict[str, str]
    default_language: str
    case_page_pattern: str
    closing_statuses: list[str]
    case_idle_close_days: PositiveInt
    self_service: str
    failed_self_service: str
    agent_contact: str
    service_contact: str
    escalation_window_hours: PositiveInt
    repeat_contact_days: PositiveInt
    recent_days: PositiveInt
    last_interactions_per_channel: PositiveInt
    negative_sentiment: float
    next_best_actions: list[ActionRule] = Field(min_length=1)


class RuleError(ValueError):
    """A configured rule or predicate that does not fit the data; the message says where."""


def load_rules(path: Path) -> CurationRules:
    """Read and check the rules file; a mistake names the file and the field."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise RuleError(f"{path}: cannot read the rules file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise RuleError(f"{path}: not valid YAML: {err}") from None
    try:
        return CurationRules.model_validate(data)
    except ValidationError as err:
        raise RuleError(f"{path}: {describe_validation_error(err)}") from None


def describe_validation_error(err: ValidationError) -> str:
    """Pydantic's errors as ``field.path: message`` without echoing the input values."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in err.errors()
    )


# Spark SQL functions that call arbitrary Java methods: never needed to select customers.
_JAVA_CALLS = re.compile(r"\b(try_)?(reflect|java_method)\s*\(", re.IGNORECASE)


def checked_predicate(frame: DataFrame, expression: str, where: str) -> Column:
    """``expression`` (Spark SQL) as a boolean column of ``frame``, or an error naming ``where``.

    Analysing against the frame's schema catches unknown columns and type mistakes before any
    data is read, and lets the error name the exact column instead of a Spark stack trace.
    Predicates come from files people edit, so functions that reach into the JVM are refused.
    """
    if _JAVA_CALLS.search(expression):
        raise RuleError(f"{where}: the predicate may not call Java methods (reflect, java_method)")
    try:
        column = F.expr(expression)
        dtype = frame.select(column.alias("_predicate")).schema["_predicate"].dataType
    except ParseException as err:
        raise RuleError(f"{where}: the predicate does not parse: {_first_line(err)}") from None
    except AnalysisException as err:
        raise RuleError(f"{where}: {_analysis_problem(err, frame)}") from None
    if not isinstance(dtype, BooleanType):
        raise RuleError(
            f"{where}: the predicate gives {dtype.simpleString()}, not true/false: {expression}"
        )
    return column


def _analysis_problem(err: AnalysisException, frame: DataFrame) -> str:
    condition = err.getCondition() or ""
    params = err.getMessageParameters() or {}
    if condition.startswith("UNRESOLVED_COLUMN") or condition.startswith("UNRESOLVED_FIELD"):
        name = params.get("objectName", params.get("fieldName", "?")).replace("`", "")
        return f"unknown column '{name}' (available: {', '.join(sorted(frame.columns))})"
    if condition.startswith("UNRESOLVED_ROUTINE"):
        return f"unknown function {params.get('routineName', '?')}"
    return _first_line(err)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]


# --- the job -------------------------------------------------------------------------------------


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


def _predicate(rules: CurationRules, key: str) -> Column:
    """A rules-file predicate over timeline columns (already checked by ``curate``)."""
    return F.coalesce(F.expr(getattr(rules, key)), F.lit(False))


def _days_before(as_of: Column, days: int) -> Column:
    return as_of - F.make_interval(days=F.lit(days))


# --- gold.customer_timeline ----------------------------------------------------------------------


def customer_timeline(interactions: DataFrame, xref: DataFrame, rules: CurationRules) -> DataFrame:
    """Resolved interactions with customer, case, money in the reporting currency and summary."""
    events = interactions.join(xref.select("record_id", "customer_id"), "record_id")
    events = events.withColumns(
        {
            "case_id": F.coalesce("case_id", _case_from_page(rules.case_page_pattern)),
            "initiated_by": F.when(
                F.col("type").isin(rules.brand_initiated_types), "brand"
            ).otherwise("customer"),
            "amount_reporting": to_reporting_currency(F.col("amount"), F.col("currency"), rules),
        }
    )
    events = events.withColumn("summary", event_summary(rules.negative_sentiment))
    order = Window.partitionBy("customer_id").orderBy("ts", "interaction_id")
    return conform(events.withColumn("seq", F.row_number().over(order)), CUSTOMER_TIMELINE)


def _case_from_page(pattern: str) -> Column:
    found = F.regexp_extract(F.coalesce("text", F.lit("")), pattern, 1)
    return F.when(found != "", found)


def to_reporting_currency(amount: Column, currency: Column, rules: CurationRules) -> Column:
    """``amount`` in the reporting currency, rounded to cents; unknown currency gives null."""
    rates = F.create_map(
        *[x for c, r in rules.currency_per_reporting_unit.items() for x in (F.lit(c), F.lit(r))]
    )
    return (amount / rates[F.upper(currency)]).cast(_MONEY)


def event_summary(negative_sentiment: float) -> Column:
    """One line per event, such as "Web: return request failed (wrong size): <web error>".

    Only structured fields and system texts (page paths, web error messages) are used; what a
    customer typed can hold an email or phone number and stays out of gold summaries.
    """
    label = F.initcap(F.regexp_replace("channel", "_", " "))
    money = F.when(
        F.col("amount").isNotNull(),
        F.concat_ws(" ", F.col("amount").cast("string"), F.col("currency")),
    )
    categories = _parenthesized(F.regexp_replace("categories", r"\|", ", "))
    on_case = F.when(F.col("case_id").isNotNull(), F.concat(F.lit("on case "), "case_id"))
    kind = F.col("type")
    phrase = (
        F.when(kind.isin("purchase", "order"), F.concat_ws(" ", kind, money, categories))
        .when(kind == "page_view", F.concat_ws(" ", F.lit("page view"), F.col("text")))
        .when(kind == "return_request", _return_phrase())
        .when(kind == "call", _call_phrase())
        .when(kind == "dm_inbound", _dm_phrase(on_case, negative_sentiment))
        .when(kind == "dm_outbound", F.concat_ws(" ", F.lit("reply by brand"), on_case))
        .when(kind == "support_chat", F.concat_ws(" ", F.lit("support chat"), on_case))
        .when(kind == "product_view", F.concat_ws(" ", F.lit("product view"), categories))
        .otherwise(F.concat_ws(" ", F.regexp_replace(kind, "_", " "), F.col("status")))
    )
    return F.concat(label, F.lit(": "), phrase)


def _parenthesized(value: Column) -> Column:
    return F.when(value.isNotNull(), F.concat(F.lit("("), value, F.lit(")")))


def _return_phrase() -> Column:
    reason = _parenthesized(F.col("reason"))
    head = F.concat_ws(" ", F.lit("return request"), F.col("status"), reason)
    failed = (F.col("status") == "failed") & F.col("text").isNotNull()
    return F.when(failed, F.concat(head, F.lit(": "), F.col("text"))).otherwise(head)


def _call_phrase() -> Column:
    minutes = F.when(
        F.col("handle_time_s").isNotNull(),
        F.format_string("%.1f min", F.col("handle_time_s") / 60.0),
    )
    details = F.concat_ws(
        ", ",
        F.col("status"),
        minutes,
        F.when(F.col("escalated"), F.lit("escalated")),
        F.when(F.col("transferred"), F.lit("transferred")),
    )
    about = F.when(F.col("reason").isNotNull(), F.concat(F.lit("about "), "reason"))
    case = F.when(F.col("case_id").isNotNull(), F.concat(F.lit("case "), "case_id"))
    inner = F.concat_ws(": ", case, F.when(details != "", details))
    return F.concat_ws(" ", F.lit("call"), about, _parenthesized(F.when(inner != "", inner)))


def _dm_phrase(on_case: Column, negative: float) -> Column:
    sentiment = F.col("sentiment")
    mood = (
        F.when(sentiment <= negative, "negative")
        .when(sentiment >= -negative, "positive")
        .when(sentiment.isNotNull(), "neutral")
    )
    return F.concat_ws(" ", F.lit("message from customer"), on_case, _parenthesized(mood))


def combine(keys: list[str], anchor: DataFrame, parts: list[DataFrame]) -> DataFrame:
    """``anchor`` with the columns of ``parts`` beside it, like a chain of left joins on ``keys``.

    Each part has at most one row per key and its own columns, so a union and one aggregation
    give the same rows with one shuffle instead of one per join, whatever the number of parts.
    """
    union = anchor.withColumn("_anchor", F.lit(True))
    for part in parts:
        union = union.unionByName(part, allowMissingColumns=True)
    values = [c for c in union.columns if c not in keys]
    combined = union.groupBy(*keys).agg(*[F.first(c, ignorenulls=True).alias(c) for c in values])
    return combined.where("_anchor").drop("_anchor")


# --- cases ---------------------------------------------------------------------------------------


def case_summaries(events: DataFrame, rules: CurationRules, as_of: Column) -> DataFrame:
    """One row per (customer, case): when it opened, the channels it went through, its status.

    Outbound replies count as touches (they often open the case); the channel path merges
    consecutive touches on one channel, so social, social, web, call reads social -> web -> call.
    """
    touches = events.where(F.col("case_id").isNotNull())
    ordered = F.array_sort(F.collect_list(F.struct("ts", "interaction_id", "channel")))
    cases = touches.groupBy("customer_id", "case_id").agg(
        F.min("ts").alias("opened_at"),
        F.max("ts").alias("last_activity_at"),
        F.count(F.lit(1)).alias("touches"),
        F.transform(ordered, lambda t: t["channel"]).alias("_channels"),
        F.max_by(
            "status", F.when(F.col("status").isNotNull(), F.struct("ts", "interaction_id"))
        ).alias("last_status"),
        F.max_by(
            "reason", F.when(F.col("reason").isNotNull(), F.struct("ts", "interaction_id"))
        ).alias("reason"),
        F.min(F.when(F.col("status").isin(rules.closing_statuses), _contact_end())).alias(
            "resolved_at"
        ),
    )
    path = F.filter(F.col("_channels"), lambda c, i: (i == 0) | (c != F.get("_channels", i - 1)))
    closed = F.coalesce(F.col("last_status").isin(rules.closing_statuses), F.lit(False))
    idle = F.col("last_activity_at") <= _days_before(as_of, rules.case_idle_close_days)
    return (
        cases.withColumn("channel_path", path)
        .withColumns(
            {
                "channel_history": F.array_join("channel_path", " -> "),
                "start_channel": F.col("_channels")[0],
                "is_open": ~closed & ~idle,
            }
        )
        .drop("_channels")
    )


def _contact_end() -> Column:
    """When a contact ended: a call lasts its handle time; other events are instants."""
    return F.col("ts") + F.make_interval(secs=F.coalesce("handle_time_s", F.lit(0)))


def _open_case_struct() -> Column:
    return F.struct(
        "case_id",
        "opened_at",
        "last_activity_at",
        "channel_path",
        "channel_history",
        "touches",
        "last_status",
        "reason",
    )


# --- gold.customer_360 ---------------------------------------------------------------------------


def customer_360(
    events: DataFrame,
    cases: DataFrame,
    profile: DataFrame,
    rules: CurationRules,
    as_of: Column,
) -> DataFrame:
    """One row per golden customer: value, channels, cases, reasons, interests and consent."""
    customer = events.where(F.col("initiated_by") == "customer")
    parts = [
        _activity(events),
        _orders(events, rules, as_of),
        _channel_usage(customer),
        _open_cases(cases),
        _contact_reasons(customer.where(_predicate(rules, "service_contact"))),
        _category_affinity(customer, rules.affinity_weights),
    ]
    customers = profile.select(
        "customer_id",
        "country",
        *[F.col(f"{p}_opt_in").alias(f"consent_{p}") for p in CONSENT_PURPOSES],
    )
    result = combine(["customer_id"], customers, parts)
    as_of_day = F.to_date(as_of)
    return conform(
        result.withColumns(
            {
                "language": _language(rules),
                "tier": _tier(rules),
                "interaction_count": F.coalesce("interaction_count", F.lit(0)),
                "order_count": F.coalesce("order_count", F.lit(0)),
                "frequency": F.coalesce("frequency", F.lit(0)),
                "monetary": F.coalesce("monetary", F.lit(0)),
                "lifetime_value": F.coalesce("lifetime_value", F.lit(0)),
                "recency_days": F.datediff(as_of_day, F.to_date("last_order_at")),
                "days_since_last_contact": F.datediff(as_of_day, F.to_date("_last_contact")),
                "open_case_count": F.coalesce("open_case_count", F.lit(0)),
                "reporting_currency": F.lit(rules.reporting_currency),
                "as_of": as_of,
            }
        ),
        CUSTOMER_360,
    )


def _activity(events: DataFrame) -> DataFrame:
    return events.groupBy("customer_id").agg(
        F.min("ts").alias("first_seen_at"),
        F.max("ts").alias("last_seen_at"),
        F.count(F.lit(1)).alias("interaction_count"),
    )


def _orders(events: DataFrame, rules: CurationRules, as_of: Column) -> DataFrame:
    """RFM and lifetime value; per channel first, then per customer, in one pass."""
    orders = events.where(F.col("type").isin(rules.order_types))
    recent = F.col("ts") > _days_before(as_of, rules.rfm_window_days)
    per_channel = orders.groupBy("customer_id", "channel").agg(
        F.count(F.lit(1)).alias("n"),
        F.count(F.when(recent, 1)).alias("n_recent"),
        F.sum("amount_reporting").alias("spend"),
        F.sum(F.when(recent, F.col("amount_reporting"))).alias("spend_recent"),
        F.min("ts").alias("first"),
        F.max("ts").alias("last"),
    )
    return (
        per_channel.groupBy("customer_id")
        .agg(
            F.sum("n").alias("order_count"),
            F.sum("n_recent").alias("frequency"),
            F.coalesce(F.sum("spend"), F.lit(0)).alias("lifetime_value"),
            F.coalesce(F.sum("spend_recent"), F.lit(0)).alias("monetary"),
            F.min("first").alias("first_order_at"),
            F.max("last").alias("last_order_at"),
            F.map_from_entries(F.collect_list(F.struct("channel", "n"))).alias("orders_by_channel"),
        )
        .withColumn("avg_order_value", F.col("lifetime_value") / F.col("order_count"))
    )


def _channel_usage(customer_events: DataFrame) -> DataFrame:
    """Active days and last contact per channel; the preferred channel has most active days."""
    per_channel = customer_events.groupBy("customer_id", "channel").agg(
        F.count_distinct(F.to_date("ts")).alias("days"), F.max("ts").alias("last")
    )
    return per_channel.groupBy("customer_id").agg(
        F.map_from_entries(F.collect_list(F.struct("channel", "days"))).alias("channel_mix"),
        F.map_from_entries(F.collect_list(F.struct("channel", "last"))).alias("last_contact_at"),
        F.max_by("channel", F.struct("days", "last", "channel")).alias("preferred_channel"),
        F.max("last").alias("_last_contact"),
    )


def _open_cases(cases: DataFrame) -> DataFrame:
    return (
        cases.where("is_open")
        .groupBy("customer_id")
        .agg(
            F.count(F.lit(1)).alias("open_case_count"),
            F.array_sort(F.collect_list("case_id")).alias("open_case_ids"),
        )
    )


def _contact_reasons(contacts: DataFrame) -> DataFrame:
    per_reason = (
        contacts.where(F.col("reason").isNotNull()).groupBy("customer_id", "reason").count()
    )
    return per_reason.groupBy("customer_id").agg(
        F.map_from_entries(F.collect_list(F.struct("reason", "count"))).alias("contact_reasons")
    )


def _category_affinity(customer_events: DataFrame, weights: dict[str, float]) -> DataFrame:
    """Share of weighted category mentions per customer, rounded to 3 places, and the top one."""
    weight = F.create_map(*[x for t, w in weights.items() for x in (F.lit(t), F.lit(w))])
    mentions = customer_events.where(
        F.col("categories").isNotNull() & F.col("type").isin(list(weights))
    ).select(
        "customer_id",
        F.explode(F.split("categories", r"\|")).alias("category"),
        weight[F.col("type")].alias("w"),
    )
    per_category = mentions.groupBy("customer_id", "category").agg(F.sum("w").alias("w"))
    total = Window.partitionBy("customer_id")
    shares = per_category.withColumn("share", F.round(F.col("w") / F.sum("w").over(total), 3))
    return shares.groupBy("customer_id").agg(
        F.map_from_entries(F.collect_list(F.struct("category", "share"))).alias(
            "category_affinity"
        ),
        F.min_by("category", F.struct((-F.col("w")).alias("w"), "category")).alias("top_category"),
    )


def _language(rules: CurationRules) -> Column:
    languages = F.create_map(*[F.lit(x) for kv in rules.languages.items() for x in kv])
    return F.coalesce(languages[F.upper("country")], F.lit(rules.default_language))


def _tier(rules: CurationRules) -> Column:
    """The tier with the highest minimum the lifetime value reaches."""
    ltv = F.coalesce("lifetime_value", F.lit(0))
    highest, *others = sorted(rules.tiers, key=lambda t: t.min_lifetime_value, reverse=True)
    tier = F.when(ltv >= F.lit(highest.min_lifetime_value), F.lit(highest.name))
    for t in others:
        tier = tier.when(ltv >= F.lit(t.min_lifetime_value), F.lit(t.name))
    return tier


# --- gold.agent_context --------------------------------------------------------------------------


def agent_context(
    events: DataFrame,
    cases: DataFrame,
    c360: DataFrame,
    profile: DataFrame,
    rules: CurationRules,
    as_of: Column,
    rules_path: Path,
) -> DataFrame:
    """One screen per customer: who, what is open, what happened lately, what to do next."""
    parts = [
        profile.select("customer_id", "full_name"),
        _agent_cases(cases),
        _last_interactions(events, rules.last_interactions_per_channel),
        _failed_self_service(events, rules, as_of),
        _recent_sentiment(events, rules, as_of),
    ]
    features = combine(["customer_id"], c360, parts).withColumns(
        {
            "failed_self_service_open": F.coalesce("failed_self_service_open", F.lit(0)),
            "top_open_case_channels": F.coalesce(F.size("top_open_case.channel_path"), F.lit(0)),
            "top_open_case_id": F.col("top_open_case.case_id"),
            "top_open_case_history": F.col("top_open_case.channel_history"),
            "top_open_case_status": F.col("top_open_case.last_status"),
        }
    )
    action, reason, rule = next_best_action(features, rules.next_best_actions, rules_path)
    return conform(
        features.withColumns(
            {
                "display_name": F.initcap("full_name"),
                "consents": F.array_compact(
                    F.array(*[F.when(F.col(f"consent_{p}"), F.lit(p)) for p in CONSENT_PURPOSES])
                ),
                "open_cases": F.coalesce("open_cases", F.array()),
                "last_interactions": F.coalesce("last_interactions", F.array()),
                "failed_self_service": F.coalesce("failed_self_service", F.array()),
                "last_contact_at": F.array_max(F.map_values("last_contact_at")),
                "next_best_action": action,
                "next_best_action_reason": reason,
                "next_best_action_rule": rule,
            }
        ),
        AGENT_CONTEXT,
    )


def _newest_first(key: Column, value: Column) -> Column:
    """collect_list of ``value`` ordered by ``key`` descending."""
    pairs = F.sort_array(F.collect_list(F.struct(key.alias("k"), value.alias("v"))), asc=False)
    return F.transform(pairs, lambda p: p["v"])


def _agent_cases(cases: DataFrame) -> DataFrame:
    """Open cases, most recently active first, and the one that most needs ownership: the open
    case that crossed most channels (then the most recently active)."""
    return (
        cases.where("is_open")
        .groupBy("customer_id")
        .agg(
            _newest_first(F.col("last_activity_at"), _open_case_struct()).alias("open_cases"),
            F.max_by(
                _open_case_struct(), F.struct(F.size("channel_path"), "last_activity_at")
            ).alias("top_open_case"),
        )
    )


def _last_interactions(events: DataFrame, per_channel: int) -> DataFrame:
    newest = Window.partitionBy("customer_id", "channel").orderBy(
        F.col("ts").desc(), F.col("interaction_id").desc()
    )
    recent = events.withColumn("_n", F.row_number().over(newest)).where(F.col("_n") <= per_channel)
    item = F.struct("channel", "ts", "type", "status", "summary")
    return recent.groupBy("customer_id").agg(
        _newest_first(F.struct("ts", "interaction_id"), item).alias("last_interactions")
    )


def _failed_self_service(events: DataFrame, rules: CurationRules, as_of: Column) -> DataFrame:
    """Recent failed self-service; resolved only if an agent contact closed after it."""
    closing_agent = _predicate(rules, "agent_contact") & F.col("status").isin(
        rules.closing_statuses
    )
    last_fix = events.where(closing_agent).groupBy("customer_id").agg(F.max("ts").alias("_fix"))
    failed = events.where(
        _predicate(rules, "failed_self_service")
        & (F.col("ts") > _days_before(as_of, rules.recent_days))
    ).join(last_fix, "customer_id", "left")
    resolved = F.coalesce(F.col("_fix") > F.col("ts"), F.lit(False))
    item = F.struct("ts", "channel", "type", "summary", resolved.alias("resolved_after"))
    return failed.groupBy("customer_id").agg(
        _newest_first(F.struct("ts", "interaction_id"), item).alias("failed_self_service"),
        F.count(F.when(~resolved, 1)).alias("failed_self_service_open"),
        F.max_by("summary", F.when(~resolved, F.struct("ts", "interaction_id"))).alias(
            "last_failed_self_service"
        ),
    )


def _recent_sentiment(events: DataFrame, rules: CurationRules, as_of: Column) -> DataFrame:
    recent = events.where(
        (F.col("initiated_by") == "customer")
        & F.col("sentiment").isNotNull()
        & (F.col("ts") > _days_before(as_of, rules.recent_days))
    )
    return recent.groupBy("customer_id").agg(
        F.round(F.avg("sentiment"), 2).alias("recent_sentiment")
    )


def next_best_action(
    features: DataFrame, action_rules: list[ActionRule], rules_path: Path
) -> tuple[Column, Column, Column]:
    """(action, reason, rule id) of the first rule that holds, as columns of ``features``."""
    action = reason = rule = F.lit(None).cast("string")
    for r in reversed(action_rules):  # built inside out so the first rule is checked first
        where = f"{rules_path}: next_best_actions rule '{r.id}'"
        holds = F.coalesce(checked_predicate(features, r.when, where), F.lit(False))
        action = F.when(holds, F.lit(r.action)).otherwise(action)
        reason = F.when(holds, reason_text(features, r.reason, where)).otherwise(reason)
        rule = F.when(holds, F.lit(r.id)).otherwise(rule)
    return action, reason, rule


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def reason_text(features: DataFrame, template: str, where: str) -> Column:
    """``template`` with each ``{feature}`` replaced by its value ("none" when null)."""
    parts: list[Column] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        name = match.group(1)
        if name not in features.columns:
            raise RuleError(
                f"{where}: the reason names unknown column '{name}' "
                f"(available: {', '.join(sorted(features.columns))})"
            )
        parts += [
            F.lit(template[position : match.start()]),
            F.coalesce(F.col(name).cast("string"), F.lit("none")),
        ]
        position = match.end()
    return F.concat(*parts, F.lit(template[position:]))


# --- gold.journey_metrics ------------------------------------------------------------------------


# Journey counts per day and channel that add up over days, so the report totals them per
# channel; zero where a day and channel had none.
_JOURNEY_TOTALS = (
    "new_adopters",
    "cases_started",
    "channel_switches",
    "self_service_attempts",
    "escalations_to_agent",
    "cases_resolved",
    "service_contacts",
    "repeat_contacts_7d",
)


def journey_metrics(events: DataFrame, cases: DataFrame, rules: CurationRules) -> DataFrame:
    """Per UTC day and channel: adoption, switches, escalations, resolution, repeat contacts."""
    customer = events.where(F.col("initiated_by") == "customer")
    parts = [
        *_adoption(customer),
        _cases_started(cases),
        _channel_switches(events),
        _escalations(events, rules),
        _resolutions(cases),
        _repeat_contacts(customer.where(_predicate(rules, "service_contact")), rules),
    ]
    result = combine(["day", "channel"], _day_channel_grid(events), parts)
    result = result.fillna(0, subset=["active_customers", *_JOURNEY_TOTALS])
    result = _with_cumulative_adoption(result, customer)
    return conform(
        result.withColumns(
            {
                "escalation_rate": _ratio("escalations_to_agent", "self_service_attempts"),
                "repeat_contact_rate": _ratio("repeat_contacts_7d", "service_contacts"),
            }
        ),
        JOURNEY_METRICS,
    )


def _ratio(numerator: str, denominator: str) -> Column:
    return F.when(F.col(denominator) > 0, F.round(F.col(numerator) / F.col(denominator), 4))


def _day_channel_grid(events: DataFrame) -> DataFrame:
    """Every day from the first to the last event, for every channel seen: charts need zeros."""
    bounds = events.agg(F.min(F.to_date("ts")).alias("lo"), F.max(F.to_date("ts")).alias("hi"))
    days = bounds.select(F.explode(F.sequence("lo", "hi")).alias("day"))
    return days.crossJoin(events.select("channel").distinct())


def _adoption(customer_events: DataFrame) -> list[DataFrame]:
    """Active customers, and adopters: customers using the channel for the first time."""
    daily = customer_events.select("customer_id", "channel", F.to_date("ts").alias("day"))
    active = daily.groupBy("day", "channel").agg(
        F.count_distinct("customer_id").alias("active_customers")
    )
    first = daily.groupBy("customer_id", "channel").agg(F.min("day").alias("day"))
    adopters = first.groupBy("day", "channel").agg(F.count(F.lit(1)).alias("new_adopters"))
    return [active, adopters]


def _with_cumulative_adoption(grid: DataFrame, customer_events: DataFrame) -> DataFrame:
    """Adopters so far on the channel over customers seen so far on any channel.

    The windows run over the day x channel grid, which is small whatever the data size.
    """
    first_day = customer_events.groupBy("customer_id").agg(F.min(F.to_date("ts")).alias("day"))
    new_customers = first_day.groupBy("day").agg(F.count(F.lit(1)).alias("_new"))
    so_far = Window.orderBy("day").rowsBetween(Window.unboundedPreceding, 0)
    known = (
        grid.select("day")
        .distinct()
        .join(new_customers, "day", "left")
        .withColumn("_known", F.sum(F.coalesce("_new", F.lit(0))).over(so_far))
    )
    per_channel = (
        Window.partitionBy("channel").orderBy("day").rowsBetween(Window.unboundedPreceding, 0)
    )
    return (
        grid.join(known.select("day", "_known"), "day")
        .withColumn("cumulative_adopters", F.sum("new_adopters").over(per_channel))
        .withColumn("adoption_rate", _ratio("cumulative_adopters", "_known"))
    )


def _cases_started(cases: DataFrame) -> DataFrame:
    return cases.groupBy(
        F.to_date("opened_at").alias("day"), F.col("start_channel").alias("channel")
    ).agg(F.count(F.lit(1)).alias("cases_started"))


def _channel_switches(events: DataFrame) -> DataFrame:
    """A switch is a case touch on another channel than the touch before it; it counts on the
    day it happened, for the channel the customer left."""
    in_order = Window.partitionBy("customer_id", "case_id").orderBy("ts", "interaction_id")
    touches = events.where(F.col("case_id").isNotNull()).withColumn(
        "_from", F.lag("channel").over(in_order)
    )
    switches = touches.where(F.col("_from").isNotNull() & (F.col("_from") != F.col("channel")))
    return switches.groupBy(F.to_date("ts").alias("day"), F.col("_from").alias("channel")).agg(
        F.count(F.lit(1)).alias("channel_switches")
    )


def _escalations(events: DataFrame, rules: CurationRules) -> DataFrame:
    """Self-service attempts, and those followed by an agent contact of the same customer within
    the escalation window; on the attempt's day and channel."""
    flagged = events.withColumns(
        {"_self": _predicate(rules, "self_service"), "_agent": _predicate(rules, "agent_contact")}
    ).where(F.col("_self") | F.col("_agent"))
    later = (
        Window.partitionBy("customer_id")
        .orderBy("ts", "interaction_id")
        .rowsBetween(1, Window.unboundedFollowing)
    )
    next_agent = F.min(F.when(F.col("_agent"), F.col("ts"))).over(later)
    attempts = flagged.withColumn("_next_agent", next_agent).where("_self")
    window_s = rules.escalation_window_hours * 3600
    escalated = (F.unix_seconds("_next_agent") - F.unix_seconds("ts")) <= window_s
    return attempts.groupBy(F.to_date("ts").alias("day"), "channel").agg(
        F.count(F.lit(1)).alias("self_service_attempts"),
        F.count(F.when(escalated, 1)).alias("escalations_to_agent"),
    )


def _resolutions(cases: DataFrame) -> DataFrame:
    hours = (F.unix_seconds("resolved_at") - F.unix_seconds("opened_at")) / 3600.0
    resolved = cases.where(F.col("resolved_at").isNotNull()).withColumn("_hours", hours)
    return resolved.groupBy(
        F.to_date("resolved_at").alias("day"), F.col("start_channel").alias("channel")
    ).agg(
        F.count(F.lit(1)).alias("cases_resolved"),
        F.round(F.avg("_hours"), 2).alias("mean_resolution_hours"),
        F.round(F.percentile("_hours", 0.9), 2).alias("p90_resolution_hours"),
    )


def _repeat_contacts(contacts: DataFrame, rules: CurationRules) -> DataFrame:
    """Service contacts (one per customer, channel and day) and those followed by another
    contact of the same customer, on any channel, within ``repeat_contact_days``."""
    daily = contacts.groupBy("customer_id", "channel", F.to_date("ts").alias("day")).agg(
        F.min("ts").alias("ts")
    )
    following = Window.partitionBy("customer_id").orderBy("ts", "channel")
    window_s = rules.repeat_contact_days * _DAY_SECONDS
    gap = F.unix_seconds(F.lead("ts").over(following)) - F.unix_seconds("ts")
    flagged = daily.withColumn("_repeat", gap <= window_s)
    return flagged.groupBy("day", "channel").agg(
        F.count(F.lit(1)).alias("service_contacts"),
        F.count(F.when(F.col("_repeat"), 1)).alias("repeat_contacts_7d"),
    )


# --- journey report (self-contained HTML, inline SVG) --------------------------------------------

_CHARTS = (
    ("adoption_rate", "Adoption: share of known customers using the channel"),
    ("active_customers", "Active customers"),
    ("channel_switches", "Channel switches within a case (channel left)"),
    ("escalations_to_agent", "Escalations from self-service to an agent"),
    ("mean_resolution_hours", "Mean resolution time, hours (channel the case started on)"),
    ("p90_resolution_hours", "p90 resolution time, hours"),
    ("repeat_contact_rate", "Repeat contact within 7 days, share of contacts"),
)


def write_journey_report(journeys: DataFrame, settings: Settings) -> Path:
    """Charts of every journey metric per channel over days, as one HTML file with no scripts.

    The metrics table has one row per day and channel, so collecting it is small by design.
    """
    rows = [r.asDict() for r in journeys.orderBy("day", "channel").collect()]
    days = sorted({r["day"] for r in rows})
    channels = sorted({r["channel"] for r in rows})
    by_key = {(r["day"], r["channel"]): r for r in rows}
    charts = [
        line_chart(
            title,
            [d.isoformat() for d in days],
            {c: [by_key.get((d, c), {}).get(metric) for d in days] for c in channels},
        )
        for metric, title in _CHARTS
    ]
    path = settings.reports_dir / "journey_metrics.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(charts) + "<h2>Totals per channel</h2>" + _totals_table(rows, channels)
    write_html_page(
        path, "Journey metrics", "Per UTC day and channel, from gold.journey_metrics.", body
    )
    return path


def _totals_table(rows: list[dict[str, Any]], channels: list[str]) -> str:
    columns = _JOURNEY_TOTALS
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in columns)
    body = "".join(
        f"<tr><th>{html.escape(c)}</th>"
        + "".join(f"<td>{sum(r[k] or 0 for r in rows if r['channel'] == c)}</td>" for k in columns)
        + "</tr>"
        for c in channels
    )
    return f"<table><tr><th>channel</th>{head}</tr>{body}</table>"
