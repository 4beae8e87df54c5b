"""The application spark-submit runs for a pipeline step: ``run_step.py <step> <dag id> <run id>``.

It runs the task step the in-process task would run (``jobs.orchestration.steps.run_task``), in
the Spark driver, with the settings built from its own environment (``OMNICDP_*``, which the
submitting operator passes on), and leaves the outcome for that operator in
``<lakehouse>/reports/steps/<dag id>/<run id>/<step>.json`` (:mod:`jobs.orchestration.outcome`).

The exit status tells spark-submit, and so the Airflow task, whether the step succeeded: 0 when
it did, 1 when it failed (a failed gate prints what failed, anything else its traceback). What
it logs (counts only) reaches the task log through spark-submit's output.

It lives in a folder of its own because Python puts the script's folder first on the import
path, where modules of ``jobs/orchestration/`` such as ``operators.py`` would shadow top-level
names.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from expectations.gate import GateFailed
from jobs.orchestration.outcome import step_outcome_path, write_gate_failure, write_summary
from jobs.orchestration.steps import TASK_STEPS, run_task
from schemas.settings import Settings


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run_step.py", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=sorted(TASK_STEPS), help="the step (its task id)")
    parser.add_argument("dag_id", help="the DAG whose task submitted it")
    parser.add_argument("run_id", help="the DAG run")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    outcome = step_outcome_path(Settings(), args.dag_id, args.run_id, args.step)
    try:
        summary = run_task(args.step)
    except GateFailed as failed:
        write_gate_failure(outcome, failed)
        print(failed, file=sys.stderr)
        return 1
    write_summary(outcome, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
