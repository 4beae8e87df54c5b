"""The DAGs load cleanly and follow the house rules, and omnicdp_daily really runs.

The run is a real ``airflow dags test omnicdp_daily`` in a subprocess, as an operator would type
it: its own AIRFLOW_HOME with the default SQLite metadata database (``airflow db migrate``
first), the repository's ``dags/`` folder, and a lakehouse and landing folder in a temp dir
holding a small simulated population. Every task runs in that one process, sharing one Spark
session. It is the slowest thing the suite does, so it runs once per session
(:mod:`tests.airflow_runs`, shared with the micro-batch tests) and the tests below read what
it left: the task states in the metadata database, the Delta logs, the asset events and the
Data Docs. The privacy DAG then runs on a copy of it, from its folder with relative paths.

With ``OMNICDP_SPARK_SUBMIT=true`` the DAGs are checked to submit every Spark step, and one
step (the privacy DAG's ``erase``, on a tiny lakehouse) runs through pyspark's real spark-submit.
"""

from __future__ import annotations

import ast
import functools
import io
import json
import os
import re
import secrets
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pytest
from deltalake import DeltaTable as RustDeltaTable
from deltalake import QueryBuilder
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.cli import main
from jobs.privacy import IdentifierKind, request_erasure
from schemas.catalog import (
    ALL_TABLES,
    ERASURE_REQUESTS,
    GOLD_CUSTOMER_PROFILE,
    GOLD_IDENTITY_XREF,
    GOLD_SEGMENT_MEMBERSHIP,
    SILVER_CUSTOMER_RECORDS,
    SILVER_INTERACTIONS,
    Stage,
    stage_tables,
)
from schemas.settings import Settings
from schemas.tables import CUSTOMER_RECORDS, IDENTITY_XREF, INTERACTIONS
from serving.store import open_store
from tests.airflow_runs import (
    AIRFLOW,
    DAG_ID,
    DAGS_FOLDER,
    EMAIL,
    REPO,
    DailyRun,
    airflow,
    airflow_env,
    copy_run,
    migrated_home,
    output_of,
    returned_by,
    task_states,
)
from tests.builders import frame, record, xref_rows

if TYPE_CHECKING:
    from airflow.dag_processing.dagbag import DagBag

STEP_APPLICATION = REPO / "jobs" / "orchestration" / "spark_app" / "run_step.py"
PIPELINE = (
    "ingest",
    "gate_bronze",
    "standardize",
    "gate_silver",
    "resolve_identities",
    "gate_gold",
    "curate",
    "build_segments",
    "gate_curated",
    "publish",
    "run_report",
)
IDENTITY_TABLES = stage_tables(Stage.IDENTITY)
CURATED_TABLES = stage_tables(Stage.CURATED)


# --- DAG integrity -------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def in_process_airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Airflow imported into this test process reads a temp AIRFLOW_HOME, never ~/airflow."""
    root = tmp_path_factory.mktemp("in_process")
    with pytest.MonkeyPatch.context() as env:
        for key in os.environ:
            if key.startswith(("AIRFLOW", "OMNICDP_")):
                env.delenv(key)
        for key, value in airflow_env(root / "airflow", Settings(lakehouse=root)).items():
            env.setenv(key, value)
        yield


def load_dags() -> DagBag:
    """The repository's DAGs parsed in this process, as the dag processor parses them."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return load_dags()


def test_every_dag_imports_without_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert DAG_ID in dagbag.dags


def test_every_dag_is_acyclic_documented_and_owned(dagbag: DagBag) -> None:
    from airflow.utils.dag_cycle_tester import check_cycle

    for dag in dagbag.dags.values():
        check_cycle(dag)
        assert dag.tags, dag.dag_id
        assert dag.doc_md and len(dag.doc_md) > 200, f"{dag.dag_id}: doc_md should explain it"
        docstring = ast.get_docstring(ast.parse(Path(dag.fileloc).read_text()))
        assert docstring and "runs" in docstring, f"{dag.fileloc}: say when the DAG runs"
        for task in dag.tasks:
            assert task.retries > 0, task.task_id
            assert task.retry_delay, task.task_id
            assert task.execution_timeout, task.task_id
            assert task.owner not in ("", "airflow"), task.task_id


def test_daily_steps_run_in_order_with_a_gate_after_each_layer(dagbag: DagBag) -> None:
    dag = dagbag.dags[DAG_ID]
    assert set(dag.task_ids) == set(PIPELINE)
    for upstream, task_id in pairwise(PIPELINE):
        assert dag.get_task(task_id).upstream_task_ids == {upstream}


def test_gold_tables_are_assets_published_after_their_gate(dagbag: DagBag) -> None:
    dag = dagbag.dags[DAG_ID]
    outlets = {t.task_id: {a.name for a in t.outlets} for t in dag.tasks if t.outlets}
    assert outlets == {
        "gate_gold": {t.qualified_name for t in IDENTITY_TABLES},
        "gate_curated": {t.qualified_name for t in (*CURATED_TABLES, GOLD_SEGMENT_MEMBERSHIP)},
    }
    # The catalog's stage groups are what readers may schedule on; identity's own state is not.
    assert {t.name for t in IDENTITY_TABLES} == {
        "identity_links",
        "identity_xref",
        "customer_profile",
    }
    assert {t.name for t in CURATED_TABLES} == {
        "customer_timeline",
        "customer_360",
        "agent_context",
        "journey_metrics",
    }


SPARK_STEPS = {
    DAG_ID: set(PIPELINE) - {"run_report"},
    "omnicdp_microbatch": {"stream_events", "apply_increments"},
    "omnicdp_privacy": {"erase", "vacuum"},
}


def test_every_spark_step_is_in_the_lakehouse_pool(dagbag: DagBag) -> None:
    """The DAGs write the same Delta tables; the pool's slots bound how many steps do at once."""
    for dag_id, spark_steps in SPARK_STEPS.items():
        dag = dagbag.dags[dag_id]
        assert {t.task_id for t in dag.tasks if t.pool == "omnicdp_lakehouse"} == spark_steps


@pytest.fixture(scope="module")
def submitting_dagbag() -> Iterator[DagBag]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMNICDP_SPARK_SUBMIT", "true")
        env.setenv("OMNICDP_SPARK_CONN_ID", "omnicdp_spark")
        yield load_dags()


def test_with_spark_submit_every_spark_step_is_submitted(
    dagbag: DagBag, submitting_dagbag: DagBag
) -> None:
    """Each Spark step becomes a SparkSubmitOperator of the step application, with the same
    task id, dependencies, retries, timeout, assets and pool as the in-process task."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    assert submitting_dagbag.import_errors == {}
    for dag_id, spark_steps in SPARK_STEPS.items():
        in_process, submitting = dagbag.dags[dag_id], submitting_dagbag.dags[dag_id]
        assert set(submitting.task_ids) == set(in_process.task_ids)
        for task in submitting.tasks:
            twin = in_process.get_task(task.task_id)
            assert task.upstream_task_ids == twin.upstream_task_ids, task.task_id
            same = ("retries", "retry_delay", "execution_timeout", "retry_policy", "pool")
            assert [getattr(task, a) for a in same] == [getattr(twin, a) for a in same]
            assert {a.name for a in task.outlets} == {a.name for a in twin.outlets}
            if task.task_id not in spark_steps:
                assert not isinstance(task, SparkSubmitOperator), task.task_id
                continue
            assert isinstance(task, SparkSubmitOperator), task.task_id
            assert task.application == str(STEP_APPLICATION)
            assert task.application_args == [task.task_id, "{{ dag.dag_id }}", "{{ run_id }}"]
            assert task._conn_id == "omnicdp_spark"
            assert task.env_vars is None  # the worker's OMNICDP_* are read when it runs


def test_no_secret_is_stored_with_the_dags() -> None:
    """What the dag processor stores (each DAG serialized) and what a task instance stores
    (its rendered template fields) hold no password from the worker's environment."""
    from airflow.serialization.serialized_objects import DagSerialization

    password = f"pw-{secrets.token_hex(8)}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMNICDP_SPARK_SUBMIT", "true")
        env.setenv("OMNICDP_SERVING_URL", f"postgresql://omnicdp:{password}@db:5432/cdp")
        dagbag = load_dags()
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == set(SPARK_STEPS)
    for dag_id, dag in dagbag.dags.items():
        serialized = json.dumps(DagSerialization.to_dict(dag))  # as the dag processor stores it
        assert password not in serialized, dag_id
        assert '"task_type": "SparkStepOperator"' in serialized  # the environment was read
        for task in dag.tasks:
            task.render_template_fields({"dag": dag, "run_id": "manual__2026-12-01"})
            rendered = {field: getattr(task, field) for field in task.template_fields}
            assert password not in json.dumps(rendered, default=str), (dag_id, task.task_id)


# --- one step through a real spark-submit ----------------------------------------------------


def tiny_lakehouse(spark: SparkSession, settings: Settings, email: str) -> None:
    """One silver record with ``email`` and no interactions, resolved to customer C1: the
    least an erasure finds something in."""
    xref = xref_rows({"web:r1": "C1"}, datetime(2026, 11, 1, tzinfo=UTC))
    for table, rows, schema in (
        (SILVER_CUSTOMER_RECORDS, [record("web", "r1", email=email)], CUSTOMER_RECORDS),
        (SILVER_INTERACTIONS, [], INTERACTIONS),
        (GOLD_IDENTITY_XREF, xref, IDENTITY_XREF),
    ):
        frame(spark, rows, schema).write.format("delta").save(table.path(settings))


def test_privacy_dag_with_spark_submit_erases_through_the_step_application(
    spark: SparkSession, tmp_path: Path
) -> None:
    """``airflow dags test omnicdp_privacy`` with the switch on and a ``local[1]`` connection:
    pyspark's own spark-submit runs the step application, which carries out an erasure request,
    and the task returns the summary the application left. (``vacuum`` would only add a second
    spark-submit of the same kind; it is marked successful without running, to save time.)"""
    settings = Settings(lakehouse=tmp_path / "lakehouse", landing=tmp_path / "landing")
    tiny_lakehouse(spark, settings, "erase.me@example.com")
    request_erasure(spark, settings, IdentifierKind.EMAIL, "Erase.Me@example.com", "ticket-9")
    home = migrated_home(tmp_path)
    env = {
        **airflow_env(home, settings),
        "OMNICDP_SPARK_SUBMIT": "true",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[1]"}),
        # spark-submit, and the python3 it starts the application with, from this environment
        "PATH": f"{AIRFLOW.parent}{os.pathsep}{os.environ['PATH']}",
    }

    result = airflow(
        "dags", "test", "omnicdp_privacy", "--mark-success-pattern", "vacuum", env=env, timeout=600
    )

    output = output_of(result)
    assert result.returncode == 0, output[-5000:]
    assert task_states(home, "omnicdp_privacy")["erase"] == ("success", 1)
    (submitted,) = re.findall(r"Spark-Submit cmd: (.*)", output)
    assert "--master local[1]" in submitted
    assert re.search(r"run_step\.py erase omnicdp_privacy manual__\S+", submitted)
    jars = re.search(r"--jars (\S+)", submitted).group(1).split(",")
    assert any("delta-spark" in j for j in jars) and any("similarity" in j for j in jars)
    erased = returned_by(home, "erase", "omnicdp_privacy")
    assert (erased["requests"], erased["customers"]) == (1, 1)
    assert erased["rows_deleted"]["gold.identity_xref"] == 1
    (request,) = spark.read.format("delta").load(ERASURE_REQUESTS.path(settings)).collect()
    assert request.customer_ids == ["C1"] and request.completed_at is not None
    assert not EMAIL.search(output)


# --- one real run ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daily_run(nightly_run: DailyRun) -> DailyRun:
    return nightly_run


def test_daily_run_succeeds_with_every_step_done_once(daily_run: DailyRun) -> None:
    assert daily_run.result.returncode == 0, output_of(daily_run.result)[-5000:]
    assert task_states(daily_run.home) == {t: ("success", 1) for t in PIPELINE}


def rows_written_by_last_commit(table_path: str) -> int:
    """From the Delta transaction log: rows the table's latest version wrote (no Spark needed)."""
    last_commit = sorted(Path(table_path, "_delta_log").glob("*.json"))[-1]
    actions = [json.loads(line) for line in last_commit.read_text().splitlines()]
    info = next(a["commitInfo"] for a in actions if "commitInfo" in a)
    return int(info["operationMetrics"]["numOutputRows"])


def test_daily_run_leaves_every_gold_table(daily_run: DailyRun) -> None:
    for table in (*IDENTITY_TABLES, *CURATED_TABLES, GOLD_SEGMENT_MEMBERSHIP):
        assert rows_written_by_last_commit(table.path(daily_run.settings)) > 0, table.qualified_name


def test_daily_run_publishes_every_customer_to_the_serving_store(daily_run: DailyRun) -> None:
    published = returned_by(daily_run.home, "publish")
    profiles = rows_written_by_last_commit(GOLD_CUSTOMER_PROFILE.path(daily_run.settings))
    assert published["rows"]["customer"] == profiles
    assert {"lookup_key", "timeline", "segment", "segment_member"} <= set(published["rows"])
    store = open_store(daily_run.settings.resolved_serving_url)
    try:
        assert store.current().number == published["generation"]
    finally:
        store.close()


def test_daily_run_writes_a_report_that_reconciles_every_source(daily_run: DailyRun) -> None:
    (path,) = (daily_run.settings.reports_dir / "runs").glob("*.json")
    report = json.loads(path.read_text())
    assert report["complete"] is True
    assert set(report["steps"]) == set(PIPELINE) - {"run_report"}
    assert all(step["seconds"] is not None for step in report["steps"].values())
    sources = report["ingest"]["sources"]
    assert set(sources) == {"pos", "web", "app", "call_center", "social"}
    for name, source in sources.items():
        assert source["reconciled"], name
        assert source["input_lines"] == source["bronze_rows"] + source["quarantined_rows"] > 0
    assert {layer: g["success"] for layer, g in report["gates"].items()} == {
        "bronze": True,
        "silver": True,
        "gold": True,
        "curated": True,
    }
    published = returned_by(daily_run.home, "publish")["rows"]
    assert report["rows"]["serving"] == published
    assert "run report:" in output_of(daily_run.result)


def test_daily_run_updates_the_gold_assets(daily_run: DailyRun) -> None:
    with sqlite3.connect(daily_run.home / "airflow.db") as db:
        updated = {
            name
            for (name,) in db.execute(
                "SELECT DISTINCT a.name FROM asset_event e JOIN asset a ON a.id = e.asset_id"
            )
        }
    assert updated == {
        t.qualified_name for t in (*IDENTITY_TABLES, *CURATED_TABLES, GOLD_SEGMENT_MEMBERSHIP)
    }


def test_daily_run_writes_data_docs_for_every_gate(daily_run: DailyRun) -> None:
    docs = daily_run.settings.reports_dir / "data_docs"
    assert (docs / "index.html").is_file()
    for layer in ("bronze", "silver", "gold"):
        assert list((docs / "validations").glob(f"{layer}/*/{layer}/*/*.html")), layer


def test_daily_run_logs_no_email_addresses(daily_run: DailyRun) -> None:
    assert not EMAIL.search(output_of(daily_run.result))


# --- the privacy DAG, on a copy of what the daily run left ------------------------------------


@dataclass(frozen=True)
class Erased:
    """Two customers erased by one ``airflow dags test omnicdp_privacy``: one asked for by
    email, one by customer id; their record ids and emails as they were before."""

    result: subprocess.CompletedProcess[str]
    home: Path
    settings: Settings
    customer_ids: tuple[str, str]
    record_ids: set[str]
    emails: set[str]


@pytest.fixture(scope="module")
def erased(
    daily_run: DailyRun, spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> Erased:
    run = copy_run(daily_run, tmp_path_factory.mktemp("privacy"))
    settings = run.settings
    xref = spark.read.format("delta").load(GOLD_IDENTITY_XREF.path(settings))
    records = spark.read.format("delta").load(SILVER_CUSTOMER_RECORDS.path(settings))
    by_email, by_id = (
        xref.join(records.where(F.col("email").isNotNull()), "record_id")
        .groupBy("customer_id")
        .agg(F.min("email").alias("email"), F.count("*").alias("n"))
        .where("n > 1")
        .orderBy("customer_id")
        .limit(2)
        .collect()
    )
    request_erasure(spark, settings, IdentifierKind.EMAIL, by_email.email.upper(), "ticket-1")
    request_erasure(spark, settings, IdentifierKind.CUSTOMER_ID, by_id.customer_id, "ticket-2")
    ids = (by_email.customer_id, by_id.customer_id)
    theirs = xref.where(F.col("customer_id").isin(*ids)).select("record_id")
    record_ids = {r.record_id for r in theirs.collect()}
    emails = {
        r.email
        for r in records.join(theirs, "record_id").where(F.col("email").isNotNull()).collect()
    }
    assert len(record_ids) >= 4 and len(emails) >= 2  # what there is to erase, read before
    # From the lakehouse's parent folder with the paths relative, as the defaults are
    # (``lakehouse``, ``landing``): Delta's path identifiers (REORG) must be absolute.
    env = {
        **airflow_env(run.home, settings),
        "OMNICDP_LAKEHOUSE": settings.lakehouse.name,
        "OMNICDP_LANDING": settings.landing.name,
        "OMNICDP_ERASURE_RETENTION_HOURS": "0",
    }
    result = airflow(
        "dags", "test", "omnicdp_privacy", env=env, timeout=900, cwd=settings.lakehouse.parent
    )
    return Erased(result, run.home, settings, ids, record_ids, emails)


def mentions_of(erased: Erased, frame: DataFrame) -> Column | None:
    """A condition for rows naming an erased customer, record or email; None if none can."""
    columns = set(frame.columns)
    mentions = [F.col(c).isin(*erased.customer_ids) for c in ID_COLUMNS & columns]
    mentions += [F.col(c).isin(*erased.record_ids) for c in RECORD_COLUMNS & columns]
    if "_raw" in columns:
        mentions += [F.lower("_raw").contains(email) for email in erased.emails]
    return functools.reduce(lambda a, b: a | b, mentions) if mentions else None


ID_COLUMNS = {"customer_id", "previous_id", "current_id"}
RECORD_COLUMNS = {"record_id", "record_id_l", "record_id_r"}


def test_privacy_run_erases_the_customers_from_every_table(
    erased: Erased, spark: SparkSession
) -> None:
    assert erased.result.returncode == 0, output_of(erased.result)[-5000:]
    assert task_states(erased.home, "omnicdp_privacy") == {
        "erase": ("success", 1),
        "vacuum": ("success", 1),
    }
    for table in ALL_TABLES:
        frame = spark.read.format("delta").load(table.path(erased.settings))
        condition = mentions_of(erased, frame)
        if condition is not None:
            assert frame.where(condition).count() == 0, table.qualified_name


def test_privacy_run_leaves_them_in_no_data_file(erased: Erased, spark: SparkSession) -> None:
    """Read past Delta's log: a row a deletion vector hides is still in its Parquet file."""
    for table in ALL_TABLES:
        path = Path(table.path(erased.settings))
        names = [str(f) for f in path.rglob("*.parquet") if "_delta_log" not in f.parts]
        if not names:
            continue
        files = spark.read.parquet(*names)
        condition = mentions_of(erased, files)
        if condition is not None:
            assert files.where(condition).count() == 0, table.qualified_name


def test_privacy_run_closes_both_requests_with_what_it_deleted(
    erased: Erased, spark: SparkSession
) -> None:
    requests = spark.read.format("delta").load(ERASURE_REQUESTS.path(erased.settings)).collect()
    assert {r.request_id: r.customer_ids for r in requests} == {
        "ticket-1": [erased.customer_ids[0]],
        "ticket-2": [erased.customer_ids[1]],
    }
    assert all(r.completed_at is not None for r in requests)
    deleted = requests[0].rows_deleted
    assert deleted["gold.identity_xref"] == len(erased.record_ids)
    assert deleted["serving"] > 0 and deleted["bronze.web_events"] > 0
    assert not any(email in str(r.asDict()) for r in requests for email in erased.emails)


def test_privacy_run_empties_the_serving_store_of_them(erased: Erased) -> None:
    store = open_store(erased.settings.resolved_serving_url)
    try:
        generation = store.current()
        assert all(generation.customer(c) is None for c in erased.customer_ids)
        assert all(generation.lookup("email", e) == [] for e in erased.emails)
    finally:
        store.close()


def test_privacy_run_vacuums_the_versions_that_held_them(
    erased: Erased, spark: SparkSession
) -> None:
    with pytest.raises(Exception, match=r"(?i)not exist|FileNotFound|FILE_NOT_EXIST"):
        # collect, not count: Delta answers a count from the log's statistics without the files
        spark.read.format("delta").option("versionAsOf", 0).load(
            SILVER_CUSTOMER_RECORDS.path(erased.settings)
        ).select("email").collect()


def test_privacy_run_leaves_them_in_no_version_another_reader_can_read(erased: Erased) -> None:
    """delta-rs (no JVM, no Spark) opens every version of every table: those whose files the
    vacuum removed cannot be read, which is the point; no other one holds an erased email."""
    holding = [
        f"{table.qualified_name}@{version}"
        for table in ALL_TABLES
        if Path(table.path(erased.settings)).exists()
        for version, text in readable_versions(table.path(erased.settings))
        if any(email in text for email in erased.emails)
    ]
    assert holding == []


def readable_versions(path: str) -> Iterator[tuple[int, str]]:
    """(version, its rows as lower-case text) of each version of the table delta-rs can read;
    through its query engine, as the per-customer tables have deletion vectors."""
    for version in range(RustDeltaTable(path).version() + 1):
        try:
            query = QueryBuilder().register("t", RustDeltaTable(path, version=version))
            rows = pa.table(query.execute("SELECT * FROM t").read_all()).to_pylist()
        except Exception as err:  # its files are vacuumed: nothing left to read
            assert "not found" in str(err).lower() or "no such file" in str(err).lower()
            continue
        yield version, str(rows).lower()


def test_segments_still_export_after_the_privacy_run(erased: Erased, tmp_path: Path) -> None:
    """A segment's build counts outlive the erasure's commits to the membership table."""
    built = returned_by(erased.home, "build_segments", DAG_ID)["segments"]
    name = next(n for n, counts in built.items() if counts["members"])
    output = tmp_path / "segment.csv"
    lakehouse = ["--lakehouse", str(erased.settings.lakehouse)]
    with redirect_stdout(io.StringIO()):
        assert main([*lakehouse, "segment", "export", name, "--output", str(output)]) == 0
    exported = output.read_text()
    assert 0 < exported.count("\n") - 1 <= built[name]["members"]
    assert not any(email in exported.lower() for email in erased.emails)


def test_privacy_run_logs_no_email_addresses(erased: Erased) -> None:
    assert not EMAIL.search(output_of(erased.result))
