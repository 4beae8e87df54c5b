"""End to end: ``omnicdp demo`` as a user runs it, on a few hundred simulated people.

One run of the whole pipeline (simulate -> bronze -> silver -> identity -> curated gold ->
segments) through the command line, then checks of what the user is promised: the printed
summary, identity quality against the simulator's truth, accounting for every input line, and
tables that a Delta reader other than Spark (delta-rs) can open, and a curate killed with
SIGKILL in the middle of writing a table, which must leave that table's previous version and be
completed by the next run.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable as RustDeltaTable
from deltalake import QueryBuilder
from pyspark.sql import SparkSession

from jobs.cli import main
from schemas.catalog import (
    ALL_TABLES,
    GOLD_AGENT_CONTEXT,
    GOLD_CUSTOMER_360,
    GOLD_JOURNEY_METRICS,
    INGESTED_FILES,
    SILVER_CUSTOMER_RECORDS,
)
from schemas.settings import Settings

pytestmark = pytest.mark.e2e

PEOPLE = 400
# Measured 0.9555 pairwise (precision 1.000, recall 0.915) on these 400 people with the
# clustering guard; the bar for the demo is 0.95.
MIN_PAIRWISE_F1 = 0.95
# Tables the demo has no data for yet (merges and splits need a second resolution run).
NOT_IN_DEMO: set[str] = set()


@dataclass(frozen=True)
class DemoRun:
    exit_code: int
    stdout: str
    summary: dict[str, Any]
    settings: Settings


@pytest.fixture(scope="module")
def demo_run(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    workdir = tmp_path_factory.mktemp("demo")
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        code = main(["demo", "--people", str(PEOPLE), "--seed", "11", "--workdir", str(workdir)])
    settings = Settings(lakehouse=workdir / "lakehouse", landing=workdir / "landing")
    report = settings.reports_dir / "demo_summary.json"
    summary = json.loads(report.read_text()) if report.exists() else {}
    return DemoRun(code, stdout.getvalue(), summary, settings)


def test_demo_succeeds_and_prints_its_summary(demo_run: DemoRun) -> None:
    assert demo_run.exit_code == 0, demo_run.stdout[-3000:]
    for heading in (
        "records per source",
        "identity vs. truth",
        "curated gold",
        "segments",
        "time per step",
        "tables:",
    ):
        assert heading in demo_run.stdout
    assert f"summary written to {demo_run.settings.reports_dir / 'demo_summary.json'}" in (
        demo_run.stdout.replace("\n", "")
    )


def test_identity_quality_against_the_truth_file(demo_run: DemoRun) -> None:
    pairwise, bcubed = demo_run.summary["pairwise"], demo_run.summary["bcubed"]
    assert pairwise["precision"] >= 0.98, pairwise
    assert pairwise["f1"] >= MIN_PAIRWISE_F1, pairwise
    assert bcubed["f1"] >= MIN_PAIRWISE_F1, bcubed


def test_every_input_line_is_in_bronze_or_quarantine(
    spark: SparkSession, demo_run: DemoRun
) -> None:
    files = spark.read.format("delta").load(INGESTED_FILES.path(demo_run.settings))
    unreconciled = files.where("lines - header_lines != bronze_rows + quarantined_rows")
    assert files.count() > 0
    assert unreconciled.count() == 0
    summary = demo_run.summary
    assert sum(summary["bronze_rows_per_source"].values()) > 0
    assert set(summary["records_per_source"]) == {"app", "call_center", "pos", "social", "web"}


def test_curated_gold_segments_and_serving_store_are_built(demo_run: DemoRun) -> None:
    rows = demo_run.summary["curated_rows"]
    customers = demo_run.summary["customers_found"]
    assert rows["gold.agent_context"] == rows["gold.customer_360"] > 0.5 * customers
    assert rows["gold.customer_timeline"] > rows["gold.customer_360"]
    assert sum(demo_run.summary["next_best_actions"].values()) == rows["gold.agent_context"]
    assert demo_run.summary["serving"]["rows"]["customer"] == customers
    segments = demo_run.summary["segments"]
    assert sum(s["members"] for s in segments.values()) > 0
    assert sum(s["excluded_no_consent"] for s in segments.values()) > 0
    for name, s in segments.items():
        assert s["members"] + s["excluded_no_consent"] == s["matched"], name


def rust_row_count(table: RustDeltaTable) -> int:
    """The rows delta-rs reads in ``table``, through its query engine: the per-customer gold
    tables have deletion vectors (``schemas.catalog``), which its PyArrow dataset refuses."""
    counted = QueryBuilder().register("t", table).execute("SELECT count(*) AS n FROM t")
    return pa.table(counted.read_all()).column("n")[0].as_py()


def test_every_table_opens_in_another_delta_reader(spark: SparkSession, demo_run: DemoRun) -> None:
    """delta-rs (no JVM) reads each table Spark wrote, with the same row count."""
    counts = {}
    for table in ALL_TABLES:
        path = table.path(demo_run.settings)
        if not Path(path).exists():
            assert table.qualified_name in NOT_IN_DEMO, f"{table.qualified_name}: no table"
            continue
        rust_rows = rust_row_count(RustDeltaTable(path))
        spark_rows = spark.read.format("delta").load(path).count()
        counts[table.qualified_name] = (rust_rows, spark_rows)
    assert all(r == s for r, s in counts.values()), counts
    assert sum(r for r, _ in counts.values()) > 0


def test_segment_export_of_demo_data_carries_no_raw_identifier(
    spark: SparkSession, demo_run: DemoRun, tmp_path: Path
) -> None:
    """Every segment exported from the CLI, grepped for every email and phone in silver."""
    lakehouse = ["--lakehouse", str(demo_run.settings.lakehouse)]
    records = spark.read.format("delta").load(SILVER_CUSTOMER_RECORDS.path(demo_run.settings))
    raw = [
        value.lower().encode()
        for row in records.select("email", "phone").collect()  # a few hundred people
        for value in (row.email, row.phone, row.phone and row.phone.lstrip("+"))
        if value
    ]
    exported = 0
    for name, counts in demo_run.summary["segments"].items():
        output = tmp_path / f"{name}.csv"
        with redirect_stdout(io.StringIO()):
            assert main([*lakehouse, "segment", "export", name, "--output", str(output)]) == 0
        content = output.read_bytes().lower()
        assert content.count(b"\n") - 1 <= counts["members"]
        exported += content.count(b"\n") - 1
        assert not [value for value in raw if value in content], f"raw identifier in {name}"
    assert exported > 0


# --- a step killed mid-write (last: it rewrites the curated tables) -------------------------

CURATED_IN_WRITE_ORDER = (GOLD_CUSTOMER_360, GOLD_AGENT_CONTEXT, GOLD_JOURNEY_METRICS)


def commits(path: str) -> int:
    return len(list(Path(path, "_delta_log").glob("*.json")))


def kill_while_writing(process: subprocess.Popen, settings: Settings) -> str | None:
    """SIGKILL ``process`` as soon as a curated table has a data file newer than its last
    commit, that is in the middle of writing it; the table's name, or None if it finished."""
    baseline = {t: commits(t.path(settings)) for t in CURATED_IN_WRITE_ORDER}
    started = time.time()
    while process.poll() is None:
        for table in CURATED_IN_WRITE_ORDER:
            path = Path(table.path(settings))
            fresh = [p for p in path.glob("*.parquet") if p.stat().st_mtime > started]
            if fresh and commits(str(path)) == baseline[table]:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return table.qualified_name
        time.sleep(0.02)
    return None


def test_curate_killed_mid_write_leaves_the_last_version_and_a_rerun_completes_it(
    spark: SparkSession, demo_run: DemoRun
) -> None:
    settings = demo_run.settings
    before = {t: RustDeltaTable(t.path(settings)) for t in CURATED_IN_WRITE_ORDER}
    rows = {t: rust_row_count(d) for t, d in before.items()}
    env = {**os.environ, "OMNICDP_SPARK_MASTER": "local[2]", "OMNICDP_SHUFFLE_PARTITIONS": "4"}
    lakehouse = ["--lakehouse", str(settings.lakehouse), "--landing", str(settings.landing)]
    process = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", *lakehouse, "curate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    killed_in = kill_while_writing(process, settings)

    assert killed_in is not None, "curate finished before it could be killed mid-write"
    for table, delta in before.items():
        after = RustDeltaTable(table.path(settings))
        if table.qualified_name == killed_in:
            assert after.version() == delta.version(), "a half-written version was committed"
        assert rust_row_count(after) == rows[table], table.qualified_name
    with redirect_stdout(io.StringIO()):
        assert main([*lakehouse, "curate"]) == 0
    for table, delta in before.items():
        after = RustDeltaTable(table.path(settings))
        assert after.version() > delta.version(), table.qualified_name
        assert rust_row_count(after) == rows[table], table.qualified_name
