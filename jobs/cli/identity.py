"""``omnicdp identity``: train, resolve (the pipeline's, or a table of your own), evaluate,
explain a pair, and why a customer is who they are."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from jobs.cli.command import Commands, Context, add_command, add_group


def cmd_train(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.print(ctx.run("train_model"))
    return 0


def cmd_resolve(ctx: Context, args: argparse.Namespace) -> int:
    """The pipeline's resolution over silver, or, with ``--input``, a user's own table."""
    if args.input is not None:
        return _resolve_file(ctx, args)
    given = [option for option, dest in _RESOLVE_FILE_OPTIONS.items() if getattr(args, dest)]
    if given:
        ctx.console.print(
            f"[red]usage error:[/red] {', '.join(given)} need(s) --input FILE", soft_wrap=True
        )
        return 2
    ctx.out.print(ctx.run("resolve_identities", retrain=args.retrain))
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


def _resolve_file(ctx: Context, args: argparse.Namespace) -> int:
    """``identity resolve --input``: checks what it can before starting Spark."""
    from identity.byod import ResolveFileRequest

    required = ("--id-column", "--map", "--output")
    missing = [o for o in required if not getattr(args, _RESOLVE_FILE_OPTIONS[o])]
    if missing or args.retrain:
        problem = (
            f"--input needs {', '.join(missing)}"
            if missing
            else "--retrain is for the pipeline; --input trains unless --model is given"
        )
        ctx.console.print(f"[red]usage error:[/red] {problem}", soft_wrap=True)
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
    summary = ctx.run("resolve_file", request=request, progress=ctx.progress)
    _print_resolve_file(ctx.out, summary, with_previous=request.previous_path is not None)
    return 0


def _print_resolve_file(out: Console, summary: Any, with_previous: bool) -> None:
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


def cmd_evaluate(ctx: Context, args: argparse.Namespace) -> int:
    result = ctx.run("evaluate_identities", truth_path=args.truth)
    table = RichTable("metric", "value", title="identity vs. truth")
    for key, value in result.to_dict().items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    ctx.out.print(table)
    return 0


def cmd_explain(ctx: Context, args: argparse.Namespace) -> int:
    result = ctx.run("explain_pair", record_a=args.record_a, record_b=args.record_b)
    table = RichTable("comparison", "level", "match weight", title=f"model {result.model_version}")
    table.add_row("prior", "two random records match", f"{result.prior_match_weight:+.2f}")
    for step in result.evidence:
        table.add_row(step.comparison, step.level, f"{step.match_weight:+.2f}")
    table.add_row("total", "", f"{result.match_weight:+.2f}")
    ctx.out.print(table)
    ctx.out.print(f"match probability: {result.match_probability:.4f}")
    ctx.out.print(f"waterfall chart: {result.chart_path}")
    return 0


def cmd_why(ctx: Context, args: argparse.Namespace) -> int:
    why = ctx.run("explain_customer", customer_id=args.customer_id)
    if why.customer_id != why.asked_id:
        ctx.out.print(f"{why.asked_id} was retired; it lives on as {why.customer_id}")
    records = RichTable("record", "source", title=f"customer {why.customer_id}")
    for record_id, source in why.records:
        records.add_row(record_id, source)
    ctx.out.print(records)
    links = RichTable("record", "record", "probability", "match weights", title="holding links")
    for link in why.links:
        weights = ", ".join(f"{k} {v:+.1f}" for k, v in link.match_weights.items() if v)
        links.add_row(link.record_id_l, link.record_id_r, f"{link.match_probability:.4f}", weights)
    ctx.out.print(links)
    if why.links_total > len(why.links):
        ctx.out.print(f"({why.links_total - len(why.links)} more links not shown)")
    return 0


def add_commands(commands: Commands) -> None:
    """``identity train|resolve|evaluate|explain|why``."""
    identity = add_group(commands, "identity", "train, resolve and evaluate identities")
    add_command(identity, "train", cmd_train, "train the Splink model and save it")
    resolve = add_command(
        identity,
        "resolve",
        cmd_resolve,
        "link records into customers (gold tables), or a table of your own with --input",
    )
    resolve.add_argument("--retrain", action="store_true", help="train before resolving")
    _add_resolve_file_arguments(resolve)
    evaluate = add_command(
        identity, "evaluate", cmd_evaluate, "compare gold.identity_xref with a truth file"
    )
    evaluate.add_argument(
        "--truth", type=Path, required=True, help="CSV with source,source_key,person_id"
    )

    explain = add_command(identity, "explain", cmd_explain, "why two records are (not) linked")
    explain.add_argument("record_a", metavar="RECORD_A", help="record id, e.g. pos:9410...")
    explain.add_argument("record_b", metavar="RECORD_B", help="another record id")
    why = add_command(identity, "why", cmd_why, "the records and links that form a customer")
    why.add_argument("customer_id", metavar="CUSTOMER_ID", help="a current or retired id")


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
