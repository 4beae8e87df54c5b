"""
The daily omnicdp pipeline: from the files the channels dropped in landing to curated gold.

It runs once a day (``@daily``, at midnight UTC, no catch-up of missed days: each run processes
whatever landing holds that it has not ingested yet, so one run makes up for several missed
ones) and never overlaps with itself, because every step rewrites whole Delta tables. It can
also be triggered by hand at any time, for example after a late delivery; re-running a day
changes nothing.

The steps run in order, each one the same job the ``omnicdp`` CLI runs:

1. ``ingest`` reads the new POS, web, app, call center and social files into bronze, putting
   unparseable lines into quarantine; it fails if a file's lines do not reconcile.
2. ``gate_bronze`` checks bronze against its Great Expectations suite.
3. ``standardize`` rebuilds silver customer records and interactions from bronze.
4. ``gate_silver`` checks silver: unique record ids, email and phone formats, consent values.
5. ``resolve_identities`` links silver records into customers (training the Splink model when
   there is none) and rewrites gold identity links, xref and customer profiles.
6. ``gate_gold`` checks one profile per customer, every record mapped exactly once and cluster
   sizes. Passing it updates the assets ``gold.identity_links``, ``gold.identity_xref`` and
   ``gold.customer_profile``.
7. ``curate`` rebuilds the customer timeline, customer 360, agent context and journey metrics.
8. ``build_segments`` rebuilds the marketers' segments (consent applied).
9. ``gate_curated`` checks what marketers and agents read: one customer 360 row and one agent
   screen per golden record, segment members who consented, timelines in order. Passing it
   updates the assets ``gold.customer_360``, ``gold.agent_context``, ``gold.segment_membership``
   and the other curated tables.
10. ``publish`` syncs agent context, lookup keys, retired ids and segments into the serving
    store as its next generation; readers switch to it in one step, so the agent API never
    serves a half-published state.
11. ``run_report`` runs last whatever happened before it: it writes
    ``<lakehouse>/reports/runs/<run id>.json`` (rows per step and layer, input lines = bronze +
    quarantine per source, quarantine reasons, seconds per step, gate results) and logs a
    short summary; it fails when any step has no result, so such a run never ends green.

A failed gate fails its task at once (no retries: the same data would fail again), marks every
later step ``upstream_failed`` and updates no asset, so no later step and no asset-scheduled DAG
works from data that did not pass. (The tables the gate checked have already been replaced by
their step; Delta keeps their previous version for time travel.) The task log says which
table, expectation and column failed, and how many rows, and the Data Docs under
``<lakehouse>/reports/data_docs`` show the whole validation. Other failures are
retried twice, after 5 and then 10 minutes; a step running over two hours is stopped.

Where Spark runs: by default inside the Airflow worker, one SparkSession per task process
(under ``airflow dags test`` all tasks share one), with the master ``OMNICDP_SPARK_MASTER``
names. With ``OMNICDP_SPARK_SUBMIT=true`` every step except ``run_report`` is a
SparkSubmitOperator instead: spark-submit runs the same step as an application on the master of
the Airflow connection ``OMNICDP_SPARK_CONN_ID`` (default ``spark_default``), the task log shows
its output, and the task returns the same summary; the gates fail the same way. Either way the
Spark steps take a slot of the pool ``OMNICDP_SPARK_POOL`` (default ``omnicdp_lakehouse``),
which ``omnicdp_microbatch`` and ``omnicdp_privacy`` share, because they all write the same
Delta tables; the pool must exist (``airflow pools set omnicdp_lakehouse 1 "..."``), or the
scheduler never starts the steps.

What it triggers: any DAG scheduled on one of the gold assets, e.g.
``schedule=[Asset.ref(name="gold.customer_profile")]`` for a downstream export, runs after a
day's identity tables passed their gate; one scheduled on ``gold.agent_context`` or
``gold.segment_membership`` (an ad-platform upload) after the curated tables passed theirs.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import TriggerRule, chain, dag, task

from jobs.orchestration import tasks
from jobs.orchestration.tasks import spark_step
from schemas.catalog import Stage

# The steps in order (task ids); the run report reads their summaries.
STEPS = (
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
)


@dag(
    dag_id="omnicdp_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=tasks.DEFAULT_ARGS,
    tags=[*tasks.TAGS, "daily", "bronze", "silver", "gold"],
    doc_md=__doc__,
)
def omnicdp_daily() -> None:
    @task(trigger_rule=TriggerRule.ALL_DONE)
    def run_report() -> dict:
        """Write the run report, also after a failed step; fail if any step has no result."""
        return tasks.run_report(STEPS)

    chain(
        spark_step("ingest"),
        spark_step("gate_bronze"),
        spark_step("standardize"),
        spark_step("gate_silver"),
        spark_step("resolve_identities"),
        spark_step("gate_gold", outlets=tasks.assets(Stage.IDENTITY)),
        spark_step("curate"),
        spark_step("build_segments"),
        spark_step("gate_curated", outlets=tasks.assets(Stage.CURATED, Stage.SEGMENTS)),
        spark_step("publish"),
        run_report(),
    )


omnicdp_daily()
