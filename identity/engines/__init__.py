"""Where Splink links records: DuckDB in this process on one machine, Spark on a cluster.

One model for both: the same comparisons, blocking rules and saved model JSON (rendered in the
engine's SQL dialect by :func:`identity.model.settings_in_dialect`). What differs between the
backends lives in the two modules here, not in ``if``s through ``identity/``:

- :mod:`identity.engines.spark`: Splink's Spark backend, its intermediates written as Parquet
  under the session's checkpoint directory. It scales out, and pays Spark's fixed cost per
  query (code generation, planning, scheduling) hundreds of times per training run.
- :mod:`identity.engines.duckdb`: Splink's DuckDB backend in this process, fed the linkage
  features through Arrow; its results come back to Spark through Arrow too, so Delta stays
  the only storage and the writers stay the same. It is the default on a local master
  (``Settings.resolved_identity_engine``): the same linkage takes seconds instead of minutes.

The rest of ``identity/`` talks to a :class:`LinkerSession`: a linker over the features, the
features as a Spark frame, and the few operations the steps need beyond Splink's own API
(results as Spark frames, engine SQL for the u sample, a deterministic hash for it).
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from splink import Linker, SettingsCreator
from splink.internals.splink_dataframe import SplinkDataFrame

from identity.model import settings_in_dialect
from schemas.settings import Settings

# A Splink model: untrained (the creator) or trained (a saved settings dict, any dialect).
Model = SettingsCreator | dict[str, Any]


class Engine(ABC):
    """A Splink backend with a way in from Spark and a way back out."""

    dialect: str

    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        self.spark = spark
        self.settings = settings

    @abstractmethod
    @contextmanager
    def open(self, features: DataFrame, model: Model, materialize: bool) -> Iterator[LinkerSession]:
        """A session over ``features``; its tables are gone when it closes, also on failure."""

    @abstractmethod
    def to_spark(self, table: SplinkDataFrame) -> DataFrame:
        """A Splink table of this engine as a Spark frame (computed while the session is open)."""

    @abstractmethod
    def register(self, linker: Linker, frame: DataFrame, name: str) -> SplinkDataFrame:
        """A Spark frame as a table this engine's linker can read, under ``name``."""

    @abstractmethod
    def rows(self, linker: Linker, query: str) -> list[tuple[Any, ...]]:
        """The rows of a small query in this engine's SQL (an aggregate, never a table)."""

    @abstractmethod
    def unit_hash(self, column: str) -> str:
        """SQL of a value in [0, 1) hashed from ``column``: the same on every engine and run,
        whatever the partitioning, so a hash-selected sample is the same on both."""


@dataclass
class LinkerSession:
    """A linker over the features, open until its ``with`` block ends.

    ``features`` is the linker's input as a Spark frame that costs nothing to read again
    (written, or checkpointed); ``input_table`` the same records as the engine's table.
    """

    engine: Engine
    linker: Linker
    features: DataFrame
    input_table: SplinkDataFrame

    def use_model(self, model: Model) -> None:
        """Link the same records with another model from here on (training refines its own),
        keeping the tables the engine holds for them."""
        self.linker = new_linker(self.input_table, model, self.engine.dialect)

    def to_spark(self, table: SplinkDataFrame) -> DataFrame:
        """A Splink result of this session as a Spark frame."""
        return self.engine.to_spark(table)

    def register(self, frame: DataFrame, name: str) -> SplinkDataFrame:
        """A Spark frame as a table of this session, e.g. one side of ``predict_between``."""
        return self.engine.register(self.linker, frame, name)

    def sql(self, query: str, name: str) -> SplinkDataFrame:
        """A table of this session from engine SQL over its tables' ``physical_name``s; removed
        with Splink's own tables when the session closes."""
        physical = f"{name}_{uuid.uuid4().hex[:8]}"
        # Splink 5 has no public "table from SQL"; this is the call its own steps use.
        return self.linker._db_api._sql_to_splink_dataframe(query, name, physical)

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        """The rows of a small engine-SQL query (an aggregate) on the driver."""
        return self.engine.rows(self.linker, query)


def new_linker(table: SplinkDataFrame, model: Model, dialect: str) -> Linker:
    """A linker over ``table`` with ``model`` rendered for the engine's SQL ``dialect``."""
    return Linker(table, settings_in_dialect(model, dialect), log_level=None)


def identity_engine(spark: SparkSession, settings: Settings) -> Engine:
    """The engine ``settings`` choose (``OMNICDP_IDENTITY_ENGINE``, else by the Spark master)."""
    if settings.resolved_identity_engine == "duckdb":
        from identity.engines.duckdb import DuckDBEngine

        return DuckDBEngine(spark, settings)
    from identity.engines.spark import SparkEngine

    return SparkEngine(spark, settings)


@contextmanager
def open_linker(
    spark: SparkSession,
    settings: Settings,
    features: DataFrame,
    model: Model,
    materialize: bool = True,
) -> Iterator[LinkerSession]:
    """A session of the configured engine over ``features`` with ``model``.

    ``materialize=False`` hands the engine ``features`` as they are: for a plain scan of a
    stored table, which costs nothing to read again.
    """
    with identity_engine(spark, settings).open(features, model, materialize) as session:
        yield session
