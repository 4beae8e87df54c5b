"""Spark steps through spark-submit: the operator the DAGs use when ``Settings.spark_submit`` is on.

:class:`SparkStepOperator` is a SparkSubmitOperator that submits
``jobs/orchestration/spark_app/run_step.py`` with the step's name, and behaves like the
in-process task towards the rest of the DAG:

- it returns the step's summary as its XCom (read from the outcome file the application wrote,
  :mod:`jobs.orchestration.outcome`), so the run report and the UI see the same summary;
- a failed quality gate raises the same :class:`GateFailed`, rebuilt from that file, so the
  retry policy fails it at once instead of re-running a gate on the same data, and its message
  (table, expectation, column, row counts) ends the task log;
- the application gets the Delta and Splink jars with ``--jars`` (resolved when the task runs,
  so parsing the DAG loads neither Splink nor Maven) and the ``OMNICDP_*`` settings of the
  worker as ``env_vars``: the spark-submit process's environment in client mode,
  ``spark.yarn.appMasterEnv.*`` or ``spark.kubernetes.driverEnv.*`` in cluster mode on YARN
  or Kubernetes;
- those variables are read from the worker's environment when the task runs, never when the
  DAG is parsed: ``env_vars`` is a templated field, and what a DAG's operators hold when it is
  parsed is serialized into Airflow's metadata database (the serialized DAG, the rendered
  fields of every task instance), where a serving-store password would be stored in clear.

The connection ``Settings.spark_conn_id`` names the master and, in its extra, the deploy mode
(``{"deploy-mode": "cluster"}``) and the spark-submit binary. What a cluster deployment needs
besides: omnicdp installed, at the same path as on the Airflow worker, in the driver's and the
executors' Python environment (``PYSPARK_PYTHON`` or ``spark.pyspark.python`` naming it); the
Delta jars cached on the worker (``omnicdp setup``; spark-submit uploads them); and the
lakehouse, whose ``reports/steps`` folder both the driver and the worker use, on storage both
can reach.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.log import mask_secret

from jobs.orchestration.outcome import raise_gate_failure, read_summary, step_outcome_path
from schemas.settings import Settings

if TYPE_CHECKING:
    from airflow.sdk import Context

APPLICATION = Path(__file__).resolve().with_name("spark_app") / "run_step.py"


class SparkStepOperator(SparkSubmitOperator):
    """Submits pipeline step ``step`` with spark-submit and returns its summary."""

    def __init__(self, *, step: str, settings: Settings, **kwargs: Any) -> None:
        super().__init__(
            application=str(APPLICATION),
            application_args=[step, "{{ dag.dag_id }}", "{{ run_id }}"],
            conn_id=settings.spark_conn_id,
            name=f"omnicdp-{step}",
            **kwargs,
        )
        self.step = step

    def execute(self, context: Context) -> dict[str, Any]:
        from jobs.lakehouse.session import spark_jars

        settings = Settings()
        self.jars = ",".join(spark_jars(settings))
        outcome = step_outcome_path(settings, context["dag"].dag_id, context["run_id"], self.step)
        outcome.unlink(missing_ok=True)  # a previous try's must not speak for this one
        self.env_vars = omnicdp_environment()  # rendered fields are stored before this
        try:
            super().execute(context)
        except Exception:
            raise_gate_failure(outcome)
            raise
        finally:
            self.env_vars = None  # nor after it (``overwrite_rtif_after_execution``)
        return read_summary(outcome)


def omnicdp_environment() -> dict[str, str]:
    """The worker's ``OMNICDP_*`` variables, for the driver to build the same settings; secrets
    in them (a serving-store password) are masked in Airflow's logs, where spark-submit's
    command line shows them in cluster mode."""
    env = {k: v for k, v in os.environ.items() if k.startswith("OMNICDP_")}
    for value in env.values():
        if "://" in value and (password := urlsplit(value).password):
            mask_secret(password)
    return env
