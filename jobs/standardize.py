"""Silver: standardized customer records and one interaction schema, rebuilt from bronze.

``silver.customer_records`` has one row per identity record (a loyalty card, a web login, an
app account, a call-center case, a social handle) with names cleaned, emails normalized, phones
in E.164 (parsed with ``phonenumbers``), dates parsed and consent as booleans. Attributes that
vary between a record's rows (a name typed differently at each visit) take the most recent
non-empty value. ``silver.interactions`` has every bronze row as one event in UTC.

Both tables are rebuilt from bronze on every run and replaced atomically (Delta overwrite), so
re-running changes nothing and a failed run leaves the previous version readable.

:func:`standardize_increment` is the micro-batch path (``jobs.microbatch``): given the keys of
the bronze rows a micro-batch added, it rebuilds exactly the silver rows those rows can change,
with the same builders, and merges them in. A record is rebuilt from all bronze rows of its key
(its newest name, its first and last visit); an interaction is rebuilt with every row that
shares its cookie or device, since a new login on an old cookie re-attributes the cookie's
anonymous events. So a batch run over the same bronze produces the same rows, and replaying a
micro-batch merges the same rows again. Interaction counts of records that lost re-attributed
events elsewhere are the one thing left to the nightly rebuild.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import reduce
from operator import and_

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.lakehouse.delta import latest_version, upsert_rows
from jobs.lakehouse.spark_schema import conform
from jobs.values import (
    blank_to_null,
    clean_address,
    clean_email,
    clean_name,
    clean_postcode,
    e164,
    first_token,
    last_token,
    parse_bool,
    parse_date,
    to_utc,
)
from schemas.catalog import SILVER_CUSTOMER_RECORDS, SILVER_INTERACTIONS, bronze_table
from schemas.settings import Settings
from schemas.sources import APP, CALL_CENTER, POS, SOCIAL, WEB
from schemas.tables import CUSTOMER_RECORDS, INTERACTIONS
from schemas.types import LONG, Field, Struct

log = logging.getLogger(__name__)

# The key under which silver commits name the bronze versions they were built from.
_BRONZE_VERSIONS = "bronze_versions"
# The hash of an anonymous event's source and cookie or device (null on the other events): the
# batch write keeps each group's events in one file (``_laid_out_for_stitching``).
_STITCH_GROUP = "_stitch_group"

# An email in free text. It starts where a run of local-part characters starts (the look-behind)
# and takes the run whole (possessive ``++``, as "@" is not in it): a message of a million such
# characters is scanned once, where backtracking into the run from every position of it took
# quadratic time (#30 reports a 1,000,000-character message still running after 14 minutes; in
# Python's engine the old pattern took 0.28 s at 10,000 characters and 0.83 s at 20,000).
_EMAIL_IN_TEXT = (
    r"(?<![A-Za-z0-9._%+'-])"
    r"([A-Za-z0-9._%+'-]++@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"
)
_PHONE_IN_TEXT = r"(\+?\d[\d\s().-]{7,}\d)"


@dataclass
class StandardizeSummary:
    customer_records: dict[str, int]
    interactions: dict[str, int]

    @property
    def total_records(self) -> int:
        return sum(self.customer_records.values())

    @property
    def total_interactions(self) -> int:
        return sum(self.interactions.values())


def standardize(spark: SparkSession, settings: Settings) -> StandardizeSummary:
    """Rebuild both silver tables from whatever bronze holds.

    Each bronze table is read at one version, and the silver commits name those versions
    (:func:`standardized_bronze_versions`): the micro-batch path starts after them instead of
    re-reading all of bronze.
    """
    versions = {name: latest_version(spark, bronze_table(name).path(settings)) for name in _SOURCES}
    present = {
        name: spark.read.format("delta")
        .option("versionAsOf", version)
        .load(bronze_table(name).path(settings))
        for name, version in versions.items()
        if version is not None
    }
    metadata = json.dumps({_BRONZE_VERSIONS: {n: v for n, v in versions.items() if v is not None}})
    records = _union([_RECORD_BUILDERS[name](df) for name, df in present.items()])
    interactions = _union([_INTERACTION_BUILDERS[name](df) for name, df in present.items()])
    interactions = _stitch_anonymous(interactions)
    records = _with_activity(conform(records, CUSTOMER_RECORDS), interactions)
    grouped = Struct(*INTERACTIONS.fields, Field(_STITCH_GROUP, LONG))
    interactions = _dedupe_interactions(conform(interactions, grouped, fill_missing=True))
    _overwrite(conform(records, CUSTOMER_RECORDS), SILVER_CUSTOMER_RECORDS.path(settings), metadata)
    laid_out = _laid_out_for_stitching(interactions, settings.shuffle_partitions)
    _overwrite(laid_out, SILVER_INTERACTIONS.path(settings), metadata)
    summary = StandardizeSummary(
        customer_records=_counts_by_source(spark, SILVER_CUSTOMER_RECORDS.path(settings)),
        interactions=_counts_by_source(spark, SILVER_INTERACTIONS.path(settings)),
    )
    log.info(
        "standardize: %d customer records, %d interactions",
        summary.total_records,
        summary.total_interactions,
    )
    return summary


@dataclass(frozen=True)
class SilverIncrement:
    """What :func:`standardize_increment` merged into silver.

    ``record_ids``: the records rebuilt (new or changed identity records). ``affected``: every
    record id whose customer's curated rows may change: the rebuilt records and the records
    the merged interactions belonged to, before and after.
    """

    record_ids: DataFrame
    affected: DataFrame
    records: int
    interactions: int


# What makes an interaction what it is: every other column is read from its bronze row (a
# file's line), and the record it belongs to can change when a login stitches its cookie's
# anonymous events. Comparing these finds the changed rows without reading the whole table.
_INTERACTION_IDENTITY = ("interaction_id", "record_id", "source_file", "line_no")


def standardize_increment(
    spark: SparkSession, settings: Settings, touched: DataFrame
) -> SilverIncrement:
    """Merge into silver what new bronze rows change (module doc).

    ``touched``: ``source, key, anonymous_key`` of the new bronze rows (:func:`touched_keys`,
    a micro-batch's worth).
    """
    touched = touched.localCheckpoint()
    sources = [r.source for r in touched.select("source").distinct().collect()]
    slices = {name: _bronze_slice(spark, settings, name, touched) for name in sources}
    present = {name: rows for name, rows in slices.items() if rows is not None}
    if not present:
        empty = spark.createDataFrame([], "record_id string")
        return SilverIncrement(empty, empty, 0, 0)
    interactions = _stitch_anonymous(
        _union([_INTERACTION_BUILDERS[name](rows) for name, rows in present.items()])
    )
    interactions = _dedupe_interactions(
        conform(interactions, INTERACTIONS, fill_missing=True)
    ).localCheckpoint()
    interactions_path = SILVER_INTERACTIONS.path(settings)
    stored = (
        spark.read.format("delta")
        .load(interactions_path)
        .select(*_INTERACTION_IDENTITY)
        .join(interactions.select("interaction_id"), "interaction_id", "left_semi")
        .localCheckpoint()
    )
    owners_before = stored.select("record_id")
    upsert_rows(
        spark, settings, SILVER_INTERACTIONS, _not_stored(interactions, stored), "interaction_id"
    )
    records = _union(
        [
            _RECORD_BUILDERS[name](rows).join(
                touched.where(F.col("source") == name).select(F.col("key").alias("source_key")),
                "source_key",
                "left_semi",
            )
            for name, rows in present.items()
        ]
    )
    activity = (
        spark.read.format("delta")
        .load(interactions_path)
        .join(records.select("record_id"), "record_id", "left_semi")
    )
    records = conform(
        _with_activity(conform(records, CUSTOMER_RECORDS), activity), CUSTOMER_RECORDS
    ).localCheckpoint()
    upsert_rows(spark, settings, SILVER_CUSTOMER_RECORDS, records, "record_id")
    record_ids = records.select("record_id")
    affected = (
        record_ids.unionByName(owners_before)
        .unionByName(interactions.select("record_id"))
        .where(F.col("record_id").isNotNull())
        .distinct()
    )
    return SilverIncrement(record_ids, affected, records.count(), interactions.count())


def touched_keys(rows: DataFrame, source: str) -> DataFrame:
    """``source, key, anonymous_key`` of bronze rows of ``source``: the ``touched`` frame
    :func:`standardize_increment` takes, keys as :func:`record_key` and :data:`ANONYMOUS_KEYS`
    read them."""
    return rows.select(
        F.lit(source).alias("source"),
        record_key(source).alias("key"),
        F.col(ANONYMOUS_KEYS[source]).cast("string").alias("anonymous_key"),
    )


def _not_stored(rows: DataFrame, stored: DataFrame) -> DataFrame:
    """The interactions among ``rows`` that ``stored`` (:data:`_INTERACTION_IDENTITY` of the
    table's rows with the same ids) does not hold as they are: new ones and changed ones.

    A MERGE rewrites every file holding a row it updates, even to the values it had. Most of an
    increment's interactions are re-derived history that did not change, spread over every file
    of silver.interactions, so merging them all rewrote the whole table each micro-batch.
    """
    same = [F.col(f"s.{c}").eqNullSafe(F.col(f"t.{c}")) for c in _INTERACTION_IDENTITY]
    return rows.alias("s").join(stored.alias("t"), reduce(and_, same), "left_anti")


def _bronze_slice(
    spark: SparkSession, settings: Settings, source: str, touched: DataFrame
) -> DataFrame | None:
    """Every bronze row of ``source`` whose record key or anonymous key a new row has.

    Read with one scan of the bronze table and kept (checkpointed): the interaction and the
    record builders both start from it, and the bronze table is the micro-batch's largest read.
    """
    bronze = _read(spark, bronze_table(source).path(settings))
    if bronze is None:
        return None
    mine = touched.where(F.col("source") == source)
    keys = mine.select(F.col("key").alias("_k"), F.lit(True).alias("_by_key"))
    devices = mine.select(F.col("anonymous_key").alias("_a"), F.lit(True).alias("_by_device"))
    hits = bronze.join(
        F.broadcast(keys.where("_k IS NOT NULL").distinct()),
        record_key(source) == F.col("_k"),
        "left",
    ).join(
        F.broadcast(devices.where("_a IS NOT NULL").distinct()),
        F.col(ANONYMOUS_KEYS[source]) == F.col("_a"),
        "left",
    )
    wanted = hits.where(F.col("_by_key") | F.col("_by_device"))
    return wanted.drop("_k", "_by_key", "_a", "_by_device").localCheckpoint()


def standardized_bronze_versions(spark: SparkSession, settings: Settings) -> dict[str, int]:
    """The bronze version of each source the last full :func:`standardize` read (empty when
    silver was never rebuilt, or its history no longer reaches that commit)."""
    path = SILVER_INTERACTIONS.path(settings)
    if latest_version(spark, path) is None:
        return {}
    from delta.tables import DeltaTable

    commits = (
        DeltaTable.forPath(spark, path)
        .history()
        .where(F.col("userMetadata").contains(_BRONZE_VERSIONS))
        .orderBy(F.desc("version"))
        .select("userMetadata")
        .first()
    )
    return json.loads(commits.userMetadata)[_BRONZE_VERSIONS] if commits else {}


def _read(spark: SparkSession, path: str) -> DataFrame | None:
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return None
    return spark.read.format("delta").load(path)


def _union(frames: list[DataFrame]) -> DataFrame:
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame, allowMissingColumns=True)
    return result


def _overwrite(df: DataFrame, path: str, metadata: str) -> None:
    (
        df.write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .option("userMetadata", metadata)
        .save(path)
    )


def _counts_by_source(spark: SparkSession, path: str) -> dict[str, int]:
    rows = spark.read.format("delta").load(path).groupBy("source").count().collect()
    return {r.source: r["count"] for r in rows}


def latest(col: Column | str, ts: str = "_ts") -> Column:
    """The most recent non-null value of ``col`` in a group (the newest row that has one)."""
    value = F.col(col) if isinstance(col, str) else col
    return F.max_by(value, F.when(value.isNotNull(), F.col(ts)))


def seen_range() -> list[Column]:
    """When a record was first and last active."""
    return [F.min("_ts").alias("first_seen_at"), F.max("_ts").alias("last_seen_at")]


# --- customer records per source -------------------------------------------------------------


def record_key(source: str) -> Column:
    """The key a bronze row's identity record is known by in ``source``: its record id is
    ``"<source>:" + key``. One definition for the record builders, the interaction builders,
    incremental standardize and erasure, so they all find the same rows."""
    match source:
        case POS.name:
            return blank_to_null("loyalty_card")
        case WEB.name:
            return F.lower(blank_to_null("login_email"))
        case APP.name:
            return blank_to_null("account_id")
        case CALL_CENTER.name:
            return blank_to_null("case_id")
        case SOCIAL.name:
            return F.lower(F.regexp_replace(blank_to_null("handle"), "^@", ""))
    raise ValueError(f"unknown source {source!r}")


# The column an anonymous event is stitched to a login by (``_stitch_anonymous``).
ANONYMOUS_KEYS = {WEB.name: "cookie_id", APP.name: "device_id"}


def _records_pos(df: DataFrame) -> DataFrame:
    rows = df.withColumn("_ts", to_utc("ts", "store_country")).withColumn(
        "_key", record_key(POS.name)
    )
    rows = rows.where(F.col("_key").isNotNull()).withColumns(
        {"_name": clean_name("customer_name"), "_phone": blank_to_null("phone")}
    )
    grouped = rows.groupBy("_key").agg(
        latest("_name").alias("full_name"),
        latest("_phone").alias("_phone_raw"),
        latest(F.upper("store_country")).alias("country"),
        *seen_range(),
    )
    return _finish(grouped, POS.name, {"loyalty_id": F.col("source_key")})


def _records_web(df: DataFrame) -> DataFrame:
    rows = df.withColumns({"_ts": to_utc("ts"), "_key": record_key(WEB.name)}).where(
        F.col("_key").isNotNull()
    )
    grouped = rows.groupBy("_key").agg(
        latest(clean_name("profile.first_name")).alias("first_name"),
        latest(clean_name("profile.last_name")).alias("last_name"),
        latest(clean_name("order.ship_to.name")).alias("_ship_name"),
        latest(parse_date("profile.dob")).alias("dob"),
        latest(
            F.coalesce(blank_to_null("profile.phone"), blank_to_null("order.ship_to.phone"))
        ).alias("_phone_raw"),
        latest(
            F.coalesce(blank_to_null("profile.address"), blank_to_null("order.ship_to.address"))
        ).alias("_address"),
        latest(
            F.coalesce(blank_to_null("profile.postcode"), blank_to_null("order.ship_to.postcode"))
        ).alias("_postcode"),
        latest(
            F.coalesce(blank_to_null("profile.city"), blank_to_null("order.ship_to.city"))
        ).alias("_city"),
        latest(F.upper("site_country")).alias("country"),
        latest(parse_bool("consent.email_opt_in")).alias("email_opt_in"),
        latest(parse_bool("consent.sms_opt_in")).alias("sms_opt_in"),
        latest(parse_bool("consent.ads_opt_in")).alias("ads_opt_in"),
        *seen_range(),
    )
    grouped = grouped.withColumns(
        {
            "first_name": F.coalesce("first_name", first_token(F.col("_ship_name"))),
            "last_name": F.coalesce("last_name", last_token(F.col("_ship_name"))),
        }
    )
    return _finish(grouped, WEB.name, {"email": clean_email(F.col("source_key"))})


def _records_app(df: DataFrame) -> DataFrame:
    rows = df.withColumns({"_ts": to_utc("ts"), "_key": record_key(APP.name)}).where(
        F.col("_key").isNotNull()
    )
    grouped = rows.groupBy("_key").agg(
        latest(clean_name("account.first_name")).alias("first_name"),
        latest(clean_name("account.last_name")).alias("last_name"),
        latest(parse_date("account.dob")).alias("dob"),
        latest(clean_email("account.email")).alias("email"),
        latest(blank_to_null("account.phone")).alias("_phone_raw"),
        latest(blank_to_null("device_id")).alias("device_id"),
        latest(F.upper("app_country")).alias("country"),
        latest(parse_bool("push_opt_in")).alias("push_opt_in"),
        *seen_range(),
    )
    return _finish(grouped, APP.name, {"app_account_id": F.col("source_key")})


def _records_call_center(df: DataFrame) -> DataFrame:
    rows = df.withColumns({"_ts": to_utc("ts_start"), "_key": record_key(CALL_CENTER.name)})
    grouped = rows.groupBy("_key").agg(
        latest(clean_name("caller_name")).alias("full_name"),
        latest(blank_to_null("caller_number")).alias("_phone_raw"),
        latest(F.upper("center_country")).alias("country"),
        *seen_range(),
    )
    return _finish(grouped, CALL_CENTER.name, {})


def _records_social(df: DataFrame) -> DataFrame:
    rows = df.withColumns({"_ts": to_utc("ts"), "_key": record_key(SOCIAL.name)})
    inbound = F.lower(F.col("direction")) != "outbound"
    text = F.when(inbound, F.col("text"))
    grouped = rows.groupBy("_key").agg(
        latest(clean_name("display_name")).alias("full_name"),
        latest(clean_email(F.regexp_extract(text, _EMAIL_IN_TEXT, 1))).alias("email"),
        latest(blank_to_null(F.regexp_extract(text, _PHONE_IN_TEXT, 1))).alias("_phone_raw"),
        *seen_range(),
    )
    grouped = grouped.withColumn("country", F.lit(None).cast("string"))
    return _finish(grouped, SOCIAL.name, {"social_handle": F.col("source_key")})


def _finish(grouped: DataFrame, source: str, extra: dict[str, Column]) -> DataFrame:
    """Shared tail of every record builder: ids, split/join names, phone and address cleanup."""
    df = grouped.withColumnRenamed("_key", "source_key").withColumns(
        {"source": F.lit(source), "record_id": F.concat(F.lit(f"{source}:"), "source_key")}
    )
    for name in (
        "first_name",
        "last_name",
        "full_name",
        "dob",
        "email",
        "_address",
        "_postcode",
        "_city",
        "device_id",
        "email_opt_in",
        "sms_opt_in",
        "push_opt_in",
        "ads_opt_in",
    ):
        if name not in df.columns:
            df = df.withColumn(name, F.lit(None))
    df = df.withColumns(
        {
            "full_name": F.coalesce(
                "full_name", blank_to_null(F.concat_ws(" ", "first_name", "last_name"))
            ),
            "phone": e164(F.col("_phone_raw"), F.col("country")),
            "address_line": clean_address("_address"),
            "postcode": clean_postcode("_postcode"),
            "city": clean_name("_city"),
            **extra,
        }
    )
    df = df.withColumns(
        {
            "first_name": F.coalesce("first_name", first_token(F.col("full_name"))),
            "last_name": F.coalesce("last_name", last_token(F.col("full_name"))),
        }
    )
    for name in ("loyalty_id", "app_account_id", "social_handle"):
        if name not in df.columns:
            df = df.withColumn(name, F.lit(None).cast("string"))
    return df.withColumn("interaction_count", F.lit(0))


_RECORD_BUILDERS = {
    POS.name: _records_pos,
    WEB.name: _records_web,
    APP.name: _records_app,
    CALL_CENTER.name: _records_call_center,
    SOCIAL.name: _records_social,
}
_SOURCES = tuple(_RECORD_BUILDERS)


def _with_activity(records: DataFrame, interactions: DataFrame) -> DataFrame:
    """Count each record's interactions (a cheap signal of how much a record is worth)."""
    counts = (
        interactions.where(F.col("record_id").isNotNull())
        .groupBy("record_id")
        .agg(F.count("*").alias("_n"))
    )
    return (
        records.join(counts, "record_id", "left")
        .withColumn("interaction_count", F.coalesce("_n", F.lit(0)).cast("long"))
        .drop("_n")
    )


# --- interactions per source -----------------------------------------------------------------


def _lineage() -> list[Column]:
    return [F.col("source_file"), F.col("line_no")]


def _interactions_pos(df: DataFrame) -> DataFrame:
    key = record_key(POS.name)
    lines = F.split(F.coalesce("basket", F.lit("")), r"\|")
    categories = F.array_join(
        F.array_distinct(
            F.filter(
                # a line without a category (no ":") has none, rather than failing the step
                F.transform(lines, lambda x: F.try_element_at(F.split(x, ":"), F.lit(2))),
                lambda c: c.isNotNull() & (c != ""),
            )
        ),
        "|",
    )
    return df.select(
        F.concat(F.lit("pos:"), "transaction_id").alias("interaction_id"),
        F.lit(POS.name).alias("source"),
        F.lit(POS.channel).alias("channel"),
        F.when(key.isNotNull(), F.concat(F.lit("pos:"), key)).alias("record_id"),
        to_utc("ts", "store_country").alias("ts"),
        F.lit("purchase").alias("type"),
        F.lit("completed").alias("status"),
        F.col("amount").cast("decimal(12,2)").alias("amount"),
        blank_to_null("currency").alias("currency"),
        blank_to_null(categories).alias("categories"),
        *_lineage(),
    )


def _interactions_web(df: DataFrame) -> DataFrame:
    key = record_key(WEB.name)
    failed = F.lower(F.col("return_request.status")) == "failed"
    return df.select(
        F.concat(F.lit("web:"), "event_id").alias("interaction_id"),
        F.lit(WEB.name).alias("source"),
        F.lit(WEB.channel).alias("channel"),
        F.when(key.isNotNull(), F.concat(F.lit("web:"), key)).alias("record_id"),
        F.col(ANONYMOUS_KEYS[WEB.name]).alias("_anon_key"),
        to_utc("ts").alias("ts"),
        F.lower("event_type").alias("type"),
        F.lower(F.coalesce("return_request.status", F.lit(None))).alias("status"),
        F.col("order.amount").cast("decimal(12,2)").alias("amount"),
        blank_to_null("order.currency").alias("currency"),
        blank_to_null("return_request.reason").alias("reason"),
        _order_categories().alias("categories"),
        F.when(failed, F.col("return_request.error"))
        .otherwise(blank_to_null("page"))
        .alias("text"),
        *_lineage(),
    )


def _order_categories() -> Column:
    categories = F.array_distinct(F.transform(F.col("order.items"), lambda i: i["category"]))
    return blank_to_null(F.array_join(categories, "|"))


def _interactions_app(df: DataFrame) -> DataFrame:
    key = record_key(APP.name)
    return df.select(
        F.concat(F.lit("app:"), "event_id").alias("interaction_id"),
        F.lit(APP.name).alias("source"),
        F.lit(APP.channel).alias("channel"),
        F.when(key.isNotNull(), F.concat(F.lit("app:"), key)).alias("record_id"),
        F.col(ANONYMOUS_KEYS[APP.name]).alias("_anon_key"),
        to_utc("ts").alias("ts"),
        F.lower("event_type").alias("type"),
        F.col("order.amount").cast("decimal(12,2)").alias("amount"),
        blank_to_null("order.currency").alias("currency"),
        blank_to_null("chat.case_id").alias("case_id"),
        F.coalesce(_order_categories(), blank_to_null("product.category")).alias("categories"),
        blank_to_null("chat.text").alias("text"),
        *_lineage(),
    )


def _interactions_call_center(df: DataFrame) -> DataFrame:
    return df.select(
        F.concat(F.lit("call_center:"), "call_id").alias("interaction_id"),
        F.lit(CALL_CENTER.name).alias("source"),
        F.lit(CALL_CENTER.channel).alias("channel"),
        F.concat(F.lit("call_center:"), F.trim("case_id")).alias("record_id"),
        to_utc("ts_start").alias("ts"),
        F.lit("call").alias("type"),
        F.lower(blank_to_null("disposition")).alias("status"),
        F.trim("case_id").alias("case_id"),
        F.lower(blank_to_null("reason")).alias("reason"),
        F.col("handle_time_s").cast("long").alias("handle_time_s"),
        parse_bool("escalated").alias("escalated"),
        parse_bool("transferred").alias("transferred"),
        *_lineage(),
    )


def _interactions_social(df: DataFrame) -> DataFrame:
    handle = record_key(SOCIAL.name)
    direction = F.coalesce(F.lower(blank_to_null("direction")), F.lit("inbound"))
    return df.select(
        F.concat(F.lit("social:"), "message_id").alias("interaction_id"),
        F.lit(SOCIAL.name).alias("source"),
        F.lit(SOCIAL.channel).alias("channel"),
        F.concat(F.lit("social:"), handle).alias("record_id"),
        to_utc("ts").alias("ts"),
        F.concat(F.lit("dm_"), direction).alias("type"),
        blank_to_null("case_id").alias("case_id"),
        F.col("text"),
        F.col("sentiment").cast("double").alias("sentiment"),
        *_lineage(),
    )


_INTERACTION_BUILDERS = {
    POS.name: _interactions_pos,
    WEB.name: _interactions_web,
    APP.name: _interactions_app,
    CALL_CENTER.name: _interactions_call_center,
    SOCIAL.name: _interactions_social,
}


def _stitch_anonymous(interactions: DataFrame) -> DataFrame:
    """Attribute anonymous web/app events to the login last seen on the same cookie or device.

    A cookie (or device) that logged in as one account is that account's browser; events before
    the login belong to the same person. A device used by several accounts keeps the newest.
    Anonymous events get their cookie's or device's :data:`_STITCH_GROUP` (without web or app
    sources there is none; ``conform`` fills it in).
    """
    if "_anon_key" not in interactions.columns:
        return interactions
    known = (
        interactions.where(F.col("_anon_key").isNotNull() & F.col("record_id").isNotNull())
        .groupBy("source", "_anon_key")
        .agg(F.max_by("record_id", "ts").alias("_stitched"))
    )
    anonymous = F.col("record_id").isNull() & F.col("_anon_key").isNotNull()
    return (
        interactions.join(known, ["source", "_anon_key"], "left")
        .withColumn(_STITCH_GROUP, F.when(anonymous, F.xxhash64("source", "_anon_key")))
        .withColumn("record_id", F.coalesce("record_id", "_stitched"))
        .drop("_stitched", "_anon_key")
    )


def _laid_out_for_stitching(interactions: DataFrame, partitions: int) -> DataFrame:
    """``interactions`` in ``partitions`` ranges, one file each: the anonymous events apart from
    the others, those of one cookie or device together (by :data:`_STITCH_GROUP`, then
    dropped).

    A micro-batch re-attributes old anonymous events when their cookie logs in or a newer
    account takes their device, and a Delta MERGE rewrites every file holding a row it
    updates. With anonymous events in every file, the 6-64 such rows of a 1,000- or
    10,000-event web file copied all 1.15 million rows of the benchmark's silver.interactions
    (5.5-7.7 s); laid out, 141,000 to 282,000 (2.5-3.1 s). The other events are spread by
    their id's hash, so no range is a single skewed key. An explicit count keeps adaptive
    execution from coalescing the ranges into one file.
    """
    anonymous = F.col(_STITCH_GROUP).isNotNull()
    spread = F.coalesce(F.col(_STITCH_GROUP), F.xxhash64("interaction_id"))
    return interactions.repartitionByRange(partitions, anonymous, spread).drop(_STITCH_GROUP)


def _dedupe_interactions(interactions: DataFrame) -> DataFrame:
    """One row per interaction id: a re-sent event keeps its first delivery."""
    first = Window.partitionBy("interaction_id").orderBy("source_file", "line_no")
    return interactions.withColumn("_n", F.row_number().over(first)).where("_n = 1").drop("_n")
