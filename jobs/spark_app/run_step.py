"""The application spark-submit runs for a pipeline step: ``run_step.py <step> <dag id> <run id>``.

It runs the Spark step the in-process task would run (``jobs.orchestration.run_step``), in the
Spark driver, with the settings built from its own environment (``OMNICDP_*``, which the
submitting operator passes on), and leaves the outcome in
``<lakehouse>/reports/steps/<dag id>/<run id>/<step>.json`` for that operator:
``{"summary": {...}}`` when the step is done, ``{"gate_failed": {...}}`` (the gate's result)
when a quality gate failed. Both hold counts only, never PII.

The exit status tells spark-submit, and so the Airflow task, whether the step succeeded: 0 when
it did, 1 when it failed (a failed gate prints what failed, anything else its traceback). What
it logs (counts only; importing Airflow with ``jobs.orchestration`` sets up logging) reaches the
task log through spark-submit's output.

It lives in a folder of its own because Python puts the script's folder first on the import
path, where modules of ``jobs/`` such as ``spark.py`` would shadow top-level names.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from expectations.gate import GateFailed
from jobs.orchestration import SPARK_STEPS, run_step, step_outcome_path
from schemas.settings import Settings


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run_step.py", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=sorted(SPARK_STEPS), help="the step (its task id)")
    parser.add_argument("dag_id", help="the DAG whose task submitted it")
    parser.add_argument("run_id", help="the DAG run")
    return parser.parse_args(argv)


def _write_outcome(path: Path, outcome: dict[str, Any]) -> None:
    """Write atomically: the operator never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(outcome, default=str), encoding="utf-8")
    partial.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    outcome = step_outcome_path(Settings(), args.dag_id, args.run_id, args.step)
    try:
        summary = run_step(args.step)
    except GateFailed as failed:
        _write_outcome(outcome, {"gate_failed": failed.result.to_dict()})
        print(failed, file=sys.stderr)
        return 1
    _write_outcome(outcome, {"summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
