"""``omnicdp segment``: build, list and export marketers' segments (see :mod:`jobs.segments`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table as RichTable

from jobs.cli.command import Commands, Context, add_command, add_group


def cmd_build(ctx: Context, args: argparse.Namespace) -> int:
    summary = ctx.run("build_segments")
    table = RichTable(
        "segment", "consent", "matched", "no consent", "members", title=f"as of {summary.as_of}"
    )
    for name, c in summary.segments.items():
        table.add_row(name, c.consent, str(c.matched), str(c.excluded_no_consent), str(c.members))
    ctx.out.print(table)
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    listing = ctx.run("list_segments")
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
    ctx.out.print(table)
    if listing.overlaps:
        overlaps = RichTable("segment", "segment", "shared members", title="overlaps")
        for (a, b), shared in sorted(listing.overlaps.items()):
            overlaps.add_row(a, b, str(shared))
        ctx.out.print(overlaps)
    return 0


def cmd_export(ctx: Context, args: argparse.Namespace) -> int:
    summary = ctx.run("export_segment", name=args.name, fmt=args.format, output=args.output)
    ctx.out.print(
        f"{summary.exported} of {summary.members} members of {summary.segment} written to "
        f"{summary.path} (left out: {summary.dropped_no_consent} consent withdrawn, "
        f"{summary.dropped_no_identifier} without email or phone)"
    )
    return 0


def add_commands(commands: Commands) -> None:
    """``segment build|list|export``."""
    segment = add_group(commands, "segment", "build, list and export marketers' segments")
    add_command(segment, "build", cmd_build, "rebuild gold.segment_membership")
    add_command(segment, "list", cmd_list, "segments with sizes, exclusions and overlaps")
    export = add_command(segment, "export", cmd_export, "write one segment's hashed ids")
    export.add_argument("name", help="segment name (see `omnicdp segment list`)")
    export.add_argument("--format", choices=("csv", "parquet"), default="csv", help="(csv)")
    export.add_argument("--output", type=Path, required=True, help="file to write")
