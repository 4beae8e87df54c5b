"""Survivorship rules: configuration naming how each golden-record attribute is chosen.

The rules file (``Settings.survivorship_rules``, by default ``identity/survivorship.yaml``, which
explains every rule kind) maps each attribute of ``schemas.tables.SURVIVED_ATTRIBUTES`` to::

    email:
      rule: verified_first            # source_priority | verified_first | most_recent
      verified_sources: [web, app]    #   | most_frequent | most_complete
      tie_breakers: [most_frequent, most_recent]
      sources: [app, web]             # needed when source_priority is the rule or a tie-breaker

The rule and its tie-breakers form one chain; the smallest ``record_id`` always ends it, so a
rules file cannot leave the choice to chance. The file is checked as a whole before any data is
read: every attribute needs a rule, unknown keys, rule kinds and sources are refused, and a
source list must be given exactly when a rule in the chain uses it. Errors name the file, the
attribute, the line and the bad value (rule files hold rule and source names, never customer data).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, RootModel, field_validator, model_validator

from schemas.rule_files import load_rule_file
from schemas.sources import SOURCES
from schemas.tables import SURVIVED_ATTRIBUTES

RuleKind = Literal[
    "source_priority", "verified_first", "most_recent", "most_frequent", "most_complete"
]


class SurvivorshipRuleError(ValueError):
    """A rules file that cannot be used; the message names the file, attribute and value."""


class AttributeRule(BaseModel):
    """How one attribute is chosen: a rule, its tie-breakers and the source lists they use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: RuleKind
    tie_breakers: tuple[RuleKind, ...] = ()
    sources: tuple[str, ...] = ()  # source_priority: best first
    verified_sources: tuple[str, ...] = ()  # verified_first

    @field_validator("sources", "verified_sources")
    @classmethod
    def _known_sources(cls, sources: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [s for s in sources if s not in SOURCES]
        if unknown:
            raise ValueError(f"unknown source '{unknown[0]}' (sources: {', '.join(SOURCES)})")
        if len(set(sources)) < len(sources):
            raise ValueError("a source is listed twice")
        return sources

    @model_validator(mode="after")
    def _consistent_chain(self) -> AttributeRule:
        repeated = sorted({s for s in self.steps if self.steps.count(s) > 1})
        if repeated:
            raise ValueError(f"rule '{repeated[0]}' appears twice in the chain")
        for kind, field, given in (
            ("source_priority", "sources", self.sources),
            ("verified_first", "verified_sources", self.verified_sources),
        ):
            if kind in self.steps and not given:
                raise ValueError(f"'{kind}' needs a non-empty '{field}' list")
            if given and kind not in self.steps:
                raise ValueError(f"'{field}' is given but no '{kind}' rule uses it")
        return self

    @property
    def steps(self) -> tuple[RuleKind, ...]:
        """The rule, then its tie-breakers: the order in which they rank records."""
        return (self.rule, *self.tie_breakers)


SurvivorshipRules = Mapping[str, AttributeRule]  # attribute (SURVIVED_ATTRIBUTES key) -> rule


class SurvivorshipFile(RootModel[dict[str, AttributeRule]]):
    """The whole rules file: one rule for each attribute of ``SURVIVED_ATTRIBUTES``, no other."""

    @model_validator(mode="before")
    @classmethod
    def _every_attribute_once(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # validation says it is not a mapping of attribute: rule
        problems = [
            *[f"{name}: unknown attribute" for name in data if name not in SURVIVED_ATTRIBUTES],
            *[f"{name}: no rule given" for name in SURVIVED_ATTRIBUTES if name not in data],
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return data


def load_survivorship_rules(path: Path) -> SurvivorshipRules:
    """Read and check a rules file: the attribute names first, then every rule's problems in one
    error. Rule files hold rule and source names only, so the message shows the bad values."""
    rules = load_rule_file(path, SurvivorshipFile, error=SurvivorshipRuleError, show_values=True)
    return rules.root
