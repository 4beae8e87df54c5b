"""The privacy commands of ``omnicdp``: request, erase and vacuum (see :mod:`jobs.privacy`).

``jobs/cli.py`` wires them in with ``add_commands``, like the serving commands.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def cmd_request(args: argparse.Namespace) -> int:
    from jobs import cli
    from jobs.privacy import IdentifierKind, request_erasure

    kind, value = next((k, v) for k in IdentifierKind if (v := getattr(args, str(k))) is not None)
    settings = cli._settings(args)
    request_id = request_erasure(cli._spark(settings), settings, kind, value, args.request_id)
    cli.out.print(f"erasure request {request_id} recorded; `omnicdp privacy erase` carries it out")
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from jobs import cli
    from jobs.privacy import erase

    settings = cli._settings(args)
    summary = erase(cli._spark(settings), settings, progress=cli._progress)
    cli.out.print(
        f"erased {summary.customers} customer(s) for {summary.requests} request(s) "
        f"in {summary.seconds} s"
    )
    for table, rows in summary.rows_deleted.items():
        cli.out.print(f"  {table:<28} {rows:>10,} rows")
    return 0


def cmd_vacuum(args: argparse.Namespace) -> int:
    from jobs import cli
    from jobs.privacy import vacuum

    settings = cli._settings(args)
    vacuumed = vacuum(cli._spark(settings), settings)
    cli.out.print(
        f"vacuumed {len(vacuumed)} tables: files older than "
        f"{settings.erasure_retention_hours:g} h removed"
    )
    return 0


def add_commands(commands: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``privacy request|erase|vacuum`` to the ``omnicdp`` sub-command parser."""
    help_ = "erase customers on request (right to erasure)"
    privacy = commands.add_parser("privacy", help=help_, description=help_)
    privacy_cmds = privacy.add_subparsers(dest="privacy_command", required=True, metavar="COMMAND")
    request = add(
        "request", cmd_request, "record an erasure request (only a hash is stored)", privacy_cmds
    )
    who = request.add_mutually_exclusive_group(required=True)
    who.add_argument("--email", help="an email any of the customer's records carries")
    who.add_argument("--phone", help="a phone number, as typed (normalized to E.164)")
    who.add_argument("--customer-id", dest="customer_id", help="a current or retired customer id")
    request.add_argument("--request-id", help="your ticket id (default: a generated one)")
    add("erase", cmd_erase, "carry out every pending erasure request", privacy_cmds)
    add(
        "vacuum",
        cmd_vacuum,
        "delete Delta files older than OMNICDP_ERASURE_RETENTION_HOURS from every table",
        privacy_cmds,
    )
