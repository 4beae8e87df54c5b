"""The serving commands of ``omnicdp``: publish, serve, mcp and keys.

``jobs/cli.py`` wires them in with ``add_commands``; settings and Spark start-up are its helpers,
so these commands read ``--config``, ``--lakehouse`` and ``OMNICDP_*`` like every other step.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from typing import Any

from serving.keys import Role

API_KEY_VARIABLE = "OMNICDP_API_KEY"


def cmd_publish(args: argparse.Namespace) -> int:
    from jobs import cli
    from jobs.publish import publish

    settings = cli._settings(args)
    summary = publish(cli._spark(settings), settings, progress=cli._progress)
    cli.out.print(
        f"published generation {summary.generation} to {summary.store} in {summary.seconds} s"
    )
    for table, rows in summary.rows.items():
        cli.out.print(f"  {table:<16} {rows:>12,} rows")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from jobs import cli
    from serving.api import create_app

    settings = cli._settings(args)
    logging.getLogger("omnicdp.serving.access").setLevel(logging.INFO)
    cli.console.print(f"serving on http://{args.host}:{args.port} (OpenAPI at /docs)")
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        access_log=False,  # uvicorn's would log query strings (phones, emails); ours does not
        log_level="warning",
    )
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    from jobs import cli
    from serving.store import open_store
    from serving.tools import create_mcp_server

    key = os.environ.get(API_KEY_VARIABLE)
    if not key:
        raise ValueError(f"set {API_KEY_VARIABLE} to an agent or admin key (omnicdp keys create)")
    settings = cli._settings(args)
    create_mcp_server(settings, open_store(settings.resolved_serving_url), key).run("stdio")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from jobs import cli
    from serving.keys import create_key
    from serving.store import open_store

    store = open_store(cli._settings(args).resolved_serving_url)
    new = create_key(store, Role(args.role), args.label)
    cli.console.print(f"created {new.role} key {new.key_id}; it is shown only this once:")
    print(new.key)  # alone on stdout, so KEY=$(omnicdp keys create ...) works
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from rich.table import Table as RichTable

    from jobs import cli
    from serving.store import open_store

    table = RichTable("id", "role", "label", "created", "revoked", title="API keys")
    for key in open_store(cli._settings(args).resolved_serving_url).api_keys():
        table.add_row(key.key_id, key.role, key.label or "", key.created_at, key.revoked_at or "")
    cli.out.print(table)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from jobs import cli
    from serving.store import open_store

    if not open_store(cli._settings(args).resolved_serving_url).revoke_key(args.key_id):
        raise ValueError(f"no active key with id {args.key_id}")
    cli.out.print(f"revoked key {args.key_id}")
    return 0


def add_commands(commands: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add publish, serve, mcp and keys to the ``omnicdp`` sub-command parser."""
    add("publish", cmd_publish, "publish gold to the serving store (SQLite or PostgreSQL)")

    serve = add("serve", cmd_serve, "run the agent context HTTP API")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")

    add("mcp", cmd_mcp, f"run the MCP tools on stdio (key in ${API_KEY_VARIABLE})")

    keys_help = "create, list and revoke API keys"
    keys = commands.add_parser("keys", help=keys_help, description=keys_help)
    keys_cmds = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = add("create", cmd_keys_create, "create a key and print it once", keys_cmds)
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--label", help="who or what uses the key")
    add("list", cmd_keys_list, "list keys (ids and roles, never the keys)", keys_cmds)
    revoke = add("revoke", cmd_keys_revoke, "revoke a key by id", keys_cmds)
    revoke.add_argument("key_id", help="the id `keys list` shows")
