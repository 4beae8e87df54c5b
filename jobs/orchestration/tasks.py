"""What the Airflow DAGs share: task defaults, the task of a Spark step and where it runs, assets.

Every task step of the registry (:data:`jobs.orchestration.steps.STEPS`, the step's name is its
task id) becomes a task with :func:`spark_step`: it builds the settings from the environment
(``OMNICDP_*``, ``OMNICDP_CONFIG``) in its own process, starts or reuses the SparkSession and
calls the same job function as the CLI, returning a small JSON-safe summary (counts, never PII)
that Airflow keeps as the task's XCom. DAG files only wire :func:`spark_step` tasks together.

``Settings.spark_submit`` chooses where a Spark step runs, and nothing else changes with it:

- off (the default): in the Airflow worker, a ``@task`` calling
  :func:`jobs.orchestration.steps.run_task`, with a local SparkSession or any master
  ``OMNICDP_SPARK_MASTER`` names;
- on: a :class:`jobs.orchestration.operators.SparkStepOperator`, a SparkSubmitOperator that
  submits ``jobs/orchestration/spark_app/run_step.py <step> <dag id> <run id>`` through the
  Airflow connection ``Settings.spark_conn_id``; that application calls ``run_task`` in the
  Spark driver and leaves the summary in its outcome file (:mod:`jobs.orchestration.outcome`),
  from where the operator returns it as XCom.

The quality gates are Spark steps like the others, submitted too: they read the tables where
the cluster keeps them, and a failed gate's :class:`GateFailed` reaches the task in both modes
(the operator raises it again from the outcome file), so :data:`RETRY_POLICY` fails it at once.

Every Spark task is in the pool ``Settings.spark_pool``: all DAGs rewrite the same Delta tables,
and the pool's slots bound how many of their steps run at once.

Heavy imports (PySpark, Splink, Great Expectations, the Spark provider) happen when a step runs
or when the switch is on, so that Airflow parses the DAG files in well under a second.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, ExceptionRetryPolicy, RetryAction, RetryRule, task

from expectations.gate import GateFailed
from jobs.orchestration.run_report import (
    RunIncomplete,
    build_run_report,
    console_summary,
    write_run_report,
)
from jobs.orchestration.steps import STEPS, TASK_STEPS, run_task
from schemas.catalog import Stage, Table, stage_tables
from schemas.settings import Settings

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
    """The task of task step ``name`` (also its task id) in the DAG being defined: in the pool
    ``Settings.spark_pool``, in-process or submitted as ``Settings.spark_submit`` says.

    ``kwargs`` (e.g. ``outlets``) go to the task in both modes, so both have the same task ids,
    dependencies, retries, timeouts and assets.
    """
    if name not in TASK_STEPS:
        raise ValueError(f"{name} is not a task step; task steps: {', '.join(TASK_STEPS)}")
    settings = Settings()
    task_kwargs = {"task_id": name, "doc_md": STEPS[name].doc, "pool": settings.spark_pool}
    task_kwargs |= kwargs
    if settings.spark_submit:
        # the Spark provider, only when it is used
        from jobs.orchestration.operators import SparkStepOperator

        return SparkStepOperator(step=name, settings=settings, **task_kwargs)

    def in_process() -> dict[str, Any]:
        return run_task(name)

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


def run_report(step_ids: tuple[str, ...]) -> dict[str, Any]:
    """Write this run's report from the steps' summaries (XComs) and log its short form;
    fail when a step has no result, so the run does not end green."""
    from airflow.sdk import get_current_context

    context = get_current_context()
    summaries = {step: context["ti"].xcom_pull(task_ids=step) for step in step_ids}
    report = build_run_report(context["run_id"], summaries)
    path = write_run_report(report, Settings())
    log.info("%s\nrun report: %s", console_summary(report), path)
    if not report["complete"]:
        missing = [name for name, step in report["steps"].items() if step["status"] != "done"]
        raise RunIncomplete(f"steps without a result: {', '.join(missing)}; report: {path}")
    return {"report": str(path), "complete": True}
