"""Splink on DuckDB in this process: the identity engine of one machine.

Splink's fixed cost per query is small on DuckDB (no code generation, planning or task
scheduling per statement), and a training run issues hundreds of queries: the same linkage
that takes minutes on a local Spark takes seconds here. Delta stays the source of truth: the
features come from Spark through Arrow, results go back to Spark through Arrow and are written
by the same Delta writers as on a cluster.

The model's own SQL is written once, in Spark's function names (``jaro_winkler``,
``arrays_overlap``, ``size``); the macros below give DuckDB those names, so one set of
comparison levels and rules runs on both. Splink's library levels render themselves per
dialect (:func:`identity.model.settings_in_dialect`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from splink import DuckDBAPI, Linker
from splink.internals.splink_dataframe import SplinkDataFrame

from identity.engines import Engine, LinkerSession, Model, new_linker

# Spark's names for the functions the model's custom SQL uses, as DuckDB macros.
_SPARK_FUNCTIONS = (
    "CREATE MACRO jaro_winkler(a, b) AS jaro_winkler_similarity(a, b)",
    "CREATE MACRO arrays_overlap(a, b) AS list_has_any(a, b)",
    "CREATE MACRO size(a) AS len(a)",
)


def _connect(temp_directory: str, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """An in-memory database on every core, spilling to ``temp_directory`` beyond
    ``memory_limit`` (``Settings.identity_memory``; DuckDB's own default is 80% of the RAM).

    Insertion order is not kept: no step depends on row order (pairs and clusters are sorted
    or keyed where order matters), and keeping it costs memory in every join.
    """
    connection = duckdb.connect(
        ":memory:",
        config={
            "threads": os.cpu_count() or 1,
            "temp_directory": temp_directory,
            "preserve_insertion_order": False,
            "memory_limit": memory_limit,
        },
    )
    for macro in _SPARK_FUNCTIONS:
        connection.execute(macro)
    return connection


def _arrow(frame: DataFrame) -> pa.Table:
    """A Spark frame's rows as Arrow on the driver: the single-machine engine's way in."""
    return frame.toArrow()


class DuckDBEngine(Engine):
    """Splink's DuckDB backend, one in-memory database per session."""

    dialect = "duckdb"

    @contextmanager
    def open(self, features: DataFrame, model: Model, materialize: bool) -> Iterator[LinkerSession]:
        scratch = tempfile.mkdtemp(prefix="omnicdp-duckdb-")
        connection = _connect(scratch, self.settings.identity_memory)
        try:
            db_api = DuckDBAPI(connection=connection)
            # Read once for DuckDB; the steps write these same rows (gold.identity_features),
            # so they must not be recomputed from a plan that may read changed tables. Cached,
            # not checkpointed: the cache is released when the session closes, where a local
            # checkpoint held the driver's memory until its frame was collected.
            written = features.persist(StorageLevel.MEMORY_AND_DISK) if materialize else features
            table = db_api.register(_arrow(written), table_name="omnicdp_features")
            yield LinkerSession(self, new_linker(table, model, self.dialect), written, table)
        finally:
            if materialize:
                features.unpersist()
            connection.close()
            shutil.rmtree(scratch, ignore_errors=True)

    def to_spark(self, table: SplinkDataFrame) -> DataFrame:
        result = table.db_api.duckdb_con.sql(f"SELECT * FROM {table.physical_name}")
        return self.spark.createDataFrame(result.to_arrow_table())

    def register(self, linker: Linker, frame: DataFrame, name: str) -> SplinkDataFrame:
        return linker.table_management.register_table(_arrow(frame), name, overwrite=True)

    def rows(self, linker: Linker, query: str) -> list[tuple[Any, ...]]:
        return linker._db_api.duckdb_con.sql(query).fetchall()

    def unit_hash(self, column: str) -> str:
        # The first 32 bits of the MD5 of the value, as Spark computes them too.
        return f"(('0x' || substr(md5(cast({column} AS varchar)), 1, 8))::ubigint / 4294967296.0)"
