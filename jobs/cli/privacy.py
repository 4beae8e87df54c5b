"""``omnicdp privacy``: request, erase and vacuum (see :mod:`jobs.privacy`)."""

from __future__ import annotations

import argparse

from jobs.cli.command import Commands, Context, add_command, add_group


def cmd_request(ctx: Context, args: argparse.Namespace) -> int:
    from jobs.privacy import IdentifierKind

    kind, value = next((k, v) for k in IdentifierKind if (v := getattr(args, str(k))) is not None)
    recorded = ctx.run("request_erasure", kind=kind, value=value, request_id=args.request_id)
    request = f"erasure request {recorded.request_id}"
    pending = "`omnicdp privacy erase` carries it out"
    if recorded.new:
        ctx.out.print(f"{request} recorded; {pending}")
    elif recorded.completed_at is None:
        ctx.out.print(f"{request} is already recorded and pending; {pending}")
    else:
        ctx.out.print(
            f"{request} is already recorded and was carried out "
            f"{recorded.completed_at:%Y-%m-%d %H:%M:%S}"
        )
    return 0


def cmd_erase(ctx: Context, args: argparse.Namespace) -> int:
    summary = ctx.run("erase", progress=ctx.progress)
    ctx.out.print(
        f"erased {summary.customers} customer(s) for {summary.requests} request(s) "
        f"in {summary.seconds} s"
    )
    for table, rows in summary.rows_deleted.items():
        ctx.out.print(f"  {table:<28} {rows:>10,} rows")
    return 0


def cmd_vacuum(ctx: Context, args: argparse.Namespace) -> int:
    vacuumed = ctx.run("vacuum")
    ctx.out.print(
        f"vacuumed {len(vacuumed)} tables: files older than "
        f"{ctx.settings.erasure_retention_hours:g} h removed"
    )
    return 0


def add_commands(commands: Commands) -> None:
    """``privacy request|erase|vacuum``."""
    privacy = add_group(commands, "privacy", "erase customers on request (right to erasure)")
    request = add_command(
        privacy, "request", cmd_request, "record an erasure request (only a hash is stored)"
    )
    who = request.add_mutually_exclusive_group(required=True)
    who.add_argument("--email", help="an email any of the customer's records carries")
    who.add_argument("--phone", help="a phone number, as typed (normalized to E.164)")
    who.add_argument("--customer-id", dest="customer_id", help="a current or retired customer id")
    request.add_argument("--request-id", help="your ticket id (default: a generated one)")
    add_command(privacy, "erase", cmd_erase, "carry out every pending erasure request")
    add_command(
        privacy,
        "vacuum",
        cmd_vacuum,
        "delete Delta files older than OMNICDP_ERASURE_RETENTION_HOURS from every table",
    )
