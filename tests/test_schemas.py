"""The engine-neutral schemas mean the same table to Spark and to Arrow (DuckDB, delta-rs).

Spark's own Arrow conversion is the referee: for every table and nested record schema of
``schemas.tables`` and every source's parse schema, the Arrow adapter gives exactly the schema
Spark converts the Spark adapter's ``StructType`` to, and converting that Arrow schema back gives
the ``StructType`` again (names, types and nullability at every level). No Spark session needed.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

import schemas.tables
from jobs.lakehouse.spark_schema import spark_schema
from schemas.arrow import arrow_schema
from schemas.sources import SOURCES
from schemas.types import Struct

SCHEMAS: dict[str, Struct] = {
    **{name: v for name, v in vars(schemas.tables).items() if isinstance(v, Struct)},
    **{f"source {name}": spec.schema for name, spec in SOURCES.items()},
}


def test_every_table_schema_is_checked() -> None:
    tables = {"CUSTOMER_RECORDS", "INTERACTIONS", "IDENTITY_XREF", "CUSTOMER_ID_HISTORY"}
    curated = {"CUSTOMER_PROFILE", "CUSTOMER_TIMELINE", "CUSTOMER_360", "AGENT_CONTEXT"}
    others = {"SEGMENT_MEMBERSHIP", "JOURNEY_METRICS", "ERASURE_REQUEST"}
    assert tables | curated | others | {f"source {name}" for name in SOURCES} <= set(SCHEMAS)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_arrow_schema_is_what_spark_makes_of_the_spark_schema(name: str) -> None:
    spark = spark_schema(SCHEMAS[name])
    arrow = arrow_schema(SCHEMAS[name])
    assert arrow.names == spark.fieldNames()
    assert arrow.equals(to_arrow_schema(spark, timezone="UTC"), check_metadata=True), name
    assert from_arrow_schema(arrow) == spark


def test_arrow_types_of_the_lakehouse() -> None:
    """Instants in UTC to the microsecond, exact money, named list elements and map entries."""
    arrow = arrow_schema(schemas.tables.CUSTOMER_360)
    assert arrow.field("as_of").type == pa.timestamp("us", tz="UTC")
    assert not arrow.field("as_of").nullable and arrow.field("monetary").nullable
    assert arrow.field("monetary").type == pa.decimal128(14, 2)
    assert arrow.field("open_case_ids").type.value_field.name == "element"
    channel_mix = arrow.field("channel_mix").type
    assert (channel_mix.key_field.nullable, channel_mix.item_field.nullable) == (False, True)
