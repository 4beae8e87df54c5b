"""
Micro-batches: a web or app event reaches the agent's screen within minutes of landing.

Every five minutes (never two runs at once), two steps run:

1. ``stream_events`` is ``omnicdp stream --once``: the web and app landing files that arrived
   since the last run go to bronze (and quarantine), exactly once, through the checkpointed
   Structured Streaming query.
2. ``apply_increments`` is ``omnicdp microbatch --once``: the bronze rows the stream added go to
   silver; new records are matched against the resolved customers with the saved model and
   join one or get a new id; the golden record, timeline, 360 and agent context of every
   customer the rows touch are rebuilt, their rows in the serving store replaced, where the
   agent API reads them, and then stored in gold. Killed half-way, the retry runs the same
   micro-batch again and writes the same rows (``jobs/microbatch.py``).

It needs the nightly ``omnicdp_daily`` run to have resolved identities and published once; it
fails with that explanation otherwise. What an increment cannot decide (a new record linking
two customers) waits for the nightly run, which merges and records it. No asset events: the
increments touch a few customers, and consumers scheduled on the gold assets (whole-table
rebuilds) should not re-run every five minutes; the nightly run updates the assets.

Both steps take a slot of the pool ``omnicdp_lakehouse`` (``OMNICDP_SPARK_POOL``) that the
daily and privacy DAGs' Spark steps share, since all of them write the same Delta tables: with
one slot, an increment waits while a nightly step runs. Like the daily DAG, the steps run in
the Airflow worker or, with ``OMNICDP_SPARK_SUBMIT=true``, with spark-submit.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import chain, dag

from jobs.orchestration import tasks
from jobs.orchestration.tasks import spark_step


@dag(
    dag_id="omnicdp_microbatch",
    schedule=timedelta(minutes=5),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    default_args={
        **tasks.DEFAULT_ARGS,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(minutes=20),
    },
    tags=[*tasks.TAGS, "microbatch", "web", "app"],
    doc_md=__doc__,
)
def omnicdp_microbatch() -> None:
    chain(spark_step("stream_events"), spark_step("apply_increments"))


omnicdp_microbatch()
