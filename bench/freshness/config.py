"""The benchmark's parameters, where its files live, and its progress lines."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

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
CACHE = Path(__file__).parents[1] / ".cache" / f"freshness-{PEOPLE}"
RESULTS = Path(__file__).parents[1] / "results" / "freshness.json"
BENCH_TAG = "_bench_"  # in the names of the files this benchmark lands


def say(message: str) -> None:
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    print(f"[freshness {stamp}] {message}", file=sys.stderr, flush=True)


def batch_sizes() -> dict[int, int]:
    text = os.environ.get("OMNICDP_BENCH_FRESHNESS_BATCHES", "").strip()
    if not text:
        return dict(BATCHES)
    pairs = (item.split(":") for item in text.split(","))
    return {int(size): int(k) for size, k in pairs}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()[:2]]


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
