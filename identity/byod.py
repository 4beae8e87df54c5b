"""Bring your own data: resolve a customer table from a CSV or Parquet file into customer ids.

A user with an existing customer table, and no landing files or lakehouse, runs::

    omnicdp identity resolve --input customers.csv --id-column id \\
        --map full_name=name dob=birth_date email=email phone=mobile \\
        --output customer_ids.parquet [--previous last_run.parquet] [--model model.json]

and gets one ``customer_id`` per input row. The table goes through the steps silver records go
through in the pipeline, so it is resolved by the same rules:

1. Each mapped column is standardized by the functions that build silver
   (:mod:`jobs.standardize`): names cleaned ("Family, Given" turned round), emails
   lower-cased and checked, phones parsed into
   E.164 (a number without a country code in the ``phone_region``), dates of birth read with
   the patterns of ``jobs.values.DATE_PATTERNS`` in that order, an address given in one field
   ("12 Main Street") abbreviated as silver's are. Empty strings are missing values; an
   unmapped field is missing everywhere, and every comparison of the model has a null level,
   so missing is "no evidence", never a disagreement.
2. The records become the linkage features of :mod:`identity.features` under the source
   ``IMPORTED_SOURCE``: first and last name columns count as form fields, a full name is split
   into given and family name in either order (:mod:`identity.names`). The ``phone_region``
   also stands as the records' country, as silver's ``country`` does: it decides whether a
   name may be in Korean order. A loyalty id is a card issued to one person: like a support
   case id, two people never share it, so it goes where the model compares ids of that kind
   (its ``case`` comparison and blocking rule), without a change to the model.
3. The model is trained on the table by :mod:`identity.train`'s procedure (Splink, Spark
   backend), or read from ``model_path``; a trained model is written next to the output
   (``OUT.model.json``) so the next run can reuse it.
4. Pairs are scored and clustered as in the pipeline (:func:`identity.predict.predict_pairs`,
   :func:`identity.cluster.cluster_records`), and customer ids assigned against
   ``previous_path``, an earlier output, by :func:`identity.stable_ids.assign_ids`: unchanged
   customers keep their ids, new rows join the id of their cluster, merges keep the id with
   the most rows. There is no history table here, so "ever issued" means "in the previous
   output".

Bad input (an unreadable or unsupported file, a missing id column, duplicated or empty ids, an
unknown field, a mapped column the file does not have) raises :class:`InputError` naming the
file and the column; the only values it ever shows are ids.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import phonenumbers
import pyarrow as pa
import pyarrow.parquet as pq
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, TimestampType

from identity.artifact import SavedModel, load_model, write_model
from identity.cluster import cluster_records
from identity.engines import open_linker
from identity.features import build_features
from identity.predict import predict_pairs
from identity.stable_ids import PreviousIds, assign_ids
from identity.train import Progress, fit_model
from jobs.lakehouse.spark_schema import conform
from jobs.values import (
    blank_to_null,
    clean_address,
    clean_email,
    clean_name,
    clean_postcode,
    e164,
    parse_date,
)
from schemas.imported import FIELD_COLUMNS, FIELDS, IMPORTED_SOURCE
from schemas.settings import Settings
from schemas.tables import CUSTOMER_RECORDS

log = logging.getLogger(__name__)

# File kinds by suffix; a Parquet "file" may also be a folder of parts, as Spark writes one.
READERS = {".csv": "CSV", ".parquet": "Parquet"}

# The output's id column besides the input's.
CUSTOMER_ID = "customer_id"

# How many duplicated ids an error message shows (ids, never other values).
SHOWN_IDS = 5

# Prefix of a loyalty id among the case ids the model compares (step 2 of the module doc).
LOYALTY_PREFIX = "loyalty:"


class InputError(ValueError):
    """Input the command cannot use, named by file, option and column, never by value."""


@dataclass(frozen=True)
class ResolveFileRequest:
    """One ``identity resolve --input`` run, checked before any Spark work (:meth:`create`)."""

    input_path: Path
    id_column: str
    mapping: dict[str, str]  # FIELD -> input column
    output_path: Path
    previous_path: Path | None = None
    model_path: Path | None = None
    phone_region: str | None = None

    @classmethod
    def create(
        cls,
        input_path: Path,
        id_column: str,
        maps: Sequence[str],
        output_path: Path,
        previous_path: Path | None = None,
        model_path: Path | None = None,
        phone_region: str | None = None,
    ) -> ResolveFileRequest:
        """A request from command-line values; bad ones raise :class:`InputError`."""
        mapping, region = parse_mappings(maps), _region(phone_region)
        if id_column == CUSTOMER_ID:
            raise InputError(f"--id-column {CUSTOMER_ID!r}: the output's own column; rename it")
        for path, option in ((input_path, "--input"), (previous_path, "--previous")):
            if path is not None:
                _check_readable(path, option)
        if model_path is not None and not model_path.is_file():
            raise InputError(f"{model_path} (--model): no such file")
        return cls(
            input_path=input_path,
            id_column=id_column,
            mapping=mapping,
            output_path=output_path,
            previous_path=previous_path,
            model_path=model_path,
            phone_region=region,
        )

    @property
    def trained_model_path(self) -> Path:
        """Where a model trained by this run is written: ``OUT.model.json`` beside the output."""
        return self.output_path.with_suffix(".model.json")


@dataclass(frozen=True)
class ResolveFileSummary:
    """What one run wrote (counts and timings only, no values)."""

    records: int
    customers: int
    multi_record_customers: int
    largest_cluster: int
    previous_ids_kept: int
    previous_ids_retired: int
    model_version: str
    trained: bool
    model_path: Path
    output_path: Path
    train_seconds: float
    resolve_seconds: float


def parse_mappings(maps: Sequence[str]) -> dict[str, str]:
    """``FIELD=COLUMN`` strings as {field: column}; an unknown or repeated field is an error."""
    if not maps:
        raise InputError(f"--map: map at least one FIELD=COLUMN; FIELD is one of {_fields()}")
    mapping: dict[str, str] = {}
    for item in maps:
        field, sep, column = item.partition("=")
        field, column = field.strip(), column.strip()
        if not sep or not field or not column:
            raise InputError(f"--map {item!r}: expected FIELD=COLUMN")
        if field not in FIELD_COLUMNS:
            raise InputError(f"--map {item!r}: unknown FIELD {field!r}; one of {_fields()}")
        if field in mapping:
            raise InputError(f"--map: FIELD {field!r} is mapped twice")
        mapping[field] = column
    return mapping


def _fields() -> str:
    return ", ".join(FIELDS)


def _check_readable(path: Path, option: str) -> None:
    """Fail early on a file that is missing, of another kind, or not what its suffix says, so
    the user gets one line naming it instead of Spark's task failures."""
    if not path.exists():
        raise InputError(f"{path} ({option}): no such file")
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise InputError(
            f"{path} ({option}): unsupported file type {path.suffix or '(none)'!r}; "
            f"expected {' or '.join(READERS)}"
        )
    if kind == "Parquet":
        _check_parquet(path, option)
    elif path.is_file():
        _check_csv_header(path, option)


def _check_parquet(path: Path, option: str) -> None:
    """Read the footer (a folder's: its first part's) with pyarrow, without Spark."""
    try:
        pq.ParquetDataset(str(path)).schema  # noqa: B018 (reading it is the check)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{path} ({option}): cannot read it as Parquet") from err


def _check_csv_header(path: Path, option: str) -> None:
    """The first line must be a header of UTF-8 text (a byte order mark is allowed)."""
    try:
        with path.open(encoding="utf-8-sig") as lines:
            header = lines.readline()
    except UnicodeDecodeError as err:
        raise InputError(f"{path} ({option}): cannot read it as CSV (not UTF-8 text)") from err
    if not header.strip():
        raise InputError(f"{path} ({option}): no header row")


def _region(code: str | None) -> str | None:
    if code is None:
        return None
    region = code.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise InputError(
            f"--phone-region {code!r}: not a region code (ISO 3166 alpha-2, e.g. US, KR, GB)"
        )
    return region


# --- reading and checking ---------------------------------------------------------------------


def _column(name: str) -> Column:
    """A column by its exact name: users' names have spaces and dots ("e.mail", "Full Name")."""
    return F.col("`" + name.replace("`", "``") + "`")


def read_file(spark: SparkSession, path: Path, option: str) -> DataFrame:
    """A CSV (header row, every value as text) or Parquet file as a DataFrame.

    CSV fields may be quoted with embedded commas, quotes doubled ("") and line breaks, as
    spreadsheets export them.
    """
    kind = READERS[path.suffix.lower()]
    try:
        if kind == "CSV":
            return spark.read.csv(str(path), header=True, escape='"', multiLine=True)
        return spark.read.parquet(str(path))
    except (PySparkException, Py4JJavaError) as err:
        raise InputError(f"{path} ({option}): cannot read it as {kind}") from err


def require_columns(table: DataFrame, path: Path, wanted: dict[str, str]) -> None:
    """Fail naming every wanted column (column -> the option that names it) the file lacks."""
    missing = [f"{c!r} ({option})" for c, option in wanted.items() if c not in table.columns]
    if missing:
        raise InputError(
            f"{path}: no column {', '.join(missing)}; its columns are "
            f"{', '.join(repr(c) for c in table.columns)}"
        )


def check_ids(table: DataFrame, path: Path, option: str, id_column: str) -> int:
    """The number of rows, after checking every row has an id of its own.

    This is the first full read of the file, so a file Spark can open but not read to the end
    (a broken Parquet part) fails here, as an :class:`InputError` too.
    """
    ids = table.groupBy(_column(id_column).cast("string").alias("id")).agg(
        F.count(F.lit(1)).alias("n")
    )
    try:
        ids = ids.localCheckpoint()
        summary = ids.agg(
            F.sum("n").alias("rows"),
            F.sum(F.when(F.col("id").isNull() | (F.trim("id") == ""), F.col("n"))).alias("empty"),
            F.sum(F.when(F.col("n") > 1, 1)).alias("duplicated"),
        ).first()
    except (PySparkException, Py4JJavaError) as err:
        raise InputError(f"{path} ({option}): cannot read it to the end") from err
    where = f"{path}: column {id_column!r} ({option})"
    if summary["empty"]:
        raise InputError(f"{where} is empty in {summary['empty']} row(s); every row needs an id")
    if summary["duplicated"]:
        duplicated = ids.where(F.col("n") > 1).orderBy("id").limit(SHOWN_IDS).collect()
        raise InputError(
            f"{where} has {summary['duplicated']} duplicated id(s), e.g. "
            f"{', '.join(r.id for r in duplicated)}; every row needs an id of its own"
        )
    return int(summary["rows"] or 0)


# --- standardizing ----------------------------------------------------------------------------


def _dob(table: DataFrame, column: str) -> Column:
    """A date column as it is; text (or a number like 19850314) by ``parse_date``'s patterns."""
    if isinstance(table.schema[column].dataType, DateType | TimestampType):
        return F.to_date(_column(column))
    return parse_date(_column(column).cast("string"))


# How silver standardizes each text field (dates and phones need more than the text).
_CLEANERS: dict[str, Callable[[Column], Column]] = {
    "first_name": clean_name,
    "last_name": clean_name,
    "full_name": clean_name,
    "email": clean_email,
    "address": clean_address,
    "postcode": clean_postcode,
    "city": clean_name,
    "loyalty_id": blank_to_null,
}


def _family_comma_given(name: Column) -> Column:
    """Turn "Family, Given", as registers and CRM exports write names, into "Given Family"."""
    return F.when(
        name.contains(","),
        F.concat_ws(" ", F.substring_index(name, ",", -1), F.substring_index(name, ",", 1)),
    ).otherwise(name)


def _standardized(table: DataFrame, field: str, column: str, region: Column) -> Column:
    """One mapped column standardized as silver standardizes that field."""
    if field == "dob":
        return _dob(table, column)
    text = _column(column).cast("string")
    if field == "phone":
        return e164(blank_to_null(text), region)
    if field == "full_name":
        text = _family_comma_given(text)
    return _CLEANERS[field](text)


def imported_records(
    table: DataFrame, id_column: str, mapping: dict[str, str], phone_region: str | None
) -> DataFrame:
    """The table as silver customer records of source ``IMPORTED_SOURCE``; unmapped is null."""
    region = F.lit(phone_region).cast("string")
    record_id = _column(id_column).cast("string")
    records = table.select(
        record_id.alias("record_id"),
        F.lit(IMPORTED_SOURCE).alias("source"),
        record_id.alias("source_key"),
        region.alias("country"),
        *[
            _standardized(table, field, column, region).alias(FIELD_COLUMNS[field])
            for field, column in mapping.items()
        ],
    )
    return conform(records, CUSTOMER_RECORDS, fill_missing=True)


def _loyalty_cards(records: DataFrame) -> DataFrame:
    """``record_id, case_id``: each record's loyalty id, as a case id only its owner has."""
    return records.where(F.col("loyalty_id").isNotNull()).select(
        "record_id", F.concat(F.lit(LOYALTY_PREFIX), "loyalty_id").alias("case_id")
    )


def imported_features(records: DataFrame) -> DataFrame:
    """The linkage features of imported records (module doc, step 2)."""
    return build_features(records, _loyalty_cards(records))


# --- model, previous ids, output --------------------------------------------------------------


def _saved_model(path: Path) -> SavedModel:
    """The model at ``path`` (``--model``), if it is one this omnicdp can resolve with."""
    try:
        model = load_model(path)
    except (ValueError, TypeError) as err:
        raise InputError(f"{path} (--model): not a saved omnicdp model") from err
    if model is None:
        raise InputError(f"{path} (--model): no such file")
    if not model.is_current_spec:
        raise InputError(
            f"{path} (--model): trained with model specification {model.spec_version}, "
            "which this omnicdp no longer uses; leave out --model to train a new one"
        )
    return model


def read_previous(spark: SparkSession, path: Path, id_column: str) -> PreviousIds:
    """An earlier output (its id column and ``customer_id``) as the assignment to keep.

    The salt for new ids that collide with issued ones (:mod:`identity.stable_ids`, rule 4)
    is derived from the previous assignment's content, so it differs from run to run like the
    pipeline's xref version, and a rerun against the same previous output gives the same ids.
    """
    table = read_file(spark, path, "--previous")
    require_columns(table, path, {id_column: "--id-column", CUSTOMER_ID: "an earlier output"})
    check_ids(table, path, "--previous", id_column)
    xref = (
        table.select(
            _column(id_column).cast("string").alias("record_id"),
            F.col(CUSTOMER_ID).cast("string").alias(CUSTOMER_ID),
        )
        .where(F.col(CUSTOMER_ID).isNotNull())
        .localCheckpoint()  # independent of the file, which the output may replace
    )
    hashes = F.pmod(F.xxhash64("record_id", CUSTOMER_ID), F.lit(1_000_003))
    salt = xref.agg(F.sum(hashes).alias("salt")).first()["salt"]
    return PreviousIds(xref, xref.select(CUSTOMER_ID).distinct(), int(salt or 0))


def _no_previous(spark: SparkSession) -> PreviousIds:
    empty = spark.createDataFrame([], f"record_id string, {CUSTOMER_ID} string")
    return PreviousIds(empty, empty.select(CUSTOMER_ID), -1)


def _cluster_counts(assigned: DataFrame, previous: PreviousIds) -> dict[str, int]:
    """Customers, customers with several rows, largest cluster, previous ids kept and retired."""
    sizes = assigned.groupBy(CUSTOMER_ID).agg(F.count(F.lit(1)).alias("n"))
    row = sizes.agg(
        F.count(F.lit(1)).alias("customers"),
        F.sum(F.when(F.col("n") > 1, 1).otherwise(0)).alias("multi"),
        F.max("n").alias("largest"),
    ).first()
    previous_ids = previous.issued.count()
    kept = sizes.join(previous.issued, CUSTOMER_ID, "left_semi").count()
    return {
        "customers": int(row["customers"] or 0),
        "multi": int(row["multi"] or 0),
        "largest": int(row["largest"] or 0),
        "kept": kept,
        "retired": previous_ids - kept,
    }


def _model(
    spark: SparkSession,
    settings: Settings,
    request: ResolveFileRequest,
    features: DataFrame,
    progress: Progress,
) -> tuple[SavedModel, Path, bool]:
    """The model to resolve with, where it is stored, and whether this run trained it."""
    if request.model_path is not None:
        model = _saved_model(request.model_path)
        progress(f"using model {model.model_version} from {request.model_path}")
        return model, request.model_path, False
    model = fit_model(spark, settings, features, progress)
    write_model(model, request.trained_model_path)
    progress(f"model {model.model_version} written to {request.trained_model_path}")
    return model, request.trained_model_path, True


def _assign(
    spark: SparkSession,
    settings: Settings,
    features: DataFrame,
    model: SavedModel,
    previous: PreviousIds,
    progress: Progress,
) -> DataFrame:
    """``record_id, customer_id`` for every record, materialized before the linker's scratch
    tables go (and before an output written over ``--previous`` replaces it)."""
    started = time.monotonic()
    with open_linker(spark, settings, features, model.splink_settings) as session:
        progress("scoring candidate pairs")
        predictions = predict_pairs(session.linker, settings.match_threshold)
        progress(f"pairs scored after {time.monotonic() - started:.1f}s; clustering")
        clusters = cluster_records(session, predictions, settings.match_threshold)
        assigned, _ = assign_ids(clusters, previous)
        assigned = assigned.select("record_id", CUSTOMER_ID).localCheckpoint()
    progress(f"customer ids assigned after {time.monotonic() - started:.1f}s")
    return assigned


def _read_input(
    spark: SparkSession, request: ResolveFileRequest, progress: Progress
) -> tuple[DataFrame, int]:
    """The input's id and mapped columns (cached; the caller unpersists) and its row count,
    once the columns and ids are checked."""
    path = request.input_path
    table = read_file(spark, path, "--input")
    wanted = {request.id_column: "--id-column"}
    wanted |= {column: f"--map {field}" for field, column in request.mapping.items()}
    require_columns(table, path, wanted)
    table = table.select(*[_column(c) for c in wanted]).cache()
    try:
        rows = check_ids(table, path, "--input", request.id_column)
        if rows == 0:
            raise InputError(f"{path} (--input): no rows")
    except InputError:
        table.unpersist()
        raise
    progress(f"{rows} rows; fields {', '.join(request.mapping)}")
    return table, rows


def _write_output(table: DataFrame, assigned: DataFrame, request: ResolveFileRequest) -> None:
    """The input's id column (its own type) and ``customer_id``, one row per input row."""
    ids = _column(request.id_column)
    output = table.select(ids, ids.cast("string").alias("_omnicdp_record_id")).join(
        assigned.withColumnRenamed("record_id", "_omnicdp_record_id"), "_omnicdp_record_id"
    )
    output.drop("_omnicdp_record_id").write.mode("overwrite").parquet(str(request.output_path))


def resolve_file(
    spark: SparkSession,
    settings: Settings,
    request: ResolveFileRequest,
    progress: Progress = log.info,
) -> ResolveFileSummary:
    """Resolve the rows of ``request.input_path`` into customer ids (module doc)."""
    table, rows = _read_input(spark, request, progress)
    try:
        previous = (
            read_previous(spark, request.previous_path, request.id_column)
            if request.previous_path is not None
            else _no_previous(spark)
        )
        records = imported_records(
            table, request.id_column, request.mapping, request.phone_region
        ).localCheckpoint()  # standardized once: the features refer to the records many times
        features = imported_features(records).cache()
        try:
            started = time.monotonic()
            model, model_path, trained = _model(spark, settings, request, features, progress)
            train_seconds = time.monotonic() - started
            started = time.monotonic()
            assigned = _assign(spark, settings, features, model, previous, progress)
        finally:
            features.unpersist()
        _write_output(table, assigned, request)
        resolve_seconds = time.monotonic() - started
        counts = _cluster_counts(assigned, previous)
    finally:
        table.unpersist()
    progress(f"{counts['customers']} customers written to {request.output_path}")
    return ResolveFileSummary(
        records=rows,
        customers=counts["customers"],
        multi_record_customers=counts["multi"],
        largest_cluster=counts["largest"],
        previous_ids_kept=counts["kept"],
        previous_ids_retired=counts["retired"],
        model_version=model.model_version,
        trained=trained,
        model_path=model_path,
        output_path=request.output_path,
        train_seconds=train_seconds,
        resolve_seconds=resolve_seconds,
    )
