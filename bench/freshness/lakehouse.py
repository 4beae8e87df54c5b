"""The cached lakehouse: built once the nightly way, restored before each measurement."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from bench.freshness.config import (
    BENCH_TAG,
    DAYS,
    HELD_SOURCES,
    PEOPLE,
    SEED,
    TRAIN_PEOPLE,
    TRAIN_SEED,
    Paths,
    bench_settings,
    load_average,
    say,
)
from jobs.lakehouse.delta import apply_table_properties, table_exists
from schemas.catalog import (
    ALL_TABLES,
    BRONZE_TABLES,
    GOLD_CUSTOMER_PROFILE,
    SILVER_CUSTOMER_RECORDS,
    SILVER_INTERACTIONS,
)
from schemas.settings import Settings


class _Build:
    """The build's steps, each timed and recorded in ``build.json``; finished ones are skipped."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.log: dict[str, Any] = (
            json.loads(paths.build_log.read_text())
            if paths.build_log.exists()
            else {"people": PEOPLE, "seconds_per_step": {}, "load_average_1m_5m": {}}
        )

    def _save(self) -> None:
        tmp = self.paths.build_log.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.log, indent=2) + "\n")
        tmp.replace(self.paths.build_log)

    def step(self, name: str, work: Callable[[], Any]) -> None:
        if name in self.log["seconds_per_step"]:
            say(f"build: {name} done in an earlier run, skipped")
            return
        say(f"build: {name} ...")
        started = time.monotonic()
        work()
        seconds = round(time.monotonic() - started, 1)
        self.log["seconds_per_step"][name] = seconds
        self.log["load_average_1m_5m"][name] = load_average()
        self._save()
        say(f"build: {name} done in {seconds:.1f} s")


def _hold_back(paths: Paths) -> None:
    """Move the last day's web and app folders out of the landing area."""
    for source in HELD_SOURCES:
        held = paths.held / source
        if held.exists() and any(held.iterdir()):
            continue
        last_day = sorted((paths.landing / source).iterdir())[-1]
        held.mkdir(parents=True, exist_ok=True)
        shutil.move(last_day, held / last_day.name)


def _train(spark: SparkSession, settings: Settings, paths: Paths) -> None:
    from identity import train_model
    from jobs.ingest import ingest_batch
    from jobs.simulate import simulate
    from jobs.standardize import standardize

    if TRAIN_PEOPLE >= PEOPLE:
        train_model(spark, settings)
        return
    shutil.rmtree(paths.train, ignore_errors=True)
    train = settings.model_copy(
        update={"lakehouse": paths.train / "lakehouse", "landing": paths.train / "landing"}
    )
    simulate(train.landing, people=TRAIN_PEOPLE, seed=TRAIN_SEED, days=DAYS)
    ingest_batch(spark, train)
    standardize(spark, train)
    train_model(spark, train)  # saves to train.resolved_model_path == settings' model path
    shutil.rmtree(paths.train, ignore_errors=True)


def _prime(spark: SparkSession, settings: Settings) -> None:
    """The first scheduled stream + micro-batch run after the nightly build: checkpoints."""
    from jobs.microbatch import run_microbatches
    from jobs.standardize import standardize, standardized_bronze_versions
    from jobs.stream import stream_ingest

    if not standardized_bronze_versions(spark, settings):
        # A silver built before standardize recorded the bronze versions it read: without
        # them the first micro-batch would take every bronze web and app row as new.
        say("prime: silver does not say which bronze versions it read; standardizing again")
        standardize(spark, settings)
    streamed = stream_ingest(spark, settings, once=True, progress=say)
    say(f"prime: stream --once took {streamed.seconds:.1f} s, {streamed.bronze_rows} rows")
    increments = run_microbatches(spark, settings, once=True, progress=say)
    say(
        f"prime: microbatch --once took {increments.seconds:.1f} s, "
        f"{increments.bronze_rows} bronze rows, {increments.customers} customers"
    )


def _facts(spark: SparkSession, settings: Settings) -> dict[str, int]:
    """Row counts of the built lakehouse (Spark counts; nothing is collected)."""

    def count(table: Any) -> int:
        return spark.read.format("delta").load(table.path(settings)).count()

    facts = {
        "customers": count(GOLD_CUSTOMER_PROFILE),
        "customer_records": count(SILVER_CUSTOMER_RECORDS),
        "interactions": count(SILVER_INTERACTIONS),
    }
    for source, table in sorted(BRONZE_TABLES.items()):
        facts[f"bronze_{source}_rows"] = count(table)
    return facts


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def build(spark: SparkSession, paths: Paths) -> dict[str, Any]:
    """Build the lakehouse (module doc), or reuse the complete one; the build's record."""
    from identity import resolve_identities
    from jobs.curate import curate
    from jobs.ingest import ingest_batch
    from jobs.publish import publish
    from jobs.segments import build_segments
    from jobs.simulate import simulate
    from jobs.standardize import standardize

    if paths.complete.exists():
        _catalog_properties(spark, paths)
        record = json.loads(paths.build_log.read_text())
        record["reused"] = True
        say(f"lakehouse of {PEOPLE:,} people found complete in {paths.root}; build skipped")
        return record
    paths.root.mkdir(parents=True, exist_ok=True)
    ignore = paths.root.parent / ".gitignore"  # the cache is never committed
    if not ignore.exists():
        ignore.write_text("*\n")
    settings = bench_settings(paths)
    job = _Build(paths)
    job.log["train_people"] = min(TRAIN_PEOPLE, PEOPLE)
    started = time.monotonic()
    job.step(
        "simulate",
        lambda: simulate(settings.landing, people=PEOPLE, seed=SEED, days=DAYS, progress=say),
    )
    job.step("hold back the last day's web and app files", lambda: _hold_back(paths))
    job.step("ingest (bronze)", lambda: ingest_batch(spark, settings))
    job.step("standardize (silver)", lambda: standardize(spark, settings))
    trained_on = f" (on {TRAIN_PEOPLE:,} other simulated people)" if TRAIN_PEOPLE < PEOPLE else ""
    job.step(f"identity: train{trained_on}", lambda: _train(spark, settings, paths))
    job.step("identity: resolve", lambda: resolve_identities(spark, settings))
    job.step("curate (gold)", lambda: curate(spark, settings))
    job.step("segments", lambda: build_segments(spark, settings))
    job.step("publish (serving store)", lambda: publish(spark, settings))
    job.step(
        "prime: first stream --once + microbatch --once (checkpoints)",
        lambda: _prime(spark, settings),
    )

    def snapshot() -> None:
        shutil.rmtree(paths.pristine, ignore_errors=True)
        shutil.copytree(paths.lakehouse, paths.pristine)

    job.step("snapshot (copy to pristine/)", snapshot)
    job.log["lakehouse"] = _facts(spark, settings)
    job.log["lakehouse"]["bytes"] = _folder_bytes(paths.pristine)
    job.log["total_seconds_this_run"] = round(time.monotonic() - started, 1)
    job.log["total_seconds_all_steps"] = round(sum(job.log["seconds_per_step"].values()), 1)
    job.log["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    job._save()
    paths.complete.write_text(job.log["finished_at"] + "\n")
    say(f"build complete: {job.log['lakehouse']}")
    job.log["reused"] = False
    return job.log


def _catalog_properties(spark: SparkSession, paths: Paths) -> None:
    """Give a cache built by older code the table properties the catalog has gained since
    (deletion vectors), as the lakehouse's next batch run would, so it measures today's tables."""
    pristine = Settings(lakehouse=paths.pristine.resolve())
    for table in ALL_TABLES:
        if table.properties and table_exists(spark, pristine, table):
            apply_table_properties(spark, pristine, table)


def restore(paths: Paths) -> None:
    """Start from the pristine lakehouse, without the files earlier runs landed."""
    shutil.rmtree(paths.lakehouse, ignore_errors=True)
    shutil.copytree(paths.pristine, paths.lakehouse)
    for landed in paths.landing.glob(f"*/*/*{BENCH_TAG}*"):
        landed.unlink()
