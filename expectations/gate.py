"""The quality gates between layers: validate a gate's suites, and stop promotion if one fails.

``run_gate(spark, settings, gate)`` validates every suite of a gate in Spark, writes the
results into the Data Docs site, and returns a :class:`GateResult`; when any expectation is not
met it raises :class:`GateFailed`, whose message names the table, the expectation, the column
and how many rows failed, never the values (they may be names, emails or phones).

The DAGs call ``run_gate`` through the step registry (``jobs.orchestration.steps``). This
module imports Great Expectations only when a gate runs, so Airflow can parse the DAGs (and
resolve :class:`GateFailed` for their retry policy) without loading it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from schemas.settings import Settings

if TYPE_CHECKING:
    from great_expectations.core import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from pyspark.sql import SparkSession

    from expectations.suites import Suite
    from expectations.validate import GateRun

log = logging.getLogger(__name__)

# Error messages may quote the value that broke them (Spark's cast errors do); quotes are cut.
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
# Column expectations whose observed value is the column's type, never one of its values.
_TYPE_CHECKS = {"expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list"}


class Gate(StrEnum):
    """The gates of the daily pipeline: one per layer, and one on the curated gold tables
    (what marketers and agents read) before they are published."""

    BRONZE = "bronze"
    SILVER = "silver"
    GOLD = "gold"
    CURATED = "curated"


@dataclass(frozen=True)
class Failure:
    """One unmet expectation, described by counts only."""

    suite: str
    expectation: str
    column: str | None = None
    description: str | None = None
    unexpected_rows: int | None = None
    rows: int | None = None
    detail: str | None = None

    def describe(self) -> str:
        what = self.expectation + (f" on {self.column}" if self.column else "")
        if self.description:
            what = f"{self.description} ({what})"
        if self.unexpected_rows is not None:
            how = f"{self.unexpected_rows} of {self.rows} rows fail"
        else:
            how = self.detail or "not met"
        return f"{self.suite}: {what}: {how}"


@dataclass(frozen=True)
class GateResult:
    """What one gate run found: per suite whether it passed, and every unmet expectation."""

    gate: str
    suites: dict[str, bool]
    expectations: int
    failures: list[Failure] = field(default_factory=list)
    data_docs: str = ""

    @property
    def success(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        if self.success:
            return (
                f"{self.gate} gate passed: {self.expectations} expectations met "
                f"on {len(self.suites)} suites (data docs: {self.data_docs})"
            )
        lines = [
            f"{self.gate} gate failed: {len(self.failures)} of {self.expectations} expectations "
            f"not met; {self.gate} is not promoted (data docs: {self.data_docs})",
            *(f"  - {f.describe()}" for f in self.failures),
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (for XCom and run reports)."""
        return {**asdict(self), "success": self.success}

    @classmethod
    def from_dict(cls, summary: dict[str, Any]) -> GateResult:
        """The result :meth:`to_dict` summarized: how a gate that spark-submit ran reaches the
        task that submitted it."""
        fields = {k: v for k, v in summary.items() if k not in ("success", "failures")}
        return cls(**fields, failures=[Failure(**f) for f in summary["failures"]])


class GateFailed(RuntimeError):
    """Tables did not meet their gate's expectations; retrying cannot fix data, so do not retry."""

    def __init__(self, result: GateResult) -> None:
        super().__init__(result.summary())
        self.result = result


def run_gate(spark: SparkSession, settings: Settings, gate: Gate | str) -> GateResult:
    """Validate ``gate``'s suites; raise :class:`GateFailed` unless every expectation is met."""
    from expectations.suites import GATE_SUITES
    from expectations.validate import GateRun

    if gate not in set(Gate):
        raise ValueError(f"no gate {gate}; gates: {', '.join(Gate)}")
    gate = Gate(gate)
    run = GateRun(settings, run_name=str(gate))
    outcomes = {
        suite.name: _validate(run, suite, spark, settings)
        for suite in GATE_SUITES[gate](spark, settings)
    }
    result = GateResult(
        gate=str(gate),
        suites={name: not failures for name, (_, failures) in outcomes.items()},
        expectations=sum(count for count, _ in outcomes.values()),
        failures=[f for _, failures in outcomes.values() for f in failures],
        data_docs=str(run.build_data_docs()),
    )
    if not result.success:
        raise GateFailed(result)
    log.info(result.summary())
    return result


def _validate(
    run: GateRun, suite: Suite, spark: SparkSession, settings: Settings
) -> tuple[int, list[Failure]]:
    """Expectations evaluated and failures of one suite; missing input tables are one failure."""
    from expectations.suites import table_exists

    missing = [t.qualified_name for t in suite.reads if not table_exists(spark, settings, t)]
    if missing:
        detail = f"no Delta table {', '.join(missing)} (has its step run?)"
        return 1, [Failure(suite.name, "tables exist", detail=detail)]
    validation = run.validate(suite, suite.frame(spark, settings))
    return len(validation.results), _failures_of(suite.name, validation)


def _failures_of(suite: str, validation: ExpectationSuiteValidationResult) -> list[Failure]:
    return [_failure(suite, r) for r in validation.results if not r.success]


def _failure(suite: str, outcome: ExpectationValidationResult) -> Failure:
    """Counts from a GX result; values GX observed are kept only when they are not row data."""
    config = outcome.expectation_config
    kwargs = config.kwargs
    result = outcome.result or {}
    column = kwargs.get("column") or ", ".join(kwargs.get("column_list") or []) or None
    return Failure(
        suite=suite,
        expectation=config.type,
        column=column,
        description=config.description,
        unexpected_rows=result.get("unexpected_count"),
        rows=result.get("element_count"),
        detail=_detail(outcome, config.type, has_column="column" in kwargs),
    )


def _detail(outcome: ExpectationValidationResult, expectation: str, has_column: bool) -> str | None:
    """Why an expectation without row counts failed: an error, a number, a type or column names.

    A column's other observed values (its minimum, its most common value) could be personal
    data, so they are left to the Data Docs' counts rather than put in a message.
    """
    info = outcome.exception_info or {}
    if info.get("raised_exception"):
        message = (str(info.get("exception_message") or "").splitlines() or ["unknown error"])[0]
        return "could not be evaluated: " + _QUOTED.sub("'…'", message)
    result = outcome.result or {}
    mismatch = (result.get("details") or {}).get("mismatched")
    if mismatch:
        return f"columns differ: {mismatch}"
    observed = result.get("observed_value")
    if observed is None:
        return None
    if isinstance(observed, int | float) or not has_column or expectation in _TYPE_CHECKS:
        return f"observed {observed}"
    return None
