"""The curation rules file and the checks of the Spark SQL predicates it and segments hold."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType

from schemas.rule_files import load_rule_file


class _Strict(BaseModel):
    """Rules models refuse unknown keys, so a misspelt rule is an error rather than ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(_Strict):
    """A customer tier and the lifetime value (reporting currency) from which it applies."""

    name: str
    min_lifetime_value: Decimal


class ActionRule(_Strict):
    """One next-best-action rule: a predicate over agent features, an action and its reason."""

    id: str
    when: str
    action: str
    reason: str


class CurationRules(_Strict):
    """The rules file (``Settings.curation_rules``); every field is explained in it."""

    reporting_currency: str
    currency_per_reporting_unit: dict[str, Decimal]
    rfm_window_days: PositiveInt
    order_types: list[str]
    brand_initiated_types: list[str]
    affinity_weights: dict[str, float]
    tiers: list[Tier] = Field(min_length=1)
    languages: dict[str, str]
    default_language: str
    case_page_pattern: str
    closing_statuses: list[str]
    case_idle_close_days: PositiveInt
    self_service: str
    failed_self_service: str
    agent_contact: str
    service_contact: str
    escalation_window_hours: PositiveInt
    repeat_contact_days: PositiveInt
    recent_days: PositiveInt
    last_interactions_per_channel: PositiveInt
    negative_sentiment: float
    next_best_actions: list[ActionRule] = Field(min_length=1)


class RuleError(ValueError):
    """A configured rule or predicate that does not fit the data; the message says where."""


def load_rules(path: Path) -> CurationRules:
    """Read and check the rules file; a mistake names the file, the line and the field."""
    return load_rule_file(path, CurationRules, error=RuleError)


# Spark SQL functions that call arbitrary Java methods: never needed to select customers.
_JAVA_CALLS = re.compile(r"\b(try_)?(reflect|java_method)\s*\(", re.IGNORECASE)


def checked_predicate(frame: DataFrame, expression: str, where: str) -> Column:
    """``expression`` (Spark SQL) as a boolean column of ``frame``, or an error naming ``where``.

    Analysing against the frame's schema catches unknown columns and type mistakes before any
    data is read, and lets the error name the exact column instead of a Spark stack trace.
    Predicates come from files people edit, so functions that reach into the JVM are refused.
    """
    if _JAVA_CALLS.search(expression):
        raise RuleError(f"{where}: the predicate may not call Java methods (reflect, java_method)")
    try:
        column = F.expr(expression)
        dtype = frame.select(column.alias("_predicate")).schema["_predicate"].dataType
    except ParseException as err:
        raise RuleError(f"{where}: the predicate does not parse: {_first_line(err)}") from None
    except AnalysisException as err:
        raise RuleError(f"{where}: {_analysis_problem(err, frame)}") from None
    if not isinstance(dtype, BooleanType):
        raise RuleError(
            f"{where}: the predicate gives {dtype.simpleString()}, not true/false: {expression}"
        )
    return column


def _analysis_problem(err: AnalysisException, frame: DataFrame) -> str:
    condition = err.getCondition() or ""
    params = err.getMessageParameters() or {}
    if condition.startswith("UNRESOLVED_COLUMN") or condition.startswith("UNRESOLVED_FIELD"):
        name = params.get("objectName", params.get("fieldName", "?")).replace("`", "")
        return f"unknown column '{name}' (available: {', '.join(sorted(frame.columns))})"
    if condition.startswith("UNRESOLVED_ROUTINE"):
        return f"unknown function {params.get('routineName', '?')}"
    return _first_line(err)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]


def rule_predicate(rules: CurationRules, key: str) -> Column:
    """A rules-file predicate over timeline columns (already checked by ``curate``)."""
    return F.coalesce(F.expr(getattr(rules, key)), F.lit(False))
