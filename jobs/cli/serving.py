"""The serving commands of ``omnicdp``: publish, serve, mcp and keys (see :mod:`serving`).

They live with the other commands, not in ``serving/``: publishing reads gold with Spark, and
the serving package imports nothing from ``jobs``.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.table import Table as RichTable

from jobs.cli.command import Commands, Context, add_command, add_group
from schemas.settings import Settings
from serving.keys import Role

API_KEY_VARIABLE = "OMNICDP_API_KEY"


def cmd_publish(ctx: Context, args: argparse.Namespace) -> int:
    summary = ctx.run("publish", progress=ctx.progress)
    ctx.out.print(
        f"published generation {summary.generation} to {summary.store} in {summary.seconds} s"
    )
    for table, rows in summary.rows.items():
        ctx.out.print(f"  {table:<16} {rows:>12,} rows")
    return 0


def cmd_serve(ctx: Context, args: argparse.Namespace) -> int:
    import uvicorn

    from serving.api import create_app

    settings = ctx.settings
    logging.getLogger("omnicdp.serving.access").setLevel(logging.INFO)
    workers = args.workers or os.cpu_count() or 1
    ctx.console.print(
        f"serving on http://{args.host}:{args.port} with {workers} worker(s) (OpenAPI at /docs)"
    )
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "access_log": False,  # uvicorn's would log query strings (phones, emails); ours does not
        "log_level": "warning",
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return 0
    with _worker_environment(settings):
        uvicorn.run("serving.api:app_from_environment", factory=True, workers=workers, **options)
    return 0


@contextmanager
def _worker_environment(settings: Settings) -> Iterator[None]:
    """``OMNICDP_*`` variables from which every worker process builds these settings: the
    command line's lakehouse, the store they all read, and one file for their rate buckets
    (a new one for this server unless ``serving_rate_state`` names one)."""
    with tempfile.TemporaryDirectory(prefix="omnicdp-serve-") as folder:
        state = settings.serving_rate_state or Path(folder) / "rate_buckets.sqlite"
        variables = {
            "OMNICDP_LAKEHOUSE": str(settings.lakehouse),
            "OMNICDP_SERVING_URL": settings.resolved_serving_url,
            "OMNICDP_SERVING_RATE_STATE": str(state),
        }
        previous = {name: os.environ.get(name) for name in variables}
        os.environ.update(variables)
        try:
            yield
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def positive_int(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"needs at least 1, not {number}")
    return number


def cmd_mcp(ctx: Context, args: argparse.Namespace) -> int:
    from serving.store import open_store
    from serving.tools import create_mcp_server

    key = os.environ.get(API_KEY_VARIABLE)
    if not key:
        raise ValueError(f"set {API_KEY_VARIABLE} to an agent or admin key (omnicdp keys create)")
    settings = ctx.settings
    create_mcp_server(settings, open_store(settings.resolved_serving_url), key).run("stdio")
    return 0


def cmd_keys_create(ctx: Context, args: argparse.Namespace) -> int:
    from serving.keys import create_key
    from serving.store import open_store

    store = open_store(ctx.settings.resolved_serving_url)
    new = create_key(store, Role(args.role), args.label)
    ctx.console.print(f"created {new.role} key {new.key_id}; it is shown only this once:")
    print(new.key)  # alone on stdout, so KEY=$(omnicdp keys create ...) works
    return 0


def cmd_keys_list(ctx: Context, args: argparse.Namespace) -> int:
    from serving.store import open_store

    table = RichTable("id", "role", "label", "created", "revoked", title="API keys")
    for key in open_store(ctx.settings.resolved_serving_url).api_keys():
        table.add_row(key.key_id, key.role, key.label or "", key.created_at, key.revoked_at or "")
    ctx.out.print(table)
    return 0


def cmd_keys_revoke(ctx: Context, args: argparse.Namespace) -> int:
    from serving.store import open_store

    if not open_store(ctx.settings.resolved_serving_url).revoke_key(args.key_id):
        raise ValueError(f"no active key with id {args.key_id}")
    ctx.out.print(f"revoked key {args.key_id}")
    return 0


def add_commands(commands: Commands) -> None:
    """publish, serve, mcp and ``keys create|list|revoke``."""
    add_command(
        commands, "publish", cmd_publish, "publish gold to the serving store (SQLite or PostgreSQL)"
    )

    serve = add_command(commands, "serve", cmd_serve, "run the agent context HTTP API")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    serve.add_argument(
        "--workers",
        type=positive_int,
        help="server processes; their rate limits are shared (default: the machine's cores)",
    )

    add_command(
        commands, "mcp", cmd_mcp, f"run the MCP tools on stdio (key in ${API_KEY_VARIABLE})"
    )

    keys = add_group(commands, "keys", "create, list and revoke API keys")
    create = add_command(keys, "create", cmd_keys_create, "create a key and print it once")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--label", help="who or what uses the key")
    add_command(keys, "list", cmd_keys_list, "list keys (ids and roles, never the keys)")
    revoke = add_command(keys, "revoke", cmd_keys_revoke, "revoke a key by id")
    revoke.add_argument("key_id", help="the id `keys list` shows")
