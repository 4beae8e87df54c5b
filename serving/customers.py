"""The rules every reader of the serving store follows, whether it is the HTTP API or an MCP tool.

- A lookup identifier is normalized exactly as silver normalized it (``jobs/standardize.py``'s
  plain-Python twins), so "+82 10-1234-5678" finds the record stored as "+821012345678"; a value
  that cannot be normalized is invalid input naming the field, never a silent miss.
- A customer_id that identity resolution retired (merged into another) answers with the id it
  lives on as, saying so in ``resolved_from``.
- One request reads one published generation.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from enum import StrEnum
from typing import Any

from schemas.identifiers import normalize_email, normalize_handle, normalize_phone, strip_blank
from serving.models import (
    AgentContext,
    CustomerProfile,
    LookupResult,
    Match,
    Segment,
    SegmentMember,
    SegmentMembers,
    Timeline,
    TimelineEvent,
)
from serving.problems import CustomerNotFound, InvalidInput, NotPublished, SegmentNotFound
from serving.store.base import CustomerRow, Generation, ServingStore

COUNTRY_CODE = r"^[A-Za-z]{2}$"  # ISO 3166 alpha-2, either case


class LookupKind(StrEnum):
    """Identifiers a channel hands an agent; the values name the lookup keys in the store."""

    PHONE = "phone"
    EMAIL = "email"
    LOYALTY_ID = "loyalty_id"
    HANDLE = "handle"
    DEVICE_ID = "device_id"


def normalize(kind: LookupKind, raw: str, country: str | None = None) -> str:
    """The identifier as silver stores it; ``InvalidInput`` naming the field when impossible."""
    if kind is LookupKind.PHONE:
        if country is not None and not re.fullmatch(COUNTRY_CODE, country):
            raise InvalidInput("country", "expected an ISO 3166 alpha-2 code such as KR or US")
        value = normalize_phone(raw, country)
        problem = "not a valid phone number (E.164, or national with a country)"
    elif kind is LookupKind.EMAIL:
        value = normalize_email(raw)
        problem = "not a valid email address"
    elif kind is LookupKind.HANDLE:
        value = normalize_handle(raw)
        problem = "empty handle"
    else:
        value = strip_blank(raw)
        problem = "empty identifier"
    if not value:
        raise InvalidInput(kind.value, problem)
    return value


def _json(text: str | None) -> dict[str, Any]:
    return json.loads(text, parse_float=Decimal) if text else {}


class CustomerDirectory:
    """Customer and segment reads over a serving store, with the rules above."""

    def __init__(self, store: ServingStore, pointer_max_age: float = 1.0) -> None:
        self.store = store
        self.pointer_max_age = pointer_max_age  # a new publish is seen within this many seconds

    def _generation(self) -> Generation:
        generation = self.store.current(self.pointer_max_age)
        if generation is None:
            raise NotPublished("the serving store is empty: run `omnicdp publish` first")
        return generation

    def find(self, kind: LookupKind, raw: str, country: str | None = None) -> LookupResult:
        value = normalize(kind, raw, country)
        matches = self._generation().lookup(kind.value, value)
        if not matches:
            raise CustomerNotFound(f"no published customer has this {kind.value}")
        return LookupResult(matched_on=kind.value, matches=[Match(**vars(m)) for m in matches])

    def _resolve(self, generation: Generation, requested: str) -> tuple[CustomerRow, str | None]:
        row = generation.customer(requested)
        if row is not None:
            return row, None
        surviving_id = generation.surviving_id(requested)
        row = generation.customer(surviving_id) if surviving_id is not None else None
        if row is None:
            raise CustomerNotFound("no published customer has this customer_id")
        return row, requested

    def profile(self, customer_id: str) -> CustomerProfile:
        row, resolved_from = self._resolve(self._generation(), customer_id)
        return CustomerProfile(
            **{**_json(row.profile), "customer_id": row.customer_id, "resolved_from": resolved_from}
        )

    def context(self, customer_id: str) -> AgentContext:
        row, resolved_from = self._resolve(self._generation(), customer_id)
        return AgentContext(
            **{**_json(row.context), "customer_id": row.customer_id, "resolved_from": resolved_from}
        )

    def timeline(self, customer_id: str, limit: int = 50, before: int | None = None) -> Timeline:
        generation = self._generation()
        row, resolved_from = self._resolve(generation, customer_id)
        events = [
            TimelineEvent(**_json(e)) for e in generation.timeline(row.customer_id, limit, before)
        ]
        last_seq = events[-1].seq if len(events) == limit else None  # type: ignore[attr-defined]
        return Timeline(
            customer_id=row.customer_id,
            resolved_from=resolved_from,
            events=events,
            next_before=last_seq if last_seq and last_seq > 1 else None,
        )

    def segments(self) -> list[Segment]:
        return [
            Segment(name=n, members=m, consent_purpose=p, as_of=a)
            for n, m, p, a in self._generation().segments()
        ]

    def segment_members(
        self, name: str, limit: int = 1000, after: str | None = None
    ) -> SegmentMembers:
        generation = self._generation()
        if generation.segment(name) is None:
            raise SegmentNotFound("no published segment has this name")
        members = generation.segment_members(name, limit, after)
        return SegmentMembers(
            segment=name,
            members=[SegmentMember(customer_id=c, consent_purpose=p) for c, p in members],
            next_after=members[-1][0] if len(members) == limit else None,
        )
