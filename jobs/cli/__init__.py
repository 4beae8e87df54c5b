"""The ``omnicdp`` command: every pipeline step, callable by hand, by Airflow or by cron.

Each subcommand builds the settings (``--config``, ``OMNICDP_*``), starts Spark if the step
needs it, calls the same job function the DAGs call, and prints a short summary. Exit status
is 0 on success, 1 when a step fails, 2 on a usage error, like any Unix tool.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from rich.markup import escape

from jobs.cli import identity, pipeline, privacy, segments, serving
from jobs.cli.command import Context


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnicdp", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="YAML settings file (else OMNICDP_CONFIG)")
    parser.add_argument("--lakehouse", type=Path, help="lakehouse root (else OMNICDP_LAKEHOUSE)")
    parser.add_argument("--landing", type=Path, help="landing folder (else OMNICDP_LANDING)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step's details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pipeline.add_landing_commands(commands)  # setup, simulate, ingest, stream, ..., standardize
    identity.add_commands(commands)
    pipeline.add_curate_command(commands)
    segments.add_commands(commands)
    pipeline.add_demo_command(commands)
    serving.add_commands(commands)  # publish, serve, mcp, keys
    privacy.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx = Context.from_args(args)
    try:
        return args.func(ctx, args)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        # Not wrapped: an error names a file or column, and a path broken mid-word is no help.
        ctx.console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
        return 1
