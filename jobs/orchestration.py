"""What the Airflow DAGs share: task defaults, the Spark steps and where they run, assets.

Every Spark step is named in :data:`SPARK_STEPS` (the name is its task id) and runs through
:func:`run_step`: it builds the settings from the environment (``OMNICDP_*``,
``OMNICDP_CONFIG``) in its own process, starts or reuses the SparkSession and calls the same job
function as the CLI, returning a small JSON-safe summary (counts, never PII) that Airflow keeps
as the task's XCom. DAG files only wire :func:`spark_step` tasks together.

``Settings.spark_submit`` chooses where a Spark step runs, and nothing else changes with it:

- off (the default): in the Airflow worker, a ``@task`` calling :func:`run_step`, with a local
  SparkSession or any master ``OMNICDP_SPARK_MASTER`` names;
- on: a :class:`jobs.submit.SparkStepOperator`, a SparkSubmitOperator that submits
  ``jobs/spark_app/run_step.py <step> <dag id> <run id>`` through the Airflow connection
  ``Settings.spark_conn_id``; that application calls :func:`run_step` in the Spark driver and
  leaves the summary in :func:`step_outcome_path`, from where the operator returns it as XCom.

The quality gates are Spark steps like the others, submitted too: they read the tables where
the cluster keeps them, and a failed gate's :class:`GateFailed` reaches the task in both modes
(the operator raises it again from the outcome file), so :data:`RETRY_POLICY` fails it at once.

Every Spark task is in the pool ``Settings.spark_pool``: all DAGs rewrite the same Delta tables,
and the pool's slots bound how many of their steps run at once.

Heavy imports (PySpark, Splink, Great Expectations, the Spark provider) happen inside the step
callables or when the switch is on, so that Airflow parses the DAG files in well under a second.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, ExceptionRetryPolicy, RetryAction, RetryRule, task

from expectations.gate import Gate, GateFailed
from jobs.run_report import RunIncomplete, file_safe
from schemas.catalog import Stage, Table, stage_tables
from schemas.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from jobs.ingest import IngestSummary

log = logging.getLogger(__name__)

OWNER = "omnicdp-data-engineering"
TAGS = ["omnicdp"]

# Retries cover what goes away by itself (a lost executor, a full disk being cleaned); a quality
# gate that fails will fail again on the same data, so it fails at once and says why, and so
# does the run report of a run with a failed step.
RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=GateFailed,
            action=RetryAction.FAIL,
            reason="the data does not meet the layer's expectations; retrying cannot fix it",
        ),
        RetryRule(
            exception=RunIncomplete,
            action=RetryAction.FAIL,
            reason="an earlier step failed; the run report says which",
        ),
    ]
)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": 2.0,
    "execution_timeout": timedelta(hours=2),
    "retry_policy": RETRY_POLICY,
}


def spark_step(name: str, **kwargs: Any) -> Any:
    """The task of Spark step ``name`` (also its task id) in the DAG being defined: in the pool
    ``Settings.spark_pool``, in-process or submitted as ``Settings.spark_submit`` says.

    ``kwargs`` (e.g. ``outlets``) go to the task in both modes, so both have the same task ids,
    dependencies, retries, timeouts and assets.
    """
    settings = Settings()
    task_kwargs = {"task_id": name, "doc_md": SPARK_STEPS[name].doc, "pool": settings.spark_pool}
    task_kwargs |= kwargs
    if settings.spark_submit:
        from jobs.submit import SparkStepOperator  # the Spark provider, only when it is used

        return SparkStepOperator(step=name, settings=settings, **task_kwargs)

    def in_process() -> dict[str, Any]:
        return run_step(name)

    # A step returns one summary; without this, a ``dict`` return is split into one XCom per key.
    return task(multiple_outputs=False, **task_kwargs)(in_process)()


def table_asset(table: Table, settings: Settings) -> Asset:
    """The Airflow asset of a catalog table: named like the table, located where it lives.

    Consumers schedule on the name (``Asset.ref(name="gold.customer_profile")``), which does
    not change when the lakehouse moves.
    """
    location = str(table.path(settings))
    uri = location if "://" in location else Path(location).resolve().as_uri()
    return Asset(name=table.qualified_name, uri=uri, extra={"description": table.description})


def assets(*stages: Stage) -> list[Asset]:
    """The tables the ``stages`` write (catalog stage groups), as the Airflow assets a DAG
    publishes once a gate has passed them."""
    settings = Settings()
    return [table_asset(t, settings) for stage in stages for t in stage_tables(stage)]


def _jsonable(summary: Any) -> dict[str, Any]:
    """A job summary as XCom-safe JSON (datetimes and paths as strings)."""
    return json.loads(json.dumps(asdict(summary), default=str))


def _spark_and_settings() -> tuple[SparkSession, Settings]:
    from jobs.lakehouse.session import get_spark

    settings = Settings()
    return get_spark(settings), settings


# --- step callables: one per pipeline step, each calling the job function the CLI calls -------


def ingest() -> dict[str, Any]:
    """Ingest new landing files; fail if any file's lines do not reconcile."""
    from jobs.ingest import ingest_batch

    spark, settings = _spark_and_settings()
    summary = ingest_batch(spark, settings)
    _require_reconciled(summary)
    return _jsonable(summary)


def _require_reconciled(summary: IngestSummary) -> None:
    """Fail like ``omnicdp ingest`` does when a file's lines are not all accounted for."""
    unreconciled = [
        f"{f.source_file}: {f.lines - f.header_lines} data lines, {f.bronze_rows} in bronze, "
        f"{f.quarantined_rows} quarantined"
        for source in summary.sources.values()
        for f in source.files
        if not f.reconciled
    ]
    if unreconciled:
        raise RuntimeError(
            f"ingest batch {summary.batch_id}: {len(unreconciled)} file(s) do not reconcile:\n"
            + "\n".join(unreconciled)
        )


def stream_events() -> dict[str, Any]:
    """Ingest the web and app landing files that arrived, with the streaming query, and stop."""
    from jobs.stream import stream_ingest

    spark, settings = _spark_and_settings()
    summary = stream_ingest(spark, settings, once=True)
    if not summary.reconciled:
        raise RuntimeError("stream --once: a landing file's lines do not reconcile")
    return {
        "micro_batches": summary.micro_batches,
        "bronze_rows": summary.bronze_rows,
        "quarantined_rows": summary.quarantined_rows,
        "seconds": round(summary.seconds, 1),
    }


def microbatch() -> dict[str, Any]:
    """Carry the bronze rows the stream added through identity and curation to serving."""
    from jobs.microbatch import run_microbatches

    spark, settings = _spark_and_settings()
    return _jsonable(run_microbatches(spark, settings, once=True))


def gate(which: Gate) -> dict[str, Any]:
    """Run a quality gate; :class:`GateFailed` stops everything downstream."""
    from expectations.gate import run_gate

    spark, settings = _spark_and_settings()
    return run_gate(spark, settings, which).to_dict()


def standardize() -> dict[str, Any]:
    from jobs.standardize import standardize as standardize_job

    spark, settings = _spark_and_settings()
    return _jsonable(standardize_job(spark, settings))


def resolve() -> dict[str, Any]:
    """Resolve identities (training the model first when there is none or it is stale)."""
    from identity import resolve_identities

    spark, settings = _spark_and_settings()
    return _jsonable(resolve_identities(spark, settings))


def curate() -> dict[str, Any]:
    from jobs.curate import curate as curate_job

    spark, settings = _spark_and_settings()
    return _jsonable(curate_job(spark, settings))


def build_segments() -> dict[str, Any]:
    from jobs.segments import build_segments as build_segments_job

    spark, settings = _spark_and_settings()
    return _jsonable(build_segments_job(spark, settings))


def publish() -> dict[str, Any]:
    """Publish agent context, lookup keys and segments as the serving store's next generation."""
    from jobs.publish import publish as publish_job

    spark, settings = _spark_and_settings()
    return _jsonable(publish_job(spark, settings))


def erase() -> dict[str, Any]:
    """Carry out every pending erasure request (jobs.privacy)."""
    from jobs.privacy import erase as erase_job

    spark, settings = _spark_and_settings()
    return _jsonable(erase_job(spark, settings))


def vacuum() -> dict[str, Any]:
    """Remove Delta files older than the erasure retention from every table."""
    from jobs.privacy import vacuum as vacuum_job

    spark, settings = _spark_and_settings()
    return {"tables": vacuum_job(spark, settings)}


@dataclass(frozen=True)
class SparkStep:
    """A pipeline step that needs Spark: the callable its task runs, and the task's doc."""

    run: Callable[[], dict[str, Any]]
    doc: str


# Every Spark step of every DAG, by task id; :func:`spark_step` makes the task, and the
# application spark-submit runs finds the step here by the name it is given.
SPARK_STEPS: dict[str, SparkStep] = {
    "ingest": SparkStep(ingest, "Ingest new landing files into bronze and quarantine."),
    "gate_bronze": SparkStep(functools.partial(gate, Gate.BRONZE), "Bronze quality gate."),
    "standardize": SparkStep(standardize, "Rebuild silver from bronze."),
    "gate_silver": SparkStep(functools.partial(gate, Gate.SILVER), "Silver quality gate."),
    "resolve_identities": SparkStep(resolve, "Link, cluster and profile customers into gold."),
    "gate_gold": SparkStep(
        functools.partial(gate, Gate.GOLD),
        "Gold identity quality gate; passing it publishes the identity assets.",
    ),
    "curate": SparkStep(curate, "Rebuild the curated gold tables for marketers and agents."),
    "build_segments": SparkStep(
        build_segments, "Rebuild marketers' segments from the curated tables."
    ),
    "gate_curated": SparkStep(
        functools.partial(gate, Gate.CURATED),
        "Curated gold quality gate; passing it publishes the curated and segment assets.",
    ),
    "publish": SparkStep(
        publish, "Publish a new serving-store generation for the agent API and MCP tools."
    ),
    "stream_events": SparkStep(
        stream_events, "Ingest newly landed web and app event files into bronze (`stream --once`)."
    ),
    "apply_increments": SparkStep(
        microbatch, "Carry the new bronze rows through identity and curation to the serving store."
    ),
    "erase": SparkStep(erase, "Carry out every pending erasure request."),
    "vacuum": SparkStep(
        vacuum, "Remove Delta files older than the erasure retention from every table."
    ),
}


def run_step(name: str) -> dict[str, Any]:
    """Run Spark step ``name``; its summary gains the step's wall time in ``seconds`` (for the
    run report)."""
    started = time.monotonic()
    summary = SPARK_STEPS[name].run()
    return {**summary, "seconds": round(time.monotonic() - started, 1)}


def step_outcome_path(settings: Settings, dag_id: str, run_id: str, task_id: str) -> Path:
    """Where a submitted step leaves its outcome for the operator that submitted it:
    ``<lakehouse>/reports/steps/<dag id>/<run id>/<task id>.json``."""
    return settings.reports_dir / "steps" / dag_id / file_safe(run_id) / f"{task_id}.json"


def run_report(step_ids: tuple[str, ...]) -> dict[str, Any]:
    """Write this run's report from the steps' summaries (XComs) and log its short form;
    fail when a step has no result, so the run does not end green."""
    from airflow.sdk import get_current_context

    from jobs.run_report import build_run_report, console_summary, write_run_report

    context = get_current_context()
    summaries = {step: context["ti"].xcom_pull(task_ids=step) for step in step_ids}
    report = build_run_report(context["run_id"], summaries)
    path = write_run_report(report, Settings())
    log.info("%s\nrun report: %s", console_summary(report), path)
    if not report["complete"]:
        missing = [name for name, step in report["steps"].items() if step["status"] != "done"]
        raise RunIncomplete(f"steps without a result: {', '.join(missing)}; report: {path}")
    return {"report": str(path), "complete": True}
