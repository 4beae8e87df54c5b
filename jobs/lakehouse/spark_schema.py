"""The engine-neutral schemas of ``schemas/`` as Spark types, and frames made to fit them.

``schemas.types`` declares each table once without Spark, so serving and the single-machine
engines load the contracts without pyspark; Spark steps translate them here, at the edge.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from schemas import types as t

_SCALARS: dict[t.Scalar, DataType] = {
    t.STRING: StringType(),
    t.BOOLEAN: BooleanType(),
    t.DATE: DateType(),
    t.TIMESTAMP: TimestampType(),
    t.LONG: LongType(),
    t.INT: IntegerType(),
    t.DOUBLE: DoubleType(),
}


def spark_type(dtype: t.DataType) -> DataType:
    """The Spark type of one neutral type (array elements and map values nullable)."""
    if isinstance(dtype, t.Struct):
        return spark_schema(dtype)
    if isinstance(dtype, t.Array):
        return ArrayType(spark_type(dtype.element))
    if isinstance(dtype, t.Map):
        return MapType(spark_type(dtype.key), spark_type(dtype.value))
    if isinstance(dtype, t.Decimal):
        return DecimalType(dtype.precision, dtype.scale)
    return _SCALARS[dtype]


def spark_schema(schema: t.Struct) -> StructType:
    """A table schema or nested record as a Spark ``StructType``, fields and nullability kept."""
    return StructType([StructField(f.name, spark_type(f.type), f.nullable) for f in schema.fields])


def conform(df: DataFrame, schema: t.Struct, fill_missing: bool = False) -> DataFrame:
    """Select and cast ``df`` to exactly ``schema``'s columns, in order.

    A missing column fails, unless ``fill_missing`` (for unions of sources where some sources
    have no such field) makes it null.
    """
    missing = [f.name for f in schema.fields if f.name not in df.columns]
    if missing and not fill_missing:
        raise ValueError(f"cannot conform to schema: missing columns {missing}")
    return df.select(
        [
            (F.col(f.name) if f.name not in missing else F.lit(None))
            .cast(spark_type(f.type))
            .alias(f.name)
            for f in schema.fields
        ]
    )
