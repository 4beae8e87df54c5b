"""The demo: simulate landing data, run every step on it, and measure identity against the truth.

It is the same chain of jobs the DAGs run, on a fresh folder, so a new user sees the whole
platform work with nothing else installed or running.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from jobs.curate import curate
from jobs.ingest import IngestSummary, ingest_batch
from jobs.publish import publish
from jobs.segments import build_segments
from jobs.simulate import simulate
from jobs.standardize import StandardizeSummary, standardize
from schemas.catalog import ALL_TABLES
from schemas.settings import Settings

Progress = Callable[[str], None]


@dataclass
class DemoSummary:
    """What the demo prints and writes to ``reports/demo_summary.json``."""

    people: int
    records_per_source: dict[str, int]
    bronze_rows_per_source: dict[str, int]
    quarantined_rows: int
    interactions: int
    customers_found: int
    true_people: int
    pairwise: dict[str, float]
    bcubed: dict[str, float]
    curated_rows: dict[str, int] = field(default_factory=dict)
    next_best_actions: dict[str, int] = field(default_factory=dict)
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)  # counts per segment
    serving: dict[str, Any] = field(default_factory=dict)  # store and rows published
    seconds_per_step: dict[str, float] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    report_path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Timer:
    """Times named steps and tells the user which one is running."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.progress(f"{name} ...")
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 1)
        self.progress(f"{name} done in {self.seconds[name]:.1f}s")


def demo_settings(workdir: Path, base: Settings) -> Settings:
    """The demo keeps its landing files and lakehouse in its own folder."""
    return base.updated(landing=workdir / "landing", lakehouse=workdir / "lakehouse")


def run_demo(
    spark: SparkSession,
    settings: Settings,
    people: int = 2000,
    seed: int = 7,
    days: int = 7,
    progress: Progress = print,
) -> DemoSummary:
    """Run simulate -> bronze -> silver -> identity -> evaluation -> curated gold -> segments
    -> serving store on a clean demo folder."""
    from identity import evaluate, resolve_identities, train_model

    for folder in (settings.landing, settings.lakehouse):
        shutil.rmtree(folder, ignore_errors=True)
    timer = _Timer(progress)
    with timer.step("simulate"):
        simulation = simulate(settings.landing, people=people, seed=seed, days=days)
    with timer.step("ingest (bronze)"):
        ingested = ingest_batch(spark, settings)
    with timer.step("standardize (silver)"):
        standardized = standardize(spark, settings)
    with timer.step("identity: train"):
        train_model(spark, settings)
    with timer.step("identity: resolve"):
        resolved = resolve_identities(spark, settings)
    with timer.step("identity: evaluate"):
        evaluation = evaluate(spark, settings, simulation.truth_path)
    with timer.step("curate (gold)"):
        curated = curate(spark, settings)
    with timer.step("segments"):
        segments = build_segments(spark, settings)
    with timer.step("publish (serving store)"):
        published = publish(spark, settings)
    summary = _summarize(people, ingested, standardized, resolved, evaluation, timer, settings)
    summary.curated_rows = curated.rows
    summary.next_best_actions = curated.next_best_actions
    summary.segments = {name: asdict(c) for name, c in segments.segments.items()}
    summary.serving = {"store": published.store, "rows": published.rows}
    summary.report_path = str(write_summary(summary, settings))
    return summary


def _summarize(
    people: int,
    ingested: IngestSummary,
    standardized: StandardizeSummary,
    resolved: Any,
    evaluation: Any,
    timer: _Timer,
    settings: Settings,
) -> DemoSummary:
    metrics = evaluation.to_dict()
    return DemoSummary(
        people=people,
        records_per_source=dict(sorted(standardized.customer_records.items())),
        bronze_rows_per_source={n: s.bronze_rows for n, s in sorted(ingested.sources.items())},
        quarantined_rows=sum(s.quarantined_rows for s in ingested.sources.values()),
        interactions=standardized.total_interactions,
        customers_found=resolved.customer_count,
        true_people=metrics["persons"],
        pairwise={k: metrics[f"pairwise_{k}"] for k in ("precision", "recall", "f1")},
        bcubed={k: metrics[f"bcubed_{k}"] for k in ("precision", "recall", "f1")},
        seconds_per_step=timer.seconds,
        tables={t.qualified_name: t.path(settings) for t in ALL_TABLES},
    )


def write_summary(summary: DemoSummary, settings: Settings) -> Path:
    path = settings.reports_dir / "demo_summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary.to_dict(), indent=2, sort_keys=True))
    return path
