"""Freshness: from a web or app event file landing to the agent seeing it, over 100,000 customers.

The lakehouse is built once, the nightly way, and cached in ``bench/.cache/freshness-<N>/``
(``N`` = ``OMNICDP_BENCH_FRESHNESS_PEOPLE``, default 100,000 simulated people):

1. :func:`jobs.simulate.simulate` writes ``DAYS`` days of landing files for ``N`` people; the
   web and app files of the last day are held back (moved aside) as the events to measure with,
   while the last day's POS, call-center and social files stay, so the nightly tables end where
   the held events happen. The held events are the simulator's own: logins and app accounts of
   people the lakehouse already knows (the common case), anonymous page views and app opens,
   and some people's first login or app signup (new records).
2. ``ingest_batch``, ``standardize``, ``resolve_identities``, ``curate``, ``build_segments``
   and ``publish`` run as ``jobs/demo.py`` runs them. The Splink model is trained on a separate
   simulated population of ``TRAIN_PEOPLE`` (another seed; ``Settings.model_path``), because
   training is not what is measured and its cost barely depends on the population; the
   resolved lakehouse holds all ``N`` people's records.
3. ``stream --once`` and ``microbatch --once`` run once with nothing new, as the first
   scheduled run after the nightly build would, so the measured runs find their checkpoints.
4. The lakehouse is copied to ``pristine/``; a ``COMPLETE`` file ends the build. A later run
   with that file skips the build and starts from a fresh copy of ``pristine/`` (the paths
   stay the same: the stream's checkpoint names its landing files by absolute path), after
   giving ``pristine/`` the table properties the catalog gained since it was built.

Every build step is timed and recorded in ``build.json``; a build stopped half-way resumes at
the first step that did not finish (every job is idempotent).

Measurement, in one SparkSession on ``local[2]``: for each batch size in ``BATCHES`` (events
per file) ``K`` times, the next ``size`` held events of one source (web and app in turn) are
written as one landing file the way producers must (written aside, renamed into place); ``t0``
is the rename. Then :func:`jobs.stream.stream_ingest` (``omnicdp stream --once``) and
:func:`jobs.microbatch.run_microbatches` (``omnicdp microbatch --once``) run back to back, as
the ``omnicdp_microbatch`` DAG runs them. From ``t0`` on, a second thread reads the serving
store every ``POLL_INTERVAL_S``, as the agent API reads it (``current()``, ``customer(id)``,
``timeline(id, ...)``), until every sampled customer's timeline holds the new events'
interaction ids (``web:<event_id>``, ``app:<event_id>``): ``t1``, the poll that first showed
them all. The micro-batch serves before it stores its rows in gold, so ``t1`` usually comes
before the micro-batch returns. Freshness is ``t1 - t0``. An event the
ingest quarantined never shows: polling stops ``POLL_SETTLE_S`` after the micro-batch returned
and the last newly served event, ``t1`` is the poll that first showed the final state, and the
missing events are then looked up in silver (untimed); a run counts only when every missing
event is one that never reached silver, and is reported without a freshness otherwise. The
customers checked are up to ``SAMPLE_CUSTOMERS`` of those whose records the lakehouse already
resolved before ``t0`` (looked up in ``gold.identity_xref`` for the file's identity keys,
before landing). Events of new records (a first login) have no customer id to poll until the
micro-batch has matched them: they are checked afterwards, and each run reports how many
reached the agent and ``new_records_served_by_s``, when the micro-batch's serving transaction
committed (``MicrobatchSummary.served_at``) less ``t0``; every event of a micro-batch is
served in that one transaction. Iterations build on each other (no reset in between). One
small warm-up file (``WARMUP_EVENTS``) runs first and is reported, not counted. Then
``FLOOR_REPETITIONS`` files of ``FLOOR_EVENTS`` events measure the floor, reported apart and
not held to the target: what a micro-batch costs when almost nothing is in it, the part of
every run's freshness that does not grow with the file. They also warm the session further
before the counted files.

Not included: the wait for the scheduler's next run (the DAG runs every five minutes) and
Spark start-up per task. The polls share the two cores with Spark; their own time is reported
(``poll_busy_s``), as is ``poll_s``, how long after the micro-batch returned ``t1`` came
(negative: before). Results go to
``bench/results/freshness.json`` with ``freshness_p95_s`` per batch size (nearest rank: with
fewer than 20 runs it is the slowest one), the build's seconds per step, and the load average
around each run: the two cores may be shared with other jobs, and numbers from a busy machine
are pessimistic. Counts only in the output, never a name, email or phone.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.lakehouse.delta import apply_table_properties, table_exists
from jobs.lakehouse.session import get_spark
from schemas.catalog import (
    ALL_TABLES,
    BRONZE_TABLES,
    GOLD_CUSTOMER_PROFILE,
    GOLD_IDENTITY_XREF,
    SILVER_CUSTOMER_RECORDS,
    SILVER_INTERACTIONS,
)
from schemas.settings import Settings

PEOPLE = int(os.environ.get("OMNICDP_BENCH_FRESHNESS_PEOPLE", "100000"))
TRAIN_PEOPLE = 10_000  # the model's training population (its own seed); at most PEOPLE
SEED, TRAIN_SEED = 7, 8
DAYS = 7
HELD_SOURCES = ("web", "app")
# Events per landing file -> repetitions (K). OMNICDP_BENCH_FRESHNESS_BATCHES="100:3,500:2"
# overrides it for a small development population.
BATCHES = {1_000: 5, 10_000: 3}
WARMUP_EVENTS = 100
FLOOR_EVENTS, FLOOR_REPETITIONS = 10, 3  # files with almost nothing in them (module doc)
SAMPLE_CUSTOMERS = 200  # known customers whose timelines are polled per file
TIMELINE_LIMIT = 500  # newest events read per timeline poll
POLL_INTERVAL_S = 0.5
POLL_SETTLE_S = 10.0  # polling stops this long after the last newly served event
POLL_TIMEOUT_S = 600.0  # after the micro-batch returned
TARGET_P95_S = 60.0
SPARK_MASTER = "local[2]"
CACHE = Path(__file__).parent / ".cache" / f"freshness-{PEOPLE}"
RESULTS = Path(__file__).parent / "results" / "freshness.json"
BENCH_TAG = "_bench_"  # in the names of the files this benchmark lands


def _say(message: str) -> None:
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    print(f"[freshness {stamp}] {message}", file=sys.stderr, flush=True)


def _batches() -> dict[int, int]:
    text = os.environ.get("OMNICDP_BENCH_FRESHNESS_BATCHES", "").strip()
    if not text:
        return dict(BATCHES)
    pairs = (item.split(":") for item in text.split(","))
    return {int(size): int(k) for size, k in pairs}


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()[:2]]


# --- the cached lakehouse ---------------------------------------------------------------------


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def lakehouse(self) -> Path:
        return self.root / "lakehouse"

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def held(self) -> Path:
        return self.root / "held"

    @property
    def model(self) -> Path:
        return self.root / "model" / "splink_model.json"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def pristine(self) -> Path:
        return self.root / "pristine" / "lakehouse"

    @property
    def build_log(self) -> Path:
        return self.root / "build.json"

    @property
    def complete(self) -> Path:
        return self.root / "COMPLETE"


def bench_settings(paths: Paths) -> Settings:
    return Settings(
        lakehouse=paths.lakehouse.resolve(),
        landing=paths.landing.resolve(),
        model_path=paths.model.resolve(),
        spark_master=SPARK_MASTER,
    )


class _Build:
    """The build's steps, each timed and recorded in ``build.json``; finished ones are skipped."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.log: dict[str, Any] = (
            json.loads(paths.build_log.read_text())
            if paths.build_log.exists()
            else {"people": PEOPLE, "seconds_per_step": {}, "load_average_1m_5m": {}}
        )

    def _save(self) -> None:
        tmp = self.paths.build_log.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.log, indent=2) + "\n")
        tmp.replace(self.paths.build_log)

    def step(self, name: str, work: Callable[[], Any]) -> None:
        if name in self.log["seconds_per_step"]:
            _say(f"build: {name} done in an earlier run, skipped")
            return
        _say(f"build: {name} ...")
        started = time.monotonic()
        work()
        seconds = round(time.monotonic() - started, 1)
        self.log["seconds_per_step"][name] = seconds
        self.log["load_average_1m_5m"][name] = _load_average()
        self._save()
        _say(f"build: {name} done in {seconds:.1f} s")


def _hold_back(paths: Paths) -> None:
    """Move the last day's web and app folders out of the landing area."""
    for source in HELD_SOURCES:
        held = paths.held / source
        if held.exists() and any(held.iterdir()):
            continue
        last_day = sorted((paths.landing / source).iterdir())[-1]
        held.mkdir(parents=True, exist_ok=True)
        shutil.move(last_day, held / last_day.name)


def _train(spark: SparkSession, settings: Settings, paths: Paths) -> None:
    from identity import train_model
    from jobs.ingest import ingest_batch
    from jobs.simulate import simulate
    from jobs.standardize import standardize

    if TRAIN_PEOPLE >= PEOPLE:
        train_model(spark, settings)
        return
    shutil.rmtree(paths.train, ignore_errors=True)
    train = settings.model_copy(
        update={"lakehouse": paths.train / "lakehouse", "landing": paths.train / "landing"}
    )
    simulate(train.landing, people=TRAIN_PEOPLE, seed=TRAIN_SEED, days=DAYS)
    ingest_batch(spark, train)
    standardize(spark, train)
    train_model(spark, train)  # saves to train.resolved_model_path == settings' model path
    shutil.rmtree(paths.train, ignore_errors=True)


def _prime(spark: SparkSession, settings: Settings) -> None:
    """The first scheduled stream + micro-batch run after the nightly build: checkpoints."""
    from jobs.microbatch import run_microbatches
    from jobs.standardize import standardize, standardized_bronze_versions
    from jobs.stream import stream_ingest

    if not standardized_bronze_versions(spark, settings):
        # A silver built before standardize recorded the bronze versions it read: without
        # them the first micro-batch would take every bronze web and app row as new.
        _say("prime: silver does not say which bronze versions it read; standardizing again")
        standardize(spark, settings)
    streamed = stream_ingest(spark, settings, once=True, progress=_say)
    _say(f"prime: stream --once took {streamed.seconds:.1f} s, {streamed.bronze_rows} rows")
    increments = run_microbatches(spark, settings, once=True, progress=_say)
    _say(
        f"prime: microbatch --once took {increments.seconds:.1f} s, "
        f"{increments.bronze_rows} bronze rows, {increments.customers} customers"
    )


def _facts(spark: SparkSession, settings: Settings) -> dict[str, int]:
    """Row counts of the built lakehouse (Spark counts; nothing is collected)."""

    def count(table: Any) -> int:
        return spark.read.format("delta").load(table.path(settings)).count()

    facts = {
        "customers": count(GOLD_CUSTOMER_PROFILE),
        "customer_records": count(SILVER_CUSTOMER_RECORDS),
        "interactions": count(SILVER_INTERACTIONS),
    }
    for source, table in sorted(BRONZE_TABLES.items()):
        facts[f"bronze_{source}_rows"] = count(table)
    return facts


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def build(spark: SparkSession, paths: Paths) -> dict[str, Any]:
    """Build the lakehouse (module doc), or reuse the complete one; the build's record."""
    from identity import resolve_identities
    from jobs.curate import curate
    from jobs.ingest import ingest_batch
    from jobs.publish import publish
    from jobs.segments import build_segments
    from jobs.simulate import simulate
    from jobs.standardize import standardize

    if paths.complete.exists():
        _catalog_properties(spark, paths)
        record = json.loads(paths.build_log.read_text())
        record["reused"] = True
        _say(f"lakehouse of {PEOPLE:,} people found complete in {paths.root}; build skipped")
        return record
    paths.root.mkdir(parents=True, exist_ok=True)
    ignore = paths.root.parent / ".gitignore"  # the cache is never committed
    if not ignore.exists():
        ignore.write_text("*\n")
    settings = bench_settings(paths)
    job = _Build(paths)
    job.log["train_people"] = min(TRAIN_PEOPLE, PEOPLE)
    started = time.monotonic()
    job.step(
        "simulate",
        lambda: simulate(settings.landing, people=PEOPLE, seed=SEED, days=DAYS, progress=_say),
    )
    job.step("hold back the last day's web and app files", lambda: _hold_back(paths))
    job.step("ingest (bronze)", lambda: ingest_batch(spark, settings))
    job.step("standardize (silver)", lambda: standardize(spark, settings))
    trained_on = f" (on {TRAIN_PEOPLE:,} other simulated people)" if TRAIN_PEOPLE < PEOPLE else ""
    job.step(f"identity: train{trained_on}", lambda: _train(spark, settings, paths))
    job.step("identity: resolve", lambda: resolve_identities(spark, settings))
    job.step("curate (gold)", lambda: curate(spark, settings))
    job.step("segments", lambda: build_segments(spark, settings))
    job.step("publish (serving store)", lambda: publish(spark, settings))
    job.step(
        "prime: first stream --once + microbatch --once (checkpoints)",
        lambda: _prime(spark, settings),
    )

    def snapshot() -> None:
        shutil.rmtree(paths.pristine, ignore_errors=True)
        shutil.copytree(paths.lakehouse, paths.pristine)

    job.step("snapshot (copy to pristine/)", snapshot)
    job.log["lakehouse"] = _facts(spark, settings)
    job.log["lakehouse"]["bytes"] = _folder_bytes(paths.pristine)
    job.log["total_seconds_this_run"] = round(time.monotonic() - started, 1)
    job.log["total_seconds_all_steps"] = round(sum(job.log["seconds_per_step"].values()), 1)
    job.log["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    job._save()
    paths.complete.write_text(job.log["finished_at"] + "\n")
    _say(f"build complete: {job.log['lakehouse']}")
    job.log["reused"] = False
    return job.log


def _catalog_properties(spark: SparkSession, paths: Paths) -> None:
    """Give a cache built by older code the table properties the catalog has gained since
    (deletion vectors), as the lakehouse's next batch run would, so it measures today's tables."""
    pristine = Settings(lakehouse=paths.pristine.resolve())
    for table in ALL_TABLES:
        if table.properties and table_exists(spark, pristine, table):
            apply_table_properties(spark, pristine, table)


def restore(paths: Paths) -> None:
    """Start from the pristine lakehouse, without the files earlier runs landed."""
    shutil.rmtree(paths.lakehouse, ignore_errors=True)
    shutil.copytree(paths.pristine, paths.lakehouse)
    for landed in paths.landing.glob(f"*/*/*{BENCH_TAG}*"):
        landed.unlink()


# --- the events ---------------------------------------------------------------------------------


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


def _customers_of(spark: SparkSession, settings: Settings, record_ids: list[str]) -> dict[str, str]:
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


def _expected(events: list[Event], owners: dict[str, str], limit: int) -> dict[str, set[str]]:
    """Up to ``limit`` customers (a fixed pick by id) and the interaction ids each must show."""
    by_customer: dict[str, set[str]] = {}
    for event in events:
        customer = owners.get(event.record_id or "")
        if customer is not None:
            by_customer.setdefault(customer, set()).add(event.interaction_id)
    return {c: by_customer[c] for c in sorted(by_customer)[:limit]}


def _served(url: str, expected: dict[str, set[str]]) -> set[str]:
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


def _in_silver(spark: SparkSession, settings: Settings, interaction_ids: set[str]) -> set[str]:
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


# --- one measured file --------------------------------------------------------------------------


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
    owners = _customers_of(spark, settings, keyed)
    expected = _expected(events, owners, SAMPLE_CUSTOMERS)
    url = settings.resolved_serving_url
    every = {i for ids in expected.values() for i in ids}
    if _served(url, expected):
        raise RuntimeError("some of the events to land are served already")
    name = f"{source}_events{BENCH_TAG}{label}{held.suffix[source]}"
    load_before = _load_average()

    t0 = time.monotonic()
    land(settings, source, held.day[source], name, [e.line for e in events])
    poll = _Poll(url, expected)
    poll.start()
    try:
        streamed = stream_ingest(spark, settings, once=True, progress=_say)
        t_stream = time.monotonic()
        increments = run_microbatches(spark, settings, once=True, progress=_say)
    finally:
        t_micro = time.monotonic()
        poll.micro_batch_returned(t_micro)
    poll.join()
    seen, reached_at = poll.seen, poll.reached_at or t_micro

    # Untimed: an expected event not served is excused only when it never reached silver.
    missing = every - seen
    not_in_silver = missing - _in_silver(spark, settings, missing)
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
        "load_average_1m_5m": {"before": load_before, "after": _load_average()},
    }
    followed = _follow_new(spark, settings, events, new_records)
    result["new_records_followed"] = followed
    if followed["events_checked"]:  # None: no new record's event to check, or one not served
        all_served = followed["events_seen"] == followed["events_checked"]
        served_at = increments.served_at
        result["new_records_served_by_s"] = (
            round(served_at - t0, 2) if all_served and served_at is not None else None
        )
    _say(
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
            newly = _served(self._url, pending)
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
    owners = _customers_of(spark, settings, new_records)
    new = set(new_records)
    expected = _expected([e for e in events if e.record_id in new], owners, SAMPLE_CUSTOMERS)
    seen = _served(settings.resolved_serving_url, expected)
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
    _say("restoring the pristine lakehouse")
    restore(paths)
    held = HeldEvents(paths.held)
    _say(f"held events: { {s: held.available(s) for s in HELD_SOURCES} }")
    sources = _sources()
    warmup = measure_one(spark, settings, held, next(sources), WARMUP_EVENTS, "warmup")
    floor_runs = [
        measure_one(spark, settings, held, next(sources), FLOOR_EVENTS, f"floor-{i + 1}")
        for i in range(FLOOR_REPETITIONS)
    ]
    floor = _summary(floor_runs, FLOOR_REPETITIONS)
    _say(f"floor ({FLOOR_EVENTS} events): p50 {floor['freshness_p50_s']} s")
    batches: dict[str, Any] = {}
    for size, repetitions in _batches().items():
        runs = [
            measure_one(spark, settings, held, next(sources), size, f"{size}-{i + 1}")
            for i in range(repetitions)
        ]
        batches[str(size)] = _summary(runs, repetitions)
        _say(
            f"batch {size}: p50 {batches[str(size)]['freshness_p50_s']} s, p95 "
            f"{batches[str(size)]['freshness_p95_s']} s, max "
            f"{batches[str(size)]['freshness_max_s']} s"
        )
    return {"warmup": warmup, "floor": floor, "batches": batches}


def main() -> None:
    paths = Paths(CACHE)
    settings = bench_settings(paths)
    spark = get_spark(settings)
    started = time.monotonic()
    built = build(spark, paths)
    if os.environ.get("OMNICDP_BENCH_FRESHNESS_BUILD_ONLY"):
        _say(f"build only: {json.dumps(built)}")
        return
    measured = measure(spark, paths)
    batches = measured["batches"]
    results = {
        "benchmark": "web/app event file landed -> stream --once -> microbatch --once -> "
        "new events in the served timelines, local[2], one SparkSession",
        "people": PEOPLE,
        "development_run": None
        if PEOPLE == 100_000 and _batches() == BATCHES
        else f"{PEOPLE:,} people and batch sizes {_batches()} (events: repetitions), not the "
        "issue's 100,000 customers and batches of 1,000 and 10,000 events",
        "target_p95_s": TARGET_P95_S,
        "target_met": all(b["target_met"] for b in batches.values()),
        "batch_sizes_events_to_repetitions": {str(k): v for k, v in _batches().items()},
        "percentiles": "nearest rank over the repetitions: with fewer than 20, p95 is the max",
        "batches": batches,
        "floor_not_held_to_the_target": {
            "events": FLOOR_EVENTS,
            **{k: v for k, v in measured["floor"].items() if k != "target_met"},
        },
        "warmup_not_counted": measured["warmup"],
        "lakehouse": built.get("lakehouse", {}),
        "build": {
            "reused_from_cache": built.get("reused", False),
            "train_people": built.get("train_people"),
            "seconds_per_step": built.get("seconds_per_step", {}),
            "total_seconds_all_steps": built.get("total_seconds_all_steps"),
            "load_average_1m_5m_after_step": built.get("load_average_1m_5m", {}),
        },
        "not_included": "waiting for the scheduler's next run (every 5 minutes) and Spark "
        "start-up per scheduled task",
        "run_seconds": round(time.monotonic() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "spark_master": SPARK_MASTER,
            "shuffle_partitions": settings.shuffle_partitions,
            "driver_memory": settings.driver_memory,
            "python": platform.python_version(),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    _say(f"results written to {RESULTS}")
