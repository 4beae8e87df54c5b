"""What every ``omnicdp`` command shares: the context it is given, and how it joins the parser.

A command is ``command(ctx, args) -> exit status``. The :class:`Context` holds what the
commands would otherwise each build: the settings (``--config``, ``--lakehouse``,
``--landing``, ``OMNICDP_*``), a SparkSession started the first time a step needs one, the
progress log and the two consoles (results on stdout, status and errors on stderr). Steps run
through :meth:`Context.run`, that is through the step registry
(:mod:`jobs.orchestration.steps`), as the Airflow tasks do.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from jobs.orchestration import steps
from schemas.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass
class Context:
    """Settings, Spark, progress and consoles of one ``omnicdp`` invocation."""

    config: Path | None = None
    lakehouse: Path | None = None
    landing: Path | None = None
    console: Console = field(default_factory=lambda: Console(stderr=True))  # status, errors
    out: Console = field(default_factory=Console)  # results
    _spark: SparkSession | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        return cls(config=args.config, lakehouse=args.lakehouse, landing=args.landing)

    @cached_property
    def settings(self) -> Settings:
        """Built when a command first asks (``simulate`` never does); a command may replace
        them before Spark starts (``demo`` moves the lakehouse into its folder)."""
        if self.config:
            os.environ["OMNICDP_CONFIG"] = str(self.config)
        given = {"lakehouse": self.lakehouse, "landing": self.landing}
        overrides = {k: v for k, v in given.items() if v}
        return Settings(**overrides)

    def spark(self) -> SparkSession:
        """The SparkSession, started on the first call."""
        if self._spark is None:
            from jobs.lakehouse.session import get_spark

            with self.console.status("starting Spark"):
                self._spark = get_spark(self.settings)
        return self._spark

    def progress(self, message: str) -> None:
        """What a long-running step is doing, on stderr."""
        self.console.log(message)

    def run(self, step: str, /, **options: Any) -> Any:
        """Run registry step ``step`` with these settings (and Spark, if it needs it)."""
        return steps.run(step, self.settings, self.spark, **options)


Command = Callable[[Context, argparse.Namespace], int]
Commands = Any  # what ``add_subparsers`` returns (argparse keeps its type private)


def add_command(parent: Commands, name: str, func: Command, help_: str) -> argparse.ArgumentParser:
    """Add command ``name`` running ``func``; its parser, for the command's arguments."""
    sub = parent.add_parser(name, help=help_, description=help_)
    sub.set_defaults(func=func)
    return sub


def add_group(parent: Commands, name: str, help_: str) -> Commands:
    """Add command group ``name`` (``omnicdp identity ...``); where its commands go."""
    group = parent.add_parser(name, help=help_, description=help_)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")
