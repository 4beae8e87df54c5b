"""The run report: one JSON file and a short console summary per pipeline run.

An operator asks the same questions after every run: did every step finish, how many rows went
in and out of each layer, did every input line end in bronze or quarantine (and why was it
quarantined), how long did each step take, and what did the quality gates say. The report
answers them from the summaries the steps returned (counts only, never PII), so it costs no
Spark job and can be written even when a step failed: a step without a summary is listed as
``no result`` and the report says the run is incomplete.

Reports go to ``<lakehouse>/reports/runs/<run id>.json``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas.settings import Settings

Summary = dict[str, Any] | None


class RunIncomplete(RuntimeError):
    """A step of the run has no result; raised after the report was written, so the run fails
    (and says where to look) instead of ending green because its last task succeeded."""


def build_run_report(run_id: str, steps: dict[str, Summary]) -> dict[str, Any]:
    """The report of one run from each step's returned summary (None: the step has none)."""
    gates = {name: summary for name, summary in steps.items() if name.startswith("gate_")}
    return {
        "run_id": run_id,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "complete": all(summary is not None for summary in steps.values()),
        "steps": {
            name: {
                "status": "done" if summary is not None else "no result",
                "seconds": (summary or {}).get("seconds"),
            }
            for name, summary in steps.items()
        },
        "ingest": _ingest(steps.get("ingest")),
        "rows": _rows(steps),
        "gates": {name.removeprefix("gate_"): _gate(summary) for name, summary in gates.items()},
    }


def _ingest(summary: Summary) -> dict[str, Any] | None:
    """Per source: files, input lines, bronze and quarantined rows, reasons, reconciliation."""
    if summary is None:
        return None
    sources = {}
    for name, source in summary["sources"].items():
        files = source["files"]
        lines = sum(f["lines"] - f["header_lines"] for f in files)
        bronze = sum(f["bronze_rows"] for f in files)
        quarantined = sum(f["quarantined_rows"] for f in files)
        sources[name] = {
            "files": len(files),
            "skipped_files": source["skipped_files"],
            "input_lines": lines,
            "bronze_rows": bronze,
            "quarantined_rows": quarantined,
            "quarantine_reasons": source["quarantine_reasons"],
            "reconciled": lines == bronze + quarantined,
        }
    return {"batch_id": summary["batch_id"], "sources": sources}


def _rows(steps: dict[str, Summary]) -> dict[str, Any]:
    """Rows each layer's step wrote, as the steps reported them."""
    standardized = steps.get("standardize") or {}
    resolved = steps.get("resolve_identities") or {}
    segments = (steps.get("build_segments") or {}).get("segments", {})
    return {
        "silver.customer_records": standardized.get("customer_records"),
        "silver.interactions": standardized.get("interactions"),
        "gold.identity": {
            key: resolved.get(key)
            for key in ("record_count", "customer_count", "link_count", "merged_ids", "split_ids")
        },
        "gold.curated": (steps.get("curate") or {}).get("rows"),
        "gold.segment_membership": {name: s.get("members") for name, s in segments.items()},
        "serving": (steps.get("publish") or {}).get("rows"),
    }


def _gate(summary: Summary) -> dict[str, Any]:
    if summary is None:
        return {"success": False, "note": "no result: the gate failed or did not run"}
    return {
        "success": summary["success"],
        "expectations": summary["expectations"],
        "failures": len(summary["failures"]),
        "data_docs": summary["data_docs"],
    }


def file_safe(run_id: str) -> str:
    """A run id as a file name (Airflow's hold ``:`` and ``+``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)


def write_run_report(report: dict[str, Any], settings: Settings) -> Path:
    """Write the report as ``reports/runs/<run id>.json`` (run id made file-name safe)."""
    path = settings.reports_dir / "runs" / f"{file_safe(report['run_id'])}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")
    return path


def console_summary(report: dict[str, Any]) -> str:
    """A few lines for the task log: completeness, reconciliation, quarantine, gates, time."""
    state = "complete" if report["complete"] else "INCOMPLETE"
    lines = [f"run {report['run_id']}: {state}"]
    for name, step in report["steps"].items():
        seconds = f"{step['seconds']:.1f}s" if step["seconds"] is not None else "-"
        lines.append(f"  {name:<20} {step['status']:<10} {seconds}")
    for source, s in ((report["ingest"] or {}).get("sources") or {}).items():
        reasons = ", ".join(f"{n} x {r}" for r, n in sorted(s["quarantine_reasons"].items()))
        lines.append(
            f"  {source}: {s['input_lines']} lines = {s['bronze_rows']} bronze + "
            f"{s['quarantined_rows']} quarantined"
            + ("" if s["reconciled"] else "  NOT RECONCILED")
            + (f" ({reasons})" if reasons else "")
        )
    for layer, gate in report["gates"].items():
        verdict = "passed" if gate["success"] else "FAILED"
        lines.append(f"  gate {layer}: {verdict}")
    return "\n".join(lines)
