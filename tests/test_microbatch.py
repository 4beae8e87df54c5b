"""Micro-batches end to end: new web and app events reach the serving store, exactly once.

A copy of the session's nightly run (``airflow dags test omnicdp_daily``,
:mod:`tests.airflow_runs`) holds every file except the last day's web and app events. Those
land and go through ``omnicdp stream --once`` and ``omnicdp microbatch --once``, as the
``omnicdp_microbatch`` DAG runs them. Copies of the lakehouse try the rest: a micro-batch
killed half-way, and the nightly batch reconciling what the increments assigned.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from identity import resolve_identities
from identity.artifact import load_model
from identity.engines import open_linker
from identity.increment import _new_features, _score_new_records, _sharing_a_key
from identity.model import PREDICTION_BLOCKING_KEYS
from identity.predict import LINK_MIN_PROBABILITY
from jobs import microbatch
from jobs.cli import main
from jobs.ingest import ingest_batch
from jobs.publish import publish
from jobs.standardize import standardize, standardize_increment, touched_keys
from schemas.catalog import (
    ALL_TABLES,
    GOLD_AGENT_CONTEXT,
    GOLD_CUSTOMER_ID_HISTORY,
    GOLD_CUSTOMER_PROFILE,
    GOLD_CUSTOMER_TIMELINE,
    GOLD_IDENTITY_FEATURES,
    GOLD_IDENTITY_LINKS,
    GOLD_IDENTITY_XREF,
    SILVER_CUSTOMER_RECORDS,
    SILVER_INTERACTIONS,
    Table,
    bronze_table,
)
from schemas.settings import Settings
from serving.store import open_store
from serving.store.base import Generation
from tests.airflow_runs import (
    EMAIL,
    HELD_SOURCES,
    DailyRun,
    airflow,
    airflow_env,
    copy_run,
    migrated_home,
    output_of,
    task_states,
)

NEW_LOGIN = "first.login@example.com"
WATCHED = (
    SILVER_CUSTOMER_RECORDS,
    SILVER_INTERACTIONS,
    GOLD_IDENTITY_XREF,
    GOLD_CUSTOMER_PROFILE,
    GOLD_CUSTOMER_TIMELINE,
    GOLD_AGENT_CONTEXT,
)


@dataclass(frozen=True)
class Lakehouse:
    settings: Settings
    held: Path  # the last day's web and app folders, not landed yet
    nightly: Path  # a copy of the lakehouse as the nightly run left it


@dataclass(frozen=True)
class Incremented:
    base: Lakehouse
    settings: Settings
    held_files: list[str]
    airflow_home: Path
    output: str


def cli(settings: Settings, *args: str) -> int:
    return main(["--lakehouse", str(settings.lakehouse), "--landing", str(settings.landing), *args])


def land_held(base: Lakehouse, settings: Settings) -> list[str]:
    """Move the held day's files into ``settings.landing``; their ``source_file`` names."""
    files = []
    for day in sorted(base.held.glob("*/*")):
        target = settings.landing / day.parent.name / day.name
        shutil.copytree(day, target, dirs_exist_ok=True)
        files += [f"{day.parent.name}/{day.name}/{f.name}" for f in day.iterdir()]
    return files


def copy_nightly(base: Lakehouse, workdir: Path) -> Settings:
    """A private copy of the nightly lakehouse (and its landing files) to change freely."""
    shutil.copytree(base.nightly, workdir / "lakehouse")
    shutil.copytree(base.settings.landing, workdir / "landing", ignore=_held_days(base))
    return base.settings.model_copy(
        update={"lakehouse": workdir / "lakehouse", "landing": workdir / "landing"}
    )


def land_logins(base: Lakehouse, settings: Settings, logins: list[tuple[str, str]]) -> list[str]:
    """Land web login events (cookie id, email), dated the held day, as the day's only web
    file; their event ids."""
    day = sorted(base.held.glob("web/*"))[-1].name
    events = [
        {
            "event_id": str(uuid.uuid4()),
            "ts": f"{day}T12:00:00+09:00",
            "cookie_id": cookie_id,
            "login_email": email,
            "site_country": "KR",
            "event_type": "login",
            "page": "/account",
        }
        for cookie_id, email in logins
    ]
    landed = settings.landing / "web" / day / f"web_events_{day.replace('-', '')}.jsonl"
    landed.parent.mkdir(parents=True)
    landed.write_text("".join(json.dumps(event) + "\n" for event in events))
    return [event["event_id"] for event in events]


def _held_days(base: Lakehouse):
    """copytree's ignore: the held day folders (the fixture's landing has them by now)."""
    held = {day.name for day in base.held.glob("*/*")}
    return lambda folder, names: [
        n for n in names if n in held and Path(folder).name in HELD_SOURCES
    ]


def version(spark: SparkSession, settings: Settings, table: Table) -> int:
    return DeltaTable.forPath(spark, table.path(settings)).history(1).first().version


def read(spark: SparkSession, settings: Settings, table: Table):
    return spark.read.format("delta").load(table.path(settings))


@pytest.fixture(scope="module")
def lakehouse(nightly_run: DailyRun, tmp_path_factory: pytest.TempPathFactory) -> Lakehouse:
    """A copy of the session's nightly run to carry micro-batches on; the run itself stays as
    the nightly run left it."""
    assert nightly_run.result.returncode == 0, output_of(nightly_run.result)[-5000:]
    settings = copy_run(nightly_run, tmp_path_factory.mktemp("microbatch")).settings
    return Lakehouse(settings, nightly_run.held, nightly_run.settings.lakehouse)


@pytest.fixture(scope="module")
def incremented(lakehouse: Lakehouse, tmp_path_factory: pytest.TempPathFactory) -> Incremented:
    """The held files land and a real ``airflow dags test omnicdp_microbatch`` carries them."""
    settings = lakehouse.settings
    held_files = land_held(lakehouse, settings)
    home = migrated_home(tmp_path_factory.mktemp("microbatch_airflow"))
    result = airflow(
        "dags", "test", "omnicdp_microbatch", env=airflow_env(home, settings), timeout=1200
    )
    assert result.returncode == 0, output_of(result)[-5000:]
    return Incremented(lakehouse, settings, held_files, home, output_of(result))


@pytest.fixture
def same_session_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI builds settings from the environment; keep the test session's Spark tuning."""
    monkeypatch.setenv("OMNICDP_SPARK_MASTER", "local[2]")
    monkeypatch.setenv("OMNICDP_SHUFFLE_PARTITIONS", "4")


def test_the_dag_runs_both_steps_once(incremented: Incremented) -> None:
    assert task_states(incremented.airflow_home, "omnicdp_microbatch") == {
        "stream_events": ("success", 1),
        "apply_increments": ("success", 1),
    }
    assert not EMAIL.search(incremented.output)


def test_new_events_reach_the_serving_store(spark: SparkSession, incremented: Incremented) -> None:
    settings = incremented.settings
    new = (
        read(spark, settings, SILVER_INTERACTIONS)
        .where(F.col("source_file").isin(incremented.held_files) & F.col("record_id").isNotNull())
        .join(read(spark, settings, GOLD_IDENTITY_XREF), "record_id")
        .select("customer_id", "interaction_id")
        .collect()
    )
    assert len(new) > 50
    generation = open_store(settings.resolved_serving_url).current()
    assert generation is not None
    for customer_id in sorted({r.customer_id for r in new})[:20]:
        expected = {r.interaction_id for r in new if r.customer_id == customer_id}
        assert expected <= set(timeline_ids(generation, customer_id)), customer_id
        assert generation.customer(customer_id) is not None


def test_every_line_is_in_silver_once_and_every_record_has_one_customer(
    spark: SparkSession, incremented: Incremented
) -> None:
    settings = incremented.settings
    interactions = read(spark, settings, SILVER_INTERACTIONS)
    assert interactions.groupBy("interaction_id").count().where("count > 1").isEmpty()
    bronze_held = interactions.where(F.col("source_file").isin(incremented.held_files)).count()
    assert bronze_held > 0
    xref = read(spark, settings, GOLD_IDENTITY_XREF)
    records = read(spark, settings, SILVER_CUSTOMER_RECORDS)
    assert xref.groupBy("record_id").count().where("count > 1").isEmpty()
    assert records.join(xref, "record_id", "left_anti").isEmpty()
    profiles = read(spark, settings, GOLD_CUSTOMER_PROFILE)
    assert (
        xref.select("customer_id").distinct().join(profiles, "customer_id", "left_anti").isEmpty()
    )


@pytest.mark.usefixtures("same_session_env")
def test_replaying_the_same_files_changes_nothing(
    spark: SparkSession, incremented: Incremented
) -> None:
    settings = incremented.settings
    before = {t: version(spark, settings, t) for t in WATCHED}
    land_held(incremented.base, settings)
    assert cli(settings, "stream", "--once") == 0
    assert cli(settings, "microbatch", "--once") == 0
    assert {t: version(spark, settings, t) for t in WATCHED} == before


def silver_grew(spark: SparkSession, settings: Settings, reference: Settings) -> Callable[[], bool]:
    """Kill point: the micro-batch has merged its first rows into silver."""
    start = version(spark, settings, SILVER_INTERACTIONS)
    return lambda: version(spark, settings, SILVER_INTERACTIONS) != start


def customers_served(
    spark: SparkSession, settings: Settings, reference: Settings
) -> Callable[[], bool]:
    """Kill point: the store shows a held event of a customer the nightly run resolved (the
    reference run's silver says which events the held files carry)."""
    held = (
        read(spark, reference, SILVER_INTERACTIONS)
        .join(read(spark, settings, GOLD_IDENTITY_XREF), "record_id")  # the nightly xref
        .join(read(spark, settings, SILVER_INTERACTIONS), "interaction_id", "left_anti")
        .select("customer_id", "interaction_id")
        .orderBy("customer_id", "interaction_id")
        .limit(20)
        .collect()
    )
    assert held

    def served() -> bool:
        store = open_store(settings.resolved_serving_url)
        try:
            generation = store.current()
            return any(
                row.interaction_id in timeline_ids(generation, row.customer_id) for row in held
            )
        finally:
            store.close()

    return served


def timeline_ids(generation: Generation, customer_id: str) -> list[str]:
    """The interaction ids of a customer's served timeline, newest first."""
    return [json.loads(e)["interaction_id"] for e in generation.timeline(customer_id, 500, None)]


def unmatched_records(spark: SparkSession, settings: Settings) -> int:
    records = read(spark, settings, SILVER_CUSTOMER_RECORDS)
    return records.join(read(spark, settings, GOLD_IDENTITY_XREF), "record_id", "left_anti").count()


def kill_micro_batch_when(settings: Settings, killed: Callable[[], bool]) -> None:
    """Run ``omnicdp microbatch --once`` in a process of its own and SIGKILL it once ``killed``."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobs.cli",
            "--lakehouse",
            str(settings.lakehouse),
            "--landing",
            str(settings.landing),
            "microbatch",
            "--once",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMNICDP_SPARK_MASTER": "local[1]"},
    )
    deadline = time.monotonic() + 300
    while not killed():
        assert process.poll() is None, "the micro-batch ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.usefixtures("same_session_env")
def test_a_micro_batch_killed_twice_is_completed_by_the_restart(
    spark: SparkSession, incremented: Incremented, tmp_path: Path
) -> None:
    """Killed once after its first silver commit, then, restarted, once more after serving
    customers but before storing their xref rows; the next run completes it as if it had
    never been stopped (one run of each kill point shares the setup: it is a minute each)."""
    settings = copy_nightly(incremented.base, tmp_path)
    land_held(incremented.base, settings)
    assert cli(settings, "stream", "--once") == 0
    kill_points = [
        kill_when(spark, settings, incremented.settings)
        for kill_when in (silver_grew, customers_served)
    ]
    for killed in kill_points:
        kill_micro_batch_when(settings, killed)
    assert unmatched_records(spark, settings) > 0  # served before the xref rows were stored
    killed_at = {t: version(spark, settings, t) for t in (GOLD_IDENTITY_XREF, GOLD_AGENT_CONTEXT)}
    assert cli(settings, "microbatch", "--once") == 0
    assert {t: version(spark, settings, t) for t in killed_at} != killed_at
    assert unmatched_records(spark, settings) == 0

    expected = read(spark, incremented.settings, GOLD_IDENTITY_XREF).select(
        "record_id", "customer_id"
    )
    got = read(spark, settings, GOLD_IDENTITY_XREF).select("record_id", "customer_id")
    assert sorted(got.collect()) == sorted(expected.collect())
    served = open_store(settings.resolved_serving_url).current()
    reference = open_store(incremented.settings.resolved_serving_url).current()
    for row in got.select("customer_id").distinct().orderBy("customer_id").limit(40).collect():
        mine = timeline_ids(served, row.customer_id)
        theirs = timeline_ids(reference, row.customer_id)
        assert mine == theirs, row.customer_id
        assert len(mine) == len(set(mine))


def test_the_nightly_run_agrees_with_the_increments_and_records_every_change(
    spark: SparkSession, incremented: Incremented, tmp_path: Path
) -> None:
    settings = incremented.settings.model_copy(update={"lakehouse": tmp_path / "lakehouse"})
    shutil.copytree(incremented.settings.lakehouse, settings.lakehouse)  # model included
    incremental = (
        read(spark, settings, GOLD_IDENTITY_XREF)
        .select("record_id", F.col("customer_id").alias("incremental_id"))
        .localCheckpoint()
    )
    increments_silver = read(spark, settings, SILVER_INTERACTIONS).localCheckpoint()
    standardize(spark, settings)
    batch_silver = read(spark, settings, SILVER_INTERACTIONS)
    assert increments_silver.exceptAll(batch_silver).isEmpty()
    assert batch_silver.exceptAll(increments_silver).isEmpty()
    summary = resolve_identities(spark, settings)
    assert not summary.trained
    nightly = read(spark, settings, GOLD_IDENTITY_XREF).select("record_id", "customer_id")
    compared = incremental.join(nightly, "record_id")
    total = compared.count()
    moved = compared.where(F.col("incremental_id") != F.col("customer_id"))
    assert total == incremental.count()
    assert moved.count() <= 0.01 * total
    history = read(spark, settings, GOLD_CUSTOMER_ID_HISTORY).where(
        F.col("changed_at") == F.lit(summary_time(spark, settings))
    )
    unrecorded = moved.join(
        history.select(F.col("previous_id").alias("incremental_id")), "incremental_id", "left_anti"
    )
    assert unrecorded.isEmpty()


def test_no_table_history_holds_a_record_id(spark: SparkSession, incremented: Incremented) -> None:
    """Delta keeps each commit's predicate in the table's history, which erasure leaves alone;
    a record id holds an email or a phone, so no predicate may name one."""
    settings = incremented.settings
    record_ids = [r.record_id for r in read(spark, settings, SILVER_CUSTOMER_RECORDS).collect()]
    histories = {
        table.qualified_name: " ".join(
            r.text
            for r in DeltaTable.forPath(spark, table.path(settings))
            .history()
            .select(F.to_json("operationParameters").alias("text"))
            .collect()
        )
        for table in ALL_TABLES
        if DeltaTable.isDeltaTable(spark, table.path(settings))
    }
    assert len(histories) >= 10
    assert "MERGE" in " ".join(
        r.operation
        for r in DeltaTable.forPath(spark, GOLD_IDENTITY_LINKS.path(settings)).history().collect()
    )
    leaks = {
        name: sum(record_id in text for record_id in record_ids) for name, text in histories.items()
    }
    assert not any(leaks.values()), leaks


@dataclass(frozen=True)
class LoggedIn:
    """One micro-batch of two web logins, on a copy of the nightly lakehouse, with a full
    publish run between serving its customers and storing them in gold."""

    settings: Settings
    nightly_silver: int  # silver.interactions' version the nightly run left
    # A cookie that browsed anonymously logs in with NEW_LOGIN, and a new cookie logs in with
    # the email of a resolved web record, whose customer this is:
    known_customer: str
    known_event: str
    served_before: int  # the store's generation before the micro-batch


@pytest.fixture(scope="module")
def logged_in(
    spark: SparkSession, incremented: Incremented, tmp_path_factory: pytest.TempPathFactory
) -> LoggedIn:
    settings = copy_nightly(incremented.base, tmp_path_factory.mktemp("logged_in"))
    bronze = read(spark, settings, bronze_table("web"))
    cookie = (
        bronze.where(F.col("cookie_id").isNotNull())
        .groupBy("cookie_id")
        .agg(F.count(F.lit(1)).alias("events"), F.max("login_email").alias("login"))
        .where("login IS NULL AND events > 1")
        .orderBy("cookie_id")
        .first()
        .cookie_id
    )
    known = (  # a web record's key is its login email
        read(spark, settings, GOLD_IDENTITY_XREF)
        .where(F.col("source") == "web")
        .orderBy("record_id")
        .first()
    )
    _, known_event = land_logins(
        incremented.base,
        settings,
        [(cookie, NEW_LOGIN), (str(uuid.uuid4()), known.record_id.removeprefix("web:"))],
    )
    store = open_store(settings.resolved_serving_url)
    served_before = store.current().number
    store.close()
    nightly = version(spark, settings, SILVER_INTERACTIONS)
    store_rows = microbatch.store_customer_rows

    def publish_then_store(spark: SparkSession, settings: Settings, *args: object) -> object:
        publish(spark, settings)
        return store_rows(spark, settings, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMNICDP_SPARK_MASTER", "local[2]")
        patch.setenv("OMNICDP_SHUFFLE_PARTITIONS", "4")
        patch.setattr(microbatch, "store_customer_rows", publish_then_store)
        assert cli(settings, "stream", "--once") == 0
        assert cli(settings, "microbatch", "--once") == 0
    return LoggedIn(settings, nightly, known.customer_id, known_event, served_before)


def test_re_attributing_anonymous_events_rewrites_only_the_files_holding_them(
    spark: SparkSession, logged_in: LoggedIn
) -> None:
    """A cookie that browsed anonymously logs in: its earlier events, stored without a record,
    are re-attributed by a MERGE, which rewrites every file holding one of them. The nightly
    write keeps anonymous events in files of their own, so it rewrites some files, not all."""
    path = SILVER_INTERACTIONS.path(logged_in.settings)
    commits = (
        DeltaTable.forPath(spark, path).history().where(F.col("version") > logged_in.nightly_silver)
    )
    updates = [
        c for c in commits.collect() if int(c.operationMetrics.get("numTargetRowsUpdated", 0))
    ]
    assert len(updates) == 1
    merge = updates[0]
    before = spark.read.format("delta").option("versionAsOf", merge.version - 1).load(path)
    removed = int(merge.operationMetrics["numTargetFilesRemoved"])
    assert 0 < removed < len(before.inputFiles()), (removed, before.inputFiles())
    attributed = read(spark, logged_in.settings, SILVER_INTERACTIONS).where(
        F.col("record_id") == f"web:{NEW_LOGIN}"
    )
    assert attributed.count() >= 3  # the login and the cookie's two or more earlier events


def test_a_publish_between_serving_and_storing_does_not_lose_the_micro_batch(
    logged_in: LoggedIn,
) -> None:
    """A full ``omnicdp publish`` that runs after a micro-batch served its customers and before
    it stored them in gold publishes gold without them; the micro-batch serves them again."""
    store = open_store(logged_in.settings.resolved_serving_url)
    generation = store.current()
    assert generation.number == logged_in.served_before + 1  # the publish ran, in between
    assert f"web:{logged_in.known_event}" in timeline_ids(generation, logged_in.known_customer)
    store.close()


def test_deriving_unchanged_history_again_rewrites_no_silver_file(
    spark: SparkSession, incremented: Incremented, tmp_path: Path
) -> None:
    """Each increment re-derives the whole history of the records it touches; the rows that did
    not change must not be merged as updates, which rewrite every file holding one."""
    settings = incremented.settings.model_copy(update={"lakehouse": tmp_path / "lakehouse"})
    shutil.copytree(incremented.settings.lakehouse, settings.lakehouse)
    held = F.col("source_file").isin(incremented.held_files)
    touched = reduce(
        DataFrame.unionByName,
        [
            touched_keys(read(spark, settings, bronze_table(source)).where(held), source)
            for source in HELD_SOURCES
        ],
    )
    before = version(spark, settings, SILVER_INTERACTIONS)
    rows_before = read(spark, settings, SILVER_INTERACTIONS).localCheckpoint()

    increment = standardize_increment(spark, settings, touched.distinct())

    assert increment.interactions > 100
    commits = DeltaTable.forPath(spark, SILVER_INTERACTIONS.path(settings)).history()
    merged = [c.operationMetrics for c in commits.where(F.col("version") > before).collect()]
    assert all(int(m.get("numTargetFilesRemoved", 0)) == 0 for m in merged), merged
    assert all(int(m.get("numTargetRowsUpdated", 0)) == 0 for m in merged), merged
    rows_after = read(spark, settings, SILVER_INTERACTIONS)
    assert rows_after.exceptAll(rows_before).isEmpty()
    assert rows_before.exceptAll(rows_after).isEmpty()


def test_new_records_are_scored_as_splink_scores_them_against_every_resolved_record(
    spark: SparkSession, lakehouse: Lakehouse, tmp_path: Path
) -> None:
    """The increment blocks new records only against the resolved records that share a
    prediction blocking key with one of them, and scores new-to-resolved and new-to-new pairs
    in one Splink call; it must give the pairs and scores of the plain way: predict_between
    every resolved record and the new ones, plus predict_within the new ones."""
    settings = copy_nightly(lakehouse, tmp_path)
    land_held(lakehouse, settings)
    ingest_batch(spark, settings)
    standardize(spark, settings)
    xref = read(spark, settings, GOLD_IDENTITY_XREF)
    records = read(spark, settings, SILVER_CUSTOMER_RECORDS).select("record_id")
    new = records.join(xref, "record_id", "left_anti").localCheckpoint()
    resolved = read(spark, settings, GOLD_IDENTITY_FEATURES).join(new, "record_id", "left_anti")
    fresh = _new_features(spark, settings, new, resolved)
    new_ids = sorted(r.record_id for r in new.collect())
    model = load_model(settings.resolved_model_path)
    threshold = {"threshold_match_probability": LINK_MIN_PROBABILITY}

    def pairs(frame: DataFrame) -> set[tuple[str, str, float]]:
        rows = frame.select("record_id_l", "record_id_r", "match_probability").collect()
        return {(r.record_id_l, r.record_id_r, round(r.match_probability, 12)) for r in rows}

    with open_linker(spark, settings, resolved, model.splink_settings, False) as session:
        all_, linker = session.features, session.linker
        candidates = _sharing_a_key(all_, PREDICTION_BLOCKING_KEYS, fresh).localCheckpoint()
        increment = pairs(_score_new_records(session, candidates, fresh))
        # A running stream scores every micro-batch in one session: again, same pairs.
        assert pairs(_score_new_records(session, candidates, fresh)) == increment
        every, added = session.register(all_, "every_resolved"), session.register(fresh, "new_ones")
        between = linker.inference.predict_between(every, added, **threshold)
        within = linker.inference.predict_within(added, **threshold)
        plain = pairs(session.to_spark(between)) | pairs(session.to_spark(within))

    assert len(new_ids) >= 5
    assert len(plain) >= 20
    assert any(left in new_ids and right in new_ids for left, right, _ in plain)
    assert candidates.count() < 0.5 * resolved.count()
    assert increment == plain


def summary_time(spark: SparkSession, settings: Settings):
    """When the last resolution ran (the xref's resolved_at)."""
    return read(spark, settings, GOLD_IDENTITY_XREF).agg(F.max("resolved_at")).first()[0]
