"""The serving store at scale: a PostgreSQL database (``postgresql://user:pass@host/db``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from serving.store.base import ServingStore


class PostgresStore(ServingStore):
    """A PostgreSQL database; everything lives in its own ``omnicdp`` schema."""

    placeholder = "%s"
    schema = "omnicdp"

    def _connect(self) -> psycopg.Connection:
        connection = psycopg.connect(self._conninfo, autocommit=True)
        connection.execute(f"SET search_path TO {self.schema}")
        return connection

    @property
    def _conninfo(self) -> str:
        return self.url.replace("postgresql+psycopg://", "postgresql://", 1)

    def _is_usable(self, connection: psycopg.Connection) -> bool:
        return not (connection.closed or connection.broken)

    @contextmanager
    def writer(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self._conninfo) as connection:  # commits on success, else rolls back
            connection.execute("SELECT pg_advisory_xact_lock(hashtext('omnicdp.serving'))")
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            connection.execute(f"SET LOCAL search_path TO {self.schema}")
            yield connection

    def bulk_insert(
        self,
        connection: psycopg.Connection,
        table: str,
        columns: Sequence[str],
        rows: list[Sequence[Any]],
    ) -> None:
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
