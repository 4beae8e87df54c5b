"""
Erasure requests: forget customers who asked to be forgotten, everywhere omnicdp holds them.

Requests are recorded with ``omnicdp privacy request --email ... | --phone ... | --customer-id
...`` (only a SHA-256 of the identifier is kept, in ``ops.erasure_requests``). This DAG runs
every day at noon UTC and carries them out, away from the nightly ``omnicdp_daily`` run, which
rewrites the same tables; should they still overlap, both DAGs' Spark steps wait for a slot
of the pool ``omnicdp_lakehouse`` (``OMNICDP_SPARK_POOL``), so with one slot they take turns.
It never overlaps with itself and can be triggered by hand when a request should not wait.
Like the daily DAG, it runs its steps in the Airflow worker or, with
``OMNICDP_SPARK_SUBMIT=true``, with spark-submit.

1. ``erase`` resolves each pending request to its customers and deletes their rows from bronze,
   quarantine, silver, every gold table and the serving store (current and previous
   generation), then closes the request with the rows deleted per table. It is safe to retry at
   any point: the customers are saved on the request before anything is deleted.
2. ``vacuum`` removes Delta files older than ``OMNICDP_ERASURE_RETENTION_HOURS`` (default 168)
   from every table, so erased rows leave time travel too once they are that old.

Nothing is updated as an asset: an erasure only removes customers, and consumers scheduled on
the gold assets need not run again for it. ``jobs/privacy.py`` documents what is and is not
erased (landing files are the source systems' exports and are not modified).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import chain, dag

from jobs.orchestration import tasks
from jobs.orchestration.tasks import spark_step


@dag(
    dag_id="omnicdp_privacy",
    schedule="0 12 * * *",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=tasks.DEFAULT_ARGS,
    tags=[*tasks.TAGS, "privacy", "erasure"],
    doc_md=__doc__,
)
def omnicdp_privacy() -> None:
    chain(spark_step("erase"), spark_step("vacuum"))


omnicdp_privacy()
