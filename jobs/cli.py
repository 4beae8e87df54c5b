"""The ``omnicdp`` command: every pipeline step, callable by hand, by Airflow or by cron.

Each subcommand builds the settings (``--config``, ``OMNICDP_*``), starts Spark if the step
needs it, calls the same job function the DAGs call, and prints a short summary. Exit status
is 0 on success, 1 when a step fails, 2 on a usage error, like any Unix tool.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from schemas.settings import Settings

console = Console(stderr=True)
out = Console()


def _settings(args: argparse.Namespace) -> Settings:
    if args.config:
        os.environ["OMNICDP_CONFIG"] = str(args.config)
    overrides = {k: v for k in ("lakehouse", "landing") if (v := getattr(args, k, None))}
    return Settings(**overrides)


def _spark(settings: Settings) -> Any:
    from jobs.lakehouse.session import get_spark

    with console.status("starting Spark"):
        return get_spark(settings)


def _progress(message: str) -> None:
    console.log(message)


# --- commands ---------------------------------------------------------------------------------


def cmd_setup(args: argparse.Namespace) -> int:
    """Fetch and cache the Delta jars, so later runs work offline."""
    from jobs.lakehouse.session import ensure_delta_jars

    settings = _settings(args)
    jars = ensure_delta_jars(settings.jars_dir)
    out.print(f"Delta jars ready in {settings.jars_dir} ({len(jars)} files)")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from jobs.simulate import simulate

    summary = simulate(
        args.out, people=args.people, seed=args.seed, days=args.days, progress=_progress
    )
    out.print(summary)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from jobs.ingest import ingest_batch
    from schemas.sources import SOURCES

    settings = _settings(args)
    summary = ingest_batch(_spark(settings), settings, tuple(args.source or SOURCES))
    _print_source_reports(f"ingest batch {summary.batch_id}", summary.sources)
    return 0 if summary.reconciled else 1


def cmd_stream(args: argparse.Namespace) -> int:
    from jobs.stream import STREAM_SOURCES, stream_ingest

    what = f"streaming {' + '.join(STREAM_SOURCES)} landing files"
    summary = _run_micro_batches(args, what, stream_ingest)
    title = (
        f"stream{' --once' if summary.once else ''}: {summary.micro_batches} micro-batch(es) "
        f"in {summary.seconds:.1f} s"
    )
    _print_source_reports(title, summary.sources)
    return 0 if summary.reconciled else 1


def cmd_microbatch(args: argparse.Namespace) -> int:
    from jobs.microbatch import run_microbatches

    what = "carrying new web and app bronze rows to the serving store"
    summary = _run_micro_batches(args, what, run_microbatches)
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
    out.print(table)
    if summary.undecided:
        out.print(
            f"{summary.undecided} new record(s) link to more than one customer: they joined the "
            "largest; the next `omnicdp identity resolve` merges the customers and records it"
        )
    return 0


def _run_micro_batches(args: argparse.Namespace, what: str, run: Callable[..., Any]) -> Any:
    """Run a micro-batch job ``--once``, or until Ctrl-C / SIGTERM (said on the console)."""
    settings = _settings(args)
    spark = _spark(settings)
    stop = threading.Event()
    if not args.once:
        console.log(
            f"{what} every {settings.stream_interval_seconds:g} s; Ctrl-C or SIGTERM stops "
            "between micro-batches"
        )
    with _stop_on_signals(stop):
        return run(spark, settings, once=args.once, progress=_progress, stop=stop)


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


def _print_source_reports(title: str, sources: dict[str, Any]) -> None:
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


def cmd_standardize(args: argparse.Namespace) -> int:
    from jobs.standardize import standardize

    settings = _settings(args)
    summary = standardize(_spark(settings), settings)
    out.print(f"customer records: {summary.customer_records}")
    out.print(f"interactions: {summary.interactions}")
    return 0


def cmd_identity_train(args: argparse.Namespace) -> int:
    from identity import train_model

    settings = _settings(args)
    out.print(train_model(_spark(settings), settings))
    return 0


def cmd_identity_resolve(args: argparse.Namespace) -> int:
    """The pipeline's resolution over silver, or, with ``--input``, a user's own table."""
    if args.input is not None:
        return _resolve_file(args)
    given = [option for option, dest in _RESOLVE_FILE_OPTIONS.items() if getattr(args, dest)]
    if given:
        console.print(
            f"[red]usage error:[/red] {', '.join(given)} need(s) --input FILE", soft_wrap=True
        )
        return 2
    from identity import resolve_identities

    settings = _settings(args)
    out.print(resolve_identities(_spark(settings), settings, retrain=args.retrain))
    return 0


# Options of `identity resolve --input` (option -> argparse dest), meaningless without it.
_RESOLVE_FILE_OPTIONS = {
    "--id-column": "id_column",
    "--map": "map",
    "--output": "output",
    "--previous": "previous",
    "--model": "model",
    "--phone-region": "phone_region",
}


def _resolve_file(args: argparse.Namespace) -> int:
    """``identity resolve --input``: checks what it can before starting Spark."""
    from identity.byod import ResolveFileRequest, resolve_file

    required = ("--id-column", "--map", "--output")
    missing = [o for o in required if not getattr(args, _RESOLVE_FILE_OPTIONS[o])]
    if missing or args.retrain:
        problem = (
            f"--input needs {', '.join(missing)}"
            if missing
            else "--retrain is for the pipeline; --input trains unless --model is given"
        )
        console.print(f"[red]usage error:[/red] {problem}", soft_wrap=True)
        return 2
    request = ResolveFileRequest.create(
        input_path=args.input,
        id_column=args.id_column,
        maps=args.map,
        output_path=args.output,
        previous_path=args.previous,
        model_path=args.model,
        phone_region=args.phone_region,
    )
    settings = _settings(args)
    summary = resolve_file(_spark(settings), settings, request, progress=_progress)
    _print_resolve_file(summary, with_previous=request.previous_path is not None)
    return 0


def _print_resolve_file(summary: Any, with_previous: bool) -> None:
    """Counts, model, timings and paths, one per line (paths are never wrapped)."""
    lines = [
        f"{summary.records} rows -> {summary.customers} customers "
        f"({summary.multi_record_customers} with several rows, largest {summary.largest_cluster})",
        f"model {summary.model_version} "
        f"({'trained, saved to' if summary.trained else 'reused from'} {summary.model_path})",
        f"seconds: training {summary.train_seconds:.1f}, resolving {summary.resolve_seconds:.1f}",
        f"written to {summary.output_path}",
    ]
    if with_previous:
        kept, retired = summary.previous_ids_kept, summary.previous_ids_retired
        lines.insert(1, f"previous ids kept {kept}, retired {retired}")
    for line in lines:
        out.print(line, soft_wrap=True)


def cmd_identity_evaluate(args: argparse.Namespace) -> int:
    from identity import evaluate

    settings = _settings(args)
    result = evaluate(_spark(settings), settings, args.truth)
    table = RichTable("metric", "value", title="identity vs. truth")
    for key, value in result.to_dict().items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    out.print(table)
    return 0


def cmd_identity_explain(args: argparse.Namespace) -> int:
    from identity.explain import explain_pair

    settings = _settings(args)
    result = explain_pair(_spark(settings), settings, args.record_a, args.record_b)
    table = RichTable("comparison", "level", "match weight", title=f"model {result.model_version}")
    table.add_row("prior", "two random records match", f"{result.prior_match_weight:+.2f}")
    for step in result.evidence:
        table.add_row(step.comparison, step.level, f"{step.match_weight:+.2f}")
    table.add_row("total", "", f"{result.match_weight:+.2f}")
    out.print(table)
    out.print(f"match probability: {result.match_probability:.4f}")
    out.print(f"waterfall chart: {result.chart_path}")
    return 0


def cmd_identity_why(args: argparse.Namespace) -> int:
    from identity.explain import customer_why

    settings = _settings(args)
    why = customer_why(_spark(settings), settings, args.customer_id)
    if why.customer_id != why.asked_id:
        out.print(f"{why.asked_id} was retired; it lives on as {why.customer_id}")
    records = RichTable("record", "source", title=f"customer {why.customer_id}")
    for record_id, source in why.records:
        records.add_row(record_id, source)
    out.print(records)
    links = RichTable("record", "record", "probability", "match weights", title="holding links")
    for link in why.links:
        weights = ", ".join(f"{k} {v:+.1f}" for k, v in link.match_weights.items() if v)
        links.add_row(link.record_id_l, link.record_id_r, f"{link.match_probability:.4f}", weights)
    out.print(links)
    if why.links_total > len(why.links):
        out.print(f"({why.links_total - len(why.links)} more links not shown)")
    return 0


def cmd_curate(args: argparse.Namespace) -> int:
    from jobs.curate import curate

    settings = _settings(args)
    summary = curate(_spark(settings), settings)
    table = RichTable("table", "rows", title=f"curated gold as of {summary.as_of:%Y-%m-%d %H:%M}")
    for name, rows in summary.rows.items():
        table.add_row(name, str(rows))
    out.print(table)
    actions = RichTable("next best action", "customers")
    for action, count in sorted(summary.next_best_actions.items(), key=lambda kv: -kv[1]):
        actions.add_row(str(action), str(count))
    out.print(actions)
    out.print(f"journey report: {summary.report_path}")
    return 0


def cmd_segment_build(args: argparse.Namespace) -> int:
    from jobs.segments import build_segments

    settings = _settings(args)
    summary = build_segments(_spark(settings), settings)
    table = RichTable(
        "segment", "consent", "matched", "no consent", "members", title=f"as of {summary.as_of}"
    )
    for name, c in summary.segments.items():
        table.add_row(name, c.consent, str(c.matched), str(c.excluded_no_consent), str(c.members))
    out.print(table)
    return 0


def cmd_segment_list(args: argparse.Namespace) -> int:
    from jobs.segments import list_segments

    settings = _settings(args)
    listing = list_segments(_spark(settings), settings)
    table = RichTable("segment", "consent", "members", "no consent", "description")
    for info in listing.segments:
        counts = info.counts
        table.add_row(
            info.name,
            info.consent,
            str(counts.members) if counts else "not built",
            str(counts.excluded_no_consent) if counts else "",
            info.description,
        )
    out.print(table)
    if listing.overlaps:
        overlaps = RichTable("segment", "segment", "shared members", title="overlaps")
        for (a, b), shared in sorted(listing.overlaps.items()):
            overlaps.add_row(a, b, str(shared))
        out.print(overlaps)
    return 0


def cmd_segment_export(args: argparse.Namespace) -> int:
    from jobs.segments import export_segment

    settings = _settings(args)
    summary = export_segment(_spark(settings), settings, args.name, args.format, args.output)
    out.print(
        f"{summary.exported} of {summary.members} members of {summary.segment} written to "
        f"{summary.path} (left out: {summary.dropped_no_consent} consent withdrawn, "
        f"{summary.dropped_no_identifier} without email or phone)"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from jobs.demo import demo_settings, run_demo

    settings = demo_settings(args.workdir, _settings(args))
    summary = run_demo(
        _spark(settings),
        settings,
        people=args.people,
        seed=args.seed,
        days=args.days,
        progress=_progress,
    )
    _print_demo(summary)
    return 0


def _print_demo(summary: Any) -> None:
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


# --- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnicdp", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="YAML settings file (else OMNICDP_CONFIG)")
    parser.add_argument("--lakehouse", type=Path, help="lakehouse root (else OMNICDP_LAKEHOUSE)")
    parser.add_argument("--landing", type=Path, help="landing folder (else OMNICDP_LANDING)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step's details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str, parent=commands):
        sub = parent.add_parser(name, help=help_, description=help_)
        sub.set_defaults(func=func)
        return sub

    add("setup", cmd_setup, "fetch and cache the Delta jars (later runs work offline)")

    sim = add("simulate", cmd_simulate, "write realistic landing files for five sources")
    sim.add_argument("--people", type=int, default=2000, help="people to simulate (2000)")
    sim.add_argument("--seed", type=int, default=7, help="random seed; same seed, same files (7)")
    sim.add_argument("--days", type=int, default=7, help="days of activity (7)")
    sim.add_argument("--out", type=Path, required=True, help="landing folder to write")

    ingest = add("ingest", cmd_ingest, "ingest new landing files into bronze (batch)")
    ingest.add_argument(
        "--source",
        action="append",
        choices=_source_names(),
        help="only this source (repeatable); default all",
    )

    stream = add(
        "stream",
        cmd_stream,
        "stream web and app landing files into bronze (micro-batches, until Ctrl-C / SIGTERM)",
    )
    stream.add_argument(
        "--once", action="store_true", help="ingest what has landed, then stop (for schedulers)"
    )

    microbatch = add(
        "microbatch",
        cmd_microbatch,
        "carry new web and app bronze rows through silver, identity and curation to the "
        "serving store (micro-batches, until Ctrl-C / SIGTERM)",
    )
    microbatch.add_argument(
        "--once", action="store_true", help="process what bronze has gained, then stop"
    )

    add("standardize", cmd_standardize, "rebuild silver customer records and interactions")

    identity_help = "train, resolve and evaluate identities"
    identity = commands.add_parser("identity", help=identity_help, description=identity_help)
    identity_cmds = identity.add_subparsers(
        dest="identity_command", required=True, metavar="COMMAND"
    )
    add("train", cmd_identity_train, "train the Splink model and save it", identity_cmds)
    resolve = add(
        "resolve",
        cmd_identity_resolve,
        "link records into customers (gold tables), or a table of your own with --input",
        identity_cmds,
    )
    resolve.add_argument("--retrain", action="store_true", help="train before resolving")
    _add_resolve_file_arguments(resolve)
    evaluate = add(
        "evaluate",
        cmd_identity_evaluate,
        "compare gold.identity_xref with a truth file",
        identity_cmds,
    )
    evaluate.add_argument(
        "--truth", type=Path, required=True, help="CSV with source,source_key,person_id"
    )

    explain = add(
        "explain", cmd_identity_explain, "why two records are (not) linked", identity_cmds
    )
    explain.add_argument("record_a", metavar="RECORD_A", help="record id, e.g. pos:9410...")
    explain.add_argument("record_b", metavar="RECORD_B", help="another record id")
    why = add("why", cmd_identity_why, "the records and links that form a customer", identity_cmds)
    why.add_argument("customer_id", metavar="CUSTOMER_ID", help="a current or retired id")

    add("curate", cmd_curate, "rebuild customer 360, timeline, agent context, journey metrics")

    segment_help = "build, list and export marketers' segments"
    segment = commands.add_parser("segment", help=segment_help, description=segment_help)
    segment_cmds = segment.add_subparsers(dest="segment_command", required=True, metavar="COMMAND")
    add("build", cmd_segment_build, "rebuild gold.segment_membership", segment_cmds)
    add("list", cmd_segment_list, "segments with sizes, exclusions and overlaps", segment_cmds)
    export = add("export", cmd_segment_export, "write one segment's hashed ids", segment_cmds)
    export.add_argument("name", help="segment name (see `omnicdp segment list`)")
    export.add_argument("--format", choices=("csv", "parquet"), default="csv", help="(csv)")
    export.add_argument("--output", type=Path, required=True, help="file to write")

    demo = add("demo", cmd_demo, "simulate data and run the whole pipeline on it")
    demo.add_argument("--people", type=int, default=2000, help="people to simulate (2000)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (7)")
    demo.add_argument("--days", type=int, default=7, help="days of activity (7)")
    demo.add_argument(
        "--workdir",
        type=Path,
        default=Path("demo"),
        help="folder for the demo's landing files and lakehouse (./demo)",
    )
    from jobs.privacy_cli import add_commands as add_privacy_commands  # request, erase, vacuum
    from serving.cli import add_commands as add_serving_commands  # publish, serve, mcp, keys

    add_serving_commands(commands, add)
    add_privacy_commands(commands, add)
    return parser


def _add_resolve_file_arguments(resolve: argparse.ArgumentParser) -> None:
    """``identity resolve --input``: a CSV or Parquet customer table instead of silver."""
    from schemas.imported import FIELDS

    byod = resolve.add_argument_group(
        "your own data",
        "resolve a CSV or Parquet customer table instead of the lakehouse: "
        "--input FILE --id-column COL --map FIELD=COLUMN ... --output OUT.parquet",
    )
    byod.add_argument("--input", type=Path, metavar="FILE", help="CSV (with a header) or Parquet")
    byod.add_argument("--id-column", metavar="COL", help="the column with each row's unique id")
    byod.add_argument(
        "--map",
        action="extend",
        nargs="+",
        metavar="FIELD=COLUMN",
        help=f"which column holds a FIELD (repeatable); FIELD: {', '.join(FIELDS)}",
    )
    byod.add_argument(
        "--output", type=Path, metavar="OUT.parquet", help="Parquet with COL and customer_id"
    )
    byod.add_argument(
        "--previous",
        type=Path,
        metavar="PREVIOUS.parquet",
        help="an earlier output whose customer ids to keep",
    )
    byod.add_argument(
        "--model",
        type=Path,
        metavar="MODEL.json",
        help="a saved model to use instead of training (e.g. an earlier OUT.model.json)",
    )
    byod.add_argument(
        "--phone-region",
        metavar="CC",
        help="region of phone numbers without a country code, e.g. US (default: try KR, US)",
    )


def _source_names() -> list[str]:
    from schemas.sources import SOURCES

    return list(SOURCES)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        # Not wrapped: an error names a file or column, and a path broken mid-word is no help.
        console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
