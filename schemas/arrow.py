"""The engine-neutral schemas as Arrow schemas, for the engines that read the lakehouse without
Spark: DuckDB (the single-machine identity engine) and delta-rs take and give Arrow tables.

The types are the ones Spark's own Arrow conversion gives for the same table, so a table read
through Spark and one read through delta-rs compare equal: timestamps are microsecond instants in
UTC, list elements are named ``element`` and map entries ``key``/``value``, as Spark and Parquet
name them.
"""

from __future__ import annotations

import pyarrow as pa

from schemas import types as t

_SCALARS: dict[t.Scalar, pa.DataType] = {
    t.STRING: pa.string(),
    t.BOOLEAN: pa.bool_(),
    t.DATE: pa.date32(),
    t.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    t.LONG: pa.int64(),
    t.INT: pa.int32(),
    t.DOUBLE: pa.float64(),
}


def arrow_type(dtype: t.DataType) -> pa.DataType:
    """The Arrow type of one neutral type (array elements and map values nullable)."""
    if isinstance(dtype, t.Struct):
        return pa.struct(_arrow_fields(dtype))
    if isinstance(dtype, t.Array):
        return pa.list_(pa.field("element", arrow_type(dtype.element)))
    if isinstance(dtype, t.Map):
        return pa.map_(
            pa.field("key", arrow_type(dtype.key), nullable=False),
            pa.field("value", arrow_type(dtype.value)),
        )
    if isinstance(dtype, t.Decimal):
        return pa.decimal128(dtype.precision, dtype.scale)
    return _SCALARS[dtype]


def arrow_schema(schema: t.Struct) -> pa.Schema:
    """A table schema as an Arrow schema, fields and nullability kept."""
    return pa.schema(_arrow_fields(schema))


def _arrow_fields(schema: t.Struct) -> list[pa.Field]:
    return [pa.field(f.name, arrow_type(f.type), nullable=f.nullable) for f in schema.fields]
