"""The pipeline's commands: setup, simulate, ingest, stream, microbatch, standardize, curate, demo.

Each runs its step through the context (:meth:`jobs.cli.command.Context.run`) and prints the
summary; ``stream`` and ``microbatch`` run until Ctrl-C or SIGTERM unless ``--once``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from jobs.cli.command import Commands, Context, add_command


def cmd_setup(ctx: Context, args: argparse.Namespace) -> int:
    """Fetch and cache the Delta jars, so later runs work offline."""
    jars = ctx.run("setup")
    ctx.out.print(f"Delta jars ready in {ctx.settings.jars_dir} ({len(jars)} files)")
    return 0


def cmd_simulate(ctx: Context, args: argparse.Namespace) -> int:
    from jobs.simulate import simulate

    summary = simulate(
        args.out, people=args.people, seed=args.seed, days=args.days, progress=ctx.progress
    )
    ctx.out.print(summary)
    return 0


def cmd_ingest(ctx: Context, args: argparse.Namespace) -> int:
    from schemas.sources import SOURCES

    summary = ctx.run("ingest", sources=tuple(args.source or SOURCES))
    print_source_reports(ctx.out, f"ingest batch {summary.batch_id}", summary.sources)
    return 0 if summary.reconciled else 1


def cmd_stream(ctx: Context, args: argparse.Namespace) -> int:
    from jobs.stream import STREAM_SOURCES

    what = f"streaming {' + '.join(STREAM_SOURCES)} landing files"
    summary = _run_micro_batches(ctx, args, what, "stream_events")
    title = (
        f"stream{' --once' if summary.once else ''}: {summary.micro_batches} micro-batch(es) "
        f"in {summary.seconds:.1f} s"
    )
    print_source_reports(ctx.out, title, summary.sources)
    return 0 if summary.reconciled else 1


def cmd_microbatch(ctx: Context, args: argparse.Namespace) -> int:
    what = "carrying new web and app bronze rows to the serving store"
    summary = _run_micro_batches(ctx, args, what, "apply_increments")
    columns = {
        "bronze rows": summary.bronze_rows,
        "records": summary.records,
        "new records": summary.new_records,
        "joined": summary.joined,
        "new customers": summary.new_customers,
        "undecided": summary.undecided,
        "customers served": summary.customers,
    }
    table = RichTable(
        *columns,
        title=f"microbatch{' --once' if summary.once else ''}: {summary.micro_batches} "
        f"micro-batch(es) in {summary.seconds:.1f} s",
    )
    table.add_row(*(str(v) for v in columns.values()))
    ctx.out.print(table)
    if summary.undecided:
        ctx.out.print(
            f"{summary.undecided} new record(s) link to more than one customer: they joined the "
            "largest; the next `omnicdp identity resolve` merges the customers and records it"
        )
    return 0


def _run_micro_batches(ctx: Context, args: argparse.Namespace, what: str, step: str) -> Any:
    """Run a micro-batch step ``--once``, or until Ctrl-C / SIGTERM (said on the console).

    Spark starts first: until the stream runs, Ctrl-C interrupts as usual."""
    ctx.spark()
    stop = threading.Event()
    if not args.once:
        ctx.console.log(
            f"{what} every {ctx.settings.stream_interval_seconds:g} s; Ctrl-C or SIGTERM stops "
            "between micro-batches"
        )
    with _stop_on_signals(stop):
        return ctx.run(step, once=args.once, progress=ctx.progress, stop=stop)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn Ctrl-C and SIGTERM into ``stop.set()`` while streaming, so the stream ends between
    micro-batches instead of a KeyboardInterrupt landing in the middle of a Spark call."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed by the main thread
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda _signum, _frame: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def print_source_reports(out: Console, title: str, sources: dict[str, Any]) -> None:
    """Files, lines, bronze and quarantined rows per source, then reasons and file notes."""
    table = RichTable(
        "source", "new files", "skipped", "lines", "bronze", "quarantined", title=title
    )
    for name, s in sources.items():
        table.add_row(
            name,
            str(len(s.files)),
            str(s.skipped_files),
            str(s.input_lines),
            str(s.bronze_rows),
            str(s.quarantined_rows),
        )
    out.print(table)
    for name, s in sources.items():
        for reason, count in sorted(s.quarantine_reasons.items()):
            out.print(f"  quarantined {name}: {count} x {reason}")
        for f in s.files:
            if f.note:
                out.print(f"  note {f.source_file}: {f.note}")


def cmd_standardize(ctx: Context, args: argparse.Namespace) -> int:
    summary = ctx.run("standardize")
    ctx.out.print(f"customer records: {summary.customer_records}")
    ctx.out.print(f"interactions: {summary.interactions}")
    return 0


def cmd_curate(ctx: Context, args: argparse.Namespace) -> int:
    summary = ctx.run("curate")
    table = RichTable("table", "rows", title=f"curated gold as of {summary.as_of:%Y-%m-%d %H:%M}")
    for name, rows in summary.rows.items():
        table.add_row(name, str(rows))
    ctx.out.print(table)
    actions = RichTable("next best action", "customers")
    for action, count in sorted(summary.next_best_actions.items(), key=lambda kv: -kv[1]):
        actions.add_row(str(action), str(count))
    ctx.out.print(actions)
    ctx.out.print(f"journey report: {summary.report_path}")
    return 0


def cmd_demo(ctx: Context, args: argparse.Namespace) -> int:
    from jobs.demo import demo_settings

    ctx.settings = demo_settings(args.workdir, ctx.settings)
    summary = ctx.run(
        "demo", people=args.people, seed=args.seed, days=args.days, progress=ctx.progress
    )
    _print_demo(ctx.out, summary)
    return 0


def _print_demo(out: Console, summary: Any) -> None:
    records = RichTable("source", "bronze rows", "customer records", title="records per source")
    for source, count in summary.records_per_source.items():
        records.add_row(source, str(summary.bronze_rows_per_source.get(source, 0)), str(count))
    out.print(records)
    out.print(
        f"quarantined rows: {summary.quarantined_rows}   interactions: {summary.interactions}"
    )
    out.print(f"customers found: {summary.customers_found}   true people: {summary.true_people}")
    quality = RichTable("", "precision", "recall", "F1", title="identity vs. truth")
    for name, m in (("pairwise", summary.pairwise), ("B-cubed", summary.bcubed)):
        quality.add_row(name, *(f"{m[k]:.4f}" for k in ("precision", "recall", "f1")))
    out.print(quality)
    curated = RichTable("table", "rows", title="curated gold")
    for name, rows in summary.curated_rows.items():
        curated.add_row(name, str(rows))
    out.print(curated)
    segments = RichTable("segment", "matched", "no consent", "members", title="segments")
    for name, c in summary.segments.items():
        segments.add_row(name, str(c["matched"]), str(c["excluded_no_consent"]), str(c["members"]))
    out.print(segments)
    steps = RichTable("step", "seconds", title="time per step")
    for step, seconds in summary.seconds_per_step.items():
        steps.add_row(step, f"{seconds:.1f}")
    out.print(steps)
    out.print(
        f"serving store: {summary.serving['store']} "
        f"({summary.serving['rows'].get('customer', 0)} customers; `omnicdp serve` to query it)"
    )
    out.print("tables:")
    for name, path in summary.tables.items():
        out.print(f"  {name:<32} {path}")
    out.print(f"summary written to {summary.report_path}")


# --- parser: in the order ``omnicdp --help`` lists them, identity's commands after standardize,
# segments' after curate -------------------------------------------------------------------------


def add_landing_commands(commands: Commands) -> None:
    """setup, simulate, ingest, stream, microbatch, standardize."""
    add_command(
        commands, "setup", cmd_setup, "fetch and cache the Delta jars (later runs work offline)"
    )

    sim = add_command(
        commands, "simulate", cmd_simulate, "write realistic landing files for five sources"
    )
    sim.add_argument("--people", type=int, default=2000, help="people to simulate (2000)")
    sim.add_argument("--seed", type=int, default=7, help="random seed; same seed, same files (7)")
    sim.add_argument("--days", type=int, default=7, help="days of activity (7)")
    sim.add_argument("--out", type=Path, required=True, help="landing folder to write")

    ingest = add_command(
        commands, "ingest", cmd_ingest, "ingest new landing files into bronze (batch)"
    )
    ingest.add_argument(
        "--source",
        action="append",
        choices=_source_names(),
        help="only this source (repeatable); default all",
    )

    stream = add_command(
        commands,
        "stream",
        cmd_stream,
        "stream web and app landing files into bronze (micro-batches, until Ctrl-C / SIGTERM)",
    )
    stream.add_argument(
        "--once", action="store_true", help="ingest what has landed, then stop (for schedulers)"
    )

    microbatch = add_command(
        commands,
        "microbatch",
        cmd_microbatch,
        "carry new web and app bronze rows through silver, identity and curation to the "
        "serving store (micro-batches, until Ctrl-C / SIGTERM)",
    )
    microbatch.add_argument(
        "--once", action="store_true", help="process what bronze has gained, then stop"
    )

    add_command(
        commands, "standardize", cmd_standardize, "rebuild silver customer records and interactions"
    )


def add_curate_command(commands: Commands) -> None:
    add_command(
        commands,
        "curate",
        cmd_curate,
        "rebuild customer 360, timeline, agent context, journey metrics",
    )


def add_demo_command(commands: Commands) -> None:
    demo = add_command(commands, "demo", cmd_demo, "simulate data and run the whole pipeline on it")
    demo.add_argument("--people", type=int, default=2000, help="people to simulate (2000)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (7)")
    demo.add_argument("--days", type=int, default=7, help="days of activity (7)")
    demo.add_argument(
        "--workdir",
        type=Path,
        default=Path("demo"),
        help="folder for the demo's landing files and lakehouse (./demo)",
    )


def _source_names() -> list[str]:
    from schemas.sources import SOURCES

    return list(SOURCES)
