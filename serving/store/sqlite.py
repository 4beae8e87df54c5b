"""The embedded serving store: one SQLite file (the default, ``sqlite:///path/file.sqlite``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from serving.store.base import ServingStore


class SQLiteStore(ServingStore):
    """One local file in WAL mode: readers never wait for the publisher, nor it for them."""

    def __init__(self, url: str) -> None:
        self.path = Path(url.removeprefix("sqlite:///"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(url)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA mmap_size = 1073741824")
        return connection

    @contextmanager
    def writer(self) -> Iterator[sqlite3.Connection]:
        connection = self._connect()
        connection.execute("PRAGMA cache_size = -262144")  # 256 MiB for index builds
        try:
            connection.execute("BEGIN IMMEDIATE")  # one writer; readers carry on in WAL mode
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # keep the WAL small
        finally:
            connection.close()

    def bulk_insert(
        self,
        connection: sqlite3.Connection,
        table: str,
        columns: Sequence[str],
        rows: list[Sequence[Any]],
    ) -> None:
        marks = ", ".join("?" * len(columns))
        connection.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
