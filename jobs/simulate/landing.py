"""Landing files in the sources' contracts, the ground truth file, and the run summary."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from jobs.simulate.people import Person
from jobs.simulate.places import Store
from schemas.sources import POS, SOURCES, SourceSpec, normalize_source_key

TRUTH_COLUMNS = ("source", "source_key", "person_id")


@dataclass
class SourceCounts:
    files: int = 0
    lines: int = 0  # data lines, CSV header rows not counted
    records: int = 0  # distinct identity records (rows of the truth file)


@dataclass
class SimulationSummary:
    """What was written, for the CLI to show and for tests and benchmarks to check."""

    out: Path
    truth_path: Path
    seed: int
    days: int
    people: int
    identified_people: int  # people with at least one identity record in the files
    households: int  # households of two or more
    complaint_journeys: int
    failed_return_journeys: int
    sources: dict[str, SourceCounts]

    @property
    def total_lines(self) -> int:
        return sum(counts.lines for counts in self.sources.values())

    @property
    def total_records(self) -> int:
        return sum(counts.records for counts in self.sources.values())


def day_file(source: str, day: date, store_id: str = "") -> str:
    """File name of one export; POS exports one file per store per day."""
    stamp = day.strftime("%Y%m%d")
    if source == POS.name:
        return f"pos_{store_id}_{stamp}.csv"
    stem = {"web": "web_events", "app": "app_events", "call_center": "calls", "social": "social"}
    return f"{stem[source]}_{stamp}.{SOURCES[source].file_format}"


def json_row(spec: SourceSpec, **values: object) -> dict[str, object]:
    """A JSON line in layout order: every top-level leaf (null when absent), nested records only
    when the event has them."""
    row: dict[str, object] = {}
    for name, kind in spec.layout.items():
        if kind is None:
            row[name] = values.pop(name, None)
        elif name in values:
            row[name] = values.pop(name)
    if values:
        raise KeyError(f"not in the {spec.name} layout: {sorted(values)}")
    return row


class Landing:
    """Buffers one day of rows per file, writes them time-ordered, and records the truth."""

    def __init__(self, out: Path, stores: Sequence[Store]) -> None:
        self.out = out
        self.stores = stores
        self.counts = {name: SourceCounts() for name in SOURCES}
        self.truth: dict[tuple[str, str], str] = {}
        self._rows: dict[str, list[tuple[datetime, int, dict[str, object]]]] = defaultdict(list)
        self._seq = 0

    def add(
        self,
        source: str,
        file_name: str,
        at_utc: datetime,
        row: dict[str, object],
        owner: Person | None,
    ) -> None:
        """Queue a row; ``owner`` is the person behind its identity key (None: anonymous)."""
        self._seq += 1
        self._rows[file_name].append((at_utc, self._seq, row))
        if owner is not None:
            self._remember(source, str(row[SOURCES[source].identity_key]), owner)

    def _remember(self, source: str, raw_key: str, owner: Person) -> None:
        key = (source, normalize_source_key(source, raw_key))
        known = self.truth.setdefault(key, owner.person_id)
        if known != owner.person_id:
            raise RuntimeError(f"simulator bug: one {source} identity key for two people")

    def write_day(self, day: date) -> int:
        """Write every file of ``day`` (header-only or empty when nothing happened); lines."""
        written = 0
        for source in SOURCES:
            if source == POS.name:
                names = [day_file(source, day, store.store_id) for store in self.stores]
            else:
                names = [day_file(source, day)]
            folder = self.out / source / day.isoformat()
            folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                rows = [row for _, _, row in sorted(self._rows.pop(name, []), key=_order)]
                self._write(SOURCES[source], folder / name, rows)
                self.counts[source].files += 1
                self.counts[source].lines += len(rows)
                written += len(rows)
        return written

    @staticmethod
    def _write(spec: SourceSpec, path: Path, rows: list[dict[str, object]]) -> None:
        with path.open("w", encoding="utf-8", newline="") as handle:
            if spec.file_format == "csv":
                writer = csv.DictWriter(handle, fieldnames=spec.columns, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
            else:
                for row in rows:
                    handle.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
                    handle.write("\n")

    def write_truth(self) -> Path:
        path = self.out / "_truth" / "identity_truth.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(TRUTH_COLUMNS)
            for (source, key), person_id in sorted(self.truth.items()):
                writer.writerow((source, key, person_id))
                self.counts[source].records += 1
        return path


def _order(entry: tuple[datetime, int, dict[str, object]]) -> tuple[datetime, int]:
    return entry[0], entry[1]
