"""Test data: identity records, the gold identity rows built on them, and frames of both.

A test names only the fields its case is about: every other column is null, and a silver
customer record gets what standardize always gives one (its record id from source and key, one
interaction, first and last seen). Column names come from the table schemas through
:func:`columns_of` and rows become Spark frames through :func:`frame`, the two places that know
how a schema is declared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from jobs.lakehouse.spark_schema import spark_schema
from schemas.sources import record_id as record_id_of
from schemas.tables import CUSTOMER_RECORDS, IDENTITY_XREF
from schemas.types import Struct

FIRST_SEEN = datetime(2026, 1, 1)
LAST_SEEN = datetime(2026, 6, 1)


def columns_of(schema: Struct) -> list[str]:
    """The column names of a table schema, in order."""
    return schema.names


def table_row(schema: Struct, **values: Any) -> dict[str, Any]:
    """A row of ``schema``: ``values``, and null in every other column."""
    unknown = sorted(set(values) - set(columns_of(schema)))
    if unknown:
        raise KeyError(f"not columns of the schema: {unknown}")
    return {**dict.fromkeys(columns_of(schema)), **values}


def record(source: str, key: str, /, **fields: Any) -> dict[str, Any]:
    """A silver.customer_records row of ``source`` with identity key ``key``.

    Seen once, from ``FIRST_SEEN`` to ``LAST_SEEN``, unless ``fields`` say otherwise; the record
    id is the one standardize gives the key (:func:`schemas.sources.record_id`).
    """
    defaults = {
        "record_id": record_id_of(source, key),
        "source": source,
        "source_key": key,
        "first_seen_at": FIRST_SEEN,
        "last_seen_at": LAST_SEEN,
        "interaction_count": 1,
    }
    return table_row(CUSTOMER_RECORDS, **{**defaults, **fields})


def record_of(record_id: str, /, **fields: Any) -> dict[str, Any]:
    """The record with id ``source:key`` (already normalized), as :func:`record` builds it."""
    source, key = record_id.split(":", 1)
    return record(source, key, **fields)


def xref_row(
    record_id: str, customer_id: str, cluster_size: int, resolved_at: datetime
) -> dict[str, Any]:
    """One gold.identity_xref row: the record's customer and how many records it has."""
    return table_row(
        IDENTITY_XREF,
        record_id=record_id,
        source=record_id.split(":", 1)[0],
        customer_id=customer_id,
        cluster_size=cluster_size,
        resolved_at=resolved_at,
    )


def xref_rows(owners: Mapping[str, str], resolved_at: datetime) -> list[dict[str, Any]]:
    """The xref of ``owners`` (record id -> customer id), cluster sizes counted from it."""
    sizes = {c: list(owners.values()).count(c) for c in set(owners.values())}
    return [xref_row(r, c, sizes[c], resolved_at) for r, c in owners.items()]


def owners_of(members: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """Record id -> customer id, from customer id -> its record ids."""
    return {r: customer for customer, records in members.items() for r in records}


def frame(spark: SparkSession, rows: Sequence[Mapping[str, Any]], schema: Struct) -> DataFrame:
    """Rows given as dicts (missing columns null) as a DataFrame of exactly ``schema``."""
    names = columns_of(schema)
    return spark.createDataFrame(
        [tuple(r.get(n) for n in names) for r in rows], spark_schema(schema)
    )


def clusters_frame(spark: SparkSession, clusters: Mapping[str, Iterable[str]]) -> DataFrame:
    """Clusters as clustering hands them over: ``record_id, source, cluster_id`` per record,
    from cluster id -> its record ids."""
    return spark.createDataFrame(
        [(r, r.split(":", 1)[0], c) for c, records in clusters.items() for r in records],
        "record_id string, source string, cluster_id string",
    )
