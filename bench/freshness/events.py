"""The held-back events, landing them, and where they show: silver, and the served store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from bench.freshness.config import HELD_SOURCES, TIMELINE_LIMIT
from schemas.catalog import GOLD_IDENTITY_XREF, SILVER_INTERACTIONS
from schemas.settings import Settings


@dataclass
class Event:
    line: str
    interaction_id: str
    record_id: str | None  # None: anonymous (a cookie or device only)


def _identity_key(source: str, event: dict[str, Any]) -> str | None:
    """The record key as :func:`jobs.standardize.record_key` reads it."""
    raw = event.get("login_email" if source == "web" else "account_id")
    value = (raw or "").strip()
    if not value:
        return None
    return value.lower() if source == "web" else value


class HeldEvents:
    """The held-back lines of each source, handed out in file order, each line once."""

    def __init__(self, held: Path) -> None:
        self._lines: dict[str, list[str]] = {}
        self._next: dict[str, int] = {}
        self.day: dict[str, str] = {}
        self.suffix: dict[str, str] = {}
        for source in HELD_SOURCES:
            files = sorted(f for f in (held / source).glob("*/*") if f.is_file())
            self._lines[source] = [
                line for f in files for line in f.read_text(encoding="utf-8").splitlines() if line
            ]
            self._next[source] = 0
            self.day[source] = files[-1].parent.name
            self.suffix[source] = files[-1].suffix

    def available(self, source: str) -> int:
        return len(self._lines[source]) - self._next[source]

    def take(self, source: str, count: int) -> list[Event]:
        if self.available(source) < count:
            raise RuntimeError(
                f"only {self.available(source)} held {source} events left, {count} wanted: "
                "lower the batch sizes or repetitions for this population"
            )
        start = self._next[source]
        self._next[source] += count
        events = []
        for line in self._lines[source][start : start + count]:
            event = json.loads(line)
            key = _identity_key(source, event)
            events.append(
                Event(line, f"{source}:{event['event_id']}", f"{source}:{key}" if key else None)
            )
        return events


def land(settings: Settings, source: str, day: str, name: str, lines: list[str]) -> Path:
    """Drop a landing file the way producers must: written aside, then renamed into place."""
    path = settings.landing / source / day / name
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(name + ".partial")
    aside.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    aside.rename(path)
    return path


def customers_of(spark: SparkSession, settings: Settings, record_ids: list[str]) -> dict[str, str]:
    """``record_id -> customer_id`` for these records (a filtered read of the xref)."""
    if not record_ids:
        return {}
    wanted = spark.createDataFrame([(r,) for r in sorted(set(record_ids))], "record_id string")
    rows = (
        spark.read.format("delta")
        .load(GOLD_IDENTITY_XREF.path(settings))
        .join(F.broadcast(wanted), "record_id")
        .select("record_id", "customer_id")
        .collect()
    )
    return {r.record_id: r.customer_id for r in rows}


def expected_of(events: list[Event], owners: dict[str, str], limit: int) -> dict[str, set[str]]:
    """Up to ``limit`` customers (a fixed pick by id) and the interaction ids each must show."""
    by_customer: dict[str, set[str]] = {}
    for event in events:
        customer = owners.get(event.record_id or "")
        if customer is not None:
            by_customer.setdefault(customer, set()).add(event.interaction_id)
    return {c: by_customer[c] for c in sorted(by_customer)[:limit]}


def served(url: str, expected: dict[str, set[str]]) -> set[str]:
    """Which of the expected interaction ids the agent API would show now: the customer is
    served and the id is among the newest ``TIMELINE_LIMIT`` events of its timeline."""
    from serving.store import open_store

    store = open_store(url)
    try:
        generation = store.current()
        if generation is None:
            return set()
        seen: set[str] = set()
        for customer_id, wanted in expected.items():
            if generation.customer(customer_id) is None:
                continue
            timeline = generation.timeline(customer_id, TIMELINE_LIMIT, None)
            seen |= wanted & {json.loads(e)["interaction_id"] for e in timeline}
        return seen
    finally:
        store.close()


def in_silver(spark: SparkSession, settings: Settings, interaction_ids: set[str]) -> set[str]:
    """Which of these interactions reached silver (the others were quarantined or dropped)."""
    if not interaction_ids:
        return set()
    wanted = spark.createDataFrame([(i,) for i in sorted(interaction_ids)], "interaction_id string")
    rows = (
        spark.read.format("delta")
        .load(SILVER_INTERACTIONS.path(settings))
        .join(F.broadcast(wanted), "interaction_id", "left_semi")
        .select("interaction_id")
        .collect()
    )
    return {r.interaction_id for r in rows}
