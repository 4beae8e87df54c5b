"""The step registry: every pipeline step, declared once, and the one place a step is run.

A :class:`Step` names a job, the plain function ``(spark, settings, **options) -> summary`` that
does the work, says whether it needs Spark, whether a DAG runs it as a task, and how its summary
becomes the JSON an Airflow task returns. Three callers run steps, all through :func:`run`:

- the ``omnicdp`` CLI (``jobs/cli/``), with the user's settings and options, printing the summary;
- the in-process Airflow task (:func:`jobs.orchestration.tasks.spark_step`), through
  :func:`run_task`, returning the JSON summary as the task's XCom;
- the spark-submit application (``jobs/orchestration/spark_app/run_step.py``), through
  :func:`run_task` in the Spark driver, leaving the JSON summary for its operator.

The registry lives in ``jobs/orchestration/`` beside the task factory, the operator and the
spark-submit application, which run nothing but its steps; the CLI imports it as well. It
imports neither Airflow nor Spark: a job's module is imported when the step runs (jobs load
PySpark, Splink or Great Expectations), so that the CLI starts and Airflow parses the DAG
files in well under a second.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expectations.gate import Gate, GateResult
from schemas.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from jobs.ingest import IngestSummary
    from jobs.stream import StreamSummary


def jsonable(summary: Any) -> dict[str, Any]:
    """A job's dataclass summary as JSON-safe values (datetimes and paths as strings)."""
    return json.loads(json.dumps(asdict(summary), default=str))


def accept(_summary: Any) -> None:
    """A summary that says nothing about failure: the job raised if it failed."""


@dataclass(frozen=True)
class Step:
    """One pipeline step: its job and how each caller runs it.

    ``job`` is ``"module:function"``, imported when the step runs. A Spark step's job is called
    as ``job(spark, settings, **options)``, any other as ``job(settings, **options)``; the
    ``options`` here are fixed for the step (a gate's layer), the caller may add more.
    """

    name: str  # also the Airflow task id of a task step
    job: str
    doc: str
    spark: bool = True
    task: bool = False  # a DAG runs it: its job needs nothing but the settings and Spark
    options: Mapping[str, Any] = field(default_factory=dict)
    as_json: Callable[[Any], dict[str, Any]] = jsonable
    verify: Callable[[Any], None] = accept  # raises when the summary means the task failed

    def function(self) -> Callable[..., Any]:
        module, _, name = self.job.partition(":")
        return getattr(importlib.import_module(module), name)


def require_reconciled(summary: IngestSummary) -> None:
    """Fail ``ingest`` when a file's lines are not all in bronze or quarantine (the CLI prints
    the same files and exits 1)."""
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


def require_stream_reconciled(summary: StreamSummary) -> None:
    if not summary.reconciled:
        raise RuntimeError("stream --once: a landing file's lines do not reconcile")


def stream_json(summary: StreamSummary) -> dict[str, Any]:
    """The stream's totals; its per-file reports stay in the task log."""
    return {
        "micro_batches": summary.micro_batches,
        "bronze_rows": summary.bronze_rows,
        "quarantined_rows": summary.quarantined_rows,
        "seconds": round(summary.seconds, 1),
    }


def vacuum_json(tables: list[str]) -> dict[str, Any]:
    return {"tables": tables}


def fetch_jars(settings: Settings) -> list[Path]:
    """``setup``'s job: the Delta jars, fetched into ``settings.jars_dir`` unless cached."""
    from jobs.lakehouse.session import ensure_delta_jars

    return ensure_delta_jars(settings.jars_dir)


def _gate(layer: Gate, doc: str) -> Step:
    return Step(
        f"gate_{layer}",
        "expectations.gate:run_gate",
        doc,
        task=True,
        options={"gate": layer},
        as_json=GateResult.to_dict,
    )


STEPS: dict[str, Step] = {
    step.name: step
    for step in (
        Step("setup", f"{__name__}:fetch_jars", "Fetch and cache the Delta jars.", spark=False),
        Step(
            "ingest",
            "jobs.ingest:ingest_batch",
            "Ingest new landing files into bronze and quarantine.",
            task=True,
            verify=require_reconciled,
        ),
        _gate(Gate.BRONZE, "Bronze quality gate."),
        Step(
            "stream_events",
            "jobs.stream:stream_ingest",
            "Ingest newly landed web and app event files into bronze (`stream --once`).",
            task=True,
            as_json=stream_json,
            verify=require_stream_reconciled,
        ),
        Step(
            "standardize",
            "jobs.standardize:standardize",
            "Rebuild silver from bronze.",
            task=True,
        ),
        _gate(Gate.SILVER, "Silver quality gate."),
        Step("train_model", "identity:train_model", "Train the Splink model and save it."),
        Step(
            "resolve_identities",
            "identity:resolve_identities",
            "Link, cluster and profile customers into gold.",
            task=True,
        ),
        Step(
            "resolve_file",
            "identity.byod:resolve_file",
            "Resolve a CSV or Parquet customer table of the user's own instead of silver.",
        ),
        Step(
            "evaluate_identities",
            "identity:evaluate",
            "Compare gold.identity_xref with a truth file.",
        ),
        Step("explain_pair", "identity.explain:explain_pair", "Why two records are (not) linked."),
        Step(
            "explain_customer",
            "identity.explain:customer_why",
            "The records and links that form a customer.",
        ),
        _gate(Gate.GOLD, "Gold identity quality gate; passing it publishes the identity assets."),
        Step(
            "apply_increments",
            "jobs.microbatch:run_microbatches",
            "Carry the new bronze rows through identity and curation to the serving store.",
            task=True,
        ),
        Step(
            "curate",
            "jobs.curate:curate",
            "Rebuild the curated gold tables for marketers and agents.",
            task=True,
        ),
        Step(
            "build_segments",
            "jobs.segments:build_segments",
            "Rebuild marketers' segments from the curated tables.",
            task=True,
        ),
        Step(
            "list_segments",
            "jobs.segments:list_segments",
            "Segments with sizes, exclusions and overlaps.",
        ),
        Step(
            "export_segment",
            "jobs.segments:export_segment",
            "Write one segment's hashed ids.",
        ),
        _gate(
            Gate.CURATED,
            "Curated gold quality gate; passing it publishes the curated and segment assets.",
        ),
        Step(
            "publish",
            "jobs.publish:publish",
            "Publish a new serving-store generation for the agent API and MCP tools.",
            task=True,
        ),
        Step(
            "request_erasure",
            "jobs.privacy:request_erasure",
            "Record an erasure request (only a hash is stored).",
        ),
        Step(
            "erase",
            "jobs.privacy:erase",
            "Carry out every pending erasure request.",
            task=True,
        ),
        Step(
            "vacuum",
            "jobs.privacy:vacuum",
            "Remove Delta files older than the erasure retention from every table.",
            task=True,
            as_json=vacuum_json,
        ),
        Step(
            "demo",
            "jobs.demo:run_demo",
            "Simulate data and run the whole pipeline on it, measuring identity against the truth.",
        ),
    )
}

TASK_STEPS = tuple(name for name, step in STEPS.items() if step.task)


def run(name: str, settings: Settings, spark: Callable[[], SparkSession], /, **options: Any) -> Any:
    """Run step ``name``'s job on ``settings``, with the step's and the caller's ``options``;
    its summary. ``spark`` is called only when the step needs Spark, so a step without it
    starts none. The first three are positional-only: a job's option may be called ``name``
    (``export_segment``'s is)."""
    step = STEPS[name]
    job = step.function()
    options = {**step.options, **options}
    if step.spark:
        return job(spark(), settings, **options)
    return job(settings, **options)


def run_task(name: str) -> dict[str, Any]:
    """Run task step ``name`` as Airflow does, in the worker or in the Spark driver: with the
    settings of the process's environment (``OMNICDP_*``, ``OMNICDP_CONFIG``) and its
    SparkSession; its JSON summary, with the step's wall time in ``seconds`` (for the run
    report)."""
    from jobs.lakehouse.session import get_spark

    step = STEPS[name]
    if not step.task:
        raise ValueError(f"{name} is not a task step; task steps: {', '.join(TASK_STEPS)}")
    started = time.monotonic()
    settings = Settings()
    summary = run(name, settings, lambda: get_spark(settings))
    step.verify(summary)
    return {**step.as_json(summary), "seconds": round(time.monotonic() - started, 1)}
