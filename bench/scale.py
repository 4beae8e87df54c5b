"""Scale: the nightly batch pipeline at 10,000 and 100,000 people, and plain Splink beside it.

How omnicdp's time, memory and identity quality grow with the population, and what its identity
stage costs over a plain Splink dedupe of the same records. Sizes come from ``--people``
(default 10,000 and 100,000 people, run smallest first). For each size:

1. :func:`jobs.simulate.simulate` writes seven days of landing files for the people (seed 7)
   into a fresh temporary folder, with the truth: who each identity record belongs to. It is
   timed apart (``simulate_s``): it stands in for the source systems, not for the pipeline.
2. The batch pipeline runs in-process as ``tests/test_microbatch.py`` builds its lakehouse:
   ``ingest_batch``, ``standardize``, ``train_model``, ``resolve_identities``, ``curate``,
   ``build_segments``, ``publish``, each timed (``seconds_per_step``); ``end_to_end_s`` is
   their sum and ``identity_s`` training plus resolving. Spark runs ``local[*]`` with the
   default settings otherwise, in one SparkSession for every size: the first size also warms
   the JVM (``first_in_session``). The identity engine is whatever the settings resolve
   (``engine``; DuckDB on a local master).
3. Plain Splink 5 on DuckDB dedupes the same silver.customer_records, as a DuckDB user would
   with Splink's library comparisons and no omnicdp code: the compared columns come to the
   driver through Arrow, then a probability from deterministic rules, u by random sampling,
   EM on ``dob`` and on ``email``, prediction at 0.9 and connected components at 0.9. All of
   it, from reading the table to the clusters, is ``plain_splink_s``; the split per phase is
   reported too. ``identity_vs_plain_splink`` is ``identity_s / plain_splink_s``: omnicdp's
   identity stage also builds features, guards clusters against over-merging, keeps customer
   ids stable, chooses golden-record attributes and writes the gold tables to Delta, which
   plain Splink, ending at clusters in memory, does not.
4. Quality: pairwise and B-cubed precision / recall / F1 of gold.identity_xref and of the plain
   Splink clusters against the simulator's truth, both by
   :func:`identity.evaluate.score_assignment` (``quality``, ``plain_splink_quality``).
5. Peak memory (``peak_rss_mb``): ``driver`` is this Python process's maximum RSS
   (``getrusage``), over its whole life, which cannot be reset: sizes run smallest first, so
   it is the peak of the largest run so far. DuckDB, for omnicdp's engine and for plain
   Splink, runs inside this process; ``driver_after_pipeline`` is the same before plain Splink
   started. ``jvm`` is the Spark JVM's ``VmHWM``, reset at the start of each size
   (``/proc/<pid>/clear_refs``; ``jvm_reset_per_size`` says whether that worked).

The benchmark itself collects no table to the driver except plain Splink's input, which is the
point: that is what a DuckDB user does (omnicdp's DuckDB engine brings its features over Arrow
the same way, as in every run). Otherwise only counts and aggregates come back. Logs and
results hold counts and timings only, never a name, email or phone.

Each size's run is appended to ``runs`` in ``bench/results/scale.json`` (``--results``;
earlier runs are kept) as soon as it finishes, with the machine (cores, memory, versions, load
average before and after: the cores may be shared with other jobs, and numbers from a busy
machine are pessimistic). ``growth`` is then recomputed from all runs: between consecutive
sizes of one engine (its latest run per size), log(t2/t1) / log(n2/n1) with n the source
records, for ``end_to_end_s``, ``identity_s`` and ``plain_splink_s``: 1 is linear. Beside the
JSON, an HTML page (``scale.html``, inline SVG like every omnicdp report) charts seconds per
step against people for the latest engine, both axes logarithmic so that a slope is a growth
exponent, with plain Splink as a dashed reference line.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import math
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb
import psutil
import pyarrow as pa
import splink.comparison_library as cl
from pyspark.sql import SparkSession
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from identity import resolve_identities, train_model
from identity.evaluate import EvaluationResult, read_truth, score_assignment
from jobs.curate import curate
from jobs.ingest import ingest_batch
from jobs.lakehouse.charts import PALETTE, svg_frame, write_html_page
from jobs.lakehouse.delta import read_table
from jobs.lakehouse.session import get_spark
from jobs.publish import publish
from jobs.segments import build_segments
from jobs.simulate import simulate
from jobs.standardize import standardize
from schemas.catalog import GOLD_IDENTITY_XREF, SILVER_CUSTOMER_RECORDS
from schemas.settings import Settings

PEOPLE = (10_000, 100_000)
SEED = 7
SPARK_MASTER = "local[*]"
RESULTS = Path(__file__).parent / "results" / "scale.json"
THRESHOLD = 0.9  # plain Splink's prediction and clustering threshold
STEPS: tuple[tuple[str, Callable[[SparkSession, Settings], object]], ...] = (
    ("ingest", ingest_batch),
    ("standardize", standardize),
    ("identity_train", train_model),
    ("identity_resolve", resolve_identities),
    ("curate", curate),
    ("segments", build_segments),
    ("publish", publish),
)
IDENTITY_STEPS = ("identity_train", "identity_resolve")
# What plain Splink compares, as silver.customer_records has it.
PLAIN_COLUMNS = (
    "record_id",
    "first_name",
    "last_name",
    "dob",
    "email",
    "phone",
    "address_line",
    "postcode",
    "city",
)
QUALITY_METRICS = tuple(
    f"{kind}_{metric}"
    for kind in ("pairwise", "bcubed")
    for metric in ("precision", "recall", "f1")
)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()[:2]]


def _seconds(started: float) -> float:
    return round(time.monotonic() - started, 2)


# -- memory -----------------------------------------------------------------------------------


def _jvm_pid() -> int | None:
    """The Spark JVM: the java process among this process's descendants."""
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() == "java":
                return child.pid
        except psutil.NoSuchProcess:
            continue
    return None


def _reset_peak(pid: int | None) -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS; whether that worked."""
    if pid is None:
        return False
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_mb(pid: int | None) -> float | None:
    """The process's ``VmHWM`` in MiB, or None when it cannot be read."""
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def _driver_peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# -- the machine ------------------------------------------------------------------------------


def _total_ram_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _machine(settings: Settings) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "ram_total_mb": _total_ram_mb(),
        "python": platform.python_version(),
        "versions": {
            name: version(name) for name in ("pyspark", "delta-spark", "splink", "duckdb")
        },
        "spark_master": settings.spark_master,
        "shuffle_partitions": settings.shuffle_partitions,
        "driver_memory": settings.driver_memory,
    }


# -- omnicdp ----------------------------------------------------------------------------------


def _pipeline(spark: SparkSession, settings: Settings, label: str) -> dict[str, float]:
    """Every batch step once, in order; the seconds each took."""
    seconds: dict[str, float] = {}
    for name, step in STEPS:
        started = time.monotonic()
        step(spark, settings)
        seconds[name] = _seconds(started)
        _say(f"scale {label}: {name} {seconds[name]:.1f} s")
    return seconds


def _quality(result: EvaluationResult) -> dict[str, Any]:
    return {
        "records_evaluated": result.records_evaluated,
        "records_missing_from_assignment": result.records_missing_from_xref,
        "records_missing_from_truth": result.records_missing_from_truth,
        "persons": result.persons,
        "customers": result.customers,
        **{m: round(getattr(result, m), 4) for m in QUALITY_METRICS},
    }


# -- plain Splink -----------------------------------------------------------------------------


def _plain_settings() -> SettingsCreator:
    """Splink's library comparisons on the silver columns, five blocking rules for prediction
    (none of them on names alone, whose blocks grow with the square of a common name)."""
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="record_id",
        comparisons=[
            cl.NameComparison("first_name"),
            cl.NameComparison("last_name"),
            cl.DateOfBirthComparison("dob", input_is_string=False),
            cl.EmailComparison("email"),
            cl.ExactMatch("phone"),
            cl.JaroWinklerAtThresholds("address_line"),
            cl.ExactMatch("postcode"),
            cl.ExactMatch("city"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("email"),
            block_on("phone"),
            block_on("first_name", "dob"),
            block_on("last_name", "dob"),
            block_on("postcode", "last_name"),
        ],
    )


def _train_plain(linker: Linker) -> None:
    training = linker.training
    training.estimate_probability_two_random_records_match(
        [block_on("email"), block_on("phone"), block_on("first_name", "last_name", "dob")],
        recall=0.7,
    )
    training.estimate_u_using_random_sampling(max_pairs=1e6)
    training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    training.estimate_parameters_using_expectation_maximisation(block_on("email"))


def _plain_splink(spark: SparkSession, settings: Settings) -> tuple[dict[str, float], pa.Table]:
    """Plain Splink on DuckDB over silver.customer_records: seconds per phase and in all, and
    the clusters (``record_id, customer_id``) as Arrow."""
    phases: dict[str, float] = {}
    started = time.monotonic()
    records = read_table(spark, settings, SILVER_CUSTOMER_RECORDS).select(*PLAIN_COLUMNS)
    arrow = records.toArrow()  # the whole table to the driver: the DuckDB user's way in
    phases["read_arrow"] = _seconds(started)
    connection = duckdb.connect(":memory:")
    try:
        db_api = DuckDBAPI(connection=connection)
        linker = Linker(
            db_api.register(arrow, table_name="customer_records"),
            _plain_settings(),
            log_level=logging.WARNING,
        )
        phase = time.monotonic()
        _train_plain(linker)
        phases["train"] = _seconds(phase)
        phase = time.monotonic()
        pairs = linker.inference.predict(threshold_match_probability=THRESHOLD)
        phases["predict"] = _seconds(phase)
        phase = time.monotonic()
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pairs, THRESHOLD)
        phases["cluster"] = _seconds(phase)
        phases["total"] = _seconds(started)
        assigned = (
            clusters.as_duckdbpyrelation()
            .select("record_id, cluster_id AS customer_id")
            .to_arrow_table()
        )
    finally:
        connection.close()
    return phases, assigned


# -- one size ---------------------------------------------------------------------------------


def _run(people: int, root: Path, first_in_session: bool) -> dict[str, Any]:
    """Simulate, run the pipeline and plain Splink, score both; the run's results."""
    label = f"{people:,} people"
    settings = Settings(
        lakehouse=root / "lakehouse", landing=root / "landing", spark_master=SPARK_MASTER
    )
    load_before = _load_average()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    summary = simulate(settings.landing, people=people, seed=SEED)
    simulate_s = _seconds(started)
    _say(f"scale {label}: simulate {simulate_s:.1f} s")
    spark = get_spark(settings)  # the first size starts it; later ones checkpoint here
    jvm = _jvm_pid()
    jvm_reset = _reset_peak(jvm)
    steps = _pipeline(spark, settings, label)
    driver_after_pipeline = _driver_peak_mb()
    plain_phases, plain_assigned = _plain_splink(spark, settings)
    _say(f"scale {label}: plain Splink {plain_phases['total']:.1f} s")
    peak = {
        "driver": _driver_peak_mb(),
        "jvm": _peak_mb(jvm),
        "driver_after_pipeline": driver_after_pipeline,
        "jvm_reset_per_size": jvm_reset,
    }
    truth = read_truth(spark, summary.truth_path)
    xref = read_table(spark, settings, GOLD_IDENTITY_XREF).select("record_id", "customer_id")
    quality = _quality(score_assignment(xref, truth))
    plain_quality = _quality(score_assignment(spark.createDataFrame(plain_assigned), truth))
    identity_s = round(sum(steps[name] for name in IDENTITY_STEPS), 2)
    run = {
        "people": people,
        "source_records": read_table(spark, settings, SILVER_CUSTOMER_RECORDS).count(),
        "engine": settings.resolved_identity_engine,
        "started_at": started_at,
        "first_in_session": first_in_session,
        "end_to_end_s": round(sum(steps.values()), 2),
        "simulate_s": simulate_s,
        "seconds_per_step": steps,
        "identity_s": identity_s,
        "plain_splink_s": plain_phases["total"],
        "plain_splink_seconds_per_phase": plain_phases,
        "identity_vs_plain_splink": round(identity_s / plain_phases["total"], 2),
        "peak_rss_mb": peak,
        "quality": quality,
        "plain_splink_quality": plain_quality,
        "machine": {
            **_machine(settings),
            "load_average_1m_5m": {"before": load_before, "after": _load_average()},
        },
    }
    spark.catalog.clearCache()
    _say(
        f"scale {label}: {run['source_records']} records, end to end {run['end_to_end_s']:.1f} s, "
        f"identity {identity_s:.1f} s = {run['identity_vs_plain_splink']}x plain Splink; "
        f"pairwise F1 {quality['pairwise_f1']} (plain {plain_quality['pairwise_f1']})"
    )
    return run


# -- results ----------------------------------------------------------------------------------


def _latest_per_size(runs: list[dict[str, Any]], engine: str) -> list[dict[str, Any]]:
    """The latest run of each size on ``engine``, smallest size first."""
    latest = {run["people"]: run for run in runs if run.get("engine") == engine}
    return [latest[people] for people in sorted(latest)]


def _exponent(t1: float, t2: float, n1: float, n2: float) -> float | None:
    if min(t1, t2) <= 0 or n1 <= 0 or n2 <= 0 or n1 == n2:
        return None
    return round(math.log(t2 / t1) / math.log(n2 / n1), 3)


def _growth(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Growth exponents between consecutive sizes, per engine (module doc)."""
    growth: dict[str, Any] = {
        "method": "log(t2/t1) / log(n2/n1) between consecutive sizes, n = source_records, "
        "over the latest run of each size per engine; 1 is linear, 2 quadratic",
    }
    for engine in sorted({run["engine"] for run in runs}):
        sized = _latest_per_size(runs, engine)
        growth[engine] = [
            {
                "from_people": a["people"],
                "to_people": b["people"],
                "from_records": a["source_records"],
                "to_records": b["source_records"],
                **{
                    key: _exponent(a[key], b[key], a["source_records"], b["source_records"])
                    for key in ("end_to_end_s", "identity_s", "plain_splink_s")
                },
            }
            for a, b in pairwise(sized)
        ]
    return growth


def _write_json(path: Path, content: dict[str, Any]) -> None:
    """Write atomically: a run stopped half-way leaves the earlier results whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(partial, path)


def _record(path: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Append ``run`` to the results file's runs, recompute the growth; the whole content."""
    content: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    content["benchmark"] = (
        "omnicdp nightly batch pipeline by population size, local[*], one SparkSession; "
        "plain Splink 5 on DuckDB over the same silver records"
    )
    content["runs"] = [*content.get("runs", []), run]
    content["growth"] = _growth(content["runs"])
    _write_json(path, content)
    return content


# -- the chart --------------------------------------------------------------------------------


def _log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks spanning ``low`` to ``high``; decades only when they would be crowded."""
    steps = [m * 10.0**e for e in range(-3, 8) for m in (1, 2, 5)]
    first = max((s for s in steps if s <= low), default=steps[0])
    last = min((s for s in steps if s >= high), default=steps[-1])
    ticks = [s for s in steps if first <= s <= last]
    if len(ticks) > 8:
        ticks = [s for s in ticks if math.log10(s).is_integer()] or [first, last]
    return ticks


def _log_chart(
    title: str,
    xs: list[int],
    series: dict[str, list[float | None]],
    dashed: frozenset[str] = frozenset(),
) -> str:
    """SVG lines of ``series`` over ``xs``, both axes logarithmic; values <= 0 are gaps. The
    ``dashed`` series are grey and dashed: references, not parts of the whole."""
    width, height, left, right, top, bottom = 640, 320, 56, 150, 28, 40
    values = [v for vs in series.values() for v in vs if v is not None and v > 0]
    y_ticks = _log_ticks(min(values, default=1.0), max(values, default=10.0))
    y_low, y_high = math.log10(y_ticks[0]), math.log10(y_ticks[-1])
    x_low, x_high = math.log10(min(xs, default=1)), math.log10(max(xs, default=10))

    def x(people: int) -> float:
        span = (x_high - x_low) or 1.0
        offset = (math.log10(people) - x_low) / span if x_high > x_low else 0.5
        return left + offset * (width - left - right)

    def y(seconds: float) -> float:
        span = (y_high - y_low) or 1.0
        return height - bottom - (math.log10(seconds) - y_low) / span * (height - top - bottom)

    parts = [
        *svg_frame(title, width, height, left, right, top, bottom),
        f'<text x="{(left + width - right) / 2}" y="{height - 4}" font-size="11" '
        'text-anchor="middle">people (log scale)</text>',
        f'<text x="12" y="{(top + height - bottom) / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {(top + height - bottom) / 2})">seconds (log scale)</text>',
    ]
    for tick in y_ticks:
        parts += [
            f'<line x1="{left}" y1="{y(tick):.1f}" x2="{width - right}" y2="{y(tick):.1f}" '
            'stroke="#eee"/>',
            f'<text x="{left - 4}" y="{y(tick) + 3:.1f}" font-size="10" '
            f'text-anchor="end">{tick:g}</text>',
        ]
    for people in xs:
        parts.append(
            f'<text x="{x(people):.1f}" y="{height - bottom + 14}" font-size="10" '
            f'text-anchor="middle">{people:,}</text>'
        )
    for n, (name, vs) in enumerate(series.items()):
        colour = "#555" if name in dashed else PALETTE[n % len(PALETTE)]
        dash = ' stroke-dasharray="6 4"' if name in dashed else ""
        points = [(x(p), y(v)) for p, v in zip(xs, vs, strict=True) if v is not None and v > 0]
        if len(points) > 1:
            line = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{line}"/>'
            )
        parts += [
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>' for px, py in points
        ]
        legend_y = top + 14 * n + 8
        parts += [
            f'<rect x="{width - right + 10}" y="{legend_y - 8}" width="10" height="10" '
            f'fill="{colour}"/>',
            f'<text x="{width - right + 24}" y="{legend_y + 1}" font-size="11">'
            f"{html.escape(name)}</text>",
        ]
    parts.append("</svg>")
    return "".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _write_chart(path: Path, content: dict[str, Any]) -> None:
    """The page beside the JSON: seconds per step by size for the latest run's engine."""
    engine = content["runs"][-1]["engine"]
    sized = _latest_per_size(content["runs"], engine)
    xs = [run["people"] for run in sized]
    steps = [name for name, _ in STEPS]
    series = {name: [run["seconds_per_step"].get(name) for run in sized] for name in steps}
    plain = "plain Splink (all)"
    series[plain] = [run["plain_splink_s"] for run in sized]
    chart = _log_chart(
        f"seconds per step by population, engine {engine}", xs, series, frozenset({plain})
    )
    runs = _table(
        [
            "people",
            "source records",
            "end to end s",
            "identity s",
            "plain Splink s",
            "identity / plain",
            "pairwise F1",
            "B-cubed F1",
            "plain pairwise F1",
            "plain B-cubed F1",
            "driver peak MiB",
            "JVM peak MiB",
            "started",
        ],
        [
            [
                f"{run['people']:,}",
                f"{run['source_records']:,}",
                run["end_to_end_s"],
                run["identity_s"],
                run["plain_splink_s"],
                run["identity_vs_plain_splink"],
                run["quality"]["pairwise_f1"],
                run["quality"]["bcubed_f1"],
                run["plain_splink_quality"]["pairwise_f1"],
                run["plain_splink_quality"]["bcubed_f1"],
                run["peak_rss_mb"]["driver"],
                run["peak_rss_mb"]["jvm"],
                run["started_at"],
            ]
            for run in sized
        ],
    )
    growth = _table(
        ["from people", "to people", "end to end", "identity", "plain Splink"],
        [
            [f"{g['from_people']:,}", f"{g['to_people']:,}"]
            + [g[k] for k in ("end_to_end_s", "identity_s", "plain_splink_s")]
            for g in content["growth"].get(engine, [])
        ],
    )
    write_html_page(
        path,
        "Scale",
        f"The nightly batch pipeline by population size on {SPARK_MASTER}, identity engine "
        f"{engine}, the latest run of each size; plain Splink 5 on DuckDB over the same silver "
        "records for comparison. Both axes are logarithmic: a line's slope is its growth "
        "exponent.",
        f"{chart}<h2>Runs</h2>{runs}"
        f"<h2>Growth exponents (vs source records; 1 is linear)</h2>{growth}",
    )


# -- entry points -----------------------------------------------------------------------------


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--people",
        type=int,
        nargs="+",
        default=list(PEOPLE),
        help="population sizes to run, smallest first (default: %(default)s)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="results JSON to append to; the chart is written beside it (default: %(default)s)",
    )
    arguments = parser.parse_args(list(argv))
    if min(arguments.people) < 1:
        parser.error("--people must be at least 1")
    return arguments


def main(argv: Sequence[str] = ()) -> None:
    """Run every size (``python -m bench scale`` runs the defaults)."""
    arguments = _arguments(argv)
    results: Path = arguments.results
    try:
        for n, people in enumerate(sorted(set(arguments.people))):
            with tempfile.TemporaryDirectory(prefix=f"omnicdp-bench-scale-{people}-") as tmp:
                run = _run(people, Path(tmp), first_in_session=n == 0)
            content = _record(results, run)
            _write_chart(results.with_suffix(".html"), content)
            _say(f"scale: {people:,} people recorded in {results}")
            _say(f"growth: {json.dumps(content['growth'])}")
    finally:
        spark = SparkSession.getActiveSession()
        if spark is not None:
            spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
