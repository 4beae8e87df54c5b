"""Response models of the API and the MCP tools.

The customer, context and timeline models are derived from the gold table schemas in
``schemas/tables.py``, so what is served (and what the OpenAPI document promises) follows the
tables without a second, hand-kept copy. Every table field is optional: gold leaves a value null
when nothing is known.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field, create_model

from schemas import types as t
from schemas.tables import AGENT_CONTEXT, CUSTOMER_PROFILE, CUSTOMER_TIMELINE, PROVENANCE

_SCALARS: dict[t.Scalar, Any] = {
    t.STRING: str,
    t.LONG: int,
    t.INT: int,
    t.DOUBLE: float,
    t.BOOLEAN: bool,
    t.TIMESTAMP: datetime,
    t.DATE: date,
}


def _python_type(dtype: t.DataType, name: str) -> Any:
    if dtype == PROVENANCE:
        return Provenance
    if isinstance(dtype, t.Struct):
        return model_from_struct(name, dtype)
    if isinstance(dtype, t.Array):
        return list[_python_type(dtype.element, name)]
    if isinstance(dtype, t.Map):
        return dict[_python_type(dtype.key, name), _python_type(dtype.value, name)]
    if isinstance(dtype, t.Decimal):
        return Decimal  # money: served as an exact decimal string
    return _SCALARS[dtype]


def model_from_struct(
    name: str, struct: t.Struct, base: type[BaseModel] = BaseModel, drop: tuple[str, ...] = ()
) -> type[BaseModel]:
    """A pydantic model with one optional field per schema field (nested records too)."""
    fields: dict[str, Any] = {
        f.name: (_python_type(f.type, f"{name}{f.name.title().replace('_', '')}") | None, None)
        for f in struct.fields
        if f.name not in drop
    }
    return create_model(name, __base__=base, **fields)


# Every profile attribute's provenance has this one shape: one schema in the API description,
# not one per attribute.
Provenance = model_from_struct("Provenance", PROVENANCE)


class Resolved(BaseModel):
    customer_id: str
    resolved_from: str | None = Field(
        None, description="the retired customer_id asked for, when it now lives on as this one"
    )


_ID = ("customer_id",)
CustomerProfile = model_from_struct("CustomerProfile", CUSTOMER_PROFILE, Resolved, drop=_ID)
AgentContext = model_from_struct("AgentContext", AGENT_CONTEXT, Resolved, drop=_ID)
TimelineEvent = model_from_struct("TimelineEvent", CUSTOMER_TIMELINE, drop=_ID)


class Timeline(Resolved):
    events: list[TimelineEvent] = Field(description="newest first")  # type: ignore[valid-type]
    next_before: int | None = Field(
        None, description="pass as ?before= for the next (older) page; null on the last page"
    )


class Match(BaseModel):
    customer_id: str
    display_name: str | None = None
    tier: str | None = None
    open_case_count: int | None = None


class LookupResult(BaseModel):
    matched_on: str = Field(description="the identifier kind that matched")
    matches: list[Match] = Field(description="customers holding that identifier (a shared phone "
                                 "may belong to several)")  # fmt: skip


class Segment(BaseModel):
    name: str
    members: int
    consent_purpose: str | None = None
    as_of: datetime | None = None


class SegmentMember(BaseModel):
    customer_id: str
    consent_purpose: str | None = None


class SegmentMembers(BaseModel):
    segment: str
    members: list[SegmentMember]
    next_after: str | None = Field(
        None, description="pass as ?after= for the next page; null on the last page"
    )


class Problem(BaseModel):
    """RFC 9457 problem details, plus the extensions this API uses."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, str]] | None = Field(
        None, description="invalid fields: [{field, detail}] (422)"
    )
    retry_after: int | None = Field(None, description="seconds to wait (429)")
