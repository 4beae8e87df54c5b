"""The outcome file a submitted step leaves for the operator that submitted it.

The spark-submit application runs in the Spark driver, which may be another machine than the
Airflow worker; what it has to tell the task goes through one small JSON file,
``<lakehouse>/reports/steps/<dag id>/<run id>/<step>.json``:
``{"summary": {...}}`` when the step is done, ``{"gate_failed": {...}}`` (the gate's result)
when a quality gate failed. Both hold counts only, never PII. This module is both sides of it:
the application writes, the operator reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from expectations.gate import GateFailed, GateResult
from jobs.orchestration.run_report import file_safe
from schemas.settings import Settings


def step_outcome_path(settings: Settings, dag_id: str, run_id: str, task_id: str) -> Path:
    """Where a submitted step leaves its outcome:
    ``<lakehouse>/reports/steps/<dag id>/<run id>/<task id>.json``."""
    return settings.reports_dir / "steps" / dag_id / file_safe(run_id) / f"{task_id}.json"


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    _write(path, {"summary": summary})


def write_gate_failure(path: Path, failed: GateFailed) -> None:
    _write(path, {"gate_failed": failed.result.to_dict()})


def _write(path: Path, outcome: dict[str, Any]) -> None:
    """Write atomically: the operator never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(outcome, default=str), encoding="utf-8")
    partial.replace(path)


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def raise_gate_failure(path: Path) -> None:
    """Raise the gate's own exception if the submitted step was a gate that failed."""
    written = _read(path)
    if written and "gate_failed" in written:
        raise GateFailed(GateResult.from_dict(written["gate_failed"])) from None


def read_summary(path: Path) -> dict[str, Any]:
    """The summary the submitted step left; an error if it left none."""
    written = _read(path)
    if not written or "summary" not in written:
        raise RuntimeError(f"spark-submit succeeded but the step left no summary in {path}")
    return written["summary"]
