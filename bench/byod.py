"""Bring your own data at 10,000 records: ``identity resolve --input`` timed on 2 cores.

The records are the simulator's (:mod:`jobs.simulate`: five channels, households, namesakes,
typos), so there is a truth to measure against. They go through ingest and standardize into
silver as in the pipeline, and are then exported as one customer table in formats the pipeline's
sources never use: a CSV with column names of its own, dates of birth written as YYYY-MM-DD,
YYYYMMDD or DD/MM/YYYY (a third each), empty strings for missing values, first and last name
on web and app records and one full name on the others, as a table merged from several systems
would have them. ``RECORDS`` of them are drawn by a hash of the record id, the same on every run.

The table is then resolved twice by :func:`identity.byod.resolve_file`, the function behind
the command, on ``local[2]`` with the default settings otherwise: a first run that trains a
model on the table, and a rerun as a user makes it later, with the saved model (``--model``)
and the first output as ``--previous``. Only those calls are timed: the seconds each reports
for training and for resolving (scoring, clustering, ids, writing) and its wall time, which
includes reading and standardizing the file. Quality is the first run's pairwise and B-cubed
precision / recall / F1 against the simulator's truth
(:func:`identity.evaluate.score_assignment`); the rerun records the share of ids it kept. The
target is the issue's: well under a minute for 10,000 records on 2 cores. Data preparation
shares the Spark session, so the timed calls find a warm JVM, as a command run would not.

Results go to ``bench/results/byod.json`` with the machine's load average around the run: the
two cores may be shared with other jobs, and numbers from a busy machine are pessimistic.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from identity.byod import ResolveFileRequest, resolve_file
from identity.evaluate import read_truth, score_assignment
from jobs.ingest import ingest_batch
from jobs.lakehouse.delta import read_table
from jobs.lakehouse.session import get_spark
from jobs.simulate import simulate
from jobs.standardize import standardize
from jobs.values import DATE_PATTERNS
from schemas.catalog import SILVER_CUSTOMER_RECORDS
from schemas.imported import FIELDS
from schemas.settings import Settings

RECORDS = 10_000
PEOPLE = 4_300  # about 2.4 records each: enough to draw RECORDS from
SEED = 7
TARGET_SECONDS = 60.0
RESULTS = Path(__file__).parent / "results" / "byod.json"
ID_COLUMN = "customer_ref"
# The table's own column names, one per field.
COLUMNS = {field: f"col_{field}" for field in FIELDS}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _silver(spark: SparkSession, settings: Settings) -> Path:
    """Simulate, ingest and standardize; the truth file's path."""
    summary = simulate(settings.landing, people=PEOPLE, seed=SEED, progress=_say)
    ingest_batch(spark, settings)
    standardize(spark, settings)
    return summary.truth_path


def _dob_text(dob: Column, record_id: Column) -> Column:
    """The date written in one of the accepted patterns, chosen by the record's hash."""
    choice = (F.pmod(F.xxhash64(record_id), F.lit(len(DATE_PATTERNS))) + 1).cast("int")
    return F.element_at(F.array(*[F.date_format(dob, p) for p in DATE_PATTERNS]), choice)


def _customer_table(silver: DataFrame) -> DataFrame:
    """RECORDS silver records as a user's customer table (module doc), every value text."""
    form = F.col("source").isin("web", "app")
    text = {
        "first_name": F.when(form, F.col("first_name")),
        "last_name": F.when(form, F.col("last_name")),
        "full_name": F.when(~form, F.col("full_name")),
        "dob": _dob_text(F.col("dob"), F.col("record_id")),
        "email": F.col("email"),
        "phone": F.col("phone"),
        "address": F.col("address_line"),
        "postcode": F.col("postcode"),
        "city": F.col("city"),
        "loyalty_id": F.col("loyalty_id"),
    }
    drawn = silver.orderBy(F.xxhash64("record_id"), "record_id").limit(RECORDS)
    return drawn.select(
        F.col("record_id").alias(ID_COLUMN),
        *[F.coalesce(value, F.lit("")).alias(COLUMNS[f]) for f, value in text.items()],
    )


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()[:2]]


def _quality(spark: SparkSession, output: Path, truth_path: Path) -> dict[str, float]:
    assigned = spark.read.parquet(str(output)).withColumnRenamed(ID_COLUMN, "record_id")
    truth = read_truth(spark, truth_path).join(assigned, "record_id", "left_semi")
    result = score_assignment(assigned, truth)
    return {
        "persons": result.persons,
        "customers": result.customers,
        **{
            f"{kind}_{metric}": round(getattr(result, f"{kind}_{metric}"), 4)
            for kind in ("pairwise", "bcubed")
            for metric in ("precision", "recall", "f1")
        },
    }


def _timed(spark: SparkSession, settings: Settings, request: ResolveFileRequest) -> dict:
    """One ``resolve_file`` call: its wall time, its own train/resolve split, the load."""
    load_before = _load_average()
    started = time.monotonic()
    summary = resolve_file(spark, settings, request, progress=_say)
    return {
        "trained": summary.trained,
        "customers_found": summary.customers,
        "seconds": {
            "train": round(summary.train_seconds, 1),
            "resolve": round(summary.resolve_seconds, 1),
            "total": round(time.monotonic() - started, 1),
        },
        "load_average_1m_5m": {"before": load_before, "after": _load_average()},
    }


def _ids_kept(spark: SparkSession, before: Path, after: Path) -> float:
    """Share of rows whose customer id a rerun kept."""
    a = spark.read.parquet(str(before)).withColumnRenamed("customer_id", "a")
    b = spark.read.parquet(str(after)).withColumnRenamed("customer_id", "b")
    same = a.join(b, ID_COLUMN).where("a = b").count()
    return round(same / a.count(), 4)


def _runs(spark: SparkSession, settings: Settings, table: Path, truth_path: Path) -> dict:
    """A first run that trains, and a rerun with its model and ids, as a user would do."""
    maps = [f"{field}={column}" for field, column in COLUMNS.items()]
    first = ResolveFileRequest.create(table, ID_COLUMN, maps, table.with_name("ids.parquet"))
    runs = {"first_run": _timed(spark, settings, first)}
    runs["first_run"]["quality"] = _quality(spark, first.output_path, truth_path)
    rerun = ResolveFileRequest.create(
        table,
        ID_COLUMN,
        maps,
        table.with_name("ids_rerun.parquet"),
        previous_path=first.output_path,
        model_path=first.trained_model_path,
    )
    runs["rerun_with_saved_model"] = _timed(spark, settings, rerun)
    runs["rerun_with_saved_model"]["ids_kept"] = _ids_kept(
        spark, first.output_path, rerun.output_path
    )
    return runs


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="omnicdp-bench-byod-") as tmp:
        root = Path(tmp)
        settings = Settings(
            lakehouse=root / "lakehouse", landing=root / "landing", spark_master="local[2]"
        )
        spark = get_spark(settings)
        truth_path = _silver(spark, settings)
        table = root / "customers.csv"
        silver = read_table(spark, settings, SILVER_CUSTOMER_RECORDS)
        _customer_table(silver).toPandas().to_csv(table, index=False)
        runs = _runs(spark, settings, table, truth_path)
    results = {
        "benchmark": "omnicdp identity resolve --input on a 10,000-row CSV, local[2]",
        "records": RECORDS,
        "target_seconds": TARGET_SECONDS,
        "under_target": {
            name: run["seconds"]["total"] < TARGET_SECONDS for name, run in runs.items()
        },
        **runs,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    _say(json.dumps(results, indent=2))
