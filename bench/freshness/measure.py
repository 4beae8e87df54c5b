"""The measurement: one landed file at a time, timed from its rename to the agent's view."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from pyspark.sql import SparkSession

from bench.freshness.config import (
    BENCH_TAG,
    FLOOR_EVENTS,
    FLOOR_REPETITIONS,
    HELD_SOURCES,
    POLL_INTERVAL_S,
    POLL_SETTLE_S,
    POLL_TIMEOUT_S,
    SAMPLE_CUSTOMERS,
    TARGET_P95_S,
    WARMUP_EVENTS,
    Paths,
    batch_sizes,
    bench_settings,
    load_average,
    say,
)
from bench.freshness.events import (
    Event,
    HeldEvents,
    customers_of,
    expected_of,
    in_silver,
    land,
    served,
)
from bench.freshness.lakehouse import restore
from schemas.settings import Settings


def _percentile(values: list[float], p: float) -> float | None:
    """Nearest rank: the smallest value with at least ``p`` percent of the values at or below."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 2)


def measure_one(
    spark: SparkSession,
    settings: Settings,
    held: HeldEvents,
    source: str,
    size: int,
    label: str,
) -> dict[str, Any]:
    """Land one file of ``size`` held ``source`` events and time it to the agent (module doc)."""
    from jobs.microbatch import run_microbatches
    from jobs.stream import stream_ingest

    events = held.take(source, size)
    keyed = [e.record_id for e in events if e.record_id]
    owners = customers_of(spark, settings, keyed)
    expected = expected_of(events, owners, SAMPLE_CUSTOMERS)
    url = settings.resolved_serving_url
    every = {i for ids in expected.values() for i in ids}
    if served(url, expected):
        raise RuntimeError("some of the events to land are served already")
    name = f"{source}_events{BENCH_TAG}{label}{held.suffix[source]}"
    load_before = load_average()

    t0 = time.monotonic()
    land(settings, source, held.day[source], name, [e.line for e in events])
    poll = _Poll(url, expected)
    poll.start()
    try:
        streamed = stream_ingest(spark, settings, once=True, progress=say)
        t_stream = time.monotonic()
        increments = run_microbatches(spark, settings, once=True, progress=say)
    finally:
        t_micro = time.monotonic()
        poll.micro_batch_returned(t_micro)
    poll.join()
    seen, reached_at = poll.seen, poll.reached_at or t_micro

    # Untimed: an expected event not served is excused only when it never reached silver.
    missing = every - seen
    not_in_silver = missing - in_silver(spark, settings, missing)
    served_missing = missing - not_in_silver
    fresh = not served_missing
    new_records = [r for r in set(keyed) if r not in owners]
    result: dict[str, Any] = {
        "source": source,
        "events": size,
        "freshness_s": round(reached_at - t0, 2) if fresh else None,
        "stream_s": round(t_stream - t0, 2),
        "microbatch_s": round(t_micro - t_stream, 2),
        "poll_s": round(reached_at - t_micro, 2),
        "polls": poll.polls,
        "poll_busy_s": round(poll.busy_s, 2),
        "events_with_identity_key": len(keyed),
        "known_records": len(set(keyed)) - len(new_records),
        "new_records": len(new_records),
        "customers_checked": len(expected),
        "events_checked": len(every),
        "events_seen": len(seen),
        "events_not_in_silver": len(not_in_silver),
        "events_in_silver_but_not_served": len(served_missing),
        "stream": {
            "bronze_rows": streamed.bronze_rows,
            "quarantined_rows": streamed.quarantined_rows,
            "micro_batches": streamed.micro_batches,
        },
        "microbatch": {
            "micro_batches": increments.micro_batches,
            "bronze_rows": increments.bronze_rows,
            "records": increments.records,
            "interactions": increments.interactions,
            "new_records": increments.new_records,
            "joined": increments.joined,
            "new_customers": increments.new_customers,
            "undecided": increments.undecided,
            "customers_served": increments.customers,
            "step_seconds": {
                step: round(seconds, 2) for step, seconds in increments.step_seconds.items()
            },
        },
        "load_average_1m_5m": {"before": load_before, "after": load_average()},
    }
    followed = _follow_new(spark, settings, events, new_records)
    result["new_records_followed"] = followed
    if followed["events_checked"]:  # None: no new record's event to check, or one not served
        all_served = followed["events_seen"] == followed["events_checked"]
        served_at = increments.served_at
        result["new_records_served_by_s"] = (
            round(served_at - t0, 2) if all_served and served_at is not None else None
        )
    say(
        f"{label}: {size} {source} events -> freshness "
        f"{result['freshness_s']} s (stream {result['stream_s']} s, microbatch "
        f"{result['microbatch_s']} s, poll {result['poll_s']} s); "
        f"{len(seen)}/{len(every)} events of {len(expected)} customers seen "
        f"({len(not_in_silver)} never reached silver, {len(served_missing)} not served); "
        f"{len(new_records)} new records, served by "
        f"{result.get('new_records_served_by_s')} s"
    )
    return result


class _Poll(threading.Thread):
    """Reads the store every ``POLL_INTERVAL_S`` until the expected events are served (module
    doc); only customers with events still missing are read again."""

    def __init__(self, url: str, expected: dict[str, set[str]]) -> None:
        super().__init__(name="freshness-poll", daemon=True)
        self._url = url
        self._expected = expected
        self._every = {i for ids in expected.values() for i in ids}
        self._returned_at: float | None = None
        self.seen: set[str] = set()
        self.reached_at: float | None = None  # the poll that first showed ``seen``
        self.polls = 0
        self.busy_s = 0.0

    def micro_batch_returned(self, at: float) -> None:
        self._returned_at = at

    def run(self) -> None:
        while self.seen != self._every and not self._settled():
            started = time.monotonic()
            pending = {c: ids - self.seen for c, ids in self._expected.items() if ids - self.seen}
            newly = served(self._url, pending)
            now = time.monotonic()
            self.polls += 1
            self.busy_s += now - started
            if newly:
                self.seen |= newly
                self.reached_at = now
            time.sleep(POLL_INTERVAL_S)

    def _settled(self) -> bool:
        """Nothing new for ``POLL_SETTLE_S`` since the micro-batch returned, or out of time."""
        if self._returned_at is None:
            return False
        now = time.monotonic()
        last = max(self._returned_at, self.reached_at or 0.0)
        return now - last > POLL_SETTLE_S or now - self._returned_at > POLL_TIMEOUT_S


def _follow_new(
    spark: SparkSession, settings: Settings, events: list[Event], new_records: list[str]
) -> dict[str, int]:
    """Untimed, after the run: did the new records' events reach the agent too?"""
    owners = customers_of(spark, settings, new_records)
    new = set(new_records)
    expected = expected_of([e for e in events if e.record_id in new], owners, SAMPLE_CUSTOMERS)
    seen = served(settings.resolved_serving_url, expected)
    return {
        "new_records": len(new),
        "with_a_customer_id": len(owners),
        "customers_checked": len(expected),
        "events_checked": sum(len(ids) for ids in expected.values()),
        "events_seen": len(seen),
    }


def _summary(runs: list[dict[str, Any]], repetitions: int) -> dict[str, Any]:
    done = [r["freshness_s"] for r in runs if r["freshness_s"] is not None]
    key = "new_records_served_by_s"
    with_new = [r[key] for r in runs if key in r]  # runs whose new records had events to check
    new_served = [s for s in with_new if s is not None]
    not_fresh = len(runs) - len(done)

    def p50(key: str) -> float | None:
        return _percentile([r[key] for r in runs], 50)

    p95 = _percentile(done, 95) if len(done) == len(runs) else None
    return {
        "repetitions": repetitions,
        "n": len(done),
        "runs_with_events_not_served": not_fresh,
        "freshness_p50_s": _percentile(done, 50),
        "freshness_p95_s": p95,
        "freshness_max_s": max(done) if done else None,
        "target_met": p95 is not None and p95 < TARGET_P95_S,
        "step_seconds_p50": {
            k: p50(k) for k in ("stream_s", "microbatch_s", "poll_s", "poll_busy_s")
        },
        "step_seconds_max": {k: max(r[k] for r in runs) for k in ("stream_s", "microbatch_s")},
        "microbatch_step_seconds_p50": {
            step: _percentile([r["microbatch"]["step_seconds"].get(step, 0.0) for r in runs], 50)
            for step in dict.fromkeys(s for r in runs for s in r["microbatch"]["step_seconds"])
        },
        "new_records_served_by_p95_s": _percentile(new_served, 95)
        if len(new_served) == len(with_new)
        else None,
        "runs": runs,
    }


def _sources() -> Iterator[str]:
    while True:
        yield from HELD_SOURCES


def measure(spark: SparkSession, paths: Paths) -> dict[str, Any]:
    settings = bench_settings(paths)
    say("restoring the pristine lakehouse")
    restore(paths)
    held = HeldEvents(paths.held)
    say(f"held events: { {s: held.available(s) for s in HELD_SOURCES} }")
    sources = _sources()
    warmup = measure_one(spark, settings, held, next(sources), WARMUP_EVENTS, "warmup")
    floor_runs = [
        measure_one(spark, settings, held, next(sources), FLOOR_EVENTS, f"floor-{i + 1}")
        for i in range(FLOOR_REPETITIONS)
    ]
    floor = _summary(floor_runs, FLOOR_REPETITIONS)
    say(f"floor ({FLOOR_EVENTS} events): p50 {floor['freshness_p50_s']} s")
    batches: dict[str, Any] = {}
    for size, repetitions in batch_sizes().items():
        runs = [
            measure_one(spark, settings, held, next(sources), size, f"{size}-{i + 1}")
            for i in range(repetitions)
        ]
        batches[str(size)] = _summary(runs, repetitions)
        say(
            f"batch {size}: p50 {batches[str(size)]['freshness_p50_s']} s, p95 "
            f"{batches[str(size)]['freshness_p95_s']} s, max "
            f"{batches[str(size)]['freshness_max_s']} s"
        )
    return {"warmup": warmup, "floor": floor, "batches": batches}
