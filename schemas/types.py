"""Engine-neutral column types: the one vocabulary table schemas and source layouts are written in.

A schema is declared once (``schemas/tables.py``, ``schemas/sources.py``) and translated for each
engine that reads or writes it: Spark (``jobs/lakehouse/spark_schema.py``), Arrow for DuckDB and
delta-rs (``schemas/arrow.py``) and the serving API's pydantic models (``serving/models.py``).
Nothing here imports an engine, so the contracts load in a process that has none of them.

The types are the ones the lakehouse uses, with Spark's meaning: ``TIMESTAMP`` is an instant
(stored in UTC), ``LONG`` 64 and ``INT`` 32 bits, ``Decimal`` exact with a precision and scale.
Array elements and map values may be null; map keys may not.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scalar(StrEnum):
    """A type without parameters."""

    STRING = "string"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"
    LONG = "long"
    INT = "int"
    DOUBLE = "double"


STRING = Scalar.STRING
BOOLEAN = Scalar.BOOLEAN
DATE = Scalar.DATE
TIMESTAMP = Scalar.TIMESTAMP
LONG = Scalar.LONG
INT = Scalar.INT
DOUBLE = Scalar.DOUBLE


@dataclass(frozen=True)
class Decimal:
    """An exact decimal of ``precision`` digits, ``scale`` of them after the point (money)."""

    precision: int
    scale: int


@dataclass(frozen=True)
class Array:
    element: DataType


@dataclass(frozen=True)
class Map:
    key: DataType
    value: DataType


@dataclass(frozen=True)
class Field:
    name: str
    type: DataType
    nullable: bool = True


@dataclass(frozen=True, init=False)
class Struct:
    """A record of named fields, in order: a table's schema or a nested record."""

    fields: tuple[Field, ...]

    def __init__(self, *fields: Field) -> None:
        object.__setattr__(self, "fields", fields)

    @property
    def names(self) -> list[str]:
        """The field names in order (a table's column list)."""
        return [f.name for f in self.fields]


DataType = Scalar | Decimal | Array | Map | Struct


def fields(names: str, dtype: DataType) -> list[Field]:
    """Nullable fields of one type, named by a space-separated list (``"first_name last_name"``)."""
    return [Field(name, dtype) for name in names.split()]
